"""The client: `Session`, the ~/.plotline config files and the CLI verbs, against a real
multi-user server (one per module, file backend)."""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import new_username
from plotline import PlotlineError, Session, config
from servers import Server, free_port, start_plotline

PASSWORD = "correct horse battery"
PLOTLINE = str(Path(sys.executable).parent / "plotline")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, nats_url: str) -> Iterator[Server]:
    srv = start_plotline(tmp_path_factory.mktemp("client"), "-m", "--nats-url", nats_url)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PLOTLINE_HOME per test (not yet created: the client creates it)."""
    path = tmp_path / "plotline-home"
    monkeypatch.setenv("PLOTLINE_HOME", str(path))
    return path


def registered(server: Server) -> str:
    name = new_username()
    with Session(server.url) as s:
        assert s.register(name, PASSWORD)["username"] == name
    return name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser


# --- Session -----------------------------------------------------------------------------

def test_session_end_to_end(server: Server, home: Path) -> None:
    name = new_username()
    with Session(server.url + "/") as s:  # a trailing slash names the same server
        assert s.register(name, PASSWORD, email=None)["username"] == name
        answer = s.login(name, PASSWORD)
        assert answer["token_type"] == "bearer" and answer["expires_in"] > 0

    servers_cfg = home / "servers.cfg"
    assert mode(home) == 0o700 and mode(servers_cfg) == 0o600
    saved = ini(servers_cfg)[server.url]
    assert saved["username"] == name and saved["token"] == answer["access_token"]
    assert not (home / "config").exists()  # credentials never go to `config`

    with Session(server.url) as s:  # a new session picks the saved token up
        assert s.token == answer["access_token"]
        me = s.whoami()
        assert me["username"] == name and me["multi_user"] is True

        key = s.create_key("laptop")
        assert key["key"].startswith(f"pl_{key['id']}_") and key["name"] == "laptop"
        listed = s.keys()
        assert [k["id"] for k in listed] == [key["id"]]
        assert "key" not in listed[0] and key["key"] not in str(listed)
        assert "api_key" not in ini(servers_cfg)[server.url]  # not saved without save=True

        with Session(server.url, api_key=key["key"]) as by_key:
            assert by_key.whoami()["username"] == name
            s.revoke_key(key["id"])
            assert s.keys() == []
            deadline = time.monotonic() + 2  # revocation holds everywhere within a second
            while True:
                try:
                    by_key.whoami()
                except PlotlineError as exc:
                    assert exc.status == 401 and exc.code == "invalid_api_key"
                    break
                assert time.monotonic() < deadline, "revoked key still accepted"
                time.sleep(0.1)

        assert s.logout() is True
        assert s.token is None and s.logout() is False
    assert server.url not in ini(servers_cfg)

    with Session(server.url) as s:  # forgotten: anonymous again
        assert s.token is None and s.api_key is None
        with pytest.raises(PlotlineError) as err:
            s.whoami()
    assert err.value.status == 401 and err.value.code == "unauthorized"


def test_saved_api_key_is_used_and_forgotten_on_revoke(server: Server, home: Path) -> None:
    name = registered(server)
    with Session(server.url) as s:
        s.login(name, PASSWORD, save=False)
        assert not (home / "servers.cfg").exists()
        key = s.create_key("ci", save=True)
    saved = ini(home / "servers.cfg")[server.url]
    assert saved["api_key"] == key["key"] and saved["username"] == name
    assert mode(home / "servers.cfg") == 0o600

    with Session(server.url) as s:
        assert s.api_key == key["key"] and s.token is None
        me = s.whoami()
        assert (me["username"], me["auth"]) == (name, "apikey")
        s.revoke_key(key["key"])  # by the whole key, too
        assert s.api_key is None
    assert "api_key" not in ini(home / "servers.cfg")[server.url]


def test_config_holds_no_secret_and_cloud_cfg_is_separate(server: Server, home: Path) -> None:
    config.set_default_url(server.url + "/")
    assert config.default_url() == server.url
    name = registered(server)
    with Session() as s:  # the URL comes from `config`
        assert s.root_url == server.url
        token = s.login(name, PASSWORD)["access_token"]
        secret = s.create_key("saved", save=True)["key"]
    text = (home / "config").read_text()
    assert token not in text and secret not in text
    assert {k for k, _ in ini(home / "config").items("server")} == {"url"}

    # the default ("cloud") server's credentials live in cloud.cfg, apart from servers.cfg
    (home / "cloud.cfg").write_text(f"[cloud]\nurl = {server.url}\n")
    before = (home / "servers.cfg").read_text()
    with Session() as s:
        assert s.api_key is None and s.token is None
        s.login(name, PASSWORD)
        assert s.whoami()["username"] == name
    assert (home / "servers.cfg").read_text() == before
    assert mode(home / "cloud.cfg") == 0o600
    cloud = ini(home / "cloud.cfg")["cloud"]
    assert cloud["url"] == server.url and cloud["username"] == name and cloud["token"]
    with Session() as s:
        assert s.logout() is True
    assert dict(ini(home / "cloud.cfg")["cloud"]) == {"url": server.url}  # url kept


def test_wrong_password_is_invalid_credentials(server: Server, home: Path) -> None:
    name = registered(server)
    with Session(server.url) as s, pytest.raises(PlotlineError) as err:
        s.login(name, "not the password")
    assert (err.value.status, err.value.code) == (401, "invalid_credentials")
    assert str(err.value) == "invalid username or password"
    assert not home.exists()  # nothing saved


def test_server_errors_become_plotline_errors(server: Server) -> None:
    with Session(server.url) as s:
        with pytest.raises(PlotlineError) as err:
            s.register(registered(server), PASSWORD)
        assert (err.value.status, err.value.code) == (409, "username_taken")
        with pytest.raises(PlotlineError) as err:
            s.register("X", "short")
        assert err.value.status == 422 and err.value.code == "invalid_request"
        assert err.value.detail


def test_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Session(url) as s, pytest.raises(PlotlineError) as err:
        s.whoami()
    assert err.value.status is None and err.value.code == "unreachable"
    assert str(err.value) == (f"the Plotline server is not reachable at {url} "
                              "(connection refused); is it running?")
    with pytest.raises(PlotlineError, match="http:// or https://"):
        Session("127.0.0.1:5006")


# --- CLI ---------------------------------------------------------------------------------

def cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`plotline ARGS` with PLOTLINE_HOME=home; stdin is never a terminal."""
    return subprocess.run(
        [PLOTLINE, *args], input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "PLOTLINE_HOME": str(home)})


