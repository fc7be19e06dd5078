"""Push settings (env prefix PLOTLINE_PUSH_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.names import env_prefix
from services.common.settings import ServiceSettings


class PushSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("push"), extra="ignore")

    # Frames waiting for one client; a client this far behind is closed (1008), so memory
    # never grows with a lagging client.
    queue_frames: int = 1000
    # The same for `plotline serve push` (picows), counted in the socket's write buffer.
    max_buffered_bytes: int = 4 << 20
    # Largest frame a client may send (a patch op carries Bokeh events).
    max_frame_bytes: int = 1 << 20
    # Ops per second one connection may send (bursts up to twice this); a faster client is
    # told so once and then read more slowly.
    max_ops_per_second: float = 200.0
    # Browsers on other sites may not open a socket with their visitors' cookies: an Origin
    # header must name this server's own host or one of these (e.g. https://app.example.org).
    allowed_origins: list[str] = []
    # Channels one connection may hold at once (each costs a little memory everywhere).
    max_channels: int = 1000
    # Sockets one signed-in user may hold open on one replica (4429 past it), so one
    # runaway script cannot take a replica's memory. Only sockets that present credentials
    # count: in single-user mode every anonymous viewer is `defaultuser` too.
    max_connections_per_user: int = 100
    # Sockets without credentials (viewers of published documents, and every viewer in
    # single-user mode) one client address may hold open on one replica (4429 past it):
    # a public page may have many viewers, one host may not take a replica's memory.
    max_anonymous_per_address: int = 1000
    # Events replayed for `since` at most (older history: resync).
    max_replay: int = 10_000
