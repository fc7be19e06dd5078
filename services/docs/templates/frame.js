// Plotline frame: renders a document's content with BokehJS inside a sandboxed frame.
//
// Document content is untrusted (a Div's HTML, a CustomJS): it runs here, in a frame whose
// origin is opaque (the page's <iframe sandbox> and this document's CSP `sandbox`), so it
// has no cookies, no storage and no network (`connect-src 'none'`): it cannot act as the
// viewer. Everything that needs the viewer's rights (the document, its data, the socket,
// sending changes) is done by the page around it (viewer.js), which talks to this frame by
// postMessage only:
//   page -> frame  {op: "render", id, doc, bound, write}  render a document (answers "done")
//                  {op: "apply", items: [...]}             a frame's worth of changes
//   frame -> page  {op: "ready"}                            BokehJS is loaded
//                  {op: "view", source, seq, kind, ...}     a large source's visible part
//                  {op: "done", id, error?}                 a render finished
//                  {op: "changes", events}                  what the viewer changed (writers)
//                  {op: "failed", channel}                  an item could not be applied
//                  {op: "size", height}                     the content's height in px
// Messages are taken only from the parent window; the page checks what comes back.
(function () {
  "use strict";
  var parentWindow = window.parent;
  var container = document.getElementById("plotline-roots");
  var bokehDoc = null;
  var bound = {};          // source id -> [ColumnDataSource model ids bound to it]
  var canWrite = false;
  var settledAt = Infinity;  // changes before this (the first render's own) are not sent

  function post(message) {
    message.plotline = 1;
    // "*": the page's origin is not ours to check from an opaque origin; what we send is
    // only what the page gave us or what the viewer did
    parentWindow.postMessage(message, "*");
  }

  function models(source) {
    return (bound[source] || []).map(function (id) {
      return bokehDoc && bokehDoc.get_model_by_id(id);
    }).filter(Boolean);
  }

  // --- rendering -------------------------------------------------------------------------
  function render(message) {
    container.textContent = "";
    Bokeh.documents.splice(0, Bokeh.documents.length);  // (the frame shows one document)
    bokehDoc = null;
    large.clear();
    bound = message.bound || {};
    canWrite = message.write === true;
    settledAt = Infinity;
    var roots = {};
    message.doc.roots.forEach(function (root, i) {
      var div = document.createElement("div");
      div.id = "plotline-root-" + i;
      div.className = "plotline-root";
      container.appendChild(div);
      roots[root.id] = div.id;
    });
    var docs = {};
    docs[message.docId] = message.doc;
    var items = [{docid: message.docId, roots: roots, root_ids: Object.keys(roots),
                  use_for_title: false}];
    return Promise.resolve(Bokeh.embed.embed_items(docs, items)).then(function () {
      bokehDoc = Bokeh.documents[Bokeh.documents.length - 1];
      bokehDoc.on_change(changedHere, false);
      // ranges fit themselves to the data in the frames after the first render
      setTimeout(function () { settledAt = 0; }, 500);
    });
  }

  // --- applying what the page sends, in order --------------------------------------------
  function applyItem(item) {
    var source = item.source;
    if (item.kind === "fill") {
      // (sync: false, here and below: what comes from the server is never sent back)
      models(source).forEach(function (cds) { cds.setv({data: item.columns}, {sync: false}); });
    } else if (item.kind === "stream") {
      models(source).forEach(function (cds) {
        plain(cds);
        cds.stream(item.columns, item.rollover == null ? undefined : item.rollover,
                   {sync: false});
      });
    } else if (item.kind === "source_patch") {
      models(source).forEach(function (cds) { cds.patch(item.patches, {sync: false}); });
    } else if (item.kind === "clear") {
      models(source).forEach(function (cds) {
        var empty = {};
        Object.keys(cds.data).forEach(function (name) { empty[name] = []; });
        cds.setv({data: empty}, {sync: false});
      });
    } else if (item.kind === "doc_patch" && bokehDoc) {
      bokehDoc.apply_json_patch({events: item.events});
    } else if (item.kind === "large") {
      large.start(source);
    } else if (item.kind === "refresh") {
      large.later(source);
    } else if (item.kind === "view") {
      large.show(item);
    } else if (item.kind === "view_failed") {
      large.failed(item);
    }
  }

  function plain(cds) {
    // A source filled with typed arrays (the page sends numbers so) gets plain arrays
    // before its first stream: BokehJS keeps a typed array's length through a rollover.
    var data = cds.data, changed = false, out = {};
    Object.keys(data).forEach(function (name) {
      var column = data[name];
      out[name] = ArrayBuffer.isView(column) ? Array.from(column) : column;
      changed = changed || out[name] !== column;
    });
    if (changed) { cds.setv({data: out}, {sync: false}); }
  }

  function apply(message) {
    (message.items || []).forEach(function (item) {
      try {
        applyItem(item);
      } catch (err) {
        console.error("plotline: could not apply", item.kind, err);
        post({op: "failed", channel: item.source ? "data:" + item.source : "doc"});
      }
    });
  }

  // --- what the viewer changes -----------------------------------------------------------
  // Widget values, selections: whatever BokehJS syncs. The page decides what goes on (it
  // sends only a writer's, and only inputs); here the changes of a frame are gathered and
  // a dragged slider's many changes of one attribute become its last.
  var outgoing = [], outFrame = null;

  function changedHere(event) {
    if (event.attr === "start" || event.attr === "end") { large.moved(event.model); }
    if (!canWrite || !event.sync || Date.now() < settledAt) { return; }
    outgoing.push(event);
    if (outFrame === null) { outFrame = requestAnimationFrame(sendChanges); }
  }

  function sendChanges() {
    outFrame = null;
    var events = outgoing, last = {};
    outgoing = [];
    events.forEach(function (event, i) {
      if (event.model && event.attr) { last[event.model.id + "." + event.attr] = i; }
    });
    events = events.filter(function (event, i) {
      return !(event.model && event.attr) || last[event.model.id + "." + event.attr] === i;
    });
    if (events.length && bokehDoc) {
      post({op: "changes", events: bokehDoc.create_json_patch(events).events});
    }
  }

  // --- large sources: only what is visible, asked again as the viewer pans and zooms -----
  // A source too large to send whole (the page says which) is shown by its first line
  // renderer as a MinMaxLTTB downsample of the visible x-range at the plot's width, or,
  // when it has only markers, as an aggregate raster image of the visible ranges. Range
  // changes ask again after a pause (DEBOUNCE ms); only the newest answer is drawn (the
  // page aborts older requests and this frame drops any stale answer by its seq).
  var large = (function () {
    var DEBOUNCE = 120;
    var LINES = {Line: 1, Step: 1};
    var views = {};  // source -> its view state

    function field(spec) { return spec && typeof spec.field === "string" ? spec.field : null; }

    function plotOf(renderer) {
      var found = null;
      bokehDoc.all_models.forEach(function (m) {
        if (!found && Array.isArray(m.renderers) && m.x_range && m.renderers.indexOf(renderer) >= 0) {
          found = m;
        }
      });
      return found;
    }

    function start(source) {
      if (!bokehDoc) { return; }
      if (views[source]) { return ask(views[source]); }  // (reloaded: ask again)
      var ids = bound[source] || [];
      var renderers = [];
      bokehDoc.all_models.forEach(function (m) {
        if (m.glyph && m.data_source && ids.indexOf(m.data_source.id) >= 0 &&
            field(m.glyph.x) && field(m.glyph.y)) { renderers.push(m); }
      });
      if (!renderers.length) {
        return console.warn("plotline: source " + source + " is too large to show whole, " +
                            "and no line or marker draws it");
      }
      var line = renderers.filter(function (r) { return LINES[r.glyph.type]; })[0];
      var chosen = line || renderers[0];
      var view = views[source] = {
        source: source, mode: line ? "line" : "points", renderer: chosen,
        plot: plotOf(chosen), x: field(chosen.glyph.x), y: field(chosen.glyph.y),
        seq: 0, timer: null, frozen: false, image: null};
      if (!view.plot) { delete views[source]; return; }
      if (view.mode === "points") { toImage(view, renderers); }
      ask(view);
    }

    function toImage(view, renderers) {
      // the markers give way to one image of them all (created here, never synced)
      renderers.forEach(function (r) { r.setv({visible: false}, {sync: false}); });
      var Models = Bokeh.Models;
      var data = new (Models.get("ColumnDataSource"))({data: {url: [], x: [], y: [], w: [], h: []}});
      var glyph = new (Models.get("ImageURL"))({url: {field: "url"}, x: {field: "x"},
                                                y: {field: "y"}, w: {field: "w"},
                                                h: {field: "h"}, anchor: "bottom_left"});
      var renderer = new (Models.get("GlyphRenderer"))({data_source: data, glyph: glyph});
      view.plot.setv({renderers: view.plot.renderers.concat([renderer])}, {sync: false});
      view.image = data;
    }

    function ask(view) {
      clearTimeout(view.timer);
      view.timer = null;
      var plot = view.plot, xr = plot.x_range, yr = plot.y_range;
      var message = {op: "view", source: view.source, seq: ++view.seq, kind: view.mode,
                     x: view.x, y: view.y};
      var width = Math.round(plot.inner_width) || 800;
      if (view.mode === "line") {
        message.n = Math.max(100, Math.min(20000, 2 * width));
        if (view.frozen) { message.x0 = xr.start; message.x1 = xr.end; }
      } else {
        message.width = Math.max(1, Math.min(4000, width));
        message.height = Math.max(1, Math.min(4000, Math.round(plot.inner_height) || 600));
        if (view.frozen) {
          message.x_range = [xr.start, xr.end];
          message.y_range = [yr.start, yr.end];
        }
      }
      post(message);
    }

    function later(source) {
      var view = views[source];
      if (!view) { return; }
      clearTimeout(view.timer);
      view.timer = setTimeout(function () { ask(view); }, DEBOUNCE);
    }

    function moved(range) {
      // a pan or zoom of a plot that shows a large source (not the fit to its first view)
      Object.keys(views).forEach(function (source) {
        var view = views[source];
        var watched = view.mode === "line" ? [view.plot.x_range]
                                           : [view.plot.x_range, view.plot.y_range];
        if (view.frozen && watched.indexOf(range) >= 0) { later(source); }
      });
    }

    function freeze(view) {
      // After the first view the ranges stay where the viewer puts them: fitting them to
      // each answer would move them, which would ask again. (A line's y still fits.)
      requestAnimationFrame(function () {
        requestAnimationFrame(function () {
          var ranges = view.mode === "line" ? [view.plot.x_range]
                                            : [view.plot.x_range, view.plot.y_range];
          ranges.forEach(function (r) {
            if ("have_updated_interactively" in r) { r.have_updated_interactively = true; }
          });
          view.frozen = true;
        });
      });
    }

    function show(item) {
      var view = views[item.source];
      if (!view || item.seq !== view.seq) { return; }  // stale: a newer view was asked
      if (item.line) {
        var data = {};
        data[view.x] = item.line.x;
        data[view.y] = item.line.y;
        models(view.source).forEach(function (cds) { cds.setv({data: data}, {sync: false}); });
      } else if (item.image && view.image) {
        var old = view.image.data.url[0];
        var url = URL.createObjectURL(new Blob([item.image], {type: "image/png"}));
        var xr = item.x_range, yr = item.y_range;
        view.image.setv({data: {url: [url], x: [xr[0]], y: [yr[0]], w: [xr[1] - xr[0]],
                                h: [yr[1] - yr[0]]}}, {sync: false});
        if (old) { setTimeout(function () { URL.revokeObjectURL(old); }, 2000); }
      }
      container.dataset.view = view.source + ":" + view.seq;  // (what tests wait for)
      if (!view.frozen) { freeze(view); }
    }

    function failed(item) {
      var view = views[item.source];
      if (view && item.seq === view.seq && item.status === 422 && view.mode === "line") {
        // (x is not sorted: a downsample cannot be made) draw the points as an image
        var renderers = [view.renderer];
        view.mode = "points";
        toImage(view, renderers);
        ask(view);
      }
    }

    function clear() {
      Object.keys(views).forEach(function (s) { clearTimeout(views[s].timer); });
      views = {};
    }

    return {start: start, later: later, moved: moved, show: show, failed: failed,
            clear: clear};
  })();

  // --- the page's messages ---------------------------------------------------------------
  window.addEventListener("message", function (event) {
    var message = event.data;
    if (event.source !== parentWindow || !message || message.plotline !== 1) { return; }
    if (message.op === "render") {
      render(message).then(function () { post({op: "done", id: message.id}); },
                           function (err) {
                             console.error(err);
                             post({op: "done", id: message.id, error: String(err)});
                           });
    } else if (message.op === "apply") {
      apply(message);
    }
  });

  // the page sizes the frame to its content (the roots', not the frame's own height)
  var lastHeight = 0;
  new ResizeObserver(function () {
    var height = Math.ceil(container.getBoundingClientRect().height);
    if (height !== lastHeight) { lastHeight = height; post({op: "size", height: height}); }
  }).observe(container);

  post({op: "ready"});
})();
