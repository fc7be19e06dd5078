"""Settings base: every service subclasses it with its own env prefix (PLOTLINE_<SERVICE>_)."""

from __future__ import annotations

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody configured this"; refused outside --dev.
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "password", "placeholder", "xxx"}


class ServiceSettings(BaseSettings):
    """What every service needs; a service adds its own fields in its config module."""

    model_config = SettingsConfigDict(env_prefix="PLOTLINE_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    # Every NATS connection authenticates: this service's user (names.nats_user) and
    # password. (Credentials inside nats_url, nats://user:pass@host, work as well.)
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    kv_url: str = "memory://"
    blob_url: str = "memory://"
    azure_connection_string: SecretStr | None = None
    multi_user: bool = False
    # JWT claims every service checks; auth issues tokens with exactly these.
    issuer: str = "plotline"
    audience: str = "plotline"
    # Optional HTTP JWKS endpoint; by default keys are asked of auth over NATS.
    jwks_url: str | None = None
    # How long a verified API key is trusted without asking auth again; a revocation
    # event drops it at once, this only bounds the damage of a lost event.
    api_key_cache_seconds: float = 10.0
    max_body_bytes: int = 1 << 20
    # Proxies (CIDRs) whose X-Forwarded-For is believed for the client address that login
    # throttling and anonymous socket limits count (services/common/clientaddr.py). Empty:
    # the socket's peer, always. The stack and the chart set their proxies here.
    trusted_proxies: list[str] = []
    # After SIGTERM: seconds to go on answering (readiness already 503, every answer
    # closing its connection) before the server stops accepting. For a proxy that does not
    # route by readiness (the stack's plain nginx): its pooled connections are all closed
    # by an answer meanwhile, so none can carry a request into a connection the server
    # closes. Under Kubernetes the chart's preStop sleep does this, and it stays 0. (HTTP
    # services; push closes its websockets with 1001 at once.)
    drain_seconds: float = 0.0
    dev: bool = False

    def nats_credentials(self) -> dict[str, str]:
        """Keyword arguments for Bus.connect: user and password, when configured."""
        if self.nats_user is None or self.nats_password is None:
            return {}
        return {"user": self.nats_user, "password": self.nats_password.get_secret_value()}

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> ServiceSettings:
        if self.dev:
            return self
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value().strip().lower() in (
                PLACEHOLDER_SECRETS
            ):
                raise ValueError(f"{name} is a placeholder; set a real value (or use --dev)")
        return self
