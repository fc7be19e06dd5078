// Plotline embed script: shows documents live on any site, each in a sandboxed frame from
// this server, kept live by viewer.js (loaded from here once per page) as on /plots/<id>.
// Two forms:
//   <script src=".../embed/ID.js?share=KEY"></script>
//       the document right after the tag (a published one, or a share link's);
//   <div data-plotline-doc="ID" data-plotline-token="TOKEN"></div>
//   <script src=".../embed.js"></script>
//       every such element, read with a token scoped to its document (POST
//       /api/v1/auth/doc-token, minted by the site's backend): no cookies needed, none used.
(function (payload, config) {
  "use strict";
  var script = document.currentScript;
  var here = function (path) { return new URL(path, script.src).href; };
  var ws = new URL(config.ws, script.src);
  ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";

  function viewer() {
    if (window.PlotlineViewer) { return Promise.resolve(window.PlotlineViewer); }
    if (!window.__plotlineViewer) {  // several embeds on one page share one load
      window.__plotlineViewer = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = here(config.viewer_js);
        tag.onload = function () { resolve(window.PlotlineViewer); };
        tag.onerror = function () { reject(new Error("could not load " + tag.src)); };
        document.head.appendChild(tag);
      });
    }
    return window.__plotlineViewer;
  }

  function show(container, options) {
    container.setAttribute("data-plotline-started", "true");
    viewer().then(function (Viewer) {
      Viewer.start(Object.assign({container: container, api: here(config.api), ws: ws.href,
                                  frameUrl: here(config.frame), large: config.large,
                                  write: false}, options));
    }).catch(function (err) {
      console.error("Plotline: could not embed document " + options.docId + ": " + err);
    });
  }

  if (payload) {  // embed/ID.js: this document, right after the tag
    var container = document.createElement("div");
    container.className = "plotline-embed";
    container.setAttribute("data-plotline-doc", payload.id);
    container.setAttribute("data-version", String(payload.version));
    script.parentNode.insertBefore(container, script.nextSibling);
    show(container, {docId: payload.id, doc: payload.doc, version: payload.version,
                     share: new URL(script.src).searchParams.get("share") || "",
                     title: payload.title});
    return;
  }
  // embed.js: every element that names a document (the token can write, when minted so)
  document.querySelectorAll("[data-plotline-doc]:not([data-plotline-started])")
    .forEach(function (element) {
      element.classList.add("plotline-embed");
      show(element, {docId: element.getAttribute("data-plotline-doc"),
                     token: element.getAttribute("data-plotline-token") || "",
                     share: element.getAttribute("data-plotline-share") || "",
                     write: element.getAttribute("data-plotline-write") === "true"});
    });
})($payload, $config);
