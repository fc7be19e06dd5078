"""The client verbs about documents and data: publish, ls, rm, gc, upload.

They follow commands.py's rules (one server per call through `Session`; results on stdout,
notes and errors on stderr; a failure is one line and exit status 1) and are registered by
its `add_client_commands`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.common.names import DELETE_DATA_MODES

from .cliutil import UsageError, Verbs, say, when
from .session import Session


def cmd_publish(args: argparse.Namespace) -> None:
    from . import bokehdocs

    try:
        doc, own_title = bokehdocs.load(args.file)
    except bokehdocs.DocumentFileError as exc:
        raise UsageError(str(exc)) from None
    with Session(args.url) as s:
        meta = s.publish(doc, args.title or own_title or Path(args.file).stem,
                         public=args.public)
    say(f"Published {meta['title']!r} as {meta['id']}"
         + (" (public)." if meta["published"] else " (private)."))
    print(meta["url"])


def cmd_ls(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        docs, sources = s.documents(), s.sources()
    if args.json:
        print(json.dumps({"documents": docs, "sources": sources}, indent=2))
        return
    _table("DOCUMENTS", docs, [("ID", "id"), ("UPDATED", lambda d: when(d.get("updated"))),
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
            say(f"Removed {kind} {full}"
                 + (f" (its data: {args.data})." if kind == "document" else "."))


def cmd_gc(args: argparse.Namespace) -> None:
    with Session(args.url) as s:
        garbage = s.gc(dry_run=args.dry_run)
    for source in garbage:
        print(f"{source['id']}  {source['name']}")
    verb = "Would remove" if args.dry_run else "Removed"
    say(f"{verb} {len(garbage)} unreferenced data source{'s' * (len(garbage) != 1)}.")


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
    say(f"Uploaded {args.file}: {source['rows']} rows, {len(source['columns'])} columns, "
         f"as data source {source['id']} ({source['name']}).")
    print(source["id"])


def add_content_commands(verb: Verbs) -> None:
    """Register publish, ls, rm, gc and upload."""
    url = [verb.url]
    p = verb("publish", cmd_publish, "publish a Bokeh script or document; print its URL",
             "Store a Bokeh document on the server and print its viewer URL. FILE is a "
             "Python script, run as `bokeh serve` runs one: with a fresh curdoc(), whose "
             "roots become the document (show() and output_file() do nothing); or a .json "
             "file holding Document.to_json() or json_item() output. The title is --title, "
             "else the document's own, else the file's name; titles are unique among your "
             "documents.", url)
    p.add_argument("file", metavar="FILE", help="a .py script or a .json Bokeh document")
    p.add_argument("--title", help="the document's title")
    p.add_argument("--public", action="store_true",
                   help="make it readable by anyone, without logging in")

    p = verb("ls", cmd_ls, "list your documents and data sources",
             "List the documents you may read (yours and those shared with you) and your "
             "data sources, as two tables.", url)
    p.add_argument("--json", action="store_true",
                   help='print {"documents": [...], "sources": [...]} as JSON')

    p = verb("rm", cmd_rm, "delete documents or data sources",
             "Delete documents or data sources by id, or by a prefix of the id that matches "
             "only one of yours (`plotline ls` shows them). An id is looked up among your "
             "data sources and documents; with --source, among your sources only.", url)
    p.add_argument("ids", metavar="ID", nargs="+", help="a document or source id, or prefix")
    p.add_argument("--data", choices=DELETE_DATA_MODES, default="keep",
                   help="for documents: keep the data sources it binds (default), drop "
                   "the orphans (those no other document binds), or force (drop them all)")
    p.add_argument("--source", action="store_true", help="ID names data sources only")

    p = verb("gc", cmd_gc, "delete your data sources that no document uses",
             "Delete your data sources that no document you can read binds (with a "
             "plotline:source=<id> tag), and print them. Sources you uploaded for a "
             "document you have not published yet count as unused: look first with "
             "--dry-run.", url)
    p.add_argument("--dry-run", action="store_true", help="list them, delete nothing")

    p = verb("upload", cmd_upload, "upload a CSV, Parquet or Arrow file as a data source",
             "Upload a data file as a new data source, in chunks (a progress bar on stderr "
             "when it is a terminal), and print the source's id. FILE is CSV (.csv, .tsv), "
             "Parquet (.parquet, .pq) or Arrow IPC (.arrow, .feather, .ipc; .arrows for the "
             "stream format).", url)
    p.add_argument("file", metavar="FILE", help="the data file")
    p.add_argument("--name", help="the source's name (default: the file's name)")
