// The Accounts section of the moderation page: find the accounts made through the
// gate that a filter matches, then a dry run of an action on them, then confirm it
// (the confirm code of the dry run names exactly the accounts shown). Values from
// the server go into the page as text, never as HTML.
"use strict";
(function () {
  var FILTERS = ["ip", "cidr", "domain", "token", "since", "until"];
  var status = document.getElementById("admin-status");
  var actions = document.getElementById("accounts-actions");
  var preview = document.getElementById("accounts-preview");
  var confirmButton = document.getElementById("accounts-confirm");
  var found = null;    // the filter of the accounts shown
  var pending = null;  // {action, filter, confirm} of the last dry run

  function say(text) { status.textContent = text; }

  var api = window.EmailGateAdmin.api;

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
  }

  function state(a) {
    var flags = ["admin", "deactivated", "locked", "suspended"].filter(function (f) { return a[f]; });
    if (a.probation_until_ts !== null) { flags.push("on probation"); }
    return flags.join(", ");
  }

  function forget() {
    pending = null;
    confirmButton.hidden = true;
    preview.textContent = "";
  }

  function readFilter() {
    var filter = {};
    FILTERS.forEach(function (key) {
      var value = document.getElementById("accounts-" + key).value.trim();
      if (value) { filter[key] = value; }
    });
    return filter;
  }

  function show(filter) {
    var query = Object.keys(filter).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(filter[k]);
    }).join("&");
    return api("GET", "accounts?limit=1000" + (query ? "&" + query : "")).then(function (data) {
      var body = document.querySelector("#accounts tbody");
      body.textContent = "";
      data.accounts.forEach(function (a) {
        var tr = document.createElement("tr");
        cell(tr, a.user_id);
        cell(tr, a.registered);
        cell(tr, a.email_hashed ? "(hashed)" : a.email);
        cell(tr, a.request_ip || a.registration_ip);
        cell(tr, a.token);
        cell(tr, state(a));
        body.appendChild(tr);
      });
      document.getElementById("accounts-empty").hidden = data.accounts.length > 0;
      found = filter;
      actions.hidden = data.accounts.length === 0 || Object.keys(filter).length === 0;
    });
  }

  document.getElementById("accounts-form").addEventListener("submit", function (event) {
    event.preventDefault();
    forget();
    show(readFilter()).catch(function (e) { say("Could not list accounts: " + e.message); });
  });
  document.getElementById("accounts-action").addEventListener("change", forget);

  document.getElementById("accounts-dry-run").addEventListener("click", function () {
    forget();
    var action = document.getElementById("accounts-action").value;
    var filter = found || {};
    api("POST", "accounts/action", { filter: filter, action: action, dry_run: true }).then(function (r) {
      var text = "Dry run: " + action + " would change " + r.affected.length + " account(s)";
      if (r.affected.length) { text += ": " + r.affected.join(", "); }
      if (r.skipped.length) {
        text += ". Left alone: " + r.skipped.map(function (s) { return s.user_id + " (" + s.why + ")"; }).join(", ");
      }
      preview.textContent = text + ".";
      if (r.affected.length) {
        pending = { action: action, filter: filter, confirm: r.confirm };
        confirmButton.textContent = "Confirm: " + action + " " + r.affected.length + " account(s)";
        confirmButton.hidden = false;
      }
    }).catch(function (e) { say("No dry run: " + e.message); });
  });

  confirmButton.addEventListener("click", function () {
    if (!pending) { return; }
    var done = pending;
    forget();
    api("POST", "accounts/action", {
      filter: done.filter, action: done.action, dry_run: false, confirm: done.confirm
    }).then(function (r) {
      var text = done.action + ": changed " + r.affected.length + " account(s)";
      if (r.failed.length) { text += ", " + r.failed.length + " failed"; }
      say(text + ".");
      return show(done.filter);
    }).catch(function (e) { say("Not done: " + e.message); });
  });
})();
