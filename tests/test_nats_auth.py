"""The bus is authenticated: the embedded private nats-server and the stack's NATS refuse a
connection without credentials or with wrong ones, while every service, each as its own
user, works over them (the events of an append reach a websocket)."""

from __future__ import annotations

import asyncio
import json
import re
import stat
import sys
from pathlib import Path

import httpx
import nats
import pytest
import websockets
from conftest import new_username
from servers import free_port, start_nats, start_plotline

from services.common.bus import Bus
from services.common.names import DOCS_PATCH, DOCS_UNBOUND, SERVICES, nats_env, nats_user
from services.common.settings import ServiceSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import start_stack  # noqa: E402

DATA = "/api/v1/data"


async def refused(url: str, **credentials: str) -> bool:
    """True when NATS at `url` turns this connection away."""
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                                connect_timeout=2, **credentials)
    except Exception as exc:
        return "Authorization Violation" in str(exc)
    await nc.close()
    return False


def users_of(conf: Path) -> dict[str, str]:
    """{user: password} from a nats-server config written by plotline.natsproc."""
    return dict(re.findall(r'"user": "([^"]+)", "password": "([^"]+)"', conf.read_text()))


async def assert_authenticated(url: str, conf: Path) -> None:
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    users = users_of(conf)
    assert sorted(users) == sorted(nats_user(s) for s in SERVICES)
    assert await refused(url)  # anonymous: e.g. a forged browser patch on DOCS_PATCH
    assert await refused(url, user=nats_user("docs"), password="wrong-password")
    assert await refused(url, user="intruder", password=users[nats_user("docs")])
    # the right credentials get in (the refusals above are not a broken server)
    bus = await Bus.connect(url, "test", user=nats_user("push"),
                            password=users[nats_user("push")])
    assert bus.connected
    await bus.close()


async def an_append_reaches_a_socket(url: str) -> None:
    """data -> NATS -> push, each service on its own credentials."""
    with httpx.Client(base_url=url, timeout=10) as c:
        r = c.post(f"{DATA}/sources", json={"name": new_username(), "columns": {"x": [1.0]}})
        assert r.status_code == 201, r.text
        source = r.json()["id"]
        ws_url = url.replace("http://", "ws://", 1) + "/ws"
        async with websockets.connect(ws_url, open_timeout=10) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": f"data:{source}"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["op"] == "subscribed"
            r = c.post(f"{DATA}/sources/{source}/append", json={"columns": {"x": [2.0]}})
            assert r.status_code == 200
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (event["type"], event["seq"]) == ("appended", 2)


async def test_the_embedded_private_nats_refuses_strangers(tmp_path):
    server = start_plotline(tmp_path)  # no --nats-url: the private nats-server
    try:
        url = re.search(r"private nats-server on (\S+)", server.log.read_text()).group(1)
        conf = tmp_path / "data" / "nats" / "nats-server.conf"
        await assert_authenticated(url, conf)
        await an_append_reaches_a_socket(server.url)
    finally:
        server.stop()


async def test_the_stack_nats_refuses_strangers(tmp_path):
    stack = start_stack(tmp_path / "stack", free_port(), multi_user=False)
    try:
        nats_server = next(s for s in stack.servers if s.name == "nats")
        await assert_authenticated(nats_server.url, tmp_path / "stack" / "nats" /
                                   "nats-server.conf")
        await an_append_reaches_a_socket(stack.url)
        # each service process got its own user and password, by environment
        users = users_of(tmp_path / "stack" / "nats" / "nats-server.conf")
        for server in stack.servers:
            kind = server.name.partition("-")[0]
            if kind not in SERVICES:
                continue
            env = dict(item.split("=", 1) for item in Path(
                f"/proc/{server.process.pid}/environ").read_text().split("\0") if "=" in item)
            user_var, password_var = nats_env(kind)
            assert env[user_var] == nats_user(kind)
            assert env[password_var] == users[nats_user(kind)]
    finally:
        stack.stop()


