"""`Session`: the Python client for one Plotline server (what the CLI verbs use).

    from plotline import Session
    s = Session("http://127.0.0.1:5006")
    s.login("alice", "correct horse battery")   # the token is saved in ~/.plotline/servers.cfg
    Session("http://127.0.0.1:5006").whoami()    # ... so later sessions need no login
    s.publish(figure, "my plot", public=True)["url"]  # a Bokeh Document, model or layout
    s.upload("points.parquet")                   # CSV, Parquet or Arrow -> a data source
    s.documents(); s.sources(); s.gc(dry_run=True)

Requests authenticate with `Authorization: Bearer <API key or JWT>`. Without an explicit
`api_key` or `token` a Session uses what is saved for its URL (an API key before a token:
keys do not expire). Every failure raises `PlotlineError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from services.common.names import ARROW_STREAM, SERVICE_PREFIXES, VIEWER_PREFIX

from . import bokehdocs, config, datafiles, sources
from . import live as live_mod
from .link import Link
from .live import LiveDocument
from .sources import DataSource

log = logging.getLogger("plotline.client")

AUTH, DOCS, DATA = (SERVICE_PREFIXES[s] for s in ("auth", "docs", "data"))


class PlotlineError(Exception):
    """A request failed: `status` is the HTTP status (None when no answer came), `code` the
    server's machine-readable error code, `detail` a sentence for people."""

    def __init__(self, status: int | None, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"PlotlineError({self.status!r}, {self.code!r}, {self.detail!r})"


def key_id(key: str) -> str:
    """The id part of an API key `pl_<id>_<secret>` (an id is returned unchanged)."""
    if key.startswith("pl_") and key.count("_") >= 2:
        return key.split("_", 2)[1]
    return key


def _q(identifier: str) -> str:
    """An id as one path segment."""
    return quote(identifier, safe="")


@contextlib.contextmanager
def _file_errors() -> Iterator[None]:
    """A file that cannot be published or uploaded is a PlotlineError like the others."""
    try:
        yield
    except (datafiles.DataFileError, bokehdocs.DocumentFileError) as exc:
        raise PlotlineError(None, "invalid_file", str(exc)) from None


class Session:
    """A connection to the Plotline server at `root_url` (default: $PLOTLINE_URL, else the
    `config` file's `[server] url`, else http://127.0.0.1:5006), including any --url-prefix.
    Credentials: `api_key` or `token`, else $PLOTLINE_API_KEY, else what is saved for it."""

    def __init__(self, root_url: str | None = None, api_key: str | None = None,
                 token: str | None = None, *, timeout: float = 30.0,
                 chunk_rows: int = 65_536, chunk_bytes: int = 16 << 20) -> None:
        self.root_url = config.normalize_url(root_url or config.default_url())
        if not self.root_url.startswith(("http://", "https://")):
            raise PlotlineError(None, "invalid_url",
                                f"server URL must start with http:// or https://, "
                                f"not {self.root_url!r}")
        saved = {} if (api_key or token) else config.load_credentials(self.root_url)
        # (an applet's or a CI job's key comes in the environment)
        self.api_key: str | None = api_key or (None if token else os.environ.get(
            "PLOTLINE_API_KEY")) or saved.get("api_key")
        self.token: str | None = token or saved.get("token")
        self.username: str | None = saved.get("username")
        # bulk transfers (data sources, uploads) go in Arrow bodies of at most this much
        self.chunk_rows, self.chunk_bytes = chunk_rows, chunk_bytes
        self._link: Link | None = None
        self._current: tuple[str, Any] | None = None  # use_doc's (title, Document)
        self.current: LiveDocument | None = None  # the document use_doc / publish() follow
        # a jar that keeps no cookies: the login cookie is for browsers, and a kept one would
        # still authenticate after logout(); we always send the bearer header instead
        no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
        self._http = httpx.Client(base_url=self.root_url, timeout=timeout, cookies=no_cookies,
                                  headers={"User-Agent": "plotline-client"})

    def __repr__(self) -> str:
        return f"Session({self.root_url!r}, user={self.username!r})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; live changes not yet stored are given 30 s first (a
        failure is logged: call flush() on the live document to have it raised)."""
        if self._link is not None:
            try:
                self._link.flush(30)
            except PlotlineError as exc:
                log.error("closing %s: changes not stored: %s", self.root_url, exc)
            finally:
                self._link.close()
                self._link = None
        self._http.close()

    # --- accounts ------------------------------------------------------------------------

    def register(self, username: str, password: str, email: str | None = None) -> dict:
        """Create an account (multi-user servers only); does not log in."""
        body = {"username": username, "password": password}
        if email:
            body["email"] = email
        return self._json("POST", f"{AUTH}/register", json=body, auth=False)

    def login(self, username: str, password: str, *, save: bool = True) -> dict:
        """Log in; the token is used by this Session and, with `save`, saved for later ones.
        Returns `{access_token, token_type, expires_in}`."""
        answer = self._json("POST", f"{AUTH}/login", auth=False,
                            json={"username": username, "password": password})
        if self.username != username:  # a key saved for someone else is not ours to use
            self.api_key = None
        self.token, self.username = answer["access_token"], username
        if save:
            config.save_credentials(self.root_url, username=username, token=self.token,
                                    api_key=self.api_key)
        return answer

    def logout(self) -> bool:
        """End this login on the server (its token stops working everywhere at once) and
        forget this server's credentials, here and in the saved files. Saved API keys stay
        valid until revoked. True if any were saved. An unreachable server does not stop
        the forgetting (the token then simply expires)."""
        if self.token:
            try:
                self._http.post(f"{AUTH}/logout",
                                headers={"Authorization": f"Bearer {self.token}"})
            except httpx.HTTPError:
                pass
        self.api_key = self.token = self.username = None
        return config.forget_credentials(self.root_url)

    def whoami(self) -> dict:
        """`{username, multi_user, email, verified, auth}` for the caller."""
        return self._json("GET", f"{AUTH}/me")

    # --- API keys ------------------------------------------------------------------------

    def create_key(self, name: str = "default", *, save: bool = False) -> dict:
        """Create an API key: `{id, name, created, prefix, key}`. `key` is the secret and the
        server never shows it again; with `save` it is stored for this server."""
        answer = self._json("POST", f"{AUTH}/apikeys", json={"name": name})
        if save:
            self.api_key = answer["key"]
            self.username = self.username or self.whoami()["username"]
            config.save_credentials(self.root_url, api_key=self.api_key,
                                    username=self.username)
        return answer

    def keys(self) -> list[dict]:
        """My API keys, without their secrets: `[{id, name, created, prefix}]`."""
        return self._json("GET", f"{AUTH}/apikeys")

    def revoke_key(self, key: str) -> None:
        """Revoke an API key by id (or by the whole key); a saved copy is forgotten too."""
        kid = key_id(key)
        self._request("DELETE", f"{AUTH}/apikeys/{kid}")
        if self.api_key and key_id(self.api_key) == kid:
            self.api_key = None
            if config.load_credentials(self.root_url).get("api_key", "").startswith(
                    f"pl_{kid}_"):
                config.save_credentials(self.root_url, api_key=None)

    # --- live documents (plotline.live) ---------------------------------------------------

    @property
    def link(self) -> Link:
        """The live connection (one websocket, one ordered lane of writes), opened on first
        use by live documents and DataSource.on_append."""
        if self._link is None:
            self._link = Link(self)
        return self._link

    def live(self, obj: Any, title: str | None = None, *, public: bool = False
             ) -> LiveDocument:
        """Publish a Bokeh `Document` (or a model or layout, put into a new Document) and
        keep it in sync both ways (plotline.live); or, given a document id, follow that
        stored document in a Document loaded from it. Flat ColumnDataSources become bound
        data sources (the rule: plotline.live)."""
        from bokeh.document import Document
        from bokeh.model import Model

        if isinstance(obj, str):
            doc, meta, bound = self._load(obj)
            return LiveDocument(self, doc, meta, bound)
        if isinstance(obj, Model):
            if obj.document is None:
                holder = Document()
                holder.add_root(obj)
            obj = obj.document
        if not isinstance(obj, Document):
            raise TypeError(f"cannot go live with a {type(obj).__name__}: give a bokeh "
                            "Document, model or layout, or a document id")
        if not obj.roots:
            raise PlotlineError(None, "invalid_file", "the document has no roots: nothing "
                                "to publish")
        bound: dict[str, DataSource] = {}
        made = live_mod.bind(self, list(obj.models), bound)
        try:
            doc_json = obj.to_json(deferred=False)
            live_mod.strip_bound(doc_json, set(bound))
            body = {"title": title or bokehdocs.title_of(doc_json) or bokehdocs.untitled(),
                    "doc": doc_json}
            meta = self._json("POST", f"{DOCS}/", json=body)
        except BaseException:  # (a title taken, say: leave no sources behind)
            live_mod.unbind(made)
            raise
        if public:
            meta = self._json("POST", f"{DOCS}/{meta['id']}/publish")
        return LiveDocument(self, obj, meta, bound)

    def load(self, doc_id: str) -> Any:
        """A stored document as a new Bokeh Document, its bound sources filled from the data
        service (not live: see `live(doc_id)`)."""
        return self._load(doc_id)[0]

    def _load(self, doc_id: str) -> tuple[Any, dict, dict[str, DataSource]]:
        from bokeh.document import Document

        stored = self.document(doc_id)
        doc = Document.from_json(stored["doc"])
        bound: dict[str, DataSource] = {}
        live_mod.bind(self, [m for m in doc.models if m.tags], bound)
        for model_id, src in bound.items():
            model = doc.get_model_by_id(model_id)
            try:
                src.describe()
                model.data = src.to_arrow().to_pydict()  # type: ignore[union-attr]
            except PlotlineError as exc:  # a source gone or not readable: no rows
                log.warning("source %s of document %s: %s", src.id, doc_id, exc)
        return doc, {k: v for k, v in stored.items() if k != "doc"}, bound

    def use_doc(self, name: str) -> Any:
        """The seed's flow: my document titled `name` (followed live), or a new empty one
        stored at `publish()`. Either becomes Bokeh's `curdoc()`, so plots added to it with
        `curdoc().add_root(...)` are what publish() shows. Returns the Bokeh Document."""
        from bokeh.document import Document
        from bokeh.io.doc import set_curdoc

        me = self.username or self.whoami()["username"]
        mine = [d for d in self.documents() if d["title"] == name and d["owner"] == me]
        if mine:
            self.current = self.live(mine[0]["id"])
            doc = self.current.doc
        else:
            self.current = None
            doc = Document(title=name)
        self._current = (name, doc)
        set_curdoc(doc)
        return doc

    def pull(self) -> Any:
        """Bring the current document (use_doc's) to what is stored now; returns it."""
        if self.current is None:
            raise PlotlineError(None, "no_document", "use_doc(name) and publish() first")
        self.current._resync()
        return self.current.doc

    def process_events(self, timeout: float | None = 0) -> int:
        """Run the callbacks of what viewers changed and what was appended (this thread);
        wait up to `timeout` s for something to arrive. Raises what failed."""
        return self.link.process(timeout)

    def loop_until_closed(self, until: Callable[[], bool] | None = None) -> None:
        """Run callbacks as changes arrive, until `until()` is true, the session is closed,
        or Ctrl-C. A failure (a change the server refused, the connection refused) raises."""
        link = self.link
        try:
            while not (until and until()) and link.status != "closed":
                link.process(timeout=0.5)
        except KeyboardInterrupt:
            log.info("interrupted: flushing what was sent, then closing")
            self.close()

    async def run(self, until: Callable[[], bool] | None = None) -> None:
        """loop_until_closed for asyncio code: callbacks run on this event loop."""
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()
        link = self.link

        def wake() -> None:
            loop.call_soon_threadsafe(arrived.set)

        link.add_waker(wake)
        try:
            while not (until and until()) and link.status != "closed":
                arrived.clear()
                link.process(0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), 0.5)
        finally:
            link.remove_waker(wake)

    # --- documents -----------------------------------------------------------------------

    def publish(self, obj: Any = None, title: str | None = None, *,
                public: bool = False) -> Any:
        """Store a Bokeh `Document`, model or layout (put into a fresh Document), or a
        document's JSON, as a new document of mine; with `public`, readable by anyone.
        The title is `title`, else the document's own (unless Bokeh's default), else
        "Untitled <time>"; it must be unique among mine (409 `title_taken`). Returns the
        server's `{id, title, owner, version, published, ...}` plus `url`, the viewer page.

        With no `obj` (the seed's flow, after `use_doc(name)`): the current document is
        stored if new, followed live from then on, and made public; returns its public URL."""
        if obj is None:
            return self._publish_current()
        with _file_errors():
            doc = bokehdocs.to_json(obj)
        body = {"title": title or bokehdocs.title_of(doc) or bokehdocs.untitled(), "doc": doc}
        meta = self._json("POST", f"{DOCS}/", json=body)
        if public:
            meta = self._json("POST", f"{DOCS}/{meta['id']}/publish")
        return {**meta, "url": self.viewer_url(meta["id"])}

    def _publish_current(self) -> str:
        if self._current is None:
            raise PlotlineError(None, "no_document", "call use_doc(name) first, or give "
                                "publish() the figure or document to publish")
        name, doc = self._current
        if self.current is None:
            self.current = self.live(doc, name, public=True)
        else:
            self.set_public(self.current.id, True)
        return self.current.url

    def update(self, doc_id: str, obj: Any, title: str | None = None) -> dict:
        """Replace a document's content (and title, if given) with `obj` (as `publish`
        takes); returns its description plus `url`."""
        with _file_errors():
            body = {"doc": bokehdocs.to_json(obj), **({"title": title} if title else {})}
        meta = self._json("PUT", f"{DOCS}/{_q(doc_id)}", json=body)
        return {**meta, "url": self.viewer_url(meta["id"])}

    def set_public(self, doc_id: str, public: bool = True) -> dict:
        """Publish (readable by anyone) or unpublish a document of mine."""
        return self._json("POST" if public else "DELETE", f"{DOCS}/{_q(doc_id)}/publish")

    def document(self, doc_id: str) -> dict:
        """`{id, title, owner, version, published, created, updated, doc}`."""
        return self._json("GET", f"{DOCS}/{_q(doc_id)}")

    def documents(self) -> list[dict]:
        """The documents I may read (mine and those shared with me), newest first; each
        with `rights` (read, write or admin) and `url`."""
        return [{**d, "url": self.viewer_url(d["id"])} for d in self._json("GET", f"{DOCS}/")]

    def delete_document(self, doc_id: str, data: str = "keep") -> None:
        """Delete a document of mine. `data`: keep its data sources, drop the `orphans`
        (those no other document binds), or `force` (drop every source it binds)."""
        self._request("DELETE", f"{DOCS}/{_q(doc_id)}", params={"data": data})

    def viewer_url(self, doc_id: str) -> str:
        """The page that shows a document (the server's `/plots/{id}`)."""
        return f"{self.root_url}{VIEWER_PREFIX}/{_q(doc_id)}"

    # --- data sources --------------------------------------------------------------------

    def sources(self) -> list[dict]:
        """My data sources: `[{id, name, owner, version, rows}]`."""
        return self._json("GET", f"{DATA}/sources")

    def source(self, source_id: str) -> dict:
        """`{id, name, owner, version, rows, rollover, columns: [{name, dtype, hash}], ...}`."""
        return self._json("GET", f"{DATA}/sources/{_q(source_id)}")

    def delete_source(self, source_id: str) -> None:
        """Delete a data source of mine and its data."""
        self._request("DELETE", f"{DATA}/sources/{_q(source_id)}")

    def data_source(self, name: str | None = None, data: Any = None, *,
                    id: str | None = None, rollover: int | None = None,
                    progress: Callable[[int, int], object] | None = None) -> DataSource:
        """A remote data source (sources.DataSource): with `data` (a dict of columns, a
        pandas or polars DataFrame, an Arrow table), a new one named `name` holding those
        rows (uploaded as Arrow in chunks; `progress(rows done, rows)`), keeping the last
        `rollover` rows of every later stream if given; with `id`, that source; with only
        `name`, my source of that name (PlotlineError 404 if none, 409 if several)."""
        if id is not None:
            return DataSource(self, self.source(id))
        if data is None:
            if not name:
                raise TypeError("data_source() needs a name and data, or an id")
            mine = [s for s in self.sources() if s["name"] == name
                    and s["owner"] == (self.username or s["owner"])]
            if not mine:
                raise PlotlineError(404, "not_found", f"you have no data source named {name!r}")
            if len(mine) > 1:
                raise PlotlineError(409, "ambiguous",
                                    f"{len(mine)} of your data sources are named {name!r}: "
                                    "open one by id (data_source(id=...))")
            return DataSource(self, self.source(mine[0]["id"]))
        try:
            table = sources.as_table(data)
        except (TypeError, ValueError) as exc:
            raise PlotlineError(None, "invalid_data", str(exc)) from None
        parts = sources.chunks(table, self.chunk_rows, self.chunk_bytes)
        meta = self._create(name or "data", parts, lambda: table.num_rows, progress, rollover)
        return DataSource(self, meta)

    def upload(self, path: str | Path, name: str | None = None, *,
               chunk_rows: int = 65_536, chunk_bytes: int = 16 << 20,
               progress: Callable[[int, int], object] | None = None) -> dict:
        """Upload a CSV (.csv, .tsv), Parquet (.parquet) or Arrow IPC file or stream
        (.arrow, .feather, .arrows) as a new data source named `name` (default: the file's
        name). The first chunk creates the source, the others are appended, each an Arrow
        IPC body of at most `chunk_rows` rows and about `chunk_bytes` bytes (well under the
        server's body limit). `progress(done, total)` is called after each request: rows
        for Parquet and Arrow files, bytes of the file for CSV and Arrow streams (whose rows
        are not known before reading them all); the last call has done == total. If an
        append fails, the half-made source is deleted. Returns the source's description."""
        with _file_errors():
            data = datafiles.DataFile(path, chunk_rows, chunk_bytes)
            # (the file is read, and may fail, chunk by chunk)
            return self._create(name or data.path.name, data.chunks(), lambda: data.total,
                                progress)

    def _create(self, name: str, parts: Iterator[tuple[Any, int]], total: Callable[[], int],
                progress: Callable[[int, int], object] | None,
                rollover: int | None = None) -> dict:
        """A new source from Arrow tables: the first creates it, the others are appended;
        `progress(done, total)` after each (the last call has done == total). If a part
        fails, the half-made source is deleted. Returns the source's description. (`total`
        is asked each time: a file's is known better once reading has begun.)"""
        source: dict | None = None
        last = -1
        params: dict[str, Any] = {"name": name}
        if rollover is not None:
            params["rollover"] = rollover
        headers = {"Content-Type": ARROW_STREAM}
        try:
            for table, done in parts:
                body = datafiles.to_ipc(table)
                if source is None:
                    source = self._json("POST", f"{DATA}/sources", params=params,
                                        content=body, headers=headers)
                else:
                    self._json("POST", f"{DATA}/sources/{source['id']}/append",
                               content=body, headers=headers)
                if progress and last < done < total():
                    progress(done, total())
                    last = done
        except BaseException:
            if source is not None:
                with contextlib.suppress(PlotlineError):
                    self.delete_source(source["id"])
            raise
        if progress:
            progress(total(), total())
        return self.source(source["id"])  # type: ignore[index]

    # --- garbage -------------------------------------------------------------------------

    def gc(self, *, dry_run: bool = False) -> list[dict]:
        """Delete my data sources that no document I can read binds (by a
        `plotline:source=<id>` tag), as the original server's gc removed unreferenced
        objects; with `dry_run`, only list them. Returns the sources removed (or that would
        be). The server has no "which documents bind this source" call, so the bindings are
        read from the documents' JSON here; a document I cannot read (another user's, not
        shared with me) does not keep my source, and one made meanwhile is not seen."""
        me = self.whoami()["username"]
        bound: set[str] = set()
        for doc in self.documents():
            with contextlib.suppress(PlotlineError):  # deleted meanwhile
                bound |= bokehdocs.bound_sources(self.document(doc["id"])["doc"])
        garbage = [s for s in self.sources() if s["owner"] == me and s["id"] not in bound]
        if not dry_run:
            for source in garbage:
                try:
                    self.delete_source(source["id"])
                except PlotlineError as exc:
                    if exc.status != 404:  # already gone is what we wanted
                        raise
        return garbage

    # --- plumbing ------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self._request(method, path, **kw)
        try:
            return response.json()
        except ValueError:
            raise PlotlineError(response.status_code, "bad_response",
                                f"{self.root_url} answered {method} {path} with something "
                                f"other than JSON; is it a Plotline server?") from None

    def _download(self, path: str, *, params: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None,
                  progress: Callable[[int, int], object] | None = None) -> bytes:
        """A GET's body, read as it arrives: `progress(bytes, Content-Length)`."""
        response = self._request("GET", path, params=params, headers=headers, stream=True)
        try:
            total = int(response.headers.get("content-length") or 0)
            parts, done = [], 0
            for part in response.iter_bytes(1 << 20):
                parts.append(part)
                done += len(part)
                if progress:
                    progress(done, max(total, done))
            return b"".join(parts)
        except httpx.HTTPError as exc:
            raise PlotlineError(None, "transport_error",
                                f"reading {path} from {self.root_url} failed: {exc}") from None
        finally:
            response.close()

    def _request(self, method: str, path: str, *, auth: bool = True,
                 **kw: Any) -> httpx.Response:
        """`stream=True`: the body is left to be read (and the response to be closed)."""
        headers = dict(kw.pop("headers", None) or {})
        stream = kw.pop("stream", False)
        credential = self.api_key or self.token
        if auth and credential:
            headers["Authorization"] = f"Bearer {credential}"
        try:
            request = self._http.build_request(method, path, headers=headers, **kw)
            response = self._http.send(request, stream=stream)
        except httpx.ConnectError as exc:
            why = "connection refused" if "refused" in str(exc).lower() else str(exc)
            raise PlotlineError(None, "unreachable",
                                f"the Plotline server is not reachable at {self.root_url} "
                                f"({why}); is it running?") from None
        except httpx.TimeoutException:
            raise PlotlineError(None, "timeout", f"the Plotline server at {self.root_url} "
                                "did not answer in time") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise PlotlineError(None, "transport_error",
                                f"talking to {self.root_url} failed: {exc}") from None
        if response.is_success:
            return response
        if stream:
            response.read()
            response.close()
        raise self._error(response)

    def _error(self, response: httpx.Response) -> PlotlineError:
        status = response.status_code
        try:
            body = response.json()
            code, detail = str(body["error"]), str(body["detail"])
        except (ValueError, KeyError, TypeError):
            return PlotlineError(status, f"http_{status}",
                                 f"{self.root_url} answered {response.request.method} "
                                 f"{response.request.url.path} with HTTP {status} "
                                 f"{response.reason_phrase}; is it a Plotline server?")
        if code == "token_expired":
            detail = f"your login to {self.root_url} has expired; log in again"
        elif status == 429 and response.headers.get("retry-after", "").isdigit():
            detail += f" (retry in {response.headers['retry-after']} s)"
        return PlotlineError(status, code, detail)
