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
    }
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
