// Plotline viewer: renders the document embedded in #plotline-data with BokehJS (one <div>
// per root inside #plotline-roots), then keeps it live:
// - every ColumnDataSource tagged "plotline:source=<id>" is filled from the data service,
//   whatever the document itself holds for it;
// - one websocket subscribes doc:<id> and data:<source> of every bound source, and applies
//   their events as Bokeh would (patches, streams with rollover, refetches);
// - events are applied once per animation frame (consecutive appends to one source are
//   merged into one stream), so a fast stream costs a redraw per frame, not per event;
// - on a lost connection it reconnects with backoff and `since`, so nothing is missed; a
//   `resync`, a gap or a document replaced reloads the snapshot. #plotline-status says
//   live / reconnecting / offline.
// No inline script (CSP): everything comes from this file and the page's data attributes.
(function () {
  "use strict";
  var container = document.getElementById("plotline-roots");
  var status = document.getElementById("plotline-status");
  var payload = JSON.parse(document.getElementById("plotline-data").textContent);
  var api = container.dataset.api, share = container.dataset.share || "";
  var docId = payload.id;
  var SOURCE_TAG = "plotline:source=";

  // --- rendering -------------------------------------------------------------------------
  var bokehDoc = null;   // the BokehJS Document on the page
  var bound = {};        // source id -> [ColumnDataSource model ids bound to it]

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

  function render(docJson) {
    container.textContent = "";
    Bokeh.documents.splice(0, Bokeh.documents.length);  // (the page shows one document)
    var roots = {};
    docJson.roots.forEach(function (root, i) {
      var div = document.createElement("div");
      div.id = "plotline-root-" + i;
      div.className = "plotline-root";
      container.appendChild(div);
      roots[root.id] = div.id;
    });
    var docs = {};
    docs[docId] = docJson;
    var items = [{docid: docId, roots: roots, root_ids: Object.keys(roots),
                  use_for_title: false}];
    bound = boundSources(docJson);
    return Promise.resolve(Bokeh.embed.embed_items(docs, items)).then(function () {
      bokehDoc = Bokeh.documents[Bokeh.documents.length - 1];
      bokehDoc.on_change(changedHere, false);
    });
  }

  function fail(message, err) {
    var box = document.getElementById("plotline-error");
    box.textContent = message;
    box.hidden = false;
    if (err) { console.error(err); }
  }

  // --- the data service ------------------------------------------------------------------
  function query(extra) {
    var params = new URLSearchParams(extra || {});
    params.set("doc", docId);  // read as a reader of this document
    if (share) { params.set("share", share); }
    return "?" + params.toString();
  }

  function models(source) {
    return (bound[source] || []).map(function (id) {
      return bokehDoc && bokehDoc.get_model_by_id(id);
    }).filter(Boolean);
  }

  function fetchSource(source) {
    // the whole source as the CDS data; resolves to its version
    return fetch(api + "/data/sources/" + encodeURIComponent(source) + "/data" + query(),
                 {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("source " + source + ": HTTP " + response.status); }
        return response.json();
      }).then(function (body) {
        // (sync: false, here and below: what comes from the server is never sent back)
        models(source).forEach(function (cds) { cds.setv({data: body.columns}, {sync: false}); });
        return body.version;
      });
  }

  // --- the socket ------------------------------------------------------------------------
  var socket = null, attempt = 0, stopped = false, retry = null;
  var seqs = {};      // channel -> last seq applied
  var pending = [];   // events waiting for the next animation frame
  var frame = null;

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function wsUrl() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + location.host + container.dataset.ws;
  }

  function send(op) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(op)); }
  }

  function subscribe(channel) {
    var op = {op: "subscribe", channel: channel};
    if (seqs[channel] != null) { op.since = seqs[channel]; }
    if (share) { op.share = share; }
    send(op);
  }

  function channels() {
    return ["doc:" + docId].concat(Object.keys(bound).map(function (s) { return "data:" + s; }));
  }

  function connect() {
    if (stopped) { return; }
    socket = new WebSocket(wsUrl());
    socket.onopen = function () { channels().forEach(subscribe); };
    socket.onmessage = function (message) { receive(JSON.parse(message.data)); };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 4401 || event.code === 4403) {  // credentials, origin: final
        stopped = true;
        setStatus("offline", "offline: " + (event.reason || "refused") +
                  " (reload the page to try again)");
        return;
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
  window.addEventListener("offline", function () { setStatus("offline", "offline"); });

  function receive(msg) {
    if (msg.op === "subscribed") {
      if (seqs[msg.channel] == null) { seqs[msg.channel] = msg.seq; }
      attempt = 0;
      setStatus("live", "live");
    } else if (msg.op === "event") {
      pending.push(msg);
      if (frame === null) { frame = requestAnimationFrame(flush); }
    } else if (msg.op === "resync") {
      reload(msg.channel);
    } else if (msg.op === "error" && msg.channel) {
      console.warn("plotline:", msg.code, msg.detail, msg.channel);
      if (msg.code === "revoked" && msg.channel === "doc:" + docId) {
        stopped = true;
        if (socket) { socket.close(); }
        setStatus("offline", "you may no longer view this plot");
      }
    }
  }

  // --- applying events, once per animation frame -------------------------------------------
  function flush() {
    frame = null;
    var events = pending;
    pending = [];
    var streams = {};  // source -> merged append, applied in order with everything else
    var order = [];
    events.forEach(function (msg) {
      var last = seqs[msg.channel];
      if (last != null && msg.seq != null) {
        if (msg.seq <= last) { return; }           // already applied (a replay overlap)
        if (msg.seq !== last + 1) { return reload(msg.channel); }  // a gap: reload
      }
      if (msg.seq != null) { seqs[msg.channel] = msg.seq; }
      var source = msg.channel.indexOf("data:") === 0 ? msg.channel.slice(5) : null;
      var d = msg.data || {};
      if (source && msg.type === "appended" && d.columns && !d.refetch) {
        var merged = streams[source];
        if (merged && merged.rollover === (d.rollover == null ? null : d.rollover)) {
          Object.keys(d.columns).forEach(function (name) {
            merged.columns[name] = (merged.columns[name] || []).concat(d.columns[name]);
          });
          return;
        }
        streams[source] = {columns: copyColumns(d.columns),
                           rollover: d.rollover == null ? null : d.rollover};
        order.push({stream: source, batch: streams[source]});
        return;
      }
      if (source) { streams[source] = undefined; }  // later appends may not jump ahead
      order.push({msg: msg, source: source});
    });
    order.forEach(function (item) {
      try {
        if (item.stream) { return streamInto(item.stream, item.batch); }
        apply(item.msg, item.source);
      } catch (err) {
        console.error("plotline: could not apply", item, err);
        reload(item.msg ? item.msg.channel : "data:" + item.stream);
      }
    });
  }

  function copyColumns(columns) {
    var out = {};
    Object.keys(columns).forEach(function (name) { out[name] = columns[name].slice(); });
    return out;
  }

  function streamInto(source, batch) {
    models(source).forEach(function (cds) {
      cds.stream(batch.columns, batch.rollover == null ? undefined : batch.rollover,
                 {sync: false});
    });
  }

  function apply(msg, source) {
    var d = msg.data || {};
    if (source === null) {  // the document
      if (msg.type === "patched" && Array.isArray(d.events)) {
        var events = d.events.filter(function (e) { return !stillEditing(e); });
        if (events.length) { bokehDoc.apply_json_patch({events: events}); }
      } else if (msg.type === "replaced" || d.reload) {
        reload(msg.channel);
      } else if (msg.type === "deleted") {
        stopped = true;
        if (socket) { socket.close(); }
        setStatus("offline", "this plot was deleted");
      }
      return;
    }
    if (msg.type === "appended" || msg.type === "columns_changed") {
      return reload(msg.channel);  // (appends with rows in them were merged in flush)
    }
    if (msg.type === "patched" && d.patches) {
      models(source).forEach(function (cds) { cds.patch(d.patches, {sync: false}); });
    } else if (msg.type === "deleted") {
      models(source).forEach(function (cds) {
        var empty = {};
        Object.keys(cds.data).forEach(function (name) { empty[name] = []; });
        cds.setv({data: empty}, {sync: false});
      });
    }
  }

  // --- two-way: what the viewer changes --------------------------------------------------
  // A writer's changes (widget values, selections: whatever BokehJS syncs) go to docs as
  // `patch` ops, once per animation frame; docs stores them and every viewer gets them.
  // Anyone else's stay on their page (nobody changes a published plot by playing with it).
  // Changes applied from the server are not "sync", so they are never sent back.
  var canWrite = container.dataset.write === "true";
  var outgoing = [], outFrame = null;
  var touched = {};  // "model.attr" -> when this page last changed it

  // What a person changes: widget values and selections. BokehJS also syncs what it works
  // out itself (layout sizes, ranges fitted to new data); sending those would make every
  // writer's page rewrite the document as it renders or streams. Pan/zoom ranges: not yet.
  var INPUT = {value: 1, value_throttled: 1, active: 1, indices: 1, line_indices: 1,
               multiline_indices: 1, labels: 1};
  var settledAt = Infinity;  // changes before this (the first render's own) are not sent

  function changedHere(event) {
    if (!canWrite || !event.sync || Date.now() < settledAt) { return; }
    if (!(event.attr && INPUT[event.attr])) { return; }
    if (event.model && event.attr) { touched[event.model.id + "." + event.attr] = Date.now(); }
    outgoing.push(event);
    if (outFrame === null) { outFrame = requestAnimationFrame(sendChanges); }
  }

  function sendChanges() {
    outFrame = null;
    var events = outgoing, last = {};
    outgoing = [];
    // a dragged slider makes many changes of one attribute a frame: send the last one
    events.forEach(function (event, i) {
      if (event.model && event.attr) { last[event.model.id + "." + event.attr] = i; }
    });
    events = events.filter(function (event, i) {
      return !(event.model && event.attr) || last[event.model.id + "." + event.attr] === i;
    });
    if (events.length) {
      send({op: "patch", doc: docId, events: bokehDoc.create_json_patch(events).events});
    }
  }

  function stillEditing(event) {
    // the server's copy of a change this page made a moment ago (or of an older value,
    // while the user keeps dragging): applying it would pull the widget back
    var when = event.model && touched[event.model.id + "." + event.attr];
    return event.kind === "ModelChanged" && when && Date.now() - when < 1000;
  }

  // --- snapshots ---------------------------------------------------------------------------
  var reloading = {};

  function reload(channel) {
    // fetch the channel's entity afresh and subscribe again from the version it had
    if (reloading[channel]) { return; }
    reloading[channel] = true;
    var done = function () { reloading[channel] = false; };
    if (channel.indexOf("data:") === 0) {
      var source = channel.slice(5);
      fetchSource(source).then(function (version) {
        seqs[channel] = version;
        send({op: "unsubscribe", channel: channel});
        subscribe(channel);
      }).catch(function (err) { console.error(err); }).then(done);
      return;
    }
    fetch(api + "/docs/" + encodeURIComponent(docId) + (share ? "?share=" +
          encodeURIComponent(share) : ""), {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) { throw new Error("document: HTTP " + response.status); }
        return response.json();
      }).then(function (body) {
        var before = Object.keys(bound);
        return render(body.doc).then(function () {
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

  // --- start -------------------------------------------------------------------------------
  render(payload.doc).then(function () {
    seqs["doc:" + docId] = payload.version;
    return Promise.all(Object.keys(bound).map(function (source) {
      return fetchSource(source).then(function (version) { seqs["data:" + source] = version; });
    }));
  }).then(function () {
    container.dataset.rendered = "true";
    // ranges fit themselves to the data in the frames after the first render
    setTimeout(function () { settledAt = 0; }, 500);
    connect();
  }).catch(function (err) {
    container.dataset.rendered = "true";
    fail("Could not render this plot: " + err, err);
    connect();
  });
})();
