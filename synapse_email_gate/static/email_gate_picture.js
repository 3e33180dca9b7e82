// The picture of the gate on the moderation page: requests, issued tokens,
// accounts and refusals over the last day and week, from GET admin/stats.
// Drawn as inline SVG by this script (no third-party code; the page's CSP
// holds), with the same numbers in a table for screen readers and copying.
// Every value from the server is set as text or as an attribute, never as HTML.
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var SERIES = [
    { key: "requests", label: "Requests", colour: "#3b6ea5" },
    { key: "tokens", label: "Issued tokens", colour: "#3d8b2f" },
    { key: "accounts", label: "Accounts made", colour: "#7d4fb0" },
    { key: "refused", label: "Refusals", colour: "#b8322a" }
  ];
  var RANGES = ["day", "week"];
  var section = document.getElementById("picture-section");
  var work = document.getElementById("work-section");
  var status = document.getElementById("picture-status");
  if (!section || !work) { return; }

  function get(range) { return window.EmailGateAdmin.api("GET", "stats?range=" + range); }

  function el(name, attributes, parent) {
    var node = document.createElementNS(SVG, name);
    // Labels follow the page's text colour, light or dark.
    if (name === "text") { node.setAttribute("fill", "currentColor"); }
    Object.keys(attributes).forEach(function (k) { node.setAttribute(k, String(attributes[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function when(ts, range) {
    var text = new Date(ts).toISOString().replace("T", " ");
    return range === "day" ? text.slice(11, 16) : text.slice(5, 16);
  }

  function draw(stats) {
    var figure = document.getElementById("picture-" + stats.range);
    var holder = figure.querySelector(".chart");
    var width = 600, height = 180, top = 10, bottom = 24, left = 34, legend = 18;
    var plot = height - top - bottom - legend;
    var buckets = stats.buckets;
    var slot = (width - left) / buckets.length;
    var bar = Math.max(1, (slot - 2) / SERIES.length);
    var max = 1;
    buckets.forEach(function (b) {
      SERIES.forEach(function (s) { max = Math.max(max, b[s.key]); });
    });
    var totals = stats.totals;
    var summary = SERIES.map(function (s) { return totals[s.key] + " " + s.label.toLowerCase(); });
    var svg = el("svg", {
      viewBox: "0 0 " + width + " " + height, width: "100%", role: "img",
      "aria-label": figure.querySelector("figcaption").textContent + ": " + summary.join(", ")
    });
    el("line", { x1: left, y1: top + plot, x2: width, y2: top + plot, stroke: "currentColor", "stroke-opacity": 0.5 }, svg);
    var scale = el("text", { x: left - 4, y: top + 8, "text-anchor": "end", "font-size": 11 }, svg);
    scale.textContent = String(max);
    el("text", { x: left - 4, y: top + plot, "text-anchor": "end", "font-size": 11 }, svg)
      .textContent = "0";
    buckets.forEach(function (b, i) {
      var x0 = left + i * slot + 1;
      SERIES.forEach(function (s, j) {
        var h = b[s.key] / max * plot;
        var rect = el("rect", {
          x: (x0 + j * bar).toFixed(2), y: (top + plot - h).toFixed(2),
          width: bar.toFixed(2), height: h.toFixed(2), fill: s.colour,
          "data-series": s.key, "data-count": b[s.key]
        }, svg);
        el("title", {}, rect).textContent = when(b.start_ts, stats.range) + " UTC: " + b[s.key] + " " + s.label.toLowerCase();
      });
      var every = stats.range === "day" ? 6 : 4;
      if (i % every === 0) {
        var label = el("text", { x: x0, y: top + plot + 14, "font-size": 11 }, svg);
        label.textContent = when(b.start_ts, stats.range);
      }
    });
    SERIES.forEach(function (s, j) {
      var x = left + j * 140;
      el("rect", { x: x, y: height - 12, width: 10, height: 10, fill: s.colour }, svg);
      el("text", { x: x + 14, y: height - 3, "font-size": 11 }, svg).textContent = s.label;
    });
    holder.textContent = "";
    holder.appendChild(svg);
  }

  function row(body, series, label, day, week) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-series", series);
    var th = document.createElement("th");
    th.scope = "row";
    th.textContent = label;
    tr.appendChild(th);
    [day, week].forEach(function (n) {
      var td = document.createElement("td");
      td.textContent = String(n);
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }

  function table(day, week) {
    var body = document.querySelector("#picture-totals tbody");
    body.textContent = "";
    SERIES.forEach(function (s) { row(body, s.key, s.label, day.totals[s.key], week.totals[s.key]); });
    var reasons = Object.keys(week.totals.refusals);
    Object.keys(day.totals.refusals).forEach(function (r) {
      if (reasons.indexOf(r) < 0) { reasons.push(r); }
    });
    reasons.sort().forEach(function (r) {
      row(body, "refused:" + r, "Refused: " + r,
        day.totals.refusals[r] || 0, week.totals.refusals[r] || 0);
    });
  }

  function load() {
    status.textContent = "Loading the picture...";
    Promise.all(RANGES.map(get)).then(function (all) {
      all.forEach(draw);
      table(all[0], all[1]);
      status.textContent = "Counted up to " + new Date(all[0].now_ts).toISOString().slice(0, 16).replace("T", " ") + " UTC.";
    }).catch(function (e) { status.textContent = "Could not load the picture: " + e.message; });
  }

  function follow() {
    var shown = !work.hidden;
    if (shown && section.hidden) { section.hidden = false; load(); }
    if (!shown) { section.hidden = true; }
  }

  document.getElementById("picture-refresh").addEventListener("click", load);
  new MutationObserver(follow).observe(work, { attributes: true, attributeFilter: ["hidden"] });
  follow();
})();
