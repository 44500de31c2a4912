"""Live alerts: one database reader for every open dashboard, nothing lost on a reconnect."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from server.alerts import AlertFeed
from server.app import create_app
from server.auth import create_user
from server.models import events
from server.normalize import event_row
from server.store import Store, migrate, utcnow
from server.testing import make_event, publish_events, running_ingest, server_config
from tests.conftest import wait_until

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}


def seed(store: Store, events: list[dict]) -> None:
    store.insert_events([event_row(f"checkgate/v1/gates/{e['gate_id']}/events", json.dumps(e).encode(), utcnow())
                         for e in events])


def fever(gate: str, seq: int, temperature: float = 38.4) -> dict:
    return make_event(gate, seq, outcome="deny", reasons=["fever"], subject=f"p_{seq:06d}", temperature=temperature)


def test_one_database_read_serves_every_open_dashboard(store):
    feed = AlertFeed(store, interval_s=3600)  # only a notify wakes it in this test
    feed.start()
    try:
        viewers = [feed.position for _ in range(25)]
        reads = feed.reads
        seed(store, [make_event("north-1", 1), fever("north-1", 2)])
        feed.notify()
        got = [[] for _ in viewers]

        def everyone_has_it():
            for i, pos in enumerate(viewers):
                rows, viewers[i] = feed.rows_after(pos)
                got[i] += rows
            return all(got)

        wait_until(everyone_has_it, message="all 25 viewers saw the fever")
        assert all([r.seq for r in rows] == [2] for rows in got)
        assert feed.reads - reads == 1
    finally:
        feed.stop()


def test_feed_skips_history_and_finds_a_batch_committed_out_of_id_order(store):
    for event in (fever("north-1", 1), *(make_event("north-1", s) for s in range(2, 11))):
        seed(store, [event])  # one at a time: ids follow seq, so the hole is not the newest id
    hole = store.execute_read(sa.select(events.c.id).where(events.c.seq == 5))[0][0]
    with store.writing() as conn:  # leave a hole in the ids, as a slower writer's open transaction does
        conn.execute(events.delete().where(events.c.id == hole))
    feed = AlertFeed(store, interval_s=3600)
    feed.start()
    try:
        start = feed.position
        assert feed.read_once() == 0  # the fever stored before the feed started is history
        seed(store, [fever("north-1", 11)])
        assert feed.read_once() == 1
        late = event_row("checkgate/v1/gates/north-1/events", json.dumps(fever("north-1", 5)).encode(), utcnow())
        with store.writing() as conn:  # the slower writer commits: a smaller id appears after a larger one
            conn.execute(sa.insert(events).values(id=hole, **late))
        assert feed.read_once() == 1
        assert feed.read_once() == 0  # and it is delivered once
        rows, _ = feed.rows_after(start)
        assert [r.seq for r in rows] == [11, 5]
    finally:
        feed.stop()


@pytest.fixture
def client_store(sqlite_url):
    config = server_config(sqlite_url, 1)
    migrate(sqlite_url)
    store = Store(sqlite_url)
    create_user(store, "alice", "alice-password", "admin")
    with TestClient(create_app(config, store, None, run_jobs=False)) as client:
        yield client, store
    store.close()


def _read_alerts(client, count: int, params: dict | None = None, headers: dict | None = None) -> list[dict]:
    got: list[dict] = []
    with client.stream("GET", "/api/v1/alerts/stream", params={"duration_s": 5, **(params or {})},
                       headers={**ADMIN, **(headers or {})}) as r:
        assert r.status_code == 200
        last_id = None
        for line in r.iter_lines():
            if line.startswith("id: "):
                last_id = int(line[4:])
            if line.startswith("data:"):
                got.append({**json.loads(line[5:]), "_sse_id": last_id})
                if len(got) == count:
                    break
    return got


def test_reconnecting_browser_gets_the_alerts_it_missed(client_store):
    client, store = client_store
    for event in (fever("north-1", 1), make_event("north-1", 2), fever("north-1", 3, 38.9), fever("north-1", 4, 39.2)):
        seed(store, [event])  # one at a time: ids follow seq
    first = store.alerts_after(0, 1)[0].id
    got = _read_alerts(client, 2, headers={"Last-Event-ID": str(first)})
    assert [g["seq"] for g in got] == [3, 4]
    assert got[-1]["_sse_id"] > first
    # a page rendered up to some event asks for what came after it the same way
    assert [g["seq"] for g in _read_alerts(client, 1, params={"after_id": got[0]["_sse_id"]})] == [4]


def test_garbled_last_event_id_is_ignored_not_a_crash(client_store):
    client, store = client_store
    seed(store, [fever("north-1", 1)])
    got: list[str] = []
    with client.stream("GET", "/api/v1/alerts/stream", params={"duration_s": 1},
                       headers={**ADMIN, "Last-Event-ID": "12; DROP TABLE events"}) as r:
        assert r.status_code == 200
        got = [line for line in r.iter_lines() if line.startswith("data:")]
    assert got == []  # only news, no history
    assert client.get("/api/v1/events", headers=ADMIN).json()["items"]


def test_ingest_wakes_the_feed_when_it_stores_an_alert(mosquitto, sqlite_url):
    config = server_config(sqlite_url, mosquitto.port)
    with running_ingest(config) as (_store, ingest):
        woken = threading.Event()
        ingest.on_alert = woken.set
        publish_events(mosquitto.port, [make_event("north-1", 1)])
        wait_until(lambda: ingest.stored_total == 1, message="pass stored")
        assert not woken.is_set()  # a pass is no alert
        publish_events(mosquitto.port, [fever("north-1", 2)])
        assert woken.wait(10)


def test_a_long_disconnect_replays_the_newest_missed_alerts(client_store):
    client, store = client_store
    seed(store, [fever("north-1", 1)])
    before = store.alerts_after(0, 10)[-1].id
    seed(store, [fever("north-1", s) for s in range(2, 107)])  # 105 alerts while the browser was away
    ids = [r.id for r in store.alerts_after(before, 1000)]
    got = _read_alerts(client, 100, headers={"Last-Event-ID": str(before)})
    assert [g["_sse_id"] for g in got] == ids[-100:]  # the latest 100, oldest first
