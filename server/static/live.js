/* checkgate: live fever / forged-code alerts on the overview page (server-sent events). */
(function () {
  "use strict";
  var list = document.getElementById("alerts");
  if (!list || !window.EventSource) return;
  var empty = document.getElementById("no-alerts");
  var labels = JSON.parse(list.getAttribute("data-labels") || "{}");
  // carry on from the newest event the page was rendered with; after a dropped
  // connection the browser sends Last-Event-ID and the server fills the gap
  var after = list.getAttribute("data-after-id");
  var source = new EventSource("/api/v1/alerts/stream" + (after ? "?after_id=" + encodeURIComponent(after) : ""));
  var state = document.getElementById("live-state");

  source.addEventListener("open", function () { if (state) state.className = "badge online"; });
  source.addEventListener("error", function () { if (state) state.className = "badge offline"; });
  source.addEventListener("alert", function (msg) {
    var e = JSON.parse(msg.data);
    if (list.querySelector('[data-event-id="' + CSS.escape(String(e.event_id)) + '"]')) return;  // already shown
    if (empty) empty.remove();
    var li = document.createElement("li");
    li.className = "alert-item";
    li.setAttribute("data-event-id", e.event_id);
    var when;
    try {  // the server's time zone, like every time in the tables
      when = new Date(e.ts).toLocaleTimeString(list.getAttribute("data-lang") || undefined,
        {timeZone: list.getAttribute("data-tz") || undefined, hour12: false});
    } catch (err) {
      when = new Date(e.ts).toLocaleTimeString();
    }
    var reasons = (e.reasons || []).map(function (r) { return labels[r] || r; }).join(", ");
    var text = when + " · " + e.gate_id + " · " + reasons;
    if (e.temperature_c !== undefined && e.temperature_c !== null) text += " · " + e.temperature_c.toFixed(1) + " °C";
    if (e.subject) text += " · " + e.subject;
    li.textContent = text;
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 50) list.removeChild(list.lastChild);
  });
})();
