// Plotline pages: login, register, log out, my API keys, my data sources.
// No inline scripts (CSP-friendly): each page's URLs come from data-* attributes, and
// everything from the server goes in with textContent, never as markup.
(function () {
  "use strict";

  // the CSRF cookie, echoed in its header: a cookie login's changes need it
  function csrfToken() {
    var found = document.cookie.match(/(?:^|;\s*)plotline_csrf=([^;]+)/);
    return found ? decodeURIComponent(found[1]) : "";
  }

  // One JSON call: resolves to {ok, status, body}; the body is {} when there is none.
  function call(method, url, body) {
    var headers = {"Accept": "application/json"};
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {method: method, credentials: "same-origin", headers: headers,
                       body: body === undefined ? undefined : JSON.stringify(body)})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          return {ok: response.ok, status: response.status, body: data};
        });
      });
  }

  function failure(what, answer) {
    return (answer.body && answer.body.detail) || (what + " failed (HTTP " + answer.status + ")");
  }

  function show(box, text) {
    box.textContent = text;
    box.hidden = !text;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  // the same form as the server's pages: "2026-12-03 18:07 UTC"
  function when(seconds) {
    var iso = new Date(seconds * 1000).toISOString();
    return el("time", {datetime: iso.slice(0, 19) + "+00:00",
                       text: iso.slice(0, 10) + " " + iso.slice(11, 16) + " UTC"});
  }

  function cell(label, child, cls) {
    var attrs = {"data-label": label};
    if (cls) attrs["class"] = cls;
    return el("td", attrs, [typeof child === "string" ? document.createTextNode(child) : child]);
  }

  // If the session ended meanwhile, log in again and come back here.
  function relogin(answer) {
    if (answer.status !== 401) return false;
    var home = document.querySelector(".brand").getAttribute("href");
    window.location.assign(home + "login?next=" +
                           encodeURIComponent(window.location.pathname));
    return true;
  }

  // --- login and register ------------------------------------------------------------------

  function login(api, username, password) {
    return call("POST", api, {username: username, password: password});
  }

  var loginForm = document.getElementById("login");
  if (loginForm) {
    loginForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var error = loginForm.querySelector(".error");
      show(error, "");
      login(loginForm.dataset.api, loginForm.username.value, loginForm.password.value)
        .then(function (answer) {
          if (answer.ok) window.location.assign(loginForm.dataset.next);
          else show(error, failure("login", answer));
        }, function (err) { show(error, "login failed: " + err); });
    });
  }

  var registerForm = document.getElementById("register");
  if (registerForm) {
    registerForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var form = registerForm, error = form.querySelector(".error");
      var button = form.querySelector("button[type=submit]");
      var account = {username: form.username.value.trim(), password: form.password.value};
      if (form.email.value.trim()) account.email = form.email.value.trim();
      show(error, "");
      button.disabled = true;
      call("POST", form.dataset.api, account).then(function (answer) {
        if (!answer.ok) throw new Error(failure("registration", answer));
        return login(form.dataset.login, account.username, account.password);
      }).then(function (answer) {
        if (!answer.ok) throw new Error(failure("login", answer));
        window.location.assign(form.dataset.next);
      }).catch(function (err) {
        show(error, err.message || String(err));
        button.disabled = false;
      });
    });
  }

  document.querySelectorAll("[data-logout]").forEach(function (button) {
    button.addEventListener("click", function () {
      fetch(button.dataset.logout, {method: "POST", credentials: "same-origin",
                                    headers: {"X-CSRF-Token": csrfToken()}})
        .finally(function () { window.location.reload(); });
    });
  });

  // --- a listing page: load, show the table or the empty note, act on rows -----------------

  function listing(root, what, row) {
    var table = root.querySelector("table"), body = table.querySelector("tbody");
    var error = root.querySelector(".error"), loading = root.querySelector(".loading");
    var empty = root.querySelector(".empty");
    function load() {
      return call("GET", root.dataset.api).then(function (answer) {
        loading.hidden = true;
        if (relogin(answer)) return;
        if (!answer.ok) { show(error, failure("loading " + what, answer)); return; }
        body.replaceChildren.apply(body, answer.body.map(row));
        table.hidden = answer.body.length === 0;
        empty.hidden = answer.body.length !== 0;
        root.dataset.loaded = String(answer.body.length);
      }, function (err) { loading.hidden = true; show(error, "loading " + what + " failed: " + err); });
    }
    function remove(url, question, button) {
      if (!window.confirm(question)) return;
      button.disabled = true;
      show(error, "");
      call("DELETE", url).then(function (answer) {
        if (relogin(answer)) return;
        if (!answer.ok && answer.status !== 404) show(error, failure("deleting", answer));
        return load();
      }).finally(function () { button.disabled = false; });
    }
    return {load: load, remove: remove, error: error};
  }

  // A secret shown once (a key, a share link): its Copy button copies it, or selects it.
  function copier(box) {
    var value = box.querySelector(".secret-value"), copied = box.querySelector(".copied");
    box.querySelector(".copy").addEventListener("click", function () {
      function done() { copied.textContent = "Copied"; }
      function fallback() {  // no clipboard API (plain http on another host): select it
        var range = document.createRange();
        range.selectNodeContents(value);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copied.textContent = document.execCommand("copy") ? "Copied" : "Selected: press Ctrl+C";
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(value.textContent).then(done, fallback);
      } else {
        fallback();
      }
    });
  }

  // --- the viewer's owner controls: publish, share links ------------------------------------

  var controls = document.getElementById("doc-controls");
  if (controls) {
    var api = controls.dataset.api, published = controls.dataset.published === "true";
    var shares = Number(controls.dataset.shares) || 0;
    var publish = controls.querySelector("[data-action=publish]");
    var unshare = controls.querySelector("[data-action=unshare]");
    var link = controls.querySelector(".share-link"), problem = controls.querySelector(".error");
    var state = document.getElementById("doc-state");
    var refresh = function () {
      publish.textContent = published ? "Make private" : "Publish";
      controls.querySelector(".hint").textContent = published
        ? "Anyone with the address can see this plot." : "Only you and those you share it with.";
      state.textContent = published ? "published" : "private";
      state.className = "badge " + (published ? "published" : "private");
      unshare.hidden = shares === 0;
    };
    var act = function (button, method, url, then) {
      button.disabled = true;
      show(problem, "");
      call(method, url).then(function (answer) {
        if (relogin(answer)) return;
        if (!answer.ok) { show(problem, failure(button.textContent.toLowerCase(), answer)); return; }
        then(answer.body);
        refresh();
      }).finally(function () { button.disabled = false; });
    };
    publish.addEventListener("click", function () {
      act(publish, published ? "DELETE" : "POST", api + "/publish",
          function () { published = !published; });
    });
    controls.querySelector("[data-action=share]").addEventListener("click", function (event) {
      act(event.currentTarget, "POST", api + "/share", function (body) {
        shares += 1;
        link.querySelector(".secret-value").textContent = body.url;
        link.querySelector(".copied").textContent = "";
        link.hidden = false;
        link.querySelector(".copy").focus();
      });
    });
    unshare.addEventListener("click", function () {
      if (!window.confirm("Revoke every share link of this plot? Pages open through them " +
                          "stop at once.")) return;
      act(unshare, "DELETE", api + "/share", function () { shares = 0; link.hidden = true; });
    });
    copier(link);
    refresh();
  }

  // --- my API keys ----------------------------------------------------------------------------

  var keys = document.getElementById("keys");
  if (keys) {
    var keyList = listing(keys, "keys", function (key) {
      var revoke = el("button", {type: "button", "class": "danger",
                                 "aria-label": "Revoke key " + key.name, text: "Revoke"});
      revoke.addEventListener("click", function () {
        keyList.remove(keys.dataset.api + "/" + encodeURIComponent(key.id),
                       "Revoke the key \u201c" + key.name + "\u201d? Programs using it " +
                       "stop working at once.", revoke);
      });
      return el("tr", {"data-key": key.id}, [
        cell("Name", key.name), cell("Begins with", el("code", {text: key.prefix})),
        cell("Created", when(key.created)), cell("", revoke, "actions")]);
    });
    var create = document.getElementById("new-key");
    var secret = document.getElementById("key-secret");
    var value = secret.querySelector(".secret-value"), copied = secret.querySelector(".copied");
    create.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = create.querySelector("button");
      button.disabled = true;
      show(keyList.error, "");
      var name = document.getElementById("new-key-name").value.trim() || "default";
      call("POST", keys.dataset.api, {name: name})
        .then(function (answer) {
          if (relogin(answer)) return;
          if (!answer.ok) { show(keyList.error, failure("creating the key", answer)); return; }
          secret.querySelector(".secret-name").textContent = "\u201c" + answer.body.name + "\u201d";
          value.textContent = answer.body.key;
          copied.textContent = "";
          secret.hidden = false;
          create.reset();
          secret.querySelector(".copy").focus();
          return keyList.load();
        }).finally(function () { button.disabled = false; });
    });
    copier(secret);
    keyList.load();
  }

  // --- my data sources ------------------------------------------------------------------------

  var sources = document.getElementById("sources");
  if (sources) {
    var sourceList = listing(sources, "data sources", function (source) {
      var url = sources.dataset.api + "/" + encodeURIComponent(source.id);
      var remove = el("button", {type: "button", "class": "danger",
                                 "aria-label": "Delete data source " + source.name,
                                 text: "Delete"});
      remove.addEventListener("click", function () {
        sourceList.remove(url, "Delete the data source \u201c" + source.name + "\u201d (" +
                          source.rows + " rows)? Plots bound to it lose their data.", remove);
      });
      var columns = cell("Columns", "\u2026", "num"), updated = cell("Updated", "\u2026");
      // the listing has no columns or times: each source's description does
      call("GET", url).then(function (answer) {
        if (!answer.ok) { columns.textContent = updated.textContent = "\u2013"; return; }
        var names = answer.body.columns.map(function (c) { return c.name + " (" + c.dtype + ")"; });
        columns.textContent = String(names.length);
        columns.title = names.join(", ");
        updated.replaceChildren(when(answer.body.updated));
      });
      return el("tr", {"data-source": source.id}, [
        cell("Name", el("span", {}, [el("span", {"class": "name", text: source.name}),
                                     el("code", {"class": "id", text: source.id})])),
        cell("Rows", source.rows.toLocaleString("en"), "num"), columns,
        cell("Version", String(source.version), "num"), updated,
        cell("", remove, "actions")]);
    });
    sourceList.load();
  }
})();
