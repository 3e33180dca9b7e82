// The surge section of the moderation page: shows the switch (GET admin/surge)
// and switches it by hand (POST admin/surge). Uses the access token the main
// script keeps in sessionStorage; values are put into the page as text only.
"use strict";
(function () {
  var work = document.getElementById("work-section");
  var state = document.getElementById("surge-state");
  var form = document.getElementById("surge-form");
  var status = document.getElementById("admin-status");

  function call(method, body) { return window.EmailGateAdmin.api(method, "surge", body); }

  function utc(ms) { return ms ? new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC" : ""; }

  function show(s) {
    if (!s.on) {
      state.textContent = "Off." + (s.cause ? " Last switch: " + s.cause + "." : "") +
        (s.automatic ? " Switches on by itself when requests surge." : " Automatic switching is off.");
      return;
    }
    var what = s.mode === "challenge" ? "harder challenge (" + s.level + " bits)" : "approval required";
    var why = s.cause + (s.scope ? " " + s.scope : "");
    state.textContent = "ON: " + what + ", cause " + why + ", since " + utc(s.since_ts) +
      ", until at least " + utc(s.until_ts) + ".";
  }

  function load() {
    if (work.hidden || !sessionStorage.getItem(window.EmailGateAdmin.tokenKey)) { return; }
    call("GET").then(show).catch(function (e) { state.textContent = "Could not load: " + e.message; });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = { on: true, mode: form.elements.mode.value, duration: form.elements.duration.value };
    call("POST", body).then(function (s) { show(s); status.textContent = "Surge switched on."; })
      .catch(function (e) { status.textContent = "Not done: " + e.message; });
  });
  document.getElementById("surge-off").addEventListener("click", function () {
    call("POST", { on: false }).then(function (s) { show(s); status.textContent = "Surge switched off."; })
      .catch(function (e) { status.textContent = "Not done: " + e.message; });
  });
  new MutationObserver(load).observe(work, { attributes: true, attributeFilter: ["hidden"] });
  load();
  setInterval(load, 10000);
})();
