// checkgate volunteer screen: live results, device health and volunteer actions.
// Plain JavaScript with no dependencies, so the page works on a gate without internet.
(function () {
  "use strict";

  const cfg = JSON.parse(document.getElementById("screen-config").textContent);
  const $ = (id) => document.getElementById(id);
  const ALARM_MS = 8000;
  const OUTCOMES = new Set(["pass", "deny", "retry", "manual"]);
  const RESULT_HOLD_MS = 12000; // then the card greys out, so nobody reads it as the next person's
  const NEW_VISIT_PROMPTS = new Set(["scan_code", "come_closer"]);
  // prompts that tell the visitor what to do next; the others only repeat the result on the card
  const GUIDING_PROMPTS = new Set(["scan_code", "come_closer", "remeasure"]);

  let lang = cfg.lang;
  let strings = cfg.strings;
  let operator = cfg.operator;
  let lastEvent = null;
  let lastEventAt = 0;
  let stale = false;
  let lastPrompt = null;
  let health = {};
  let counters = null;
  let timers = [];
  let source = null;
  let connected = false;
  let remeasureUntil = 0;
  let alarmTimer = null;
  let previewTimer = null;
  let overrideOutcome = "pass";

  // Test and kiosk hooks: what the page has sounded and shown, newest last.
  window.checkgateScreen = { alarms: [], sounded: [], events: 0, connected: () => connected };

  // -- strings and formatting ------------------------------------------------------------

  function t(key, values) {
    let text = strings[key];
    if (text === undefined) return key;
    if (values) {
      for (const [k, v] of Object.entries(values)) text = text.split("{" + k + "}").join(String(v));
    }
    return text;
  }

  function number(value, digits) {
    return new Intl.NumberFormat(lang, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);
  }

  function celsius(value) {
    return value === null || value === undefined ? "–" : number(value, 1) + " °C";
  }

  function clockTime(date) {
    return new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(date);
  }

  function fullDate(date) {
    return new Intl.DateTimeFormat(lang, { month: "short", day: "numeric", weekday: "short", hour: "2-digit", minute: "2-digit", hour12: false }).format(date);
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return t("age.seconds", { n: number(Math.round(seconds), 0) });
    if (seconds < 5400) return t("age.minutes", { n: number(Math.round(seconds / 60), 0) });
    if (seconds < 2 * 86400) return t("age.hours", { n: number(Math.round(seconds / 3600), 0) });
    return t("age.days", { n: number(Math.round(seconds / 86400), 0) });
  }

  function mmss(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return number(Math.floor(s / 60), 0) + ":" + String(s % 60).padStart(2, "0");
  }

  function applyStrings() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    document.title = t("page.title", { gate: cfg.gate_id });
    $("btn-lang").lang = lang === "zh-CN" ? "en" : "zh-CN";
    renderAll();
  }

  async function switchLanguage() {
    const next = lang === "zh-CN" ? "en" : "zh-CN";
    try {
      const res = await fetch("/api/locales/" + encodeURIComponent(next));
      if (!res.ok) return;
      strings = await res.json();
      lang = next;
      document.cookie = "checkgate_screen_lang=" + next + "; path=/; max-age=31536000; samesite=strict";
      applyStrings();
    } catch (err) {
      // offline for a moment: keep the current language
    }
  }

  // -- rendering --------------------------------------------------------------------------

  function renderAll() {
    renderCard();
    renderHealth();
    renderCounters();
    renderTimers();
    renderOperator();
    renderPrompt();
    tick();
  }

  function reasonText(code) {
    if (strings["reason." + code] !== undefined) return t("reason." + code);
    if (strings["override_reason." + code] !== undefined) return t("override_reason." + code);
    return t("reason.unknown", { code: code }); // a code newer than this page: still say something useful
  }

  function renderCard() {
    const card = $("card");
    const ev = lastEvent;
    const outcome = !ev ? "idle" : OUTCOMES.has(ev.outcome) ? ev.outcome : "manual";
    document.body.dataset.outcome = outcome;
    card.dataset.outcome = outcome;
    $("outcome-icon").firstElementChild.setAttribute("href", "#i-" + outcome);
    $("outcome-word").textContent = t("outcome." + outcome);
    if (!ev) {
      $("reason").textContent = t("card.waiting");
      $("temp-value").textContent = "–";
      $("raw").hidden = true;
      $("cred-kind").textContent = "";
      $("cred-status").dataset.status = "none";
      $("cred-status").textContent = "";
      $("meta").textContent = "";
      return;
    }
    const reasons = (ev.reasons || []).filter((r) => r !== "ok");
    let reason = reasons.length ? reasons.map(reasonText).join(" · ") : reasonText("ok");
    const override = ev.type === "override";
    if (override) reason = t("card.override_by", { operator: ev.operator || "?" }) + " — " + reason + (ev.note ? " (" + ev.note + ")" : "");
    $("reason").textContent = reason;
    $("details").hidden = override; // an override has no measurement or code of its own

    const temp = ev.temperature;
    $("temp-value").textContent = temp ? celsius(temp.value_c) : t("card.no_temperature");
    $("raw").textContent = temp
      ? t("card.raw", { raw: celsius(temp.raw_c), ambient: celsius(temp.ambient_c), sensor: temp.sensor || "?" })
      : "";
    $("temperature").title = t("card.tap_raw");

    const cred = ev.credential;
    const status = cred ? cred.status || "unknown" : "none";
    $("cred-status").dataset.status = status;
    $("cred-status").textContent = cred ? t("status." + (["green", "yellow", "red"].includes(status) ? status : "unknown")) : "";
    const kindKey = cred ? "credential." + cred.kind : "credential.none";
    $("cred-kind").textContent = strings[kindKey] !== undefined ? t(kindKey) : t("credential.other");
    $("previous").textContent = t("card.previous", { time: ev.ts ? clockTime(new Date(ev.ts)) : "" });
    $("meta").textContent = ev.ts ? t("card.at", { time: fullDate(new Date(ev.ts)) }) + (ev.seq ? " · #" + number(ev.seq, 0) : "") : "";
  }

  function renderPrompt() {
    const guiding = lastPrompt && GUIDING_PROMPTS.has(lastPrompt.prompt);
    $("prompt").textContent = guiding ? t("prompt." + lastPrompt.prompt) : "";
  }

  function setChip(id, state, text) {
    const chip = $(id);
    chip.dataset.state = state;
    chip.querySelector(".v").textContent = text;
  }

  function deviceChip(id, dev) {
    const state = (dev && dev.state) || "unknown";
    const level = state === "ok" ? "ok" : state === "starting" ? "warn" : "bad";
    setChip(id, level, t("state." + state) === "state." + state ? state : t("state." + state));
  }

  function renderHealth() {
    const h = health || {};
    deviceChip("h-thermometer", h.thermometer);
    deviceChip("h-camera", h.camera);
    const up = h.uplink || {};
    const pending = (h.queue && h.queue.pending) || up.pending || 0;
    let upText = up.connected ? t("uplink.connected") : t("uplink.offline");
    if (pending) upText += " · " + t("uplink.queued", { n: number(pending, 0) });
    setChip("h-uplink", up.connected ? (pending > 1000 ? "warn" : "ok") : "bad", upText);
    const lists = h.lists || {};
    const status = lists.status;
    const listAge = status && status.age_s !== null && status.age_s !== undefined ? status.age_s : null;
    const stale = (h.faults || []).includes("lists_stale");
    setChip("h-lists", !status ? "warn" : stale ? "bad" : "ok", status ? t("lists.age", { age: age(listAge) }) : t("lists.none"));
    // the last calibration: from the gate's health, or a calibration event seen by the screen
    const therm = h.thermometer || {};
    const cal = h.calibration || {};
    let calAge = therm.calibration_age_s !== undefined ? therm.calibration_age_s : null;
    if (calAge === null && cal.ts) calAge = Math.max(0, (Date.now() - Date.parse(cal.ts)) / 1000);
    setChip("h-calibration", calAge === null ? "warn" : "ok", calAge === null ? t("calibration.never") : t("lists.age", { age: age(calAge) }));

    const faults = h.faults || [];
    const list = $("banner-list");
    list.replaceChildren();
    for (const code of faults) {
      const li = document.createElement("li");
      li.dataset.fault = code;
      li.textContent = strings["fault." + code] !== undefined ? t("fault." + code) : t("fault.unknown", { code: code });
      list.appendChild(li);
    }
    $("banner").hidden = faults.length === 0;
    document.body.dataset.faults = faults.join(" ");
  }

  function renderCounters() {
    if (!counters) return;
    $("c-passed").textContent = number(counters.passed, 0);
    $("c-denied").textContent = number(counters.denied, 0);
    $("c-fevers").textContent = number(counters.fevers, 0);
    $("c-overrides").textContent = number(counters.overrides, 0);
    const list = $("c-reasons");
    list.replaceChildren();
    const top = Object.entries(counters.deny_reasons || {}).sort((a, b) => b[1] - a[1]).slice(0, 4);
    for (const [code, n] of top) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = reasonText(code);
      const count = document.createElement("b");
      count.textContent = number(n, 0);
      li.append(name, count);
      list.appendChild(li);
    }
  }

  function renderTimers() {
    const list = $("timers");
    list.replaceChildren();
    if (!timers.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = t("timers.none");
      list.appendChild(li);
      return;
    }
    for (const timer of timers) {
      const li = document.createElement("li");
      li.dataset.due = String(timer.due);
      li.dataset.id = String(timer.id);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = timer.label || "#" + timer.id;
      const left = document.createElement("span");
      left.className = "left";
      const done = document.createElement("button");
      done.type = "button";
      done.className = "act small";
      done.textContent = t("recheck.done");
      done.addEventListener("click", () => finishTimer(timer.id));
      li.append(label, left, done);
      list.appendChild(li);
    }
    tick();
  }

  function renderOperator() {
    $("who").textContent = operator ? t("operator.on_duty", { operator: operator }) : t("actions.sign_in");
    $("btn-signin").classList.toggle("signed-in", Boolean(operator));
    document.body.dataset.operator = operator || "";
  }

  // Once a second: clock, recheck timers, re-measure countdown.
  function tick() {
    const now = Date.now();
    $("clock").textContent = clockTime(new Date(now));
    for (const li of $("timers").querySelectorAll("li[data-due]")) {
      const left = Number(li.dataset.due) * 1000 - now;
      li.classList.toggle("due", left <= 0);
      if (left <= 0 && !announcedDue.has(li.dataset.id)) {
        announcedDue.add(li.dataset.id);
        alarm("recheck");
      }
      li.querySelector(".left").textContent = left <= 0 ? t("recheck.due") : t("recheck.left", { time: mmss(left / 1000) });
    }
    const nowStale = Boolean(lastEvent) && (stale || now - lastEventAt > RESULT_HOLD_MS);
    if ($("card").dataset.stale !== String(nowStale)) {
      $("card").dataset.stale = String(nowStale);
      $("previous").hidden = !nowStale;
    }
    const countdown = $("countdown");
    const secondsLeft = Math.ceil((remeasureUntil - now) / 1000);
    countdown.hidden = secondsLeft <= 0;
    if (secondsLeft > 0) countdown.textContent = t("countdown.remeasure", { seconds: number(secondsLeft, 0) });
  }

  // -- alarms -----------------------------------------------------------------------------

  const sounds = {
    fever: new Audio("/static/alarm-fever.wav"),
    code: new Audio("/static/alarm-code.wav"),
    fault: new Audio("/static/alarm-fault.wav"),
    recheck: new Audio("/static/chime-recheck.wav"),
  };
  const announcedDue = new Set(); // recheck timers already chimed for

  function alarm(kind) {
    window.checkgateScreen.alarms.push(kind);
    document.body.dataset.alarm = kind;
    const strip = $("alarm-strip");
    strip.textContent = t("alarm." + kind);
    strip.hidden = false;
    clearTimeout(alarmTimer);
    alarmTimer = setTimeout(() => {
      delete document.body.dataset.alarm;
      strip.hidden = true;
    }, ALARM_MS);
    const sound = sounds[kind];
    if (!sound) return;
    sound.currentTime = 0;
    const played = sound.play();
    if (played && played.then) {
      // browsers refuse sound before the first tap; offer a button instead of failing silently
      played.then(() => window.checkgateScreen.sounded.push(kind), () => { $("btn-sound").hidden = false; });
    }
  }

  function enableSound() {
    for (const s of Object.values(sounds)) {
      s.muted = true;
      const p = s.play();
      if (p && p.then) p.then(() => { s.pause(); s.muted = false; }).catch(() => { s.muted = false; });
    }
    $("btn-sound").hidden = true;
  }

  // -- live stream ------------------------------------------------------------------------

  function setConnected(value) {
    connected = value;
    document.body.dataset.connected = String(value);
    if (value) startPreview();
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/api/stream");
    source.onopen = () => setConnected(true);
    source.onerror = () => {
      setConnected(false);
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1500);
    };
    source.onmessage = (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch (err) {
        return;
      }
      handle(data);
    };
  }

  function eventTime(ev) {
    const at = ev && ev.ts ? Date.parse(ev.ts) : NaN;
    return Number.isNaN(at) ? Date.now() : at;
  }

  function isShown(ev) {
    return ev && (ev.type === "screening" || ev.type === "override" || ev.type === undefined);
  }

  function handle(msg) {
    if (msg.type === "snapshot") {
      if ("operator" in msg) { operator = msg.operator; renderOperator(); } // e.g. the shift ended meanwhile
      const shown = (msg.events || []).filter(isShown);
      if (shown.length) {
        lastEvent = shown[shown.length - 1];
        lastEventAt = eventTime(lastEvent);
      }
      health = msg.health || {};
      counters = msg.counters || counters;
      timers = msg.timers || [];
      lastPrompt = msg.prompt || null;
      renderAll();
    } else if (msg.type === "event") {
      const ev = msg.event || {};
      counters = msg.counters || counters;
      if (isShown(ev)) {
        lastEvent = ev;
        lastEventAt = Date.now();
        stale = false;
        lastPrompt = null;
        renderPrompt();
        window.checkgateScreen.events += 1;
        if (ev.outcome !== "retry") remeasureUntil = 0;
        renderCard();
        window.checkgateScreen.renderedAt = Date.now();
        if (msg.alarm) alarm(msg.alarm);
      }
      renderCounters();
    } else if (msg.type === "health") {
      health = msg.health || {};
      renderHealth();
      if (msg.alarm) alarm(msg.alarm);
    } else if (msg.type === "prompt") {
      lastPrompt = msg;
      if (msg.prompt === "remeasure") remeasureUntil = Date.now() + cfg.remeasure_s * 1000;
      if (NEW_VISIT_PROMPTS.has(msg.prompt) && Date.now() - lastEventAt > 1500) stale = true; // someone new
      renderPrompt();
      tick();
    } else if (msg.type === "timers") {
      timers = msg.timers || [];
      renderTimers();
    }
  }

  // -- camera preview ---------------------------------------------------------------------

  function startPreview() {
    if (!cfg.preview_fps || previewTimer) return;
    const img = $("preview");
    const next = () => {
      previewTimer = null;
      if (!connected || document.hidden) return; // resumes on reconnect / when visible
      previewTimer = setTimeout(() => { img.src = "/api/preview.jpg?t=" + Date.now(); }, 1000 / cfg.preview_fps);
    };
    img.onload = () => { img.classList.remove("broken"); next(); };
    img.onerror = () => { img.classList.add("broken"); next(); };
    next();
  }

  // -- volunteer actions --------------------------------------------------------------------

  async function post(url, body, method) {
    const res = await fetch(url, {
      method: method || "POST",
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = null;
    try { data = await res.json(); } catch (err) { data = null; }
    return { status: res.status, ok: res.ok, data: data };
  }

  // the server refuses notes with long numbers (ID cards, phones): say so rather than "failed"
  function noteProblem(res) {
    const problems = (res.data && res.data.problems) || [];
    return problems.some((p) => p.field === "note" || p.field === "label");
  }

  function choiceButtons(container, values, label, name) {
    container.replaceChildren();
    for (const value of values) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "choice";
      b.dataset.value = value;
      b.setAttribute("role", "radio");
      b.setAttribute("aria-checked", "false");
      b.textContent = label(value);
      b.addEventListener("click", () => {
        for (const other of container.children) other.setAttribute("aria-checked", String(other === b));
        container.dataset.selected = value;
      });
      container.appendChild(b);
    }
    delete container.dataset.selected;
    container.dataset.name = name;
  }

  let afterSignIn = null;

  async function openSignIn(then) {
    afterSignIn = then || null;
    try { // the centre may have pushed a new volunteer list since the page loaded
      const res = await fetch("/api/operators");
      if (res.ok) cfg.operators = (await res.json()).operators;
    } catch (err) { /* use the list the page came with */ }
    const ops = cfg.operators || [];
    choiceButtons($("signin-operators"), ops, (v) => v, "operator");
    if (ops.length === 1) $("signin-operators").firstElementChild.click();
    $("pin").value = "";
    $("signin-error").textContent = ops.length ? "" : t("signin.no_volunteers");
    $("dlg-signin").showModal();
  }

  async function submitSignIn(event) {
    event.preventDefault();
    const op = $("signin-operators").dataset.selected;
    const pin = $("pin").value;
    if (!op || !pin) {
      $("signin-error").textContent = t("signin.choose");
      return;
    }
    let res;
    try {
      res = await post("/api/session", { operator: op, pin: pin });
    } catch (err) {
      $("signin-error").textContent = t("signin.error");
      return;
    }
    $("pin").value = "";
    if (res.ok) {
      operator = res.data.operator;
      renderOperator();
      $("dlg-signin").close();
      if (afterSignIn) afterSignIn();
      afterSignIn = null;
      return;
    }
    const d = res.data || {};
    if (d.error === "locked") $("signin-error").textContent = t("signin.locked", { minutes: number(Math.ceil((d.retry_after_s || 60) / 60), 0) });
    else if (d.error === "wrong_pin") $("signin-error").textContent = t("signin.wrong_pin", { n: number(d.attempts_left, 0) });
    else if (d.error === "unknown_operator") $("signin-error").textContent = t("signin.unknown_operator");
    else $("signin-error").textContent = t("signin.error");
  }

  async function signOut() {
    try { await post("/api/session", undefined, "DELETE"); } catch (err) { /* sign out locally anyway */ }
    operator = null;
    renderOperator();
  }

  function openOverride(outcome) {
    if (!operator) return openSignIn(() => openOverride(outcome));
    overrideOutcome = outcome;
    $("override-title").textContent = t("override.title_" + outcome);
    $("dlg-override").dataset.outcome = outcome;
    choiceButtons($("override-reasons"), (cfg.override_reasons || {})[outcome] || [], (v) => t("override_reason." + v), "reason");
    $("override-note").value = "";
    $("override-error").textContent = "";
    $("override-reasons").onclick = () => { $("override-error").textContent = ""; };
    $("dlg-override").showModal();
  }

  async function submitOverride(event) {
    event.preventDefault();
    const reason = $("override-reasons").dataset.selected;
    if (!reason) {
      $("override-error").textContent = t("override.need_reason");
      return;
    }
    let res;
    try {
      res = await post("/api/override", { outcome: overrideOutcome, reason: reason, note: $("override-note").value });
    } catch (err) {
      $("override-error").textContent = t("override.failed");
      return;
    }
    if (res.status === 401) {
      operator = null;
      renderOperator();
      $("dlg-override").close();
      return openSignIn(() => openOverride(overrideOutcome));
    }
    if (!res.ok) {
      $("override-error").textContent = t(noteProblem(res) ? "override.no_numbers" : "override.failed");
      return;
    }
    $("dlg-override").close();
  }

  function openRecheck() {
    if (!operator) return openSignIn(openRecheck);
    $("recheck-label").value = "";
    $("recheck-minutes").value = String(cfg.recheck_minutes);
    $("recheck-error").textContent = "";
    $("dlg-recheck").showModal();
  }

  async function submitRecheck(event) {
    event.preventDefault();
    const minutes = Number($("recheck-minutes").value) || cfg.recheck_minutes;
    let res;
    try {
      res = await post("/api/recheck", { label: $("recheck-label").value, minutes: minutes });
    } catch (err) {
      $("recheck-error").textContent = t("override.failed");
      return;
    }
    if (res.status === 401) {
      operator = null;
      renderOperator();
      $("dlg-recheck").close();
      return openSignIn(openRecheck);
    }
    if (!res.ok) {
      $("recheck-error").textContent = t(noteProblem(res) ? "override.no_numbers" : "override.failed");
      return;
    }
    $("dlg-recheck").close();
  }

  async function finishTimer(id) {
    let res = null;
    try { res = await post("/api/recheck/" + id, undefined, "DELETE"); } catch (err) { return; } // stays listed
    if (res.status === 401) {
      operator = null;
      renderOperator();
      openSignIn(() => finishTimer(id));
    }
  }

  function buildKeypad() {
    const pad = $("keypad");
    const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "⌫", "0"];
    for (const key of keys) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "key";
      b.textContent = key;
      if (key === "⌫") b.setAttribute("aria-label", t("signin.delete"));
      b.addEventListener("click", () => {
        const pin = $("pin");
        pin.value = key === "⌫" ? pin.value.slice(0, -1) : (pin.value + key).slice(0, 12);
      });
      pad.appendChild(b);
    }
  }

  // -- wiring -----------------------------------------------------------------------------

  $("btn-signin").addEventListener("click", () => (operator ? signOut() : openSignIn()));
  $("btn-pass").addEventListener("click", () => openOverride("pass"));
  $("btn-deny").addEventListener("click", () => openOverride("deny"));
  $("btn-recheck").addEventListener("click", openRecheck);
  $("btn-lang").addEventListener("click", switchLanguage);
  $("btn-sound").addEventListener("click", enableSound);
  $("temperature").addEventListener("click", () => { if (lastEvent && lastEvent.temperature) $("raw").hidden = !$("raw").hidden; });
  $("form-signin").addEventListener("submit", submitSignIn);
  $("form-override").addEventListener("submit", submitOverride);
  $("form-recheck").addEventListener("submit", submitRecheck);
  $("signin-cancel").addEventListener("click", () => $("dlg-signin").close());
  $("override-cancel").addEventListener("click", () => $("dlg-override").close());
  $("recheck-cancel").addEventListener("click", () => $("dlg-recheck").close());
  document.addEventListener("visibilitychange", () => { if (!document.hidden) startPreview(); });
  if (!cfg.preview_fps) $("preview-box").hidden = true;

  buildKeypad();
  applyStrings();
  setInterval(tick, 1000);
  connect();
})();
