// Plotline embed script: loads BokehJS from this server when the
// page has none, then renders the document right after this <script> tag.
(function (payload, config) {
  "use strict";
  var script = document.currentScript;
  var base = new URL(config.bokeh_base, script.src).href;
  var container = document.createElement("div");
  container.className = "plotline-embed";
  container.setAttribute("data-plotline-doc", payload.id);
  container.setAttribute("data-version", String(payload.version));
  script.parentNode.insertBefore(container, script.nextSibling);

  function load(src) {
    return new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = src;
      tag.async = false;  // run in insertion order: bokeh first, then its plugins
      tag.onload = resolve;
      tag.onerror = function () { reject(new Error("Plotline: could not load " + src)); };
      document.head.appendChild(tag);
    });
  }

  function bokeh() {
    if (window.Bokeh && window.Bokeh.embed) {
      return Promise.resolve(window.Bokeh);
    }
    if (!window.__plotlineBokeh) {  // several embeds on one page share one load
      window.__plotlineBokeh = Promise.all(config.bokeh_files.map(function (name) {
        return load(base + name);
      })).then(function () { return window.Bokeh; });
    }
    return window.__plotlineBokeh;
  }

  bokeh().then(function (Bokeh) {
    var unique = Math.random().toString(36).slice(2);
    var roots = {};
    payload.doc.roots.forEach(function (root, i) {
      var div = document.createElement("div");
      div.id = "plotline-" + payload.id + "-" + unique + "-" + i;
      container.appendChild(div);
      roots[root.id] = div.id;
    });
    var docs = {};
    docs[payload.id] = payload.doc;
    return Bokeh.embed.embed_items(docs, [{docid: payload.id, roots: roots,
                                           root_ids: Object.keys(roots),
                                           use_for_title: false}]);
  }).then(function () {
    container.setAttribute("data-rendered", "true");
  }).catch(function (err) {
    console.error("Plotline: could not embed document " + payload.id + ": " + err);
  });
})($payload, $config);
