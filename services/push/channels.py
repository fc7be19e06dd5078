"""Channel names (`doc:<id>`, `data:<id>`), their NATS subjects, and who may read them."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.bus import Bus
from services.common.errors import Unavailable
from services.common.names import CHANNEL_SERVICES as SERVICE_OF
from services.common.names import DATA_ACCESS, DOCS_ACCESS, event_subject


@dataclass(frozen=True)
class Channel:
    name: str  # as the client wrote it: "doc:<id>" or "data:<id>"
    kind: str  # "doc" or "data"
    entity: str

    @property
    def service(self) -> str:
        return SERVICE_OF[self.kind]

    @property
    def subject(self) -> str:
        """Every event of the entity: plotline.<service>.<id>.*"""
        return event_subject(self.service, self.entity, "*")


def parse(name: object) -> Channel | None:
    if not isinstance(name, str):
        return None
    kind, _, entity = name.partition(":")
    if kind not in SERVICE_OF or not entity.isalnum() or len(entity) > 64:
        return None
    return Channel(name, kind, entity)


@dataclass(frozen=True)
class Access:
    read: bool
    write: bool = False
    version: int | None = None  # the channel's seq now, when the owner service says
    unavailable: bool = False   # the owner service did not answer: ask again later


async def ask(bus: Bus, channel: Channel, user: str | None, share: str | None,
              doc: str | None = None) -> Access:
    """Ask the service that owns the entity (docs or data) what `user` may do; a data
    channel may be read through a document (`doc`, with its share key) that binds it."""
    if channel.kind == "doc":
        subject, request = DOCS_ACCESS, {"doc": channel.entity, "user": user, "share": share}
    else:
        subject, request = DATA_ACCESS, {"source": channel.entity, "user": user,
                                         "doc": doc, "share": share}
    try:
        answer = await bus.request(subject, request)
    except Unavailable:
        return Access(read=False, unavailable=True)
    if not answer.get("ok"):
        return Access(read=False)
    return Access(read=bool(answer.get("read")), write=bool(answer.get("write")),
                  version=answer.get("version"))
