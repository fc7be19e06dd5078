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

import httpx
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

        token = s.token
        assert s.logout() is True
        assert s.token is None and s.logout() is False
        # the login itself has ended on the server, not just been forgotten here
        assert httpx.get(f"{server.url}/api/v1/auth/me",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 401
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


# --- documents and data: publish, ls, rm, gc, upload -------------------------------------

def logged_in(server: Server, *, save: bool = False) -> Session:
    """A Session of a new user (saved for the CLI with `save`)."""
    s = Session(server.url)
    s.login(registered(server), PASSWORD, save=save)
    return s


def models_in(doc_json: object) -> set[tuple[str, str]]:
    """(id, type) of every Bokeh model in a document's JSON, however it is nested."""
    found: set[tuple[str, str]] = set()
    stack = [doc_json]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "object" and "id" in item and "name" in item:
                found.add((item["id"], item["name"]))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def a_figure(title: str = "waves", tag: str | None = None):  # type: ignore[no-untyped-def]
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    source = ColumnDataSource({"x": [1.0, 2.0, 3.0], "y": [3.0, 1.0, 2.0]})
    if tag:
        source.tags = [f"plotline:source={tag}"]
    plot = figure(title=title, width=300, height=200)
    plot.line("x", "y", source=source)
    return plot


def test_publish_a_figure_and_read_it_back(server: Server) -> None:
    from bokeh.document import Document

    with logged_in(server) as s:
        plot = a_figure()
        meta = s.publish(plot, "waves")
        assert meta["url"] == f"{server.url}/plots/{meta['id']}"
        assert (meta["title"], meta["published"], meta["version"]) == ("waves", False, 1)
        sent = Document()
        sent.add_root(plot)  # the same models, as Bokeh serializes them
        stored = s.document(meta["id"])
        assert models_in(stored["doc"]["roots"]) == models_in(
            sent.to_json(deferred=False)["roots"])
        assert {d["id"] for d in s.documents()} == {meta["id"]}

        # a model already in a Document goes as json_item; a whole Document as itself
        again = s.publish(plot, "again")
        assert models_in(s.document(again["id"])["doc"]["roots"]) == models_in(
            stored["doc"]["roots"])
        other = Document()
        other.add_root(a_figure("titled"))
        other.title = "own title"
        assert s.publish(other)["title"] == "own title"

        replaced = s.update(meta["id"], a_figure("new"))
        assert (replaced["version"], replaced["title"]) == (2, "waves")
        assert "new" in str(s.document(meta["id"])["doc"])
        with pytest.raises(PlotlineError) as err:
            s.publish(a_figure(), "waves")
        assert (err.value.status, err.value.code) == (409, "title_taken")


def test_publish_public_is_readable_anonymously(server: Server) -> None:
    import httpx

    with logged_in(server) as s:
        public = s.publish(a_figure(), "open", public=True)
        private = s.publish(a_figure(), "closed")
    assert public["published"] is True and private["published"] is False
    with Session(server.url) as anonymous:
        assert anonymous.document(public["id"])["title"] == "open"
        with pytest.raises(PlotlineError) as err:
            anonymous.document(private["id"])
        assert err.value.status == 401
    page = httpx.get(public["url"])
    assert page.status_code == 200 and "open" in page.text


def test_cli_publish_ls_rm(server: Server, home: Path, tmp_path: Path) -> None:
    import json

    from bokeh_docs import figure_doc

    logged_in(server, save=True).close()
    url = ["--url", server.url]
    script = tmp_path / "app.py"
    script.write_text("from bokeh.plotting import curdoc, figure, show\n"
                      "p = figure(title='from a script')\np.line([1, 2, 3], [3, 1, 2])\n"
                      "curdoc().add_root(p)\nshow(p)  # nothing happens under publish\n")
    r = cli(home, "publish", str(script), *url, "--public")
    assert r.returncode == 0 and "(public)" in r.stderr, r
    script_url = r.stdout.strip()
    assert r.stdout == f"{script_url}\n" and script_url.startswith(f"{server.url}/plots/")
    script_id = script_url.rsplit("/", 1)[1]

    doc_json = tmp_path / "plot.json"
    doc_json.write_text(json.dumps(figure_doc(title="from json")))
    r = cli(home, "publish", str(doc_json), *url, "--title", "json plot")
    assert r.returncode == 0, r
    json_id = r.stdout.strip().rsplit("/", 1)[1]

    r = cli(home, "ls", *url)
    assert r.returncode == 0, r
    assert "DOCUMENTS (2)" in r.stdout and "SOURCES (0)" in r.stdout
    assert script_id in r.stdout and json_id in r.stdout
    assert " app" in r.stdout and "json plot" in r.stdout  # the script's title: its name
    listed = json.loads(cli(home, "ls", "--json", *url).stdout)
    assert {d["id"]: d["published"] for d in listed["documents"]} == {script_id: True,
                                                                       json_id: False}

    r = cli(home, "rm", json_id[:6], *url)  # a unique prefix will do
    assert r.returncode == 0 and f"Removed document {json_id}" in r.stderr, r
    r = cli(home, "ls", "--json", *url)
    assert [d["id"] for d in json.loads(r.stdout)["documents"]] == [script_id]


def write_data(path: Path, rows: int) -> dict[str, list]:
    """A file of `rows` rows in the format its extension names; returns its columns."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    columns = {"i": list(range(rows)), "x": [i / 4 for i in range(rows)],
               "name": [f"row {i}" for i in range(rows)]}
    table = pa.table(columns)
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    elif path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=700)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table, max_chunksize=900)
    return columns


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".arrow"])
def test_upload_in_chunks(server: Server, tmp_path: Path, ext: str) -> None:
    import httpx

    path = tmp_path / f"data{ext}"
    columns = write_data(path, 2500)
    calls: list[tuple[int, int]] = []
    with logged_in(server) as s:
        source = s.upload(path, chunk_rows=1000, progress=lambda *a: calls.append(a))
        assert (source["name"], source["rows"]) == (path.name, 2500)
        assert source["version"] == 3  # created with 1000 rows, then two appends
        assert [c["name"] for c in source["columns"]] == ["i", "x", "name"]
        back = httpx.get(f"{server.url}/api/v1/data/sources/{source['id']}/data",
                         headers={"Authorization": f"Bearer {s.token}"}).json()
        assert back["columns"] == columns
        assert [x["id"] for x in s.sources()] == [source["id"]]
    done = [d for d, _ in calls]
    total = path.stat().st_size if ext == ".csv" else 2500  # CSV: bytes, else rows
    assert done == sorted(set(done)) and done[-1] == total and {t for _, t in calls} == {total}
    assert len(calls) == (1 if ext == ".csv" else 3)  # pyarrow reads a small CSV at once


def test_cli_upload_and_rm_source(server: Server, home: Path, tmp_path: Path) -> None:
    logged_in(server, save=True).close()
    path = tmp_path / "points.csv"
    write_data(path, 50)
    r = cli(home, "upload", str(path), "--name", "points", "--url", server.url)
    assert r.returncode == 0, r
    source_id = r.stdout.strip()
    # stderr is not a terminal: no bar, one final line
    assert r.stderr == (f"Uploaded {path}: 50 rows, 3 columns, as data source {source_id} "
                        "(points).\n")
    r = cli(home, "rm", "--source", source_id, "--url", server.url)
    assert r.returncode == 0 and f"Removed source {source_id}" in r.stderr, r
    assert "SOURCES (0)" in cli(home, "ls", "--url", server.url).stdout


def test_gc_removes_exactly_my_unreferenced_sources(server: Server, tmp_path: Path,
                                                    home: Path) -> None:
    path = tmp_path / "d.csv"
    write_data(path, 10)
    with logged_in(server) as other:  # someone else's unbound source is not mine to drop
        theirs = other.upload(path)["id"]
    with logged_in(server, save=True) as s:
        used, spare, spare2 = (s.upload(path, name)["id"] for name in ("used", "a", "b"))
        s.publish(a_figure(tag=used), "binds one")
        assert {x["id"] for x in s.gc(dry_run=True)} == {spare, spare2}
        assert len(s.sources()) == 3  # a dry run removes nothing
        r = cli(home, "gc", "--dry-run", "--url", server.url)
        assert r.returncode == 0 and "Would remove 2" in r.stderr, r
        assert set(r.stdout.split()) >= {spare, spare2} and used not in r.stdout

        r = cli(home, "gc", "--url", server.url)
        assert r.returncode == 0 and "Removed 2 unreferenced data sources." in r.stderr, r
        assert [x["id"] for x in s.sources()] == [used]
        assert s.gc() == []
    with Session(server.url, token=other.token) as again:
        assert [x["id"] for x in again.sources()] == [theirs]


def test_client_errors_are_clean(server: Server, home: Path, tmp_path: Path) -> None:
    with logged_in(server) as other:
        theirs = other.publish(a_figure(), "not yours")["id"]
    bad = tmp_path / "data.xlsx"
    bad.write_text("x")
    with logged_in(server, save=True) as s:
        with pytest.raises(PlotlineError) as err:
            s.upload(bad)
        assert err.value.code == "invalid_file" and "cannot upload a .xlsx file" in str(
            err.value)
        with pytest.raises(PlotlineError, match="no such file"):
            s.upload(tmp_path / "missing.csv")
        with pytest.raises(PlotlineError) as err:
            s.delete_document(theirs)
        assert (err.value.status, str(err.value)) == (404, "no such document")
        # a CSV whose second block breaks the first block's types: the source made from
        # the first block is deleted again
        broken = tmp_path / "broken.csv"
        broken.write_text("n\n" + "".join(f"{100000 + i}\n" for i in range(200_000))
                          + "not a number\n")
        with pytest.raises(PlotlineError) as err:
            s.upload(broken)
        assert err.value.code == "invalid_file" and "cannot read it as csv" in str(err.value)
        assert s.sources() == []  # nothing half-made

    url = ["--url", server.url]
    assert_one_line_error(cli(home, "upload", str(bad), *url),
                          f"{bad}: cannot upload a .xlsx file: give CSV (.csv, .tsv), "
                          "Parquet (.parquet) or Arrow IPC (.arrow, .feather, .arrows)")
    assert_one_line_error(cli(home, "upload", str(tmp_path / "missing.csv"), *url),
                          f"{tmp_path / 'missing.csv'}: no such file")
    assert_one_line_error(cli(home, "publish", str(tmp_path / "missing.py"), *url),
                          f"{tmp_path / 'missing.py'}: no such file")
    failing = tmp_path / "broken.py"
    failing.write_text("raise RuntimeError('boom')\n")
    r = cli(home, "publish", str(failing), *url)
    assert_one_line_error(r, r.stderr.removeprefix("plotline: ").rstrip("\n"))
    assert "the script failed" in r.stderr and "boom" in r.stderr
    assert_one_line_error(cli(home, "rm", theirs, *url), "no such document")
    assert_one_line_error(cli(home, "rm", "--source", theirs, *url), "no such source")


@pytest.mark.parametrize("verb", ["publish", "ls", "rm", "gc", "upload"])
def test_cli_help_of_content_verbs(verb: str, home: Path) -> None:
    r = cli(home, verb, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: plotline {verb}"), r
    assert "--url" in r.stdout
