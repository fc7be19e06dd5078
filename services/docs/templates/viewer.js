// Plotline viewer: renders the document embedded in #plotline-data with BokehJS,
// one <div> per root inside #plotline-roots.
(function () {
  "use strict";
  var container = document.getElementById("plotline-roots");
  var payload = JSON.parse(document.getElementById("plotline-data").textContent);
  var roots = {};
  payload.doc.roots.forEach(function (root, i) {
    var div = document.createElement("div");
    div.id = "plotline-root-" + i;
    div.className = "plotline-root";
    container.appendChild(div);
    roots[root.id] = div.id;
  });
  var docs = {};
  docs[payload.id] = payload.doc;
  var items = [{docid: payload.id, roots: roots, root_ids: Object.keys(roots),
                use_for_title: false}];
  Promise.resolve(window.Bokeh.embed.embed_items(docs, items)).then(function () {
    container.dataset.rendered = "true";
  }).catch(function (err) {
    var box = document.getElementById("plotline-error");
    box.textContent = "Could not render this plot: " + err;
    box.hidden = false;
    console.error(err);
  });
})();
