"""The client verbs of `plotline`: register, login, logout, whoami, keys create|list|revoke,
publish, ls, rm, gc, upload.

Each verb talks to one server (`--url`, default from ~/.plotline/config) through `Session`.
Results go to stdout; notes and errors go to stderr. A failure prints one line,
`plotline: <detail>`, and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import configparser
import functools
import getpass
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import config
from .session import PlotlineError, Session

URL_HELP = ("the server's URL, including any --url-prefix (default: [server] url in "
            "$PLOTLINE_HOME/config, else " + config.DEFAULT_URL + "; PLOTLINE_HOME defaults "
            "to ~/.plotline)")


class UsageError(Exception):
    """A problem with how the command was called (printed like a server error)."""


# --- helpers -----------------------------------------------------------------------------

def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _url_flag(args: argparse.Namespace) -> str:
    return f" --url {args.url}" if args.url else ""


def _explain(exc: PlotlineError, args: argparse.Namespace) -> str:
    """The server's detail, plus what to do when it is about logging in."""
    if exc.status == 401 and exc.code == "token_expired":
        return f"{exc.detail} with `plotline login{_url_flag(args)}`"
    if exc.status == 401 and exc.code != "invalid_credentials":
        return f"{exc.detail}; log in with `plotline login{_url_flag(args)}`"
    return exc.detail