def assert_one_line_error(result: subprocess.CompletedProcess[str], detail: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr == f"plotline: {detail}\n" and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_cli_register_login_whoami_keys_logout(server: Server, home: Path) -> None:
    name, url = new_username(), ["--url", server.url]
    r = cli(home, "register", name, *url, "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0 and f"Registered {name}" in r.stderr, r
    r = cli(home, "login", name, *url, "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0 and str(home / "servers.cfg") in r.stderr, r
    assert mode(home / "servers.cfg") == 0o600

    r = cli(home, "whoami", *url)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r

    r = cli(home, "keys", "create", "laptop", *url)
    assert r.returncode == 0 and "only time" in r.stderr, r
    secret = r.stdout.strip()
    assert r.stdout == f"{secret}\n" and secret.startswith("pl_")
    key_id = secret.split("_")[1]
    assert secret not in (home / "servers.cfg").read_text()

    r = cli(home, "keys", "list", *url)
    assert r.returncode == 0 and key_id in r.stdout and "laptop" in r.stdout
    assert secret not in r.stdout + r.stderr

    r = cli(home, "keys", "create", "--save", *url)
    assert r.returncode == 0
    assert ini(home / "servers.cfg")[server.url]["api_key"] == r.stdout.strip()

    r = cli(home, "keys", "revoke", key_id, *url)
    assert r.returncode == 0 and key_id in r.stderr
    r = cli(home, "keys", "list", "--json", *url)
    assert key_id not in r.stdout

    r = cli(home, "logout", *url)
    assert r.returncode == 0 and "Logged out" in r.stderr
    assert_one_line_error(cli(home, "whoami", *url), "authentication required; log in with "
                          f"`plotline login --url {server.url}`")


def test_cli_uses_the_url_in_config(server: Server, home: Path) -> None:
    name = registered(server)
    config.set_default_url(server.url)
    r = cli(home, "login", name, "--password", PASSWORD)
    assert r.returncode == 0, r
    assert cli(home, "whoami").stdout == f"{name}\n"


def test_cli_failures_are_one_line_without_traceback(server: Server, home: Path) -> None:
    name, url = registered(server), ["--url", server.url]
    assert_one_line_error(
        cli(home, "login", name, *url, "--password-stdin", stdin="wrong password\n"),
        "invalid username or password")
    assert_one_line_error(
        cli(home, "login", name, *url),  # no TTY, no password option: no hanging prompt
        "no password: use --password-stdin (or --password), or run in a terminal to be asked")
    dead = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(
        cli(home, "whoami", "--url", dead),
        f"the Plotline server is not reachable at {dead} (connection refused); is it running?")
    r = cli(home, "register", name, *url, "--password", PASSWORD)
    assert r.returncode == 1 and r.stderr.startswith("plotline: ") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("verb", ["register", "login", "logout", "whoami", "keys",
                                  "keys create", "keys list", "keys revoke"])
def test_cli_help(verb: str, home: Path) -> None:
    r = cli(home, *verb.split(), "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: plotline {verb}"), r
    assert "--url" in r.stdout or verb == "keys"
