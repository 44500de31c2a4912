"""The same storage tests on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from server import models as m
from server.app import RetentionJob
from server.normalize import event_row
from server.store import migrate, stored_event_keys, utcnow
from server.testing import make_event


def rows_for(events, received_at=None):
    received_at = received_at or utcnow()
    return [event_row(f"checkgate/v1/gates/{e['gate_id']}/events", json.dumps(e).encode(), received_at) for e in events]


def test_migrations_run_up_from_empty_and_are_idempotent(db_url):
    assert migrate(db_url) == migrate(db_url)
    engine = sa.create_engine(db_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("events")}
    finally:
        engine.dispose()
    assert set(m.metadata.tables) <= tables
    assert {"ix_events_ts", "ix_events_gate_ts", "ix_events_subject_ts", "ix_events_gate_seq"} <= indexes


def test_migrated_schema_matches_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate(db_url)
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), m.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_insert_is_idempotent_by_event_id(store, db_url):
    events = [make_event("north-1", s) for s in range(1, 11)]
    assert store.insert_events(rows_for(events)) == 10
    assert store.insert_events(rows_for(events[3:7] + [make_event("north-1", 11)])) == 1
    keys = stored_event_keys(db_url)
    assert len(keys) == 11 and len({k[0] for k in keys}) == 11
    gate = store.gate("north-1")
    assert (gate.event_count, gate.min_seq, gate.max_seq) == (11, 1, 11)


def test_rollups_count_each_event_once_per_reason(store):
    ts = dt.datetime(2026, 11, 21, 9, 15, tzinfo=dt.UTC)
    events = [make_event("north-1", 1, ts=ts), make_event("north-1", 2, ts=ts, outcome="deny", reasons=["fever"]),
              make_event("north-1", 3, ts=ts, outcome="deny", reasons=["fever", "status_red"])]
    store.insert_events(rows_for(events))
    store.insert_events(rows_for(events))  # duplicates must not count twice
    rows = store.stats(since=ts.replace(minute=0), until=ts.replace(minute=0) + dt.timedelta(hours=1))
    got = {(r.outcome, r.reason): r.count for r in rows}
    assert got == {("pass", "*"): 1, ("deny", "*"): 2, ("deny", "fever"): 2, ("deny", "status_red"): 1}
    # 09:15 UTC is 17:15 in Asia/Shanghai: the daily rollup follows the office's local day
    daily = store.stats(since=ts, until=ts, bucket="day")
    assert {r.bucket for r in daily} == {dt.date(2026, 11, 21)}


def test_gaps_are_found_per_gate(store):
    store.insert_events(rows_for([make_event("g1", s) for s in (2, 3, 4, 9, 10)] + [make_event("g2", 1)]))
    assert store.gaps("g1") == [(1, 1), (5, 8)]
    assert store.gaps("g2") == []


def test_search_filters_and_pagination(store):
    base = dt.datetime(2026, 11, 21, 8, 0, tzinfo=dt.UTC)
    events = [make_event("g1", i + 1, ts=base + dt.timedelta(minutes=i), subject=f"p_{i % 3}",
                         outcome="deny" if i % 4 == 0 else "pass", reasons=["fever"] if i % 4 == 0 else [])
              for i in range(40)]
    store.insert_events(rows_for(events))
    rows, cursor = store.search_events(subject="p_1", limit=5)
    assert len(rows) == 5 and all(r.subject == "p_1" for r in rows) and cursor
    rest, end = store.search_events(subject="p_1", cursor=cursor, limit=100)
    assert end is None and len(rows) + len(rest) == len([e for e in events if e["credential"]["subject"] == "p_1"])
    fevers, _ = store.search_events(reason="fever", outcome="deny", limit=100)
    assert len(fevers) == 10
    # LIKE wildcards in a reason are literal characters, not patterns
    assert store.search_events(reason="f%")[0] == []


def test_retention_clears_personal_fields_and_keeps_rollups(store):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    new = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    store.insert_events(rows_for([make_event("g1", 1, ts=old, subject="p_old", outcome="deny", reasons=["fever"]),
                                  make_event("g1", 2, ts=new, subject="p_new")]))
    store.add_dead_letters([(utcnow() - dt.timedelta(days=40), "checkgate/v1/gates/g1/events", "bad", b"x")])
    before = store.stats(since=old - dt.timedelta(days=1), until=new + dt.timedelta(days=1), bucket="day")
    assert RetentionJob(store, days=21, interval_s=3600).run_once() == 1
    rows, _ = store.search_events(limit=10)
    by_seq = {r.seq: r for r in rows}
    assert by_seq[1].purged and by_seq[1].subject is None and by_seq[1].temperature_c is None
    assert by_seq[1].payload is None and by_seq[1].outcome == "deny" and by_seq[1].reasons == ",fever,"
    assert by_seq[2].subject == "p_new" and not by_seq[2].purged
    after = store.stats(since=old - dt.timedelta(days=1), until=new + dt.timedelta(days=1), bucket="day")
    assert after == before
    assert store.dead_letters()[0].payload is None
    assert RetentionJob(store, days=21, interval_s=3600).run_once() == 0  # nothing left to clear


def test_gate_state_is_recorded(store):
    now = utcnow()
    store.record_gate_state("g1", True, {"queue_depth": 2}, now)
    store.record_gate_state("g1", False, None, now)
    g = store.gate("g1")
    assert g.online is False and json.loads(g.health) == {"queue_depth": 2} and g.last_seen == now
