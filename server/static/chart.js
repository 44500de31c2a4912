/* checkgate: a tiny stacked bar chart drawn as SVG (vendored, no external library). */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLOURS = { pass: "#2e7d32", deny: "#c62828", retry: "#f9a825", manual: "#6d4c41", none: "#90a4ae" };

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  /* data: {labels: ["08:00", ...], series: {pass: [..], deny: [..]}} */
  window.cgStackedBars = function (svg, data) {
    var width = svg.clientWidth || 800, height = svg.clientHeight || 220;
    var pad = { left: 40, right: 10, top: 10, bottom: 24 };
    var names = Object.keys(data.series);
    var n = data.labels.length;
    var totals = data.labels.map(function (_, i) {
      return names.reduce(function (s, k) { return s + (data.series[k][i] || 0); }, 0);
    });
    var max = Math.max(1, Math.max.apply(null, totals.concat([0])));
    var plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
    var barW = n ? plotW / n : plotW;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    var shown = {};
    [0, 0.5, 1].forEach(function (f) {
      var label = Math.round(max * f);
      if (shown[label]) return;  // small maxima: no repeated tick labels
      shown[label] = true;
      var y = pad.top + plotH * (1 - label / max);
      el("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, stroke: "#e3e6ea" }, svg);
      el("text", { x: pad.left - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#555" }, svg)
        .textContent = label;
    });
    data.labels.forEach(function (label, i) {
      var y = pad.top + plotH;
      names.forEach(function (k) {
        var v = data.series[k][i] || 0;
        if (!v) return;
        var h = plotH * v / max;
        y -= h;
        var r = el("rect", { x: pad.left + i * barW + 1, y: y, width: Math.max(1, barW - 2), height: h,
                             fill: COLOURS[k] || "#607d8b" }, svg);
        el("title", {}, r).textContent = label + " " + k + ": " + v;
      });
      if (i % Math.max(1, Math.ceil(34 / barW)) === 0) {
        el("text", { x: pad.left + i * barW + barW / 2, y: height - 8, "text-anchor": "middle", "font-size": 10,
                     fill: "#555" }, svg).textContent = label;
      }
    });
  };
})();
