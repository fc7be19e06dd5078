// Plotline pages: the login form and the log-out button. No inline scripts (CSP-friendly).
(function () {
  "use strict";
  var form = document.getElementById("login");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var error = form.querySelector(".error");
      error.hidden = true;
      fetch(form.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: JSON.stringify({username: form.username.value, password: form.password.value})
      }).then(function (response) {
        if (response.ok) {
          window.location.assign(form.dataset.next);
          return null;
        }
        return response.json().catch(function () { return {}; }).then(function (body) {
          error.textContent = body.detail || ("login failed (HTTP " + response.status + ")");
          error.hidden = false;
        });
      }).catch(function (err) {
        error.textContent = "login failed: " + err;
        error.hidden = false;
      });
    });
  }
  // the CSRF cookie, echoed in its header: without it a logout only forgets the cookies
  function csrfToken() {
    var found = document.cookie.match(/(?:^|;\s*)plotline_csrf=([^;]+)/);
    return found ? decodeURIComponent(found[1]) : "";
  }
  document.querySelectorAll("[data-logout]").forEach(function (button) {
    button.addEventListener("click", function () {
      fetch(button.dataset.logout, {method: "POST", credentials: "same-origin",
                                    headers: {"X-CSRF-Token": csrfToken()}})
        .finally(function () { window.location.reload(); });
    });
  });
})();