def _guarded(fn: Callable[[argparse.Namespace], int | None]) -> Callable[..., int]:
    """Turn every expected failure into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args) or 0
        except PlotlineError as exc:
            message = _explain(exc, args)
        except UsageError as exc:
            message = str(exc)
        except (OSError, configparser.Error) as exc:
            message = f"configuration in {config.home()}: {exc}"
        except (KeyboardInterrupt, EOFError):
            print(file=sys.stderr)
            return 130
        print("plotline: " + " ".join(message.split()), file=sys.stderr)
        return 1

    return run


def _password(args: argparse.Namespace, confirm: bool = False) -> str:
    if args.password is not None:
        return args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no password: use --password-stdin (or --password), "
                         "or run in a terminal to be asked")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise UsageError("the passwords do not match")
    return password


def _username(args: argparse.Namespace, saved: str | None) -> str:
    if args.username or saved:
        return args.username or saved
    if not sys.stdin.isatty() or args.password_stdin:
        raise UsageError("give the USERNAME")
    return input("Username: ").strip()


def _when(created: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "-"


# --- the verbs ---------------------------------------------------------------------------

def cmd_register(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        user = s.register(args.username, _password(args, confirm=True), args.email)
        _say(f"Registered {user['username']} at {s.root_url}.")
        if user.get("verified") is False:
            _say(f"Follow the link sent to {user.get('email')} before logging in.")
        _say(f"Log in with: plotline login {user['username']}{_url_flag(args)}")


def cmd_login(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        username = _username(args, s.username)
        answer = s.login(username, _password(args))
        minutes = int(answer.get("expires_in", 0)) // 60
        _say(f"Logged in to {s.root_url} as {username}; token saved in "
             f"{config.credentials_file(s.root_url)} (valid for {minutes} min).")


def cmd_logout(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        where = config.credentials_file(s.root_url)
        if s.logout():
            _say(f"Logged out of {s.root_url}; forgot its saved credentials in {where}.")
        else:
            _say(f"No saved credentials for {s.root_url}.")


def cmd_whoami(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        me = s.whoami()
    print(json.dumps(me, indent=2) if args.json else me["username"])


def cmd_keys_create(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        key = s.create_key(args.name, save=args.save)
        _say(f"Created API key {key['id']} ({key['name']}). This is the only time its secret "
             "is shown; store it now:")
        print(key["key"], flush=True)
        if args.save:
            _say(f"Saved in {config.credentials_file(s.root_url)}; later commands for "
                 f"{s.root_url} use it.")


def cmd_keys_list(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        keys = s.keys()
    if args.json:
        print(json.dumps(keys, indent=2))
        return
    if not keys:
        _say("No API keys.")
        return
    width = max(len(k["id"]) for k in keys)
    print(f"{'ID':<{width}}  {'CREATED':<16}  NAME")
    for k in sorted(keys, key=lambda k: k.get("created") or 0):
        print(f"{k['id']:<{width}}  {_when(k.get('created')):<16}  {k['name']}")


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        s.revoke_key(args.id)
    _say(f"Revoked API key {args.id}.")


def cmd_publish(args: argparse.Namespace) -> None:
    from . import bokehdocs

    try:
        doc, own_title = bokehdocs.load(args.file)
    except bokehdocs.DocumentFileError as exc:
        raise UsageError(str(exc)) from None
    with Session(args.url) as s:
        meta = s.publish(doc, args.title or own_title or Path(args.file).stem,
                         public=args.public)
    _say(f"Published {meta['title']!r} as {meta['id']}"
         + (" (public)." if meta["published"] else " (private)."))
    print(meta["url"])


def cmd_ls(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        docs, sources = s.documents(), s.sources()
    if args.json:
        print(json.dumps({"documents": docs, "sources": sources}, indent=2))
        return
    _table("DOCUMENTS", docs, [("ID", "id"), ("UPDATED", lambda d: _when(d.get("updated"))),
                               ("PUBLIC", lambda d: "yes" if d["published"] else "no"),
                               ("OWNER", "owner"), ("TITLE", "title")])
    print()
    _table("SOURCES", sources, [("ID", "id"), ("ROWS", "rows"), ("VERSION", "version"),
                                ("NAME", "name")])


def _table(heading: str, rows: list[dict], columns: list[tuple[str, object]]) -> None:
    print(f"{heading} ({len(rows)})")
    if not rows:
        return
    cells = [[str(get(row) if callable(get) else row[get]) for _, get in columns]
             for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(columns)]
    for line in [[h for h, _ in columns], *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _resolve(s: Session, ident: str, source_only: bool) -> tuple[str, str]:
    """("document"|"source", full id) for a full id or a unique prefix of one of mine; an id
    matching nothing is tried as given, so the server says why it is refused."""
    found = [("source", x["id"]) for x in s.sources() if x["id"].startswith(ident)]
    if not source_only:
        found += [("document", x["id"]) for x in s.documents() if x["id"].startswith(ident)]
    exact = [f for f in found if f[1] == ident]
    if len(exact) == 1 or len(found) == 1:
        return (exact or found)[0]
    if len(found) > 1:
        raise UsageError(f"{ident!r} is ambiguous: " + ", ".join(f"{kind} {i}"
                                                                 for kind, i in found))
    return ("source" if source_only else "document"), ident


def cmd_rm(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        for ident in args.ids:
            kind, full = _resolve(s, ident, args.source)
            if kind == "source":
                s.delete_source(full)
            else:
                s.delete_document(full, args.data)
            _say(f"Removed {kind} {full}"
                 + (f" (its data: {args.data})." if kind == "document" else "."))


def cmd_gc(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        garbage = s.gc(dry_run=args.dry_run)
    for source in garbage:
        print(f"{source['id']}  {source['name']}")
    verb = "Would remove" if args.dry_run else "Removed"
    _say(f"{verb} {len(garbage)} unreferenced data source{'s' * (len(garbage) != 1)}.")


class ProgressBar:
    """A text bar on stderr, redrawn in place on a terminal; silent elsewhere (the caller
    prints a final line)."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label, self.width, self.shown = label, width, -1
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if not self.tty or percent == self.shown:
            return
        self.shown = percent
        filled = self.width * percent // 100
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                         f"{percent:3d}%")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.shown >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_upload(args: argparse.Namespace) -> None:
    bar = ProgressBar(f"Uploading {Path(args.file).name}")
    try:
        with Session(args.url) as s:
            source = s.upload(args.file, args.name, progress=bar)
    finally:
        bar.close()
    _say(f"Uploaded {args.file}: {source['rows']} rows, {len(source['columns'])} columns, "
         f"as data source {source['id']} ({source['name']}).")
    print(source["id"])


# --- the parsers -------------------------------------------------------------------------

