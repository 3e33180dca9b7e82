// Progressive enhancement only: every page works without this file.
// - copy buttons (button.copy[data-copy=<id of the element to copy>])
// - live username availability on the request page, through Synapse's
//   /_matrix/client/v3/register/available (same origin), with a debounce.
// Texts come from data-* attributes the templates fill in the page's language.
"use strict";
(function () {
  function setStatus(element, text, kind) {
    element.textContent = text || "";
    element.classList.toggle("good", kind === "good");
    element.classList.toggle("bad", kind === "bad");
  }

  // --- copy buttons -------------------------------------------------------
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) { return; }
    var status = button.parentNode.querySelector(".copy-status");
    var label = button.textContent;
    button.hidden = false;

    function selectTarget() {
      var range = document.createRange();
      range.selectNodeContents(target);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }

    function done() {
      button.textContent = button.getAttribute("data-copied") || label;
      if (status) { setStatus(status, button.getAttribute("data-copied"), "good"); }
      window.setTimeout(function () {
        button.textContent = label;
        if (status) { setStatus(status, ""); }
      }, 4000);
    }

    function failed() {
      selectTarget();
      if (status) { setStatus(status, button.getAttribute("data-failed"), "bad"); }
    }

    button.addEventListener("click", function () {
      var text = target.textContent.trim();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, failed);
        return;
      }
      // Plain-HTTP pages (a test server) have no Clipboard API.
      selectTarget();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      if (ok) { done(); } else { failed(); }
    });
  });

  // --- a field's error goes once the field is changed ---------------------
  document.querySelectorAll("[aria-invalid=true]").forEach(function (field) {
    var error = document.getElementById(field.id + "-error");
    if (!error) { return; }
    field.addEventListener(field.type === "checkbox" ? "change" : "input", function () {
      field.removeAttribute("aria-invalid");
      error.hidden = true;
    }, { once: true });
  });

  // --- username availability --------------------------------------------
  var input = document.querySelector("input#username[data-available-url]");
  var status = document.getElementById("username-status");
  if (!input || !status || !window.fetch) { return; }
  var server = input.getAttribute("data-server") || "";
  var url = input.getAttribute("data-available-url");
  var VALID = /^[a-z0-9._=\-\/+]+$/;
  var DEBOUNCE_MS = 450;
  var timer = null;
  var asked = 0;
  var lastChecked = null;

  function message(name, localpart) {
    return (status.getAttribute("data-" + name) || "")
      .split("{localpart}").join(localpart)
      .split("{server}").join(server);
  }

  // What people type -> a localpart, as the server cleans it.
  function clean(value) {
    var name = value.trim();
    if (name.charAt(0) === "@") {
      name = name.slice(1);
      var suffix = ":" + server;
      if (server && name.slice(-suffix.length) === suffix) {
        name = name.slice(0, -suffix.length);
      }
    }
    return name.toLowerCase();
  }

  function check() {
    var localpart = clean(input.value);
    if (localpart === lastChecked) { return; }
    lastChecked = localpart;
    var mine = ++asked;
    if (!localpart) { setStatus(status, ""); return; }
    if (!VALID.test(localpart) || localpart.length > 255) {
      setStatus(status, message("invalid", localpart), "bad");
      return;
    }
    setStatus(status, message("checking", localpart));
    fetch(url + "?username=" + encodeURIComponent(localpart), {
      credentials: "omit", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { status: response.status, body: body };
      });
    }).then(function (answer) {
      if (mine !== asked) { return; }  // a newer check is under way
      var code = answer.body && answer.body.errcode;
      if (answer.status === 200 && answer.body.available) {
        setStatus(status, message("available", localpart), "good");
      } else if (code === "M_USER_IN_USE" || code === "M_EXCLUSIVE") {
        setStatus(status, message("taken", localpart), "bad");
      } else if (code === "M_INVALID_USERNAME") {
        setStatus(status, message("invalid", localpart), "bad");
      } else {
        setStatus(status, message("failed", localpart));
      }
    }, function () {
      if (mine === asked) { setStatus(status, message("failed", localpart)); }
    });
  }

  input.addEventListener("input", function () {
    if (timer) { window.clearTimeout(timer); }
    timer = window.setTimeout(check, DEBOUNCE_MS);
  });
  input.addEventListener("blur", function () {
    if (timer) { window.clearTimeout(timer); }
    if (input.value) { check(); }
  });
}());
