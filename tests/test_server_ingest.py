"""Server ingest against a real Mosquitto and a real SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import httpx
import pytest

from checkgate import protocol
from server.store import stored_event_keys
from server.testing import make_event, publish_events, publish_raw, running_ingest, server_config
from tests.conftest import wait_until


def test_redelivered_event_is_stored_once(mosquitto, sqlite_url):
    config = server_config(sqlite_url, mosquitto.port)
    with running_ingest(config) as (store, ingest):
        events = [make_event("north-1", seq) for seq in range(1, 21)]
        publish_events(mosquitto.port, events + events[:5])  # the gate republished 5 after a reconnect
        wait_until(lambda: ingest.stored_total + ingest.duplicate_total >= 25, message="all 25 messages handled")
        keys = stored_event_keys(sqlite_url)
        assert sorted(k[0] for k in keys) == sorted(e["event_id"] for e in events)
        assert ingest.duplicate_total == 5
        gate = store.gate("north-1")
        assert (gate.event_count, gate.min_seq, gate.max_seq) == (20, 1, 20)
        assert store.gaps("north-1") == []


def test_missing_sequence_numbers_are_reported_per_gate(mosquitto, sqlite_url):
    config = server_config(sqlite_url, mosquitto.port)
    with running_ingest(config) as (store, ingest):
        seqs = [1, 2, 3, 6, 7, 10]
        publish_events(mosquitto.port, [make_event("east-2", s) for s in seqs] + [make_event("west-1", 4)])
        wait_until(lambda: ingest.stored_total == 7, message="7 events stored")
        assert store.gaps("east-2") == [(4, 5), (8, 9)]
        assert store.gaps("west-1") == [(1, 3)]  # nothing before seq 4 arrived
        gate = store.gate("east-2")
        assert gate.max_seq - gate.min_seq + 1 - gate.event_count == 4


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2, 3]", "invalid event"),
    (json.dumps({"schema": "checkgate.event/1", "event_id": "x" * 12, "gate_id": "north-1", "seq": 0,
                 "ts": "2026-11-21T08:00:00Z", "type": "screening"}).encode(), "seq"),
    (json.dumps(make_event("north-1", 1, outcome="maybe")).encode(), "outcome"),
    (json.dumps({**make_event("north-1", 1), "ts": "2026-11-21T08:00:00"}).encode(), "timezone"),
    (json.dumps(make_event("south-9", 1)).encode(), "does not match topic"),
])
def test_malformed_message_goes_to_dead_letters_with_reason(mosquitto, sqlite_url, payload, reason):
    config = server_config(sqlite_url, mosquitto.port)
    with running_ingest(config) as (store, ingest):
        publish_events(mosquitto.port, [payload], topic_gate="north-1")
        good = make_event("north-1", 2)
        publish_events(mosquitto.port, [good])
        wait_until(lambda: ingest.stored_total == 1 and ingest.dead_letter_total == 1, message="1 stored, 1 rejected")
        letters = store.dead_letters()
        assert len(letters) == 1 and reason in letters[0].reason
        assert letters[0].payload == payload
        assert [k[0] for k in stored_event_keys(sqlite_url)] == [good["event_id"]]


def test_event_decided_while_offline_is_marked_late(mosquitto, sqlite_url):
    config = server_config(sqlite_url, mosquitto.port)
    with running_ingest(config) as (store, ingest):
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        publish_events(mosquitto.port, [make_event("north-1", 1, ts=old), make_event("north-1", 2)])
        wait_until(lambda: ingest.stored_total == 2)
        rows, _ = store.search_events(gate="north-1")
        by_seq = {r.seq: r for r in rows}
        assert by_seq[1].late and not by_seq[2].late
        assert (by_seq[1].received_at - by_seq[1].ts) > dt.timedelta(hours=2)


def test_retained_gate_state_and_last_will(mosquitto, sqlite_url):
    config = server_config(sqlite_url, mosquitto.port)
    publish_raw(mosquitto.port, protocol.state_topic("gate-a"), json.dumps(
        {"online": True, "ts": "2026-11-21T08:00:00Z", "health": {"thermometer": "ok", "queue_depth": 3}}).encode(),
        retain=True)
    with running_ingest(config) as (store, _ingest):
        wait_until(lambda: store.gate("gate-a") is not None and store.gate("gate-a").online, message="gate-a online")
        assert json.loads(store.gate("gate-a").health)["queue_depth"] == 3
        publish_raw(mosquitto.port, protocol.state_topic("gate-a"), b'{"online": false}', retain=True)
        wait_until(lambda: store.gate("gate-a").online is False, message="gate-a offline (last will)")
        assert json.loads(store.gate("gate-a").health)["queue_depth"] == 3  # last known health is kept


def test_server_process_serves_health_and_refuses_api_without_token(mosquitto, tmp_path):
    from checkgate.broker import free_port, wait_for_port

    port = free_port()
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"database_url: sqlite:///{tmp_path}/server.sqlite3\n"
                   f"api_token: test-admin-token-0123456789\n"
                   f"http: {{host: 127.0.0.1, port: {port}}}\n"
                   f"mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, client_id: proc-server}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "checkgate.cli", "server", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", port, 20), "server did not listen"
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/healthz").json()["mqtt"], message="server connected to broker")
        event = make_event("north-1", 1)
        publish_events(mosquitto.port, [event])
        assert httpx.get(f"{base}/api/v1/events").status_code == 401
        auth = {"Authorization": "Bearer test-admin-token-0123456789"}
        wait_until(lambda: httpx.get(f"{base}/api/v1/events", headers=auth).json()["items"], message="event via API")
        items = httpx.get(f"{base}/api/v1/events", headers=auth).json()["items"]
        assert [i["event_id"] for i in items] == [event["event_id"]]
        page = httpx.get(f"{base}/auth", params={"token": "test-admin-token-0123456789"}, follow_redirects=True)
        assert page.status_code == 200 and event["gate_id"] in page.text
        # a dashboard left open (live alert stream) must not hold up a restart
        import threading

        opened = threading.Event()

        def watch_alerts():
            try:
                with httpx.stream("GET", f"{base}/api/v1/alerts/stream", headers=auth, timeout=30) as r:
                    for _line in r.iter_lines():
                        opened.set()
            except httpx.HTTPError:
                pass

        threading.Thread(target=watch_alerts, daemon=True).start()
        assert opened.wait(10)
    finally:
        proc.terminate()
        proc.wait(10)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert proc.returncode in (0, -15), proc.stdout.read().decode()


def test_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("mqtt: {prot: 1883}\n")
    proc = subprocess.run([sys.executable, "-m", "checkgate.cli", "server", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "mqtt.prot" in proc.stderr


def test_metrics_count_stored_events_dead_letters_and_online_gates(mosquitto, sqlite_url):
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from server.app import create_app

    config = server_config(sqlite_url, mosquitto.port)
    with running_ingest(config) as (store, ingest):
        publish_raw(mosquitto.port, protocol.state_topic("gate-a"), b'{"online": true, "health": {}}', retain=True)
        publish_events(mosquitto.port, [make_event("gate-a", 1), make_event("gate-a", 2), b"garbage"],
                       topic_gate="gate-a")
        wait_until(lambda: ingest.stored_total == 2 and ingest.dead_letter_total == 1)
        wait_until(lambda: store.gate("gate-a").online, message="gate-a online")
        with TestClient(create_app(config, store, None, metrics=ingest.metrics, run_jobs=False)) as client:
            text = client.get("/metrics").text
            health = client.get("/healthz").json()
    values = {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert values["checkgate_ingest_events_stored_total"] == 2
    assert values["checkgate_ingest_dead_letters_total"] == 1
    assert values["checkgate_gates_online"] == 1
    assert values["checkgate_ingest_lag_seconds_count"] == 2
    assert health["ok"] is True