async def test_a_service_connects_with_the_credentials_of_its_settings(tmp_path, monkeypatch):
    nats_server = start_nats(tmp_path, passwords={"docs": "docs-password-123"})
    try:
        monkeypatch.setenv("PLOTLINE_NATS_USER", nats_user("docs"))
        monkeypatch.setenv("PLOTLINE_NATS_PASSWORD", "docs-password-123")
        settings = ServiceSettings(nats_url=nats_server.url)
        assert settings.nats_credentials() == {"user": "plotline-docs",
                                               "password": "docs-password-123"}
        bus = await Bus.connect(settings.nats_url, "docs", **settings.nats_credentials())
        try:
            got: list[bytes] = []

            async def keep(msg) -> None:  # type: ignore[no-untyped-def]
                got.append(msg.data)

            sub = await bus.nc.subscribe("plotline.docs.d1.created", cb=keep)
            await bus.nc.publish("plotline.docs.d1.created", b"{}")
            await bus.nc.flush()
            await asyncio.sleep(0.1)
            assert got == [b"{}"]
            await sub.unsubscribe()
        finally:
            await bus.close()
        assert ServiceSettings(nats_url=nats_server.url, nats_user=None).nats_credentials() \
            == {}
        assert await refused(nats_server.url)
    finally:
        nats_server.stop()


def test_a_placeholder_nats_password_is_refused_outside_dev():
    with pytest.raises(ValueError, match="placeholder"):
        ServiceSettings(nats_user="plotline-docs", nats_password="changeme")


async def test_each_service_user_may_do_only_its_own_part(tmp_path):
    """Only push may forward a browser's patch (DOCS_PATCH names the user to act as), no
    service may publish another's events or answer another's questions."""
    passwords = {s: f"{s}-password-123" for s in SERVICES}
    nats_server = start_nats(tmp_path, passwords=passwords)
    conns = {}
    try:
        for service in SERVICES:
            conns[service] = await nats.connect(
                nats_server.url, user=nats_user(service), password=passwords[service],
                error_cb=_ignore, allow_reconnect=False)
        got: list[str] = []

        async def keep(msg) -> None:  # type: ignore[no-untyped-def]
            got.append(msg.subject + " " + msg.data.decode())

        await conns["docs"].subscribe(DOCS_PATCH, cb=keep)
        await conns["docs"].subscribe("plotline.auth.*.revoked", cb=keep)
        await conns["docs"].flush()
        # Three rounds: on a freshly started nats-server an allowed message is now and
        # then not delivered (seen about once in ten runs, with or without permissions);
        # every denied one is sent as often, so the check stays exactly as strict.
        for _ in range(3):
            for sender in SERVICES:
                await conns[sender].publish(DOCS_PATCH, sender.encode())
                await conns[sender].publish("plotline.auth.someone.revoked", sender.encode())
                await conns[sender].flush()
            await asyncio.sleep(0.3)
        assert sorted(set(got)) == ["plotline.auth.someone.revoked auth", f"{DOCS_PATCH} push"]
        # answering another service's questions is refused too
        stolen: list[str] = []

        async def steal(msg) -> None:  # type: ignore[no-untyped-def]
            stolen.append(msg.subject)

        await conns["data"].subscribe("plotline.auth.verify", cb=steal)
        await conns["data"].flush()
        await conns["push"].publish("plotline.auth.verify", b"{}")
        await conns["push"].flush()
        await asyncio.sleep(0.3)
        assert stolen == []
        # docs' unbinding notice reaches push (it rechecks data channels on it)
        notices: list[str] = []

        async def notice(msg) -> None:  # type: ignore[no-untyped-def]
            notices.append(msg.subject)

        await conns["push"].subscribe(DOCS_UNBOUND, cb=notice)
        await conns["push"].flush()
        for _ in range(3):  # (see the rounds above)
            await conns["docs"].publish(DOCS_UNBOUND, b"{}")
            await conns["docs"].flush()
            await asyncio.sleep(0.2)
        assert notices and set(notices) == {DOCS_UNBOUND}
    finally:
        for nc in conns.values():
            await nc.close()
        nats_server.stop()


async def _ignore(exc: Exception) -> None:  # permission violations arrive here
    pass
