"""The gate daemon: devices -> screening flow -> policy -> outbox -> gate + uplink.

Threads, each with one job and all sharing one stop event:
- `thermo`: reads the thermometer driver's queue and feeds the measurement window;
- `camera`: takes the newest frame, decodes codes, drops repeats;
- `decide`: owns the screening flow; verifies codes, asks the pure policy, records the
  event in the outbox *before* the gate acts, then drives the gate and the voice;
- `health`: watches the other loops' heartbeats and the devices, publishes state, feeds
  the systemd watchdog only while every loop is alive;
- the uplink's own publisher thread and paho's network thread.
Inputs reach `decide` through one bounded queue; nothing blocks the camera loop.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import os
import pathlib
import queue
import random
import socket
import threading
import time
from collections.abc import Callable

from checkgate.config import ConfigError, parse_config
from edge.audio import Voice
from edge.config import EdgeConfig
from edge.gate import Gate
from edge.outbox import Outbox, OutboxError
from edge.screening import ScreeningFlow, Step
from edge.types import TemperatureResult, VerifiedCredential
from edge.uplink import Uplink

logger = logging.getLogger(__name__)

FAULT_MESSAGES = {
    "thermometer_silent": "thermometer silent - check the cable and power",
    "thermometer_disconnected": "thermometer unplugged - check the USB / UART connection",
    "camera_stalled": "camera stalled - check the camera cable",
    "camera_disconnected": "camera not found - check the camera connection",
    "outbox_full": "event queue nearly full - check the network link to the centre",
    "outbox_error": "cannot record events - check the SD card / disk space",
    "lists_stale": "trust or status list too old - check the link to the centre",
}


def flow_config_for(flow, policy):
    """The flow waits for what the policy needs: a temperature, and how many codes."""
    from edge.policy import CODE_ITEMS

    needs_temperature = all("temperature" in alt for alt in policy.require)
    codes = min(sum(1 for item in alt if item in CODE_ITEMS) for alt in policy.require)
    return flow.model_copy(update={"temperature_required": needs_temperature, "codes_required": max(codes, 1)})


def sd_notify(message: str) -> bool:
    """Tell systemd something (READY=1, WATCHDOG=1, STOPPING=1) if it is listening."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
        return True
    except OSError as err:
        logger.debug("sd_notify failed: %s", err)
        return False


@dataclasses.dataclass
class Heartbeat:
    name: str
    max_silence_s: float
    last: float = dataclasses.field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.last = time.monotonic()

    def alive(self, now: float) -> bool:
        return now - self.last <= self.max_silence_s


