// What every script of the moderation page shares: calls to the module's admin
// API with the access token the page keeps in sessionStorage (set at sign-in by
// email_gate_admin.js). Loaded before the page's other scripts.
"use strict";
window.EmailGateAdmin = (function () {
  var BASE = "/_synapse/client/email_gate/admin/";
  var KEY = "email_gate_admin_token";

  // `path` is below admin/ (with its query); the answer's JSON, or an Error
  // carrying the server's error text.
  function api(method, path, body) {
    var options = { method: method, headers: { "Authorization": "Bearer " + sessionStorage.getItem(KEY) } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(BASE + path, options).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.error || ("HTTP " + response.status)); }
        return data;
      });
    });
  }

  return { api: api, tokenKey: KEY };
})();
