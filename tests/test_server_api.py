"""The REST API over a real SQLite file: authentication, roles, filters, pagination, exports."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_user
from server.normalize import event_row
from server.store import Store, migrate, utcnow
from server.testing import make_event, server_config

ADMIN_TOKEN = "test-admin-token-0123456789"
PERSONAL_KEYS = {"subject", "temperature_c", "credential_status", "operator", "payload_preview", "name",
                 "id_number", "phone"}


def seed(store: Store, events: list[dict]) -> None:
    now = utcnow()
    store.insert_events([event_row(f"checkgate/v1/gates/{e['gate_id']}/events",
                                   json.dumps(e).encode(), now) for e in events])


@pytest.fixture
def app_store(sqlite_url):
    config = server_config(sqlite_url, 1)  # no broker needed: the app runs without ingest here
    migrate(sqlite_url)
    store = Store(sqlite_url, timezone=config.timezone)
    create_user(store, "alice", "alice-password", "admin")
    create_user(store, "sam", "steward-password", "steward")
    app = create_app(config, store, None, run_jobs=False)
    yield app, store
    store.close()


@pytest.fixture
def client(app_store):
    with TestClient(app_store[0]) as c:
        yield c


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def token_for(client, user: str, password: str) -> dict:
    r = client.post("/api/v1/tokens", headers=basic(user, password))
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _fill_path(path: str) -> str:
    samples = {"gate_id": "north-1", "pass_id": "ps_0123456789abcdef", "subject": "p_1"}
    return re.sub(r"\{(\w+)\}", lambda m: samples.get(m.group(1), "x"), path)


def test_every_route_in_the_openapi_document_refuses_a_request_without_credentials(client):
    spec = client.get("/openapi.json").json()
    operations = [(method, path) for path, ops in spec["paths"].items() for method in ops]
    assert len(operations) >= 25  # the document really lists the API
    for method, path in operations:
        for headers in ({}, {"Authorization": "Bearer not-a-valid-token"}, basic("alice", "wrong-password")):
            r = client.request(method.upper(), _fill_path(path), headers=headers)
            assert r.status_code == 401, f"{method.upper()} {path} with {list(headers)} answered {r.status_code}"


def test_admin_only_routes_refuse_a_steward(client):
    steward = token_for(client, "sam", "steward-password")
    for method, path in [("get", "/api/v1/audit"), ("get", "/api/v1/passes"), ("post", "/api/v1/status/publish"),
                         ("get", "/api/v1/status.csv"), ("post", "/api/v1/users")]:
        assert client.request(method.upper(), path, headers=steward).status_code == 403, path


def test_steward_never_sees_personal_fields(client, app_store):
    _app, store = app_store
    seed(store, [make_event("north-1", 1, subject="p_abc123", temperature=38.1, outcome="deny", reasons=["fever"]),
                 make_event("north-1", 2, subject="p_def456")])
    store.add_dead_letters([(utcnow(), "checkgate/v1/gates/north-1/events", "invalid event", b'{"subject": "x"}')])
    steward = token_for(client, "sam", "steward-password")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    items = client.get("/api/v1/events", headers=steward).json()["items"]
    assert len(items) == 2 and all(PERSONAL_KEYS.isdisjoint(i) for i in items)
    by_seq = {i["seq"]: i for i in client.get("/api/v1/events", headers=admin).json()["items"]}
    assert by_seq[1]["subject"] == "p_abc123" and by_seq[1]["temperature_c"] == 38.1
    alerts = client.get("/api/v1/alerts", headers=steward).json()["items"]
    assert len(alerts) == 1 and PERSONAL_KEYS.isdisjoint(alerts[0])
    letters = client.get("/api/v1/dead-letters", headers=steward).json()
    assert letters["total"] == 1 and PERSONAL_KEYS.isdisjoint(letters["items"][0])
    text = client.get("/api/v1/events.csv", headers=steward).text
    assert "p_abc123" not in text and "38.1" not in text and "subject" not in text.splitlines()[0]
    assert client.get("/api/v1/events", params={"subject": "p_abc123"}, headers=steward).status_code == 403


def test_filters_and_cursor_pagination_walk_every_event_once(client, app_store):
    _app, store = app_store
    base = dt.datetime(2026, 11, 21, 8, 0, tzinfo=dt.UTC)
    events = [make_event("north-1" if i % 2 else "east-2", i + 1, ts=base + dt.timedelta(seconds=i // 3),
                         outcome="deny" if i % 5 == 0 else "pass", reasons=["fever"] if i % 5 == 0 else [])
              for i in range(95)]
    seed(store, events)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    seen, cursor = [], None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/events", params=params, headers=admin).json()
        seen += [i["event_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 95 and set(seen) == {e["event_id"] for e in events}
    fevers = client.get("/api/v1/events", params={"reason": "fever", "gate": "east-2", "limit": 1000},
                        headers=admin).json()["items"]
    expected = {e["event_id"] for e in events if e["gate_id"] == "east-2" and e["reasons"] == ["fever"]}
    assert {i["event_id"] for i in fevers} == expected
    window = client.get("/api/v1/events", headers=admin, params={
        "since": "2026-11-21T08:00:10Z", "until": "2026-11-21T08:00:20Z", "limit": 1000}).json()["items"]
    assert len(window) == 30
    assert client.get("/api/v1/events", params={"cursor": "garbage!"}, headers=admin).status_code == 422
    assert client.get("/api/v1/events", params={"since": "0001-01-01T00:00:00+05:00"}, headers=admin).status_code == 422


def test_stats_and_daily_report_come_from_rollups(client, app_store):
    _app, store = app_store
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    seed(store, [make_event("north-1", 1, ts=now), make_event("north-1", 2, ts=now, outcome="deny", reasons=["fever"]),
                 make_event("east-2", 1, ts=now, outcome="retry", reasons=["temperature_recheck"])])
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    hour = now.replace(minute=0, second=0)
    stats = client.get("/api/v1/stats", params={"since": hour.isoformat(), "until": (hour + dt.timedelta(hours=1)).isoformat()},
                       headers=admin).json()["items"]
    got = {(s["gate_id"], s["outcome"], s["reason"]): s["count"] for s in stats}
    assert got == {("north-1", "pass", "*"): 1, ("north-1", "deny", "*"): 1, ("north-1", "deny", "fever"): 1,
                   ("east-2", "retry", "*"): 1, ("east-2", "retry", "temperature_recheck"): 1}
    report = client.get("/api/v1/reports/daily", headers=admin).json()
    assert report["totals"]["screened"] == 3 and report["totals"]["fever"] == 1
    rows = list(csv.reader(io.StringIO(client.get("/api/v1/reports/daily.csv", headers=admin).text.lstrip("\ufeff"))))
    assert rows[0][0] == "gate_id" and rows[-1][:2] == ["TOTAL", "3"]


def test_views_and_exports_of_personal_data_are_audited(client, app_store):
    _app, store = app_store
    seed(store, [make_event("north-1", 1)])
    alice = token_for(client, "alice", "alice-password")
    client.get("/api/v1/events", headers=alice)
    client.get("/api/v1/events.csv", headers=alice)
    actions = [(a["actor"], a["action"]) for a in client.get("/api/v1/audit", headers=alice).json()]
    assert ("alice", "view_events") in actions and ("alice", "export_events") in actions
    assert ("alice", "token_issued") in actions


def test_user_tokens_and_roles(client):
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = client.post("/api/v1/users", json={"username": "bob", "password": "bob-password", "role": "steward"},
                    headers=admin)
    assert r.status_code == 201
    bob = token_for(client, "bob", "bob-password")
    assert client.get("/api/v1/me", headers=bob).json() == {"username": "bob", "role": "steward"}
    assert client.post("/api/v1/tokens", headers=basic("bob", "nope-nope")).status_code == 401
    assert client.post("/api/v1/users", json={"username": "x", "password": "short", "role": "admin"},
                       headers=admin).status_code == 422


def test_gate_list_reads_the_edge_daemons_health_snapshot(client, app_store):
    _app, store = app_store
    health = {"thermometer": {"state": "ok"}, "camera": {"state": "stalled"}, "uplink": {"connected": True},
              "queue": {"pending": 7, "last_seq": 120}, "lists": {"trust": {"version": 3, "age_s": 60},
                                                                   "status": None, "rejected": {}},
              "faults": ["camera_stalled"]}
    store.record_gate_state("north-1", True, health, utcnow())
    seed(store, [make_event("north-1", s) for s in (1, 2, 5)])
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    gate = client.get("/api/v1/gates", headers=admin).json()[0]
    assert gate["status"] == "online" and gate["queue_depth"] == 7
    assert gate["list_versions"] == {"trust": {"version": 3, "age_s": 60}}
    assert gate["devices"] == {"thermometer": "ok", "camera": "stalled", "uplink": "connected"}
    assert gate["faults"] == ["camera_stalled"] and gate["missing"] == 2
    assert client.get("/api/v1/gates/north-1/gaps", headers=admin).json()["gaps"] == [[3, 4]]
    store.record_gate_state("north-1", False, None, utcnow())  # the Last Will
    assert client.get("/api/v1/gates", headers=admin).json()[0]["status"] == "offline"


def test_alert_stream_delivers_new_alerts_without_personal_fields_to_stewards(client, app_store):
    import threading

    _app, store = app_store
    steward = token_for(client, "sam", "steward-password")
    lines: list[str] = []
    connected = threading.Event()

    def listen():
        with client.stream("GET", "/api/v1/alerts/stream", params={"duration_s": 4}, headers=steward) as r:
            for line in r.iter_lines():
                connected.set()
                lines.append(line)
                if line.startswith("data:"):
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert connected.wait(5)
    seed(store, [make_event("north-1", 1), make_event("north-1", 2, outcome="deny", reasons=["fever"],
                                                    subject="p_hot", temperature=38.6)])
    reader.join(10)
    data = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert len(data) == 1 and data[0]["seq"] == 2 and data[0]["reasons"] == ["fever"]
    assert PERSONAL_KEYS.isdisjoint(data[0])
    assert "event: alert" in lines