class EdgeDaemon:
    def __init__(self, config: EdgeConfig, base_dir: pathlib.Path | None = None):
        self.config = config
        self.base_dir = base_dir or pathlib.Path.cwd()
        self.data_dir = config.resolve(self.base_dir, config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_event = threading.Event()
        # wall-clock time for validity dates and the policy (replaceable in tests: clock jumps);
        # the flow's timeouts use time.monotonic(), which a clock jump does not move
        self.clock = lambda: dt.datetime.now(dt.UTC)
        self._inputs: queue.Queue = queue.Queue(maxsize=256)
        self._threads: list[threading.Thread] = []
        self._heartbeats = {n: Heartbeat(n, 5.0) for n in ("thermo", "camera", "decide")}
        self._listeners: list[Callable[[dict], None]] = []
        self._recent: collections.deque[dict] = collections.deque(maxlen=50)
        self._faults: set[str] = set()
        self._fault_lock = threading.Lock()
        self.counters = collections.Counter()
        self.visit_done = threading.Event()  # set after each final decision (simulation pacing)
        self.last_relay_latency_ms: float | None = None
        self._visitors_paused = threading.Event()
        self._timing: dict | None = None  # frame time and decode ms of the code being decided
        self._decide_ms = 0.0

        self.outbox = Outbox(self.data_dir / "outbox.sqlite3", config.gate_id,
                             max_pending=config.outbox_max_pending,
                             keep_delivered_s=config.outbox_keep_delivered_h * 3600)
        self.policy, self.decide_fn, self.decision_inputs = self._load_policy()
        self.credentials = self._load_credentials()
        self.flow = ScreeningFlow(flow_config_for(config.flow, self.policy), self._decide)
        if self.credentials.config_doc is not None:  # the centre's last policy, kept on disk
            logger.info("%s", self._apply_policy_document(self.credentials.config_doc))
        self.gate = Gate(config.gate)
        self.voice = Voice(config.audio, self.data_dir)
        self.uplink = Uplink(config.mqtt, config.gate_id, self.outbox, on_control=self._on_control,
                             health=self.health)
        self.thermo_sim = None
        self.thermometer = None
        self.measurer = None
        self.camera = None
        self.decoder = None
        self.deduper = None
        self._passback: dict[str, list[tuple[float, str | None, str]]] = collections.defaultdict(list)
        self._mask_confirmed: bool | None = None
        self.control_log: collections.deque[dict] = collections.deque(maxlen=20)
        self.last_calibration: dict | None = self._read_json("calibration.json")
        self._rebuild_passback_history()

    # -- set-up of the areas ---------------------------------------------------------------

    def _load_policy(self):
        from edge import policy as policy_mod

        pol = parse_config(policy_mod.Policy, self.config.policy, "policy")
        return pol, policy_mod.decide, policy_mod.DecisionInputs

    def _load_credentials(self):
        from edge.credential_store import CredentialStore

        return CredentialStore(self.config.credentials, self.base_dir,
                               max_status_age_s=self.policy.max_status_age_s, state_dir=self.data_dir / "control")

    def _start_devices(self) -> None:
        from drivers.thermometer import open_thermometer
        from drivers.thermometer.measurement import MeasurementConfig, Measurer

        t = self.config.thermometer
        port = t.port
        if port == "sim":
            from drivers.thermometer.simulator import ThermoSimulator

            self.thermo_sim = ThermoSimulator(t.protocol)
            self.thermo_sim.start()
            port = self.thermo_sim.port
        self.measurer = Measurer(parse_config(MeasurementConfig, t.measurement, "thermometer.measurement"))
        if self.last_calibration:  # the audited offset survives restarts
            self.measurer.calibration_offset_c = self.last_calibration["offset_after_c"]
        self.thermometer = open_thermometer(port, t.protocol, baud=t.baud, silent_timeout_s=t.silent_after_s)
        self.thermometer.start()

        from drivers.camera import open_camera
        from drivers.qr import CodeDeduper, QrConfig, QrDecoder

        c = self.config.camera
        if c.source == "sim":
            from drivers.camera.simulated import SimulatedCamera

            self.camera = SimulatedCamera(width=c.width, height=c.height, fps=c.fps,
                                          seed=self.config.simulation.seed, stalled_after_s=c.stalled_after_s)
        else:
            source = int(c.source) if c.source.isdigit() else c.source
            self.camera = open_camera(source, c.width, c.height, c.fps, stalled_after_s=c.stalled_after_s)
        self.camera.start()
        self.decoder = QrDecoder(parse_config(QrConfig, c.qr, "camera.qr"))
        self.deduper = CodeDeduper(c.dedupe_window_s)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._start_devices()
        self.voice.start()
        self.uplink.start()
        for name, target in (("thermo", self._thermo_loop), ("camera", self._camera_loop),
                             ("decide", self._decide_loop), ("health", self._health_loop)):
            th = threading.Thread(target=target, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        if self.config.simulation.visitors:
            th = threading.Thread(target=self._visitor_loop, name="visitors", daemon=True)
            th.start()
            self._threads.append(th)
        sd_notify("READY=1")
        logger.info("gate %s running (last seq %d, %d events queued)", self.config.gate_id,
                    self.outbox.last_seq, self.outbox.pending_count)

    def stop(self) -> None:
        if self.stop_event.is_set():
            return  # already stopped
        sd_notify("STOPPING=1")
        self.stop_event.set()
        self.gate.fail_safe()
        for th in self._threads:
            th.join(3)
        for part in (self.camera, self.thermometer, self.thermo_sim):
            if part is not None:
                try:
                    part.stop()
                except Exception as err:
                    logger.warning("stopping %s: %s", type(part).__name__, err)
        self.uplink.stop()
        self.voice.stop()
        self.gate.close()
        self.outbox.close()

    # -- listeners (the local screen) -----------------------------------------------------

    def add_listener(self, func: Callable[[dict], None]) -> None:
        self._listeners.append(func)

    def remove_listener(self, func: Callable[[dict], None]) -> None:
        if func in self._listeners:
            self._listeners.remove(func)

    def _notify(self, message: dict) -> None:
        for func in list(self._listeners):
            try:
                func(message)
            except Exception:
                logger.exception("screen listener failed")

    def recent_events(self) -> list[dict]:
        return list(self._recent)

    # -- loops --------------------------------------------------------------------------------

    def _thermo_loop(self) -> None:
        hb = self._heartbeats["thermo"]
        was_present = False
        while not self.stop_event.is_set():
            hb.beat()
            reading = self.thermometer.get(timeout=0.2)
            now = time.monotonic()
            state = self.thermometer.health().get("state")
            self._set_fault("thermometer_silent", state == "silent")
            self._set_fault("thermometer_disconnected", state == "disconnected")
            if reading is not None:
                result = self.measurer.feed(reading, now)
                if result is not None:
                    self._put(("temperature", result, now))
            present = self.measurer.presence(now)
            if was_present and not present:
                self._put(("left", now))
            was_present = present

    def _camera_loop(self) -> None:
        hb = self._heartbeats["camera"]
        last_seq = None
        while not self.stop_event.is_set():
            hb.beat()
            frame = self.camera.latest(timeout=0.2)
            state = self.camera.health().get("state")
            self._set_fault("camera_stalled", state == "stalled")
            self._set_fault("camera_disconnected", state == "disconnected")
            if frame is None or frame.seq == last_seq:
                continue
            last_seq = frame.seq
            t0 = time.perf_counter()
            codes = self.decoder.decode(frame.image)
            decode_ms = (time.perf_counter() - t0) * 1000
            for code in self.deduper.fresh(codes, time.monotonic()):
                self._put(("code", code.text, frame.ts, decode_ms))

    def _put(self, item) -> None:
        try:
            self._inputs.put(item, timeout=0.5)
        except queue.Full:
            logger.error("decision queue full; dropping %s", item[0])

    def _decide_loop(self) -> None:
        hb = self._heartbeats["decide"]
        while not self.stop_event.is_set():
            hb.beat()
            try:
                item = self._inputs.get(timeout=0.1)
            except queue.Empty:
                item = None
            now = time.monotonic()
            try:
                step = self._handle(item, now) if item else None
                if step is None:
                    step = self.flow.tick(now)
                if step is not None:
                    self._act(step, item)
            except Exception:
                logger.exception("decision loop error; gate closed, visitor reset")
                self.gate.fail_safe()
                self.flow.reset()

    def _handle(self, item, now: float) -> Step | None:
        kind = item[0]
        if kind == "code":
            _, text, frame_ts, decode_ms = item
            self._timing = {"frame_ts": frame_ts, "decode": decode_ms}
            cred = self.credentials.verify(text, self.clock())
            return self.flow.on_credential(cred, now)
        if kind == "temperature":
            return self.flow.on_temperature(item[1], now)
        if kind == "fault":
            return self.flow.on_fault(now)
        if kind == "left":
            return self.flow.on_person_left(now)
        if kind == "operator":
            self._record_operator_event(item[1])
            return None
        return None

    # -- deciding and acting ----------------------------------------------------------------

    def faults(self) -> frozenset[str]:
        with self._fault_lock:
            return frozenset(self._faults)

    def _set_fault(self, name: str, active: bool) -> None:
        with self._fault_lock:
            changed = (name in self._faults) != active
            if active:
                self._faults.add(name)
            else:
                self._faults.discard(name)
        if changed:
            (logger.warning if active else logger.info)("fault %s %s", name, "raised" if active else "cleared")
            if active:
                self.gate.fail_safe()
                self._put(("fault", name))
            self._notify({"type": "health", "health": self.health()})

    def _decide(self, creds: tuple[VerifiedCredential, ...], temp: TemperatureResult | None):
        t0 = time.perf_counter()
        now = self.clock()
        inputs = self._make_inputs(creds, temp, now)
        decision = self.decide_fn(inputs, self.policy, now)
        self._decide_ms = (time.perf_counter() - t0) * 1000
        return decision

    def _make_inputs(self, creds, temp, now: dt.datetime):
        from edge.policy import PastPass

        horizon = time.time() - 3 * 24 * 3600
        recent = tuple(PastPass(subject=s, at=dt.datetime.fromtimestamp(t, dt.UTC), direction=d, household=h)
                       for s, entries in self._passback.items() for t, h, d in entries if t > horizon)
        return self.decision_inputs(
            credentials=creds, temperature=temp, faults=self.faults(), recent_passes=recent,
            attended=self.policy.attended, mask_confirmed=self._mask_confirmed, direction=self.config.direction,
            zone=self.config.zone)

    def _act(self, step: Step, item) -> None:
        if step.decision is not None:
            self._record_decision(step)
        if step.prompt:
            self.voice.say(step.prompt)
            self._notify({"type": "prompt", "prompt": step.prompt})
        if step.final:
            self.visit_done.set()

    def _record_decision(self, step: Step) -> None:
        d = step.decision
        timing = self._timing or {}
        total_ms = None
        if timing.get("frame_ts") is not None:
            total_ms = round((time.monotonic() - timing["frame_ts"]) * 1000, 1)
        cred = next((c for c in step.credentials if c.valid), step.credentials[0] if step.credentials else None)
        temp = step.temperature
        passage = None
        if d.outcome == "pass":
            passage = "pending" if self.gate.sensor is not None else "unconfirmed"
        event = {
            "type": "screening",
            "outcome": d.outcome,
            "reasons": list(d.reasons),
            "temperature": None if temp is None else {
                "value_c": temp.body_c, "raw_c": temp.raw_c, "ambient_c": temp.ambient_c,
                "sensor": temp.sensor or self.config.thermometer.protocol, "site": temp.site},
            "credential": None if cred is None else {
                "kind": cred.kind, "subject": cred.subject, "status": cred.health, "issuer": cred.issuer,
                "pass_kind": cred.pass_kind, "household": cred.household},
            "operator": None,
            "direction": self.config.direction,
            "passage": passage,
            "timings_ms": {"decode": round(timing.get("decode", 0.0), 2),
                           "decide": round(self._decide_ms, 3),
                           **({"total": total_ms} if total_ms is not None else {})},
        }
        try:
            event = self.outbox.append(event)  # recorded before the gate acts
        except OutboxError as err:
            logger.error("decision not recorded, gate stays closed: %s", err)
            self._set_fault("outbox_error", True)
            self.gate.fail_safe()
            return
        self._set_fault("outbox_error", False)
        if d.outcome == "pass":
            self.gate.open()
            if self.gate.sensor is not None:
                threading.Thread(target=self._confirm_passage, args=(event["seq"],), name="passage",
                                 daemon=True).start()
            if timing.get("frame_ts") is not None:
                self.last_relay_latency_ms = (self.gate.opened_at - timing["frame_ts"]) * 1000
            if cred is not None and cred.subject:
                self._passback[cred.subject].append((time.time(), cred.household, self.config.direction))
        else:
            fever = any("fever" in r for r in d.reasons)
            forged = any(r in ("signature_invalid", "unknown_key", "revoked", "pass_forged") for r in d.reasons)
            self.gate.signal_deny(d.reasons, alarm=(d.outcome == "deny" and (fever or forged)))
        self._timing = None
        self.counters[d.outcome] += 1
        for r in d.reasons:
            self.counters[f"reason:{r}"] += 1
        self._recent.append(event)
        self._notify({"type": "event", "event": event})

    def _confirm_passage(self, seq: int) -> None:
        """With a beam sensor wired: a follow-up event says whether someone walked through."""
        seen = self.gate.wait_passage(self.config.gate.open_s + 1.0)
        try:
            self.outbox.append({"type": "passage", "outcome": None, "reasons": [], "ref_seq": seq,
                                "passage": "confirmed" if seen else "not_seen"})
        except OutboxError as err:
            logger.error("passage of seq %d not recorded: %s", seq, err)

    def _record_operator_event(self, action: dict) -> dict | None:
        event = {"type": action.get("type", "override"), "outcome": action.get("outcome"),
                 "reasons": list(action.get("reasons", [])), "operator": action.get("operator"),
                 "note": action.get("note")}
        try:
            event = self.outbox.append(event)
        except OutboxError as err:
            logger.error("operator action not recorded: %s", err)
            return None
        if event.get("outcome") == "pass":
            self.gate.open()
        self._recent.append(event)
        self._notify({"type": "event", "event": event})
        return event

    def submit_operator_action(self, action: dict) -> None:
        self._put(("operator", action))

    def _rebuild_passback_history(self) -> None:
        """Anti-passback survives a restart: recent passes are read back from the outbox."""
        cutoff = time.time() - 24 * 3600
        for _, payload in self.outbox.recent_payloads(since=cutoff):
            try:
                ev = json.loads(payload)
            except ValueError:
                continue
            cred = ev.get("credential") or {}
            subject = cred.get("subject")
            if ev.get("outcome") == "pass" and subject:
                ts = dt.datetime.fromisoformat(ev["ts"].replace("Z", "+00:00")).timestamp()
                self._passback[subject].append((ts, cred.get("household"), ev.get("direction", "in")))

    # -- control messages (retained, signed) ------------------------------------------------

    def _on_control(self, topic: str, payload: bytes, retained: bool) -> None:
        """Signed lists and policy from the centre; never a command (nothing here opens the gate)."""
        result = self.credentials.apply_control(topic, payload)
        if result.startswith("config v"):
            result = self._apply_policy_document(self.credentials.config_doc)
        logger.info("control message on %s: %s", topic, result)
        self.control_log.append({"topic": topic, "result": result, "retained": retained})
        self._notify({"type": "health", "health": self.health()})

    def _apply_policy_document(self, doc) -> str:
        from edge.policy import Policy

        if "policy" not in doc.body:
            return f"config v{doc.version} applied (policy unchanged)"
        try:
            new = parse_config(Policy, doc.body.get("policy", {}), f"config v{doc.version} policy")
        except ConfigError as err:
            self.credentials.rejected["invalid policy"] = self.credentials.rejected.get("invalid policy", 0) + 1
            return f"rejected: {err}"
        self.policy = new  # one assignment: a decision sees the old policy or the new, never a mix
        self.flow.config = flow_config_for(self.config.flow, new)
        return f"policy v{doc.version} applied"

    def calibrate(self, reference_c: float, measured_c: float, operator: str, note: str = "") -> dict:
        """Apply a reference-thermometer comparison: recorded as an audited event, kept on disk.

        Raises drivers.thermometer.measurement.CalibrationError on implausible values."""
        record = self.measurer.calibrate(reference_c, measured_c, operator, note=note)
        event = {k: v for k, v in record.items() if k != "ts"}
        event.update({"type": "calibration", "operator": record["operator"], "outcome": None, "reasons": []})
        self.outbox.append(event)
        self.last_calibration = record
        self._write_json("calibration.json", record)
        self._recent.append(event)
        self._notify({"type": "health", "health": self.health()})
        return record

    def _read_json(self, name: str) -> dict | None:
        try:
            return json.loads((self.data_dir / name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            logger.error("ignoring unreadable %s: %s", name, err)
            return None

    def _write_json(self, name: str, data: dict) -> None:
        tmp = self.data_dir / f"{name}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.data_dir / name)

    def confirm_mask(self, confirmed: bool | None) -> None:
        """The volunteer's mask check for the visitor now at the gate (attended gates)."""
        self._mask_confirmed = confirmed

    # -- health ----------------------------------------------------------------------------

    def health(self) -> dict:
        now = self.clock()
        # a nearly full queue is a warning (shown with its fix), not a decision fault
        nearly_full = self.outbox.nearly_full
        shown = sorted(self.faults() | ({"outbox_full"} if nearly_full else set()))
        return {
            "thermometer": self.thermometer.health() if self.thermometer else {"state": "starting"},
            "camera": self.camera.health() if self.camera else {"state": "starting"},
            "uplink": self.uplink.status(),
            "queue": {"pending": self.outbox.pending_count, "last_seq": self.outbox.last_seq},
            "lists": self.credentials.list_status(now),
            # shown with a fix on the screen; a full queue is a warning, not a decision fault
            "faults": shown,
            "fault_messages": [FAULT_MESSAGES.get(f, f) for f in shown],
            "warnings": ["outbox_full"] if nearly_full else [],
            "gate_open": self.gate.is_open,
            "calibration": None if not self.last_calibration else {
                k: self.last_calibration.get(k) for k in ("ts", "operator", "offset_after_c")},
            "drift": self.measurer.drift() if self.measurer else None,
        }

    def stats(self) -> dict:
        s = self.outbox.stats()
        return {"gate_id": self.config.gate_id, "decided": s["decided"], "pending": s["pending"],
                "delivered": s["decided"] - s["pending"], "last_seq": s["last_seq"],
                "counters": dict(self.counters), "health": self.health()}

    def _health_loop(self) -> None:
        interval = min(self.config.health_interval_s, 5.0)
        last_published = 0.0
        while not self.stop_event.wait(1.0):
            now = time.monotonic()
            dead = [h.name for h in self._heartbeats.values() if not h.alive(now)]
            if dead:
                logger.error("loop(s) stuck: %s; gate held closed", ", ".join(dead))
                self.gate.fail_safe()
            else:
                sd_notify("WATCHDOG=1")
            if now - last_published > interval:
                self.uplink.publish_state()
                self._write_stats_file()
                last_published = now

    def _write_stats_file(self) -> None:
        try:
            self._write_json("stats.json", json.loads(json.dumps(self.stats(), default=str)))
        except OSError as err:
            logger.warning("cannot write stats file: %s", err)

    # -- synthetic visitors (demo) ----------------------------------------------------------

    def pause_visitors(self) -> None:
        """Stop sending synthetic visitors (the demo does this before draining queues)."""
        self._visitors_paused.set()

    def _visitor_loop(self) -> None:
        sim = self.config.simulation
        rng = random.Random(sim.seed)
        while not self.stop_event.wait(sim.interval_s * rng.uniform(0.5, 1.5)):
            if self.thermo_sim is None or not hasattr(self.camera, "show_code") or self._visitors_paused.is_set():
                return
            roll = rng.random()
            if roll < sim.bad_code_fraction and sim.bad_codes:
                code, skin = rng.choice(sim.bad_codes), rng.uniform(33.8, 34.8)
            elif roll < sim.bad_code_fraction + sim.fever_fraction:
                code, skin = rng.choice(sim.valid_codes), rng.uniform(36.3, 37.0)
            else:
                code, skin = rng.choice(sim.valid_codes), rng.uniform(33.8, 34.8)
            self.visit_done.clear()
            self.thermo_sim.set_person(skin)
            self.camera.show_code(code)
            self.visit_done.wait(self.config.flow.window_s + 2)
            self.camera.show_nothing()
            self.thermo_sim.set_person(None)
