// Plotline viewer: keeps a document live in the page, drawn inside a sandboxed frame.
//
// The document's content is untrusted, so BokehJS renders it in an <iframe sandbox> with an
// opaque origin (frame.js): it cannot read cookies or call the API as the viewer. This file
// is the trusted half, on the page (/plots/<id>, or another site's page for /embed/<id>.js):
// - every ColumnDataSource tagged "plotline:source=<id>" is filled from the data service,
//   whatever the document itself holds for it;
// - one websocket subscribes doc:<id> and data:<source> of every bound source; events are
//   sent to the frame at most once per animation frame (consecutive appends to one source
//   merged into one stream), so a fast stream costs one redraw per frame, not one per
//   event, and the first event after a quiet frame goes at once;
// - on a lost connection it reconnects with backoff and `since`, so nothing is missed; a
//   `resync`, a gap or a document replaced reloads the snapshot. The status mark says
//   live / reconnecting / offline;
// - what a writer changes in the frame (widget values, selections) goes to docs as `patch`
//   ops; anyone else's changes stay in their frame.
// No inline script (CSP): the page's data attributes start it (or embed.js calls
// PlotlineViewer.start).
(function () {
  "use strict";
  var SOURCE_TAG = "plotline:source=";
  // What a person changes and a writer's page may send: widget values and selections.
  // BokehJS also syncs what it works out itself (layout sizes, ranges fitted to new data);
  // sending those would make every writer's page rewrite the document as it renders.
  var INPUT = {value: 1, value_throttled: 1, active: 1, indices: 1, line_indices: 1,
               multiline_indices: 1, labels: 1};
  var MAX_PENDING = 20000;       // events held for one frame (a hidden tab): then reload
  var MAX_CHANGES = 256 * 1024;  // bytes of changes one frame's message may carry

  function boundSources(docJson) {
    // source id -> model ids, from the tags of the document's objects
    var found = {};
    (function walk(value) {
      if (Array.isArray(value)) { value.forEach(walk); return; }
      if (value === null || typeof value !== "object") { return; }
      if (value.type === "object" && value.id && value.attributes &&
          Array.isArray(value.attributes.tags)) {
        value.attributes.tags.forEach(function (tag) {
          if (typeof tag === "string" && tag.indexOf(SOURCE_TAG) === 0 &&
              tag.length > SOURCE_TAG.length) {
            var source = tag.slice(SOURCE_TAG.length);
            (found[source] = found[source] || []).push(value.id);
          }
        });
      }
      Object.keys(value).forEach(function (key) { walk(value[key]); });
    })(docJson);
    return found;
  }

  function start(o) {
    // o: {container, status?, error?, docId, doc?, version?, api, ws, share?, write?,
    //     token?, frameUrl, title?, large? (rows above which a source is not sent whole)}
    var docId = o.docId, share = o.share || "", canWrite = o.write === true;
    var bound = {};

    // --- the frame -----------------------------------------------------------------------
    var frame = document.createElement("iframe");
    frame.className = "plotline-frame";
    // styled here, not by a sheet: on another site's page (/embed) ours is not there
    frame.style.cssText = "display:block;width:100%;height:420px;border:0;" +
                          "background:transparent";
    frame.title = o.title ? "Plot: " + o.title : "Plot";
    // scripts, and links/saves the viewer asks for; never same-origin, forms, top navigation
    frame.setAttribute("sandbox",
                       "allow-scripts allow-popups allow-popups-to-escape-sandbox " +
                       "allow-downloads");
    frame.setAttribute("referrerpolicy", "no-referrer");
    var frameReady = new Promise(function (resolve) { frame.ready = resolve; });
    var calls = {}, nextCall = 1, failedAt = {};

    function toFrame(message, transfer) {
      // "*": an opaque origin has no name; transfer: ArrayBuffers handed over, not copied
      message.plotline = 1;
      frame.contentWindow.postMessage(message, "*", transfer || []);
    }

    function renderInFrame(docJson) {
      bound = boundSources(docJson);
      return frameReady.then(function () {
        return new Promise(function (resolve, reject) {
          var id = nextCall++;
          calls[id] = function (error) { return error ? reject(new Error(error)) : resolve(); };
          toFrame({op: "render", id: id, docId: docId, doc: docJson, bound: bound,
                   write: canWrite});
        });
      });
    }

    window.addEventListener("message", function (event) {
      // only our frame's messages, and only what we understand: the frame runs untrusted code
      var m = event.data;
      if (event.source !== frame.contentWindow || !m || m.plotline !== 1) { return; }
      if (m.op === "ready") {
        frame.ready();
      } else if (m.op === "done" && calls[m.id]) {
        var call = calls[m.id];
        delete calls[m.id];
        call(typeof m.error === "string" ? m.error.slice(0, 300) : null);
      } else if (m.op === "size" && typeof m.height === "number" && isFinite(m.height)) {
        frame.style.height = Math.max(60, Math.min(20000, Math.round(m.height))) + "px";
      } else if (m.op === "changes") {
        sendChanges(m.events);
      } else if (m.op === "view") {
        askView(m);
      } else if (m.op === "failed") {
        // (at most one reload a channel every 2 s: the frame's code may say so in a loop)
        var channel = m.channel === "doc" ? "doc:" + docId : m.channel;
        var since = Date.now() - (failedAt[channel] || 0);
        if (channels().indexOf(channel) >= 0 && !(since < 2000)) {
          failedAt[channel] = Date.now();
          reload(channel);
        }
      }
    });
    frame.src = o.frameUrl;
    o.container.appendChild(frame);

    // Rows the blob store lost (the source's `lost`): they draw as gaps, so say so, and
    // who can do something about it. Cleared when the source is whole again (a repair).
    var lost = {};  // source -> "rows a–b, c–d of “name”"
    function damaged(source, described) {
      var ranges = (described.lost || []).map(function (r) {
        return r[1] - r[0] === 1 ? String(r[0]) : r[0] + "–" + (r[1] - 1);
      });
      if (ranges.length) {
        lost[source] = "rows " + ranges.join(", ") + " of “" + described.name + "” (source " +
          source + ")";
      } else {
        delete lost[source];
      }
      if (!o.notice) { return; }
      var ids = Object.keys(lost), what = ids.map(function (s) { return lost[s]; });
      o.notice.hidden = what.length === 0;
      o.notice.textContent = what.length === 0 ? "" :
        "Part of this plot's data is missing: " + what.join("; ") + " could not be read " +
        "from storage and show as gaps. The source's owner can drop the lost rows (POST " +
        o.api + "/data/sources/" + (ids.length === 1 ? ids[0] : "{source}") +
        "/repair) or upload its data again.";
    }

    function fail(message, err) {
      if (o.error) {
        o.error.textContent = message;
        o.error.hidden = false;
      }
      console.error("plotline: " + message, err || "");
    }

    // --- the API -------------------------------------------------------------------------
    function call(path, params, options) {
      // GET o.api + path; resolves to the response (throws an Error with .status if not ok)
      var query = new URLSearchParams();
      Object.keys(params || {}).forEach(function (k) {
        if (params[k] != null) { query.set(k, params[k]); }
      });
      if (share) { query.set("share", share); }
      var headers = {"Accept": (options && options.accept) || "application/json"};
      if (o.token) { headers.Authorization = "Bearer " + o.token; }
      var q = query.toString();
      return fetch(o.api + path + (q ? "?" + q : ""),
                   {headers: headers, credentials: o.token ? "omit" : "same-origin",
                    signal: options && options.signal})
        .then(function (response) {
          if (!response.ok) {
            var err = new Error(path + ": HTTP " + response.status);
            err.status = response.status;
            throw err;
          }
          return response;
        });
    }

    function request(path, params) {
      return call(path, params).then(function (response) { return response.json(); });
    }

    var LARGE = o.large > 0 ? o.large : 100000;  // rows above which a source is not sent
    var large = {};  // source -> true when it is too large to send whole

    function fetchSource(source) {
      // the source as the CDS data (read as a reader of this document), or, when it is
      // large, word to the frame to ask for its visible part; resolves to its version
      var path = "/data/sources/" + encodeURIComponent(source);
      return request(path, {doc: docId}).then(function (described) {
        damaged(source, described);
        large[source] = described.rows > LARGE;
        if (large[source]) {
          toFrame({op: "apply", items: [{kind: "large", source: source}]});
          return described.version;
        }
        return request(path + "/data", {doc: docId, encoding: "binary"}).then(function (body) {
          var columns = typed(body.columns);
          toFrame({op: "apply", items: [{kind: "fill", source: source,
                                         columns: columns.data}]}, columns.buffers);
          return body.version;
        });
      });
    }

    // Numeric columns come as Bokeh's ndarray encoding (base64 of the bytes): typed arrays
    // here, handed to the frame without a copy. Faster end to end than JSON numbers
    // (bench/viewer_fill.py).
    var TYPED = {float64: Float64Array, float32: Float32Array, int32: Int32Array,
                 int16: Int16Array, int8: Int8Array, uint32: Uint32Array,
                 uint16: Uint16Array, uint8: Uint8Array};

    function typed(columns) {
      var data = {}, buffers = [];
      Object.keys(columns).forEach(function (name) {
        var c = columns[name];
        if (c && c.type === "ndarray" && TYPED[c.dtype] && c.array && c.order === "little") {
          var text = atob(c.array.data), bytes = new Uint8Array(text.length);
          for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
          data[name] = new TYPED[c.dtype](bytes.buffer);
          buffers.push(bytes.buffer);
        } else {
          data[name] = c;
        }
      });
      return {data: data, buffers: buffers};
    }

    // A large source's visible part, as the frame asks for it (pan, zoom, new rows): the
    // frame runs the document's code, so only these fields of this source, and numbers.
    var asking = {};  // source -> the AbortController of its request in flight

    function number(v) { return typeof v === "number" && isFinite(v); }
    function range(r) { return Array.isArray(r) && r.length === 2 && number(r[0]) && number(r[1]); }
    function name(v) { return typeof v === "string" && v.length > 0 && v.length <= 200; }

    // The frame debounces its questions; still, at most one every VIEW_MS per source goes
    // out (the last one waits): its code may ask in a loop.
    var VIEW_MS = 50, viewAt = {}, viewLater = {};

    function askView(m) {
      if (typeof m.source !== "string" || !Object.prototype.hasOwnProperty.call(large, m.source)) {
        return console.warn("plotline: the frame asked for a view of no large source");
      }
      var wait = VIEW_MS - (Date.now() - (viewAt[m.source] || 0));
      if (wait > 0) {
        var first = !viewLater[m.source];
        viewLater[m.source] = m;
        if (first) {
          setTimeout(function () {
            var latest = viewLater[m.source];
            delete viewLater[m.source];
            askView(latest);
          }, wait);
        }
        return;
      }
      viewAt[m.source] = Date.now();
      var ok = large[m.source] && name(m.x) && name(m.y) && number(m.seq) &&
        (m.kind === "line" ? number(m.n) && (m.x0 == null || number(m.x0)) &&
                             (m.x1 == null || number(m.x1))
         : m.kind === "points" && number(m.width) && number(m.height) &&
           (m.x_range == null || range(m.x_range)) && (m.y_range == null || range(m.y_range)));
      if (!ok) { return console.warn("plotline: the frame asked for a view it may not"); }
      if (asking[m.source]) { asking[m.source].abort(); }  // latest wins: drop the older
      var abort = asking[m.source] = new AbortController();
      var path = "/data/sources/" + encodeURIComponent(m.source);
      var answer;
      if (m.kind === "line") {
        answer = call(path + "/downsample", {doc: docId, x: m.x, y: m.y, n: Math.round(m.n),
                                             x0: m.x0, x1: m.x1}, {signal: abort.signal})
          .then(function (r) { return r.json(); })
          .then(function (body) {
            return {item: {kind: "view", source: m.source, seq: m.seq,
                           line: {x: body.x, y: body.y}}};
          });
      } else {
        answer = call(path + "/aggregate", {
          doc: docId, x: m.x, y: m.y, width: Math.round(m.width), height: Math.round(m.height),
          x_range: m.x_range ? m.x_range.join(",") : null,
          y_range: m.y_range ? m.y_range.join(",") : null, format: "png"},
          {signal: abort.signal, accept: "image/png"})
          .then(function (r) {
            var ranges = ["X", "Y"].map(function (axis) {
              return (r.headers.get("X-Plotline-" + axis + "-Range") || "").split(",").map(Number);
            });
            return r.arrayBuffer().then(function (png) {
              return {item: {kind: "view", source: m.source, seq: m.seq, image: png,
                             x_range: ranges[0], y_range: ranges[1]}, transfer: [png]};
            });
          });
      }
      answer.then(function (out) {
        if (asking[m.source] !== abort) { return; }
        delete asking[m.source];
        toFrame({op: "apply", items: [out.item]}, out.transfer);
      }).catch(function (err) {
        if (err.name === "AbortError") { return; }
        if (asking[m.source] === abort) { delete asking[m.source]; }
        console.warn("plotline: view of " + m.source + ": " + err);
        toFrame({op: "apply", items: [{kind: "view_failed", source: m.source, seq: m.seq,
                                       status: err.status || 0}]});
      });
    }

    // --- the socket ----------------------------------------------------------------------
    var socket = null, attempt = 0, stopped = false, retry = null, renewed = false;
    var seqs = {};      // channel -> last seq applied
    var pending = [];   // events waiting for the next animation frame
    var flushing = null, flushed = 0;
    var FRAME_MS = 16;

    function setStatus(state, text) {
      if (o.status) {
        o.status.dataset.state = state;
        o.status.textContent = text;
      }
      o.container.dataset.live = state;
    }

    function send(op) {
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(op)); }
    }

    function subscribe(channel) {
      var op = {op: "subscribe", channel: channel};
      if (seqs[channel] != null) { op.since = seqs[channel]; }
      if (share) { op.share = share; }
      if (channel.indexOf("data:") === 0) { op.doc = docId; }  // read through this document
      send(op);
    }

    function channels() {
      return ["doc:" + docId].concat(Object.keys(bound).map(function (s) { return "data:" + s; }));
    }

    function stop(text) {
      stopped = true;
      clearTimeout(retry);
      if (socket) { socket.close(); }
      setStatus("offline", text);
    }

    function connect() {
      if (stopped) { return; }
      // the token as a subprotocol, never in the URL (which proxies write in their logs);
      // the names are services/common/names.py's WS_PROTOCOL, WS_TOKEN_PREFIX
      socket = o.token ? new WebSocket(o.ws, ["plotline", "plotline.token." + o.token])
                       : new WebSocket(o.ws);
      socket.onopen = function () { channels().forEach(subscribe); };
      socket.onmessage = function (message) { receive(JSON.parse(message.data)); };
      socket.onclose = function (event) {
        socket = null;
        if (stopped) { return; }
        if (renewed) { renewed = false; return connect(); }  // the new token, at once
        if (event.code === 4401 || event.code === 4403) {  // credentials, origin: final
          return stop("offline: " + (event.reason || "refused") +
                      " (reload the page to try again)");
        }
        // backoff with jitter: 0.5 s, 1 s, 2 s … at most 15 s
        var delay = Math.min(15000, 500 * Math.pow(2, attempt++)) * (0.5 + Math.random() / 2);
        setStatus("reconnecting", "reconnecting…");
        retry = setTimeout(connect, delay);
      };
    }

    window.addEventListener("online", function () {
      if (!socket && !stopped) { clearTimeout(retry); attempt = 0; connect(); }
    });
    window.addEventListener("offline", function () {
      if (!stopped) { setStatus("offline", "offline"); }
    });

    function receive(msg) {
      if (msg.op === "subscribed") {
        if (seqs[msg.channel] == null) { seqs[msg.channel] = msg.seq; }
        origin = msg.origin || null;  // (this socket's: a new one after a reconnect)
        attempt = 0;
        setStatus("live", "live");
      } else if (msg.op === "event") {
        if (pending.length >= MAX_PENDING) {  // not drawn for a long while: start afresh
          pending = [];
          return channels().forEach(reload);
        }
        pending.push(msg);
        if (flushing === null) {
          // at most one batch a frame's time (BokehJS paints at most that often), the
          // first after a pause at once: a batch reaches the frame as soon as it may, and
          // is drawn at the next paint (waiting for an animation frame here cost a frame)
          flushing = setTimeout(flush, Math.max(0, FRAME_MS - (performance.now() - flushed)));
        }
      } else if (msg.op === "resync") {
        reload(msg.channel);
      } else if (msg.op === "error" && msg.channel && msg.code === "unavailable") {
        // its owner service is away for a moment: ask again when push says
        setTimeout(function () { subscribe(msg.channel); }, 1000 * (msg.retry_after || 2));
      } else if (msg.op === "error" && msg.channel) {
        console.warn("plotline:", msg.code, msg.detail, msg.channel);
        if ((msg.code === "revoked" || msg.code === "not_found") &&
            msg.channel === "doc:" + docId) {
          stop(share ? "this link no longer works: ask its owner for a new one"
                     : "you may no longer view this plot");
        }
      }
    }

    // --- events to the frame, merged, at most once a frame's time ---------------------------
    function flush() {
      flushing = null;
      flushed = performance.now();
      var events = pending;
      pending = [];
      var streams = {};  // source -> merged append, applied in order with everything else
      var items = [];
      events.forEach(function (msg) {
        var last = seqs[msg.channel];
        if (last != null && msg.seq != null) {
          if (msg.seq <= last) { return; }           // already applied (a replay overlap)
          if (msg.seq !== last + 1) { return reload(msg.channel); }  // a gap: reload
        }
        if (msg.seq != null) { seqs[msg.channel] = msg.seq; }
        var source = msg.channel.indexOf("data:") === 0 ? msg.channel.slice(5) : null;
        var d = msg.data || {};
        if (source && large[source] && (msg.type === "appended" || msg.type === "patched")) {
          // (the rows stay on the server: the frame asks for its view again)
          if (!streams[source]) {
            streams[source] = {kind: "refresh", source: source};
            items.push(streams[source]);
          }
          return;
        }
        if (source && msg.type === "appended" && d.columns && !d.refetch) {
          var rollover = d.rollover == null ? null : d.rollover;
          var merged = streams[source];
          if (merged && merged.rollover === rollover) {
            Object.keys(d.columns).forEach(function (name) {
              merged.columns[name] = (merged.columns[name] || []).concat(d.columns[name]);
            });
            return;
          }
          streams[source] = {kind: "stream", source: source, columns: copy(d.columns),
                             rollover: rollover};
          items.push(streams[source]);
          return;
        }
        if (source) { streams[source] = undefined; }  // later appends may not jump ahead
        var item = translate(msg, source, d);
        if (item) { items.push(item); }
      });
      if (items.length) { toFrame({op: "apply", items: items}); }
    }

    function copy(columns) {
      var out = {};
      Object.keys(columns).forEach(function (name) { out[name] = columns[name].slice(); });
      return out;
    }

    function translate(msg, source, d) {
      // one event as an item for the frame, or null (after acting on it here)
      if (source === null) {  // the document
        if (msg.type === "patched" && Array.isArray(d.events)) {
          if (origin && d.origin === origin) { return null; }  // our own change, come back
          var events = d.events.filter(function (e) { return !stillEditing(e); });
          return events.length ? {kind: "doc_patch", events: events} : null;
        }
        if (msg.type === "replaced" || d.reload) {
          reload(msg.channel);
        } else if (msg.type === "deleted") {
          stop("this plot was deleted");
        }
        return null;
      }
      if (msg.type === "appended" || msg.type === "columns_changed") {
        reload(msg.channel);  // (appends with rows in them were merged in flush)
        return null;
      }
      if (msg.type === "patched" && d.patches) {
        return {kind: "source_patch", source: source, patches: d.patches};
      }
      return msg.type === "deleted" ? {kind: "clear", source: source} : null;
    }

    // --- a scoped token lives minutes: renew it before it ends -------------------------
    function claims(token) {
      // the JWT's claims (read, not verified: the server does that), or null
      try {
        return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      } catch (err) { return null; }
    }

    function renewLater() {
      var c = o.token ? claims(o.token) : null;
      if (!c || !c.exp) { return; }
      // at four fifths of its life (the clocks of page and server may differ a little)
      setTimeout(renew, Math.max(5, (c.exp - Date.now() / 1000) * 0.8) * 1000);
    }

    var minted = o.token && claims(o.token);
    var lifetime = minted && minted.exp && minted.iat ?
      Math.max(30, Math.min(3600, minted.exp - minted.iat)) : 600;

    function renew() {
      if (stopped) { return; }
      fetch(o.api + "/auth/doc-token", {
        method: "POST", credentials: "omit",
        headers: {"Authorization": "Bearer " + o.token, "Content-Type": "application/json"},
        body: JSON.stringify({doc: docId, right: canWrite ? "write" : "read",
                              ttl: lifetime})
      }).then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      }).then(function (body) {
        o.token = body.access_token;
        // the socket holds the old token until its end: reopen it now, from where it was
        if (socket) { renewed = true; socket.close(); }
        renewLater();
      }).catch(function (err) {
        console.warn("plotline: could not renew the token: " + err);
        setTimeout(renew, 10000);  // the socket keeps working until the old one ends
      });
    }

    // --- two-way: what the viewer changes in the frame ---------------------------------
    var touched = {};  // "model.attr" -> when this page last changed it
    var origin = null;  // push's name for this socket: in the events of the changes it sent

    function sendChanges(events) {
      // The frame runs the document's code: send only a writer's changes of inputs.
      if (!canWrite || !Array.isArray(events) || !events.length) { return; }
      // only the inputs go on; the rest stays on this page (the ranges a plot fits to new
      // data come in the same batch as a slider's last value, which must not be lost)
      events = events.filter(function (e) {
        return e && e.kind === "ModelChanged" && typeof e.attr === "string" &&
          INPUT.hasOwnProperty(e.attr) && e.model && typeof e.model.id === "string";
      });
      if (!events.length) { return; }
      if (JSON.stringify(events).length > MAX_CHANGES) {
        return console.warn("plotline: the frame sent more changes than a page may: dropped");
      }
      var now = Date.now();
      events.forEach(function (e) { touched[e.model.id + "." + e.attr] = now; });
      send({op: "patch", doc: docId, events: events});
    }

    function stillEditing(event) {
      // Someone else's change of an attribute this page changed a moment ago, while the
      // user keeps dragging (or our own, sent before a reconnect gave this socket another
      // origin): applying it would pull the widget back
      var when = event && event.model && touched[event.model.id + "." + event.attr];
      return event.kind === "ModelChanged" && when && Date.now() - when < 1000;
    }

    // --- snapshots -----------------------------------------------------------------------
    var reloading = {};

    function reload(channel) {
      // fetch the channel's entity afresh and subscribe again from the version it had
      if (reloading[channel]) { return; }
      reloading[channel] = true;
      var done = function () { reloading[channel] = false; };
      if (channel.indexOf("data:") === 0) {
        fetchSource(channel.slice(5)).then(function (version) {
          seqs[channel] = version;
          send({op: "unsubscribe", channel: channel});
          subscribe(channel);
        }).catch(function (err) { console.error(err); }).then(done);
        return;
      }
      request("/docs/" + encodeURIComponent(docId)).then(function (body) {
        var before = Object.keys(bound);
        return renderInFrame(body.doc).then(function () {
          seqs[channel] = body.version;
          send({op: "unsubscribe", channel: channel});
          subscribe(channel);
          // the new document may bind other sources: fill them all, follow the new ones
          return Promise.all(Object.keys(bound).map(function (s) {
            return fetchSource(s).then(function (version) {
              if (before.indexOf(s) < 0) { seqs["data:" + s] = version; subscribe("data:" + s); }
            });
          }));
        });
      }).catch(function (err) { fail("Could not reload this plot: " + err, err); }).then(done);
    }

    // --- start ---------------------------------------------------------------------------
    setStatus("connecting", "connecting…");
    // the document came with the page (or embed/ID.js), or is read now (embed.js + token)
    var first = o.doc ? Promise.resolve({doc: o.doc, version: o.version})
                      : request("/docs/" + encodeURIComponent(docId));
    first.then(function (body) {
      return renderInFrame(body.doc).then(function () { return body.version; });
    }).then(function (version) {
      seqs["doc:" + docId] = version;
      return Promise.all(Object.keys(bound).map(function (source) {
        return fetchSource(source).then(function (version) { seqs["data:" + source] = version; });
      }));
    }).catch(function (err) {
      fail("Could not render this plot: " + err, err);
    }).then(function () {
      o.container.dataset.rendered = "true";
      connect();
      renewLater();
    });
  }

  window.PlotlineViewer = {start: start};

  // the viewer page: everything it needs is in its data attributes
  var container = document.getElementById("plotline-roots");
  if (container) {
    var payload = JSON.parse(document.getElementById("plotline-data").textContent);
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    start({container: container, status: document.getElementById("plotline-status"),
           error: document.getElementById("plotline-error"),
           notice: document.getElementById("plotline-notice"), docId: payload.id,
           doc: payload.doc, version: payload.version, api: container.dataset.api,
           ws: scheme + location.host + container.dataset.ws,
           share: container.dataset.share, write: container.dataset.write === "true",
           frameUrl: container.dataset.frame, title: container.dataset.title,
           large: Number(container.dataset.large)});
  }
})();
