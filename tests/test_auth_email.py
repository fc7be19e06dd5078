"""Email verification against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import time
from email import message_from_bytes

import httpx
import pytest
from aiosmtpd.controller import Controller
from conftest import new_username
from servers import free_port, start_plotline

AUTH = "/api/v1/auth"


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def wait_for(self, to: str, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == to:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to}")


@pytest.fixture(scope="module")
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def mail_server(smtp, tmp_path_factory, nats_url):
    _, port = smtp
    server = start_plotline(tmp_path_factory.mktemp("mail"), "-m", "--nats-url", nats_url,
                            env={"PLOTLINE_AUTH_SMTP_URL": f"smtp://127.0.0.1:{port}"})
    yield server
    server.stop()


def test_new_account_must_confirm_its_address(mail_server, smtp):
    inbox, _ = smtp
    name, password = new_username(), "password123"
    email = f"{name}@example.org"
    with httpx.Client(base_url=mail_server.url) as c:
        r = c.post(f"{AUTH}/register", json={"username": name, "password": password})
        assert r.status_code == 403 and r.json()["error"] == "email_required"
        r = c.post(f"{AUTH}/register", json={"username": name, "password": password,
                                             "email": email})
        assert r.status_code == 201 and r.json()["verified"] is False
        r = c.post(f"{AUTH}/login", json={"username": name, "password": password})
        assert r.status_code == 403 and r.json()["error"] == "email_unverified"
        body = inbox.wait_for(email).get_payload(decode=True).decode()
        token = re.search(r"/api/v1/auth/verify\?token=([\w-]+)", body).group(1)
        r = c.get(f"{AUTH}/verify", params={"token": "not-the-token"})
        assert r.status_code == 404 and r.json()["error"] == "invalid_token"
        r = c.get(f"{AUTH}/verify", params={"token": token})
        assert r.status_code == 200 and r.json()["verified"] is True
        r = c.post(f"{AUTH}/login", json={"username": name, "password": password})
        assert r.status_code == 200
        # a verification link works once
        assert c.get(f"{AUTH}/verify", params={"token": token}).status_code == 404
