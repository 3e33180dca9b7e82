// The moderation page: signs in through Synapse's client API and calls the
// module's admin API. The access token lives in sessionStorage only. Every
// value from the server is put into the page as text, never as HTML.
"use strict";
(function () {
  var KEY = window.EmailGateAdmin.tokenKey;
  var status = document.getElementById("admin-status");
  var loginSection = document.getElementById("login-section");
  var workSection = document.getElementById("work-section");

  function say(text) { status.textContent = text; }
  function token() { return sessionStorage.getItem(KEY); }

  var api = window.EmailGateAdmin.api;

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function button(label, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function fill(tableId, rows, render) {
    var body = document.querySelector("#" + tableId + " tbody");
    body.textContent = "";
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      render(tr, item);
      body.appendChild(tr);
    });
  }

  function decide(id, verb) {
    var message;
    if (verb === "deny") {
      message = window.prompt("Optional message to the person:", "") || undefined;
    }
    api("POST", "requests/" + encodeURIComponent(id) + "/" + verb, message ? { message: message } : {})
      .then(function (r) { say("Request for @" + r.localpart + ": " + r.status + "."); refresh(); })
      .catch(function (e) { say("Not done: " + e.message); });
  }

  function refresh() {
    api("GET", "requests?status=pending&limit=100").then(function (page) {
      document.getElementById("pending-empty").hidden = page.requests.length > 0;
      fill("pending", page.requests, function (tr, r) {
        cell(tr, "@" + r.localpart);
        cell(tr, r.email);
        cell(tr, r.statement);
        var td = cell(tr, "");
        td.appendChild(button("Approve @" + r.localpart, function () { decide(r.id, "approve"); }));
        td.appendChild(document.createTextNode(" "));
        td.appendChild(button("Deny @" + r.localpart, function () { decide(r.id, "deny"); }));
      });
    }).catch(function (e) { say("Could not load requests: " + e.message); });
    api("GET", "tokens?valid=true").then(function (data) {
      fill("tokens", data.tokens, function (tr, t) {
        cell(tr, t.token);
        cell(tr, t.uses_left === null ? "unlimited" : t.uses_left);
        cell(tr, t.expires);
      });
    }).catch(function (e) { say("Could not load tokens: " + e.message); });
    api("GET", "requests?limit=20").then(function (page) {
      fill("recent", page.requests, function (tr, r) {
        cell(tr, new Date(r.created_ts).toISOString().replace("T", " ").slice(0, 16));
        cell(tr, "@" + r.localpart);
        cell(tr, r.status);
        cell(tr, r.ip);
      });
    }).catch(function () {});
  }

  function showWork(userId) {
    loginSection.hidden = true;
    workSection.hidden = false;
    document.getElementById("whoami").textContent = userId;
    refresh();
  }

  function start() {
    if (!token()) { loginSection.hidden = false; return; }
    api("GET", "tokens?valid=true").then(function () {
      showWork(sessionStorage.getItem(KEY + "_user") || "");
    }).catch(function (e) {
      sessionStorage.removeItem(KEY);
      loginSection.hidden = false;
      say(e.message);
    });
  }

  document.getElementById("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var body = {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: document.getElementById("login-user").value },
      password: document.getElementById("login-password").value,
      initial_device_display_name: "Registration gate moderation page"
    };
    fetch("/_matrix/client/v3/login", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.error || "Sign-in failed"); }
        return data;
      });
    }).then(function (data) {
      sessionStorage.setItem(KEY, data.access_token);
      sessionStorage.setItem(KEY + "_user", data.user_id);
      return api("GET", "tokens?valid=true").then(function () { say(""); showWork(data.user_id); });
    }).catch(function (e) {
      sessionStorage.removeItem(KEY);
      say("Not signed in: " + e.message);
    });
  });

  document.getElementById("logout").addEventListener("click", function () {
    var current = token();
    sessionStorage.removeItem(KEY);
    fetch("/_matrix/client/v3/logout", { method: "POST", headers: { "Authorization": "Bearer " + current } });
    workSection.hidden = true;
    loginSection.hidden = false;
    say("Signed out.");
  });

  document.getElementById("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var uses = parseInt(document.getElementById("token-uses").value, 10) || 1;
    var expiry = document.getElementById("token-expiry").value || "7d";
    var body = { uses_allowed: uses, expiry: expiry };
    if (document.getElementById("token-words").checked) { body.style = "words"; }
    api("POST", "tokens", body)
      .then(function (t) {
        say("Created invite token " + t.token + " (expires " + t.expires + "). Invite link: " + t.link);
        refresh();
      })
      .catch(function (e) { say("Not created: " + e.message); });
  });

  start();
})();