def add_client_commands(sub: argparse._SubParsersAction) -> None:
    """Register the client verbs on the `plotline` command's subparsers."""
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", metavar="URL", help=URL_HELP)
    password = argparse.ArgumentParser(add_help=False)
    group = password.add_mutually_exclusive_group()
    group.add_argument("--password", metavar="PASSWORD",
                       help="the password (other local users can see it in the process "
                       "list: prefer the prompt or --password-stdin)")
    group.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    prompt = " Without a password option, asks for it when run in a terminal."

    def verb(name: str, fn: Callable, summary: str, description: str,
             parents: list, on: argparse._SubParsersAction = sub) -> argparse.ArgumentParser:
        p = on.add_parser(name, help=summary, description=description, parents=parents)
        p.set_defaults(func=_guarded(fn))
        return p

    p = verb("register", cmd_register, "create an account on a multi-user server",
             "Create an account on a Plotline server started with -m (multi-user). It does "
             "not log in; run `plotline login` next." + prompt, [url, password])
    p.add_argument("username", metavar="USERNAME",
                   help="3-32 characters: lowercase letters, digits, '_' and '-'")
    p.add_argument("--email", help="email address (required when the server verifies them)")

    p = verb("login", cmd_login, "log in and save the token for later commands",
             "Log in to a Plotline server. The access token is saved in "
             "$PLOTLINE_HOME/servers.cfg (mode 600), so later commands need no login until "
             "it expires." + prompt, [url, password])
    p.add_argument("username", metavar="USERNAME", nargs="?",
                   help="default: the user last logged in to this server")

    verb("logout", cmd_logout, "forget the saved credentials for a server",
         "Forget the token, API key and username saved for a server. A forgotten API key "
         "stays valid on the server until revoked (`plotline keys revoke`).", [url])

    p = verb("whoami", cmd_whoami, "print who the server thinks you are",
             "Print the username the server sees for the saved (or no) credentials.", [url])
    p.add_argument("--json", action="store_true", help="print the whole profile as JSON")

    keys = sub.add_parser("keys", help="create, list or revoke API keys",
                          description="Manage your API keys: long-lived credentials for "
                          "scripts, sent as 'Authorization: Bearer <key>'.")
    keys.set_defaults(func=lambda args: keys.print_help() or 2)
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")

    p = verb("create", cmd_keys_create, "create an API key and print its secret once",
             "Create an API key and print its secret on stdout. The server stores only a "
             "hash: the secret is never shown again.", [url], keys_sub)
    p.add_argument("name", metavar="NAME", nargs="?", default="default",
                   help="a label to recognise the key by (default: %(default)s)")
    p.add_argument("--save", action="store_true",
                   help="also save the key in $PLOTLINE_HOME/servers.cfg for later commands")

    p = verb("list", cmd_keys_list, "list your API keys (never their secrets)",
             "List your API keys: id, creation time and name.", [url], keys_sub)
    p.add_argument("--json", action="store_true", help="print them as JSON")

    p = verb("revoke", cmd_keys_revoke, "revoke an API key",
             "Revoke an API key; every service refuses it within a second.", [url], keys_sub)
    p.add_argument("id", metavar="ID", help="the key's id (as `keys list` shows) or the key")

    p = verb("publish", cmd_publish, "publish a Bokeh script or document; print its URL",
             "Store a Bokeh document on the server and print its viewer URL. FILE is a "
             "Python script, run as `bokeh serve` runs one: with a fresh curdoc(), whose "
             "roots become the document (show() and output_file() do nothing); or a .json "
             "file holding Document.to_json() or json_item() output. The title is --title, "
             "else the document's own, else the file's name; titles are unique among your "
             "documents.", [url])
    p.add_argument("file", metavar="FILE", help="a .py script or a .json Bokeh document")
    p.add_argument("--title", help="the document's title")
    p.add_argument("--public", action="store_true",
                   help="make it readable by anyone, without logging in")

    p = verb("ls", cmd_ls, "list your documents and data sources",
             "List the documents you may read (yours and those shared with you) and your "
             "data sources, as two tables.", [url])
    p.add_argument("--json", action="store_true",
                   help='print {"documents": [...], "sources": [...]} as JSON')

    p = verb("rm", cmd_rm, "delete documents or data sources",
             "Delete documents or data sources by id, or by a prefix of the id that matches "
             "only one of yours (`plotline ls` shows them). An id is looked up among your "
             "data sources and documents; with --source, among your sources only.", [url])
    p.add_argument("ids", metavar="ID", nargs="+", help="a document or source id, or prefix")
    p.add_argument("--data", choices=["keep", "orphans", "force"], default="keep",
                   help="for documents: keep the data sources it binds (default), drop "
                   "the orphans (those no other document binds), or force (drop them all)")
    p.add_argument("--source", action="store_true", help="ID names data sources only")

    p = verb("gc", cmd_gc, "delete your data sources that no document uses",
             "Delete your data sources that no document you can read binds (with a "
             "plotline:source=<id> tag), and print them. Sources you uploaded for a "
             "document you have not published yet count as unused: look first with "
             "--dry-run.", [url])
    p.add_argument("--dry-run", action="store_true", help="list them, delete nothing")

    p = verb("upload", cmd_upload, "upload a CSV, Parquet or Arrow file as a data source",
             "Upload a data file as a new data source, in chunks (a progress bar on stderr "
             "when it is a terminal), and print the source's id. FILE is CSV (.csv, .tsv), "
             "Parquet (.parquet, .pq) or Arrow IPC (.arrow, .feather, .ipc; .arrows for the "
             "stream format).", [url])
    p.add_argument("file", metavar="FILE", help="the data file")
    p.add_argument("--name", help="the source's name (default: the file's name)")
