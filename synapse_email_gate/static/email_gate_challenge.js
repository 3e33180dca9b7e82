// The anti-spam challenge of the request page (docs/challenge.md).
//
// The form carries data-challenge (the URL that hands out challenges) and
// data-worker (the Web Worker script). As soon as someone starts filling in the
// form, the page fetches a challenge and solves it in the background, in one
// worker per CPU core (up to 4), with WebCrypto's SHA-256. On submit it waits
// for the solution if it is not there yet (showing progress), puts it in the
// hidden `challenge` and `nonce` fields and posts the form.
"use strict";
(function () {
  var MAX_WORKERS = 4;
  // Fetch a new challenge when the old one has less than this left.
  var MARGIN_MS = 30000;

  // Solves one challenge in Web Workers. Resolves to {nonce, hashes, ms,
  // engine, workers}; onProgress(hashes) is called as the workers report.
  // options: {workers, engine: "auto" | "webcrypto" | "js", batch}.
  function solve(workerUrl, challenge, difficulty, onProgress, options) {
    options = options || {};
    var count = options.workers ||
      Math.max(1, Math.min(navigator.hardwareConcurrency || 2, MAX_WORKERS));
    var started = performance.now();
    var workers = [];
    var counts = [];
    function stop() {
      workers.forEach(function (w) { w.terminate(); });
      workers = [];
    }
    function total() {
      return counts.reduce(function (a, b) { return a + b; }, 0);
    }
    var promise = new Promise(function (resolve, reject) {
      function spawn(index) {
        var worker = new Worker(workerUrl);
        counts[index] = 0;
        worker.onmessage = function (event) {
          var msg = event.data;
          if (msg.type === "found") {
            counts[index] = msg.hashes;
            stop();
            resolve({
              nonce: msg.nonce, hashes: total(), ms: performance.now() - started,
              engine: msg.engine, workers: count
            });
          } else if (msg.type === "progress") {
            counts[index] = msg.hashes;
            if (onProgress) { onProgress(total()); }
          } else if (msg.type === "error") {
            stop();
            reject(new Error(msg.message));
          }
        };
        worker.onerror = function (event) {
          stop();
          reject(new Error(event.message || "worker failed"));
        };
        workers.push(worker);
        worker.postMessage({
          challenge: challenge, difficulty: difficulty, start: index, step: count,
          engine: options.engine, batch: options.batch
        });
      }
      try {
        for (var i = 0; i < count; i++) { spawn(i); }
      } catch (error) {  // e.g. workers blocked
        stop();
        reject(error);
      }
    });
    promise.cancel = stop;
    return promise;
  }

  function fetchChallenge(url) {
    var asked = Date.now();
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      if (!response.ok) { throw new Error("challenge: HTTP " + response.status); }
      return response.json();
    }).then(function (body) {
      body.usableUntil = asked + body.expires_in_ms - Math.min(MARGIN_MS, body.expires_in_ms / 4);
      return body;
    });
  }

  window.EmailGateChallenge = { solve: solve, fetchChallenge: fetchChallenge };

  var form = document.querySelector("form[data-challenge]");
  if (!form) { return; }
  var challengeUrl = form.getAttribute("data-challenge");
  var workerUrl = form.getAttribute("data-worker");
  var box = document.getElementById("challenge");
  var bar = document.getElementById("challenge-progress");
  var status = document.getElementById("challenge-status");
  var button = form.querySelector("button[type=submit]");
  var challengeField = form.elements.namedItem("challenge");
  var nonceField = form.elements.namedItem("nonce");

  var job = null;        // the current attempt: {promise, challenge, result, error}
  var submitting = false;

  box.hidden = false;
  // The page's language: the template puts each text on the status element.
  var english = {
    intro: "The form is protected by a short anti-spam check that your browser solves by itself.",
    solving: "Solving the anti-spam check… The form is sent when it is done.",
    done: "Anti-spam check done.",
    sending: "Anti-spam check done. Sending…",
    failed: "The anti-spam check could not be loaded. Please check your connection and press the button again."
  };
  function text(name) {
    return status.getAttribute("data-" + name) || english[name];
  }

  say(text("intro"));

  function say(message, isError) {
    status.textContent = message;
    status.classList.toggle("error", !!isError);
  }

  function start() {
    if (job && !job.error && !(job.result && Date.now() > job.challenge.usableUntil)) {
      return job;
    }
    var current = { promise: null, challenge: null, result: null, error: null };
    job = current;
    bar.removeAttribute("value");  // indeterminate until the first progress report
    current.promise = fetchChallenge(challengeUrl).then(function (challenge) {
      current.challenge = challenge;
      var expected = Math.pow(2, challenge.difficulty);
      return solve(workerUrl, challenge.challenge, challenge.difficulty, function (hashes) {
        // The chance that a solution would have been found by now: it rises
        // steadily towards 100 %.
        bar.value = Math.round(100 * (1 - Math.pow(2, -hashes / expected)));
      });
    }).then(function (result) {
      current.result = result;
      bar.value = 100;
      if (!submitting) { say(text("done")); }
      return current;
    }, function (error) {
      current.error = error;
      throw error;
    });
    current.promise.catch(function () {});
    return current;
  }

  function send(done) {
    challengeField.value = done.challenge.challenge;
    nonceField.value = done.result.nonce;
    say(text("sending"));
    form.submit();
  }

  // Start early: most of the work is done while the visitor types.
  form.addEventListener("focusin", start, { once: true });
  form.addEventListener("input", start, { once: true });

  // Back to the page from the browser's history cache: the challenge sent is used up.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    job = null;
    submitting = false;
    challengeField.value = "";
    nonceField.value = "";
    button.removeAttribute("aria-disabled");
    form.removeAttribute("aria-busy");
    bar.value = 0;
    say(text("intro"));
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (submitting) { return; }
    submitting = true;
    button.setAttribute("aria-disabled", "true");
    form.setAttribute("aria-busy", "true");
    var current = start();
    if (!current.result) { say(text("solving")); }
    current.promise.then(send, function () {
      submitting = false;
      button.removeAttribute("aria-disabled");
      form.removeAttribute("aria-busy");
      say(text("failed"), true);
    });
  });
}());
