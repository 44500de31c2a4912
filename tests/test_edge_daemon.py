"""The gate daemon end to end with simulated devices over real ptys, a real Mosquitto
and the real server ingest into SQLite: decisions, the relay, faults, control messages."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import time

import paho.mqtt.client as mqtt
import pytest

from checkgate import protocol
from edge.config import EdgeConfig
from edge.daemon import EdgeDaemon
from tests.conftest import wait_until

NORMAL_SKIN = 34.6  # forehead skin of a healthy person at the gate's distance
FEVER_SKIN = 36.9


@pytest.fixture
def issuer(tmp_path):
    from edge.credentials import keys

    priv, pub = keys.generate_keypair(tmp_path / "keys", kid="t1")
    return {"key": keys.load_private_key(priv), "kid": "t1", "priv": priv, "pub": pub}


def make_pass(issuer, subject, **kw):
    from edge.credentials.passes import issue_pass

    kw.setdefault("expires", dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    return issue_pass(issuer["key"], issuer["kid"], subject, kw.pop("kind", "resident"), **kw)


def gate_config(tmp_path: pathlib.Path, port: int, issuer, **overrides) -> EdgeConfig:
    data = {
        "gate_id": "north-1",
        "data_dir": str(tmp_path / "gate"),
        "mqtt": {"port": port, "reconnect_max_s": 1.0},
        "thermometer": {"protocol": "gy-mcu90614", "port": "sim", "measurement": {"warmup_s": 0}},
        "camera": {"source": "sim", "fps": 15, "dedupe_window_s": 1.0},
        "credentials": {"trust_keys": [str(issuer["pub"])]},
        "policy": {"status_required_for": []},
        "flow": {"window_s": 6.0},
        "gate": {"open_s": 0.5, "signal_s": 0.2},
        "screen": {"enabled": False},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return EdgeConfig.model_validate(data)


@pytest.fixture
def daemon_factory(tmp_path, mosquitto, issuer):
    started = []

    def make(**overrides):
        d = EdgeDaemon(gate_config(tmp_path, mosquitto.port, issuer, **overrides), tmp_path)
        d.start()
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


def visit(daemon, code, skin, timeout=10.0) -> dict:
    """One visitor: steps up (skin temperature), holds up a code; returns the final event."""
    before = daemon.outbox.last_seq
    daemon.visit_done.clear()
    daemon.thermo_sim.set_person(skin)
    daemon.camera.show_code(code)
    wait_until(lambda: daemon.visit_done.is_set(), timeout, message="a final decision")
    daemon.camera.show_nothing()
    daemon.thermo_sim.set_person(None)
    wait_until(lambda: not daemon.measurer.presence(time.monotonic()), 5, message="the visitor walked away")
    events = [e for e in daemon.recent_events() if e["seq"] > before and e["type"] == "screening"]
    return events[-1]


def test_normal_visitor_passes_and_event_reaches_server(daemon_factory, issuer, mosquitto, sqlite_url):
    from server.store import stored_event_keys
    from server.testing import running_ingest, server_config

    with running_ingest(server_config(sqlite_url, mosquitto.port)):
        d = daemon_factory()
        opened = d.gate.open_count
        ev = visit(d, make_pass(issuer, "p_alice"), NORMAL_SKIN)
        assert ev["outcome"] == "pass", ev
        assert d.gate.open_count == opened + 1
        assert ev["credential"]["subject"] == "p_alice"
        assert 35.5 < ev["temperature"]["value_c"] < 37.3
        wait_until(lambda: ev["event_id"] in {k[0] for k in stored_event_keys(sqlite_url)}, 10,
                   message="event stored by the server")


def test_fever_is_denied_and_gate_stays_closed(daemon_factory, issuer):
    d = daemon_factory()
    ev = visit(d, make_pass(issuer, "p_bob"), FEVER_SKIN)
    assert ev["outcome"] == "deny" and "fever" in ev["reasons"]
    assert d.gate.open_count == 0 and not d.gate.is_open
    assert "fever" in d.voice.said


def test_forged_code_is_denied(daemon_factory, issuer, tmp_path):
    from edge.credentials import keys

    other_priv, _ = keys.generate_keypair(tmp_path / "forger", kid="t1")
    forged = make_pass({"key": keys.load_private_key(other_priv), "kid": "t1"}, "p_mallory")
    d = daemon_factory()
    ev = visit(d, forged, NORMAL_SKIN)
    assert ev["outcome"] == "deny" and d.gate.open_count == 0


def test_silent_thermometer_never_opens_and_recovers(daemon_factory, issuer):
    d = daemon_factory(thermometer={"silent_after_s": 1.0})
    d.thermo_sim.set_silent(True)
    wait_until(lambda: "thermometer_silent" in d.faults(), 10, message="silent sensor reported")
    assert "thermometer_silent" in d.health()["faults"]
    d.visit_done.clear()
    d.camera.show_code(make_pass(issuer, "p_carol"))
    wait_until(lambda: d.visit_done.is_set(), 15, message="a decision without temperature")
    d.camera.show_nothing()
    last = [e for e in d.recent_events() if e["type"] == "screening"][-1]
    assert last["outcome"] in ("manual", "deny", "retry") and d.gate.open_count == 0
    d.thermo_sim.set_silent(False)
    wait_until(lambda: "thermometer_silent" not in d.faults(), 10, message="fault clears by itself")
    ev = visit(d, make_pass(issuer, "p_dave"), NORMAL_SKIN)
    assert ev["outcome"] == "pass"


def test_stalled_camera_is_reported_and_recovers(daemon_factory):
    d = daemon_factory(camera={"stalled_after_s": 1.0})
    d.camera.set_stalled(True)
    wait_until(lambda: "camera_stalled" in d.faults(), 10, message="stalled camera reported")
    d.camera.set_stalled(False)
    wait_until(lambda: "camera_stalled" not in d.faults(), 10, message="camera fault clears")


def test_seq_continues_after_restart(daemon_factory, issuer, tmp_path, mosquitto):
    d = daemon_factory()
    first = visit(d, make_pass(issuer, "p_erin"), NORMAL_SKIN)
    d.stop()
    d2 = daemon_factory()
    second = visit(d2, make_pass(issuer, "p_frank"), NORMAL_SKIN)
    assert second["seq"] == first["seq"] + 1


def test_broker_absent_at_start_events_delivered_later(tmp_path, issuer, mosquitto):
    mosquitto.stop()
    d = EdgeDaemon(gate_config(tmp_path, mosquitto.port, issuer), tmp_path)
    d.start()
    try:
        ev = visit(d, make_pass(issuer, "p_gina"), NORMAL_SKIN)
        assert ev["outcome"] == "pass"  # the gate decides offline
        assert d.outbox.pending_count >= 1
        mosquitto.start()
        wait_until(lambda: d.outbox.pending_count == 0, 20, message="queue drained after the broker came up")
    finally:
        d.stop()


def test_retained_messages_cannot_open_the_gate(daemon_factory, issuer, mosquitto):
    """Retained junk, an 'open' command and a forged policy on the control topics change nothing."""
    from edge.credentials import keys
    from edge.credentials.signed import sign_document

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    forger_priv, _ = keys.generate_keypair(mosquitto.workdir / "forger", kid="t1")
    forged_policy = sign_document("config", 99, {"policy": {"require": [["code"]]}},
                                  keys.load_private_key(forger_priv), "t1")
    for topic, payload in ((protocol.config_topic("north-1"), json.dumps({"open": True}).encode()),
                           (protocol.config_topic("north-1"), forged_policy),
                           ("checkgate/v1/control/north-1/open", b"1"),
                           (protocol.STATUS_TOPIC, b"{}")):
        pub.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    d = daemon_factory()
    # one retained message per topic survives (the forged policy replaced the junk); the
    # "open" topic is not even subscribed
    wait_until(lambda: len(d.control_log) >= 2, 10, message="retained control messages handled")
    assert all(entry["result"].startswith("rejected") for entry in d.control_log), list(d.control_log)
    assert d.gate.open_count == 0 and not d.gate.is_open
    assert d.policy.require == [["code", "temperature"]]
    pub.loop_stop()
    pub.disconnect()


def test_signed_policy_from_centre_is_applied(daemon_factory, issuer, mosquitto):
    from edge.credentials.signed import sign_document

    d = daemon_factory()
    assert d.uplink.wait_connected(10)
    doc = sign_document("config", 2, {"policy": {"require": [["code", "temperature"]], "anti_passback_s": 60,
                                                 "status_required_for": []}}, issuer["key"], "t1")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    pub.publish(protocol.config_topic("north-1"), doc, qos=1, retain=True).wait_for_publish(5)
    wait_until(lambda: d.policy.anti_passback_s == 60, 10, message="policy v2 applied")
    # the same document again changes nothing; an older version is refused
    pub.publish(protocol.config_topic("north-1"), doc, qos=1, retain=False).wait_for_publish(5)
    wait_until(lambda: any(e["result"].startswith("unchanged") for e in d.control_log), 10,
               message="re-delivered document recognised")
    older = sign_document("config", 1, {"policy": {"require": [["code"]]}}, issuer["key"], "t1")
    pub.publish(protocol.config_topic("north-1"), older, qos=1, retain=False).wait_for_publish(5)
    wait_until(lambda: any(e["result"].startswith("rejected") for e in d.control_log), 10,
               message="older document rejected")
    assert d.policy.anti_passback_s == 60
    pub.loop_stop()
    pub.disconnect()
    code = make_pass(issuer, "p_henry")
    assert visit(d, code, NORMAL_SKIN)["outcome"] == "pass"
    again = visit(d, code, NORMAL_SKIN)
    assert again["outcome"] == "deny" and any("passback" in r for r in again["reasons"])


def test_bad_config_names_the_key(tmp_path):
    from checkgate.cli import main

    cfg = tmp_path / "gate.yaml"
    cfg.write_text("gate_id: north-1\nthermometer:\n  protocl: gy-mcu90614\n")
    assert main(["edge", "run", "--config", str(cfg), "--validate-config"]) == 2
    cfg.write_text("gate_id: north-1\npolicy:\n  requre: [[code]]\n")
    assert main(["edge", "run", "--config", str(cfg), "--validate-config"]) == 2
    cfg.write_text("gate_id: north-1\n")
    assert main(["edge", "run", "--config", str(cfg), "--validate-config"]) == 0


def test_calibration_is_audited_and_survives_restart(daemon_factory, issuer):
    d = daemon_factory()
    before = visit(d, make_pass(issuer, "p_ivan"), NORMAL_SKIN)["temperature"]["value_c"]
    record = d.calibrate(reference_c=before + 0.4, measured_c=before, operator="v01")
    assert record["offset_after_c"] == pytest.approx(0.4, abs=0.01)
    cal_events = [e for e in d.recent_events() if e["type"] == "calibration"]
    assert cal_events and cal_events[-1]["operator"] == "v01"
    assert d.health()["calibration"]["operator"] == "v01"
    d.stop()
    d2 = daemon_factory()
    assert d2.measurer.calibration_offset_c == pytest.approx(0.4, abs=0.01)
    after = visit(d2, make_pass(issuer, "p_judy"), NORMAL_SKIN)["temperature"]["value_c"]
    assert after > before + 0.2  # same skin, the offset applied (sim noise is well below 0.2)


def test_newest_control_documents_survive_restart(daemon_factory, issuer, mosquitto):
    """A restarted gate keeps the newest signed list it had and refuses an older one."""
    from edge.credentials.signed import sign_document
    from edge.credentials.status import status_body

    d = daemon_factory()
    assert d.uplink.wait_connected(10)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    v1 = sign_document("status", 1, status_body({}), issuer["key"], "t1")
    v2 = sign_document("status", 2, status_body({"p_kate": "revoked"}), issuer["key"], "t1")
    pub.publish(protocol.STATUS_TOPIC, v2, qos=1, retain=True).wait_for_publish(5)
    wait_until(lambda: d.credentials.status is not None and d.credentials.status.version == 2, 10,
               message="status v2 applied")
    d.stop()
    # an attacker puts the older list back as the retained message while the gate is down
    pub.publish(protocol.STATUS_TOPIC, v1, qos=1, retain=True).wait_for_publish(5)
    d2 = daemon_factory()
    assert d2.credentials.status.version == 2  # restored from the gate's own disk
    wait_until(lambda: any(e["topic"] == protocol.STATUS_TOPIC for e in d2.control_log), 10,
               message="retained old list seen")
    assert d2.credentials.status.version == 2
    assert d2.credentials.status.lookup("p_kate") == ("green", True)
    pub.loop_stop()
    pub.disconnect()


def test_full_outbox_keeps_the_gate_closed(daemon_factory, issuer):
    """Disk full / queue full: a decision that cannot be recorded is never acted on."""
    d = daemon_factory(outbox_max_pending=1)
    d.uplink.stop()  # the centre is unreachable: nothing drains
    visit(d, make_pass(issuer, "p_lena"), NORMAL_SKIN)
    assert d.outbox.pending_count == 1 and "outbox_full" in d.health()["faults"]
    opened = d.gate.open_count
    d.visit_done.clear()
    d.thermo_sim.set_person(NORMAL_SKIN)
    d.camera.show_code(make_pass(issuer, "p_mike"))
    wait_until(lambda: "outbox_error" in d.faults(), 15, message="unrecordable decision reported")
    assert d.gate.open_count == opened and not d.gate.is_open


def test_stale_status_list_sends_visitors_to_the_volunteer(daemon_factory, issuer, tmp_path):
    from edge.credentials.signed import sign_document
    from edge.credentials.status import status_body

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    path = tmp_path / "status.signed"
    path.write_bytes(sign_document("status", 1, status_body({}), issuer["key"], "t1", issued_at=old))
    d = daemon_factory(credentials={"trust_keys": [str(issuer["pub"])], "status_list": str(path)},
                       policy={"max_status_age_s": 86400})
    ev = visit(d, make_pass(issuer, "p_nina"), NORMAL_SKIN)
    assert ev["outcome"] == "manual" and "status_list_stale" in ev["reasons"]
    assert d.gate.open_count == 0


def test_passage_sensor_confirms_or_not(daemon_factory, issuer):
    d = daemon_factory(gate={"passage_sensor_pin": 5, "open_s": 0.3})
    ev = visit(d, make_pass(issuer, "p_olga"), NORMAL_SKIN)
    assert ev["outcome"] == "pass" and ev["passage"] == "pending"
    follow = wait_until(lambda: [e for e in _outbox_events(d) if e["type"] == "passage"], 5,
                        message="passage follow-up event")
    assert follow[0]["ref_seq"] == ev["seq"] and follow[0]["passage"] == "not_seen"


def _outbox_events(d) -> list[dict]:
    return [json.loads(p) for _, p in d.outbox.recent_payloads(since=0)]


def test_watchdog_is_fed_only_while_every_loop_runs(daemon_factory, monkeypatch, tmp_path):
    """systemd's watchdog: READY=1 at start, WATCHDOG=1 while healthy, silence when a loop hangs."""
    import socket
    import threading

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    d = daemon_factory()
    got: list[str] = []

    def receive_until(word, timeout):
        def check():
            try:
                got.append(sock.recv(256).decode())
            except TimeoutError:
                pass
            return any(word in g for g in got)
        return wait_until(check, timeout, interval=0, message=word)

    receive_until("READY=1", 5)
    receive_until("WATCHDOG=1", 5)
    hang = threading.Event()
    monkeypatch.setattr(d.flow, "tick", lambda now: hang.wait(30))  # the decision loop hangs
    d._heartbeats["decide"].max_silence_s = 1.0
    wait_until(lambda: not d._heartbeats["decide"].alive(time.monotonic()), 5, message="stuck loop seen")
    got.clear()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(256).decode())
        except TimeoutError:
            pass
    assert not any("WATCHDOG=1" in g for g in got), got
    hang.set()
    sock.close()


def test_the_documented_example_config_is_valid(tmp_path):
    """docs/edge.md's example must keep passing the same validation as a real file."""
    import re

    from checkgate.cli import main

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "edge.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    cfg = tmp_path / "gate.yaml"
    cfg.write_text(example)
    assert main(["edge", "run", "--config", str(cfg), "--validate-config"]) == 0


def test_clock_jump_never_opens_and_recovers(daemon_factory, issuer):
    """An RTC-less Pi booting in 1970, or a clock that jumps: no automatic pass until it is right."""
    d = daemon_factory()
    d.clock = lambda: dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC)
    ev = visit(d, make_pass(issuer, "p_paul"), NORMAL_SKIN)
    assert ev["outcome"] != "pass" and d.gate.open_count == 0
    d.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=400)  # jumps past the pass's expiry
    ev = visit(d, make_pass(issuer, "p_quinn"), NORMAL_SKIN)
    assert ev["outcome"] == "deny" and d.gate.open_count == 0
    d.clock = lambda: dt.datetime.now(dt.UTC)
    assert visit(d, make_pass(issuer, "p_rose"), NORMAL_SKIN)["outcome"] == "pass"
