"""Query latency of the dashboard's two hot queries on a large event store.

Synthetic events are generated inside the database (PostgreSQL generate_series,
SQLite a recursive CTE), indexes are built after the load, and rollups are
computed from the events, the way a long-running server would have them. Then
the server's own Store methods (what the API routes call) are timed:

- stats: a day per hour summed over gates, one gate's day per hour by outcome and reason,
  every gate's daily totals for a week, the overview's per-gate totals for a day,
- search: event-log pages with filters (gate + day, reason over a week, subject,
  second page through the cursor).

    python bench/run.py --only queries [--quick] [--json]
    CHECKGATE_BENCH_QUERY_EVENTS=10000000 python bench/run.py --only queries --json
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import random
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import BenchResult, Row, percentile  # noqa: E402

GATES = 200
DAYS = 30
START = dt.datetime(2026, 10, 1)
EVENT_INDEXES = ["ix_events_ts", "ix_events_gate_ts", "ix_events_gate_seq", "ix_events_subject_ts", "ix_events_alert"]


def _pg_load(conn, n: int) -> None:
    seconds = DAYS * 86400
    conn.exec_driver_sql(f"""
        INSERT INTO events (event_id, gate_id, seq, type, outcome, reasons, alert, ts, received_at, late,
                            credential_kind, subject, temperature_c, credential_status, operator, payload, purged)
        SELECT 'B' || lpad(i::text, 25, '0'),
               'gate-' || lpad(mod(i, {GATES})::text, 4, '0'),
               i / {GATES} + 1, 'screening',
               CASE WHEN r < 0.86 THEN 'pass' WHEN r < 0.92 THEN 'deny' WHEN r < 0.98 THEN 'retry' ELSE 'manual' END,
               CASE WHEN r < 0.86 THEN '' WHEN r < 0.89 THEN ',fever,' WHEN r < 0.92 THEN ',status_red,'
                    WHEN r < 0.98 THEN ',temperature_recheck,' ELSE ',no_credential,' END,
               r >= 0.86 AND r < 0.89,
               timestamp '{START:%Y-%m-%d %H:%M:%S}' + (i::float8 * {seconds} / {n}) * interval '1 second',
               timestamp '{START:%Y-%m-%d %H:%M:%S}' + (i::float8 * {seconds} / {n} + 0.2) * interval '1 second',
               false, 'pass', 'p_' || lpad(to_hex((random() * 1000000)::int), 6, '0'),
               round((36.2 + random() * 0.8)::numeric, 1), 'green', NULL, NULL, false
        FROM (SELECT i, random() AS r FROM generate_series(1, {n}) AS i) AS s""")


def _sqlite_load(conn, n: int) -> None:
    seconds = DAYS * 86400
    conn.exec_driver_sql(f"""
        WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}),
        s AS (SELECT i, abs(random()) % 10000 / 10000.0 AS r FROM c)
        INSERT INTO events (event_id, gate_id, seq, type, outcome, reasons, alert, ts, received_at, late,
                            credential_kind, subject, temperature_c, credential_status, operator, payload, purged)
        SELECT printf('B%025d', i), printf('gate-%04d', i % {GATES}), i / {GATES} + 1, 'screening',
               CASE WHEN r < 0.86 THEN 'pass' WHEN r < 0.92 THEN 'deny' WHEN r < 0.98 THEN 'retry' ELSE 'manual' END,
               CASE WHEN r < 0.86 THEN '' WHEN r < 0.89 THEN ',fever,' WHEN r < 0.92 THEN ',status_red,'
                    WHEN r < 0.98 THEN ',temperature_recheck,' ELSE ',no_credential,' END,
               r >= 0.86 AND r < 0.89,
               strftime('%Y-%m-%d %H:%M:%f000', '{START:%Y-%m-%d %H:%M:%S}', '+' || (i * {seconds} / {n}.0) || ' seconds'),
               strftime('%Y-%m-%d %H:%M:%f000', '{START:%Y-%m-%d %H:%M:%S}', '+' || (i * {seconds} / {n}.0 + 0.2) || ' seconds'),
               0, 'pass', printf('p_%06x', abs(random()) % 1000000), 36.5, 'green', NULL, NULL, 0
        FROM s""")


def _rollups(conn, dialect: str, tz: str) -> None:
    if dialect == "postgresql":
        hour = "date_trunc('hour', ts)"
        day = f"(ts AT TIME ZONE 'UTC' AT TIME ZONE '{tz}')::date"
        reasons = "unnest(string_to_array(trim(both ',' from reasons), ','))"
        for table, key, expr in (("rollup_hourly", "hour", hour), ("rollup_daily", "day", day)):
            conn.exec_driver_sql(f"INSERT INTO {table} ({key}, gate_id, outcome, reason, count) "
                                 f"SELECT {expr}, gate_id, outcome, '*', count(*) FROM events GROUP BY 1, 2, 3")
            conn.exec_driver_sql(f"INSERT INTO {table} ({key}, gate_id, outcome, reason, count) "
                                 f"SELECT k, gate_id, outcome, reason, count(*) FROM "
                                 f"(SELECT {expr} AS k, gate_id, outcome, {reasons} AS reason FROM events "
                                 f"WHERE reasons <> '') AS x GROUP BY 1, 2, 3, 4")
        return
    hour = "strftime('%Y-%m-%d %H:00:00.000000', ts)"
    day = "date(ts, '+8 hours')"  # Asia/Shanghai has no daylight saving time
    for table, key, expr in (("rollup_hourly", "hour", hour), ("rollup_daily", "day", day)):
        conn.exec_driver_sql(f"INSERT INTO {table} ({key}, gate_id, outcome, reason, count) "
                             f"SELECT {expr}, gate_id, outcome, '*', count(*) FROM events GROUP BY 1, 2, 3")
        conn.exec_driver_sql(f"INSERT INTO {table} ({key}, gate_id, outcome, reason, count) "
                             f"SELECT {expr}, gate_id, outcome, substr(reasons, 2, length(reasons) - 2), count(*) "
                             f"FROM events WHERE reasons <> '' GROUP BY 1, 2, 3, 4")


def build(url: str, n: int) -> float:
    """Load n synthetic events and their rollups; returns seconds taken."""
    import sqlalchemy as sa

    from server.store import make_engine, migrate

    migrate(url)
    engine = make_engine(url)
    t0 = time.monotonic()
    dialect = engine.dialect.name
    with engine.begin() as conn:
        for name in EVENT_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        if dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        (_pg_load if dialect == "postgresql" else _sqlite_load)(conn, n)
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        from server import models as m

        for index in m.events.indexes:
            if index.name in EVENT_INDEXES:
                index.create(conn)
        _rollups(conn, dialect, "Asia/Shanghai")
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE" if dialect == "postgresql" else "ANALYZE")
        count = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
    engine.dispose()
    assert count == n, (count, n)
    return time.monotonic() - t0


def measure(url: str, runs: int) -> dict:
    from server.store import Store

    store = Store(url)
    rng = random.Random(7)

    def a_day():
        day = START + dt.timedelta(days=rng.randrange(DAYS))
        return day, day + dt.timedelta(days=1)

    def a_gate():
        return f"gate-{rng.randrange(GATES):04d}"

    def stats_all_gates_hourly():  # the overview chart: a day per hour, summed over gates
        since, until = a_day()
        return store.stats(since=since, until=until, bucket="hour", by_gate=False)

    def stats_one_gate():  # one gate's day per hour by outcome and reason
        since, until = a_day()
        return store.stats(since=since, until=until, bucket="hour", gate=a_gate())

    def stats_per_gate_week():  # every gate's totals per day for a week (the weekly report)
        since = START + dt.timedelta(days=rng.randrange(DAYS - 7))
        return store.stats(since=since, until=since + dt.timedelta(days=7), bucket="day", totals_only=True)

    def stats_today_per_gate():  # the overview's per-gate table and reasons
        since, until = a_day()
        return store.totals(since=since, until=until)

    def search_gate_day():
        since, until = a_day()
        return store.search_events(gate=a_gate(), since=since, until=until, limit=100)[0]

    def search_reason_week():
        since = START + dt.timedelta(days=rng.randrange(DAYS - 7))
        return store.search_events(reason="fever", since=since, until=since + dt.timedelta(days=7), limit=100)[0]

    def search_subject():
        return store.search_events(subject=f"p_{rng.randrange(1000000):06x}", limit=100)[0]

    def search_second_page():
        since, until = a_day()
        _rows, cursor = store.search_events(outcome="deny", since=since, until=until, limit=100)
        return store.search_events(outcome="deny", since=since, until=until, cursor=cursor, limit=100)[0]

    def search_latest():
        return store.search_events(limit=100)[0]

    groups = {"stats": [stats_all_gates_hourly, stats_one_gate, stats_per_gate_week, stats_today_per_gate],
              "search": [search_gate_day, search_reason_week, search_subject, search_second_page, search_latest]}
    out = {}
    for group, funcs in groups.items():
        for f in funcs:  # warm the caches once, like a running server
            f()
        samples = []
        for i in range(runs):
            f = funcs[i % len(funcs)]
            t0 = time.perf_counter()
            f()
            samples.append((time.perf_counter() - t0) * 1000)
        out[group] = samples
    store.close()
    return out


def run(args) -> BenchResult:
    quick = getattr(args, "quick", False)
    n = int(os.environ.get("CHECKGATE_BENCH_QUERY_EVENTS", 200_000 if quick else 1_000_000))
    runs = 60 if quick else 200
    sys.path.insert(0, str(HERE))
    from bench_ingest import _drop_pg, _fresh_pg

    rows, metrics = [], {"query_events": n}
    results = {}
    pg_url = _fresh_pg()
    try:
        load_s = build(pg_url, n)
        results["postgres"] = (measure(pg_url, runs), load_s)
    finally:
        _drop_pg(pg_url)
    with tempfile.TemporaryDirectory(prefix="checkgate-bench-queries-") as tmp:
        sqlite_n = min(n, int(os.environ.get("CHECKGATE_BENCH_QUERY_SQLITE_EVENTS", n)))
        url = f"sqlite:///{tmp}/q.sqlite3"
        load_s = build(url, sqlite_n)
        results["sqlite"] = (measure(url, runs), load_s)
        metrics["query_sqlite_events"] = sqlite_n
    for backend, (samples, load_s) in results.items():
        count = n if backend == "postgres" else metrics["query_sqlite_events"]
        for group in ("stats", "search"):
            s = samples[group]
            rows.append(Row(f"{group} query {backend}", "ms", percentile(s, 50), percentile(s, 95),
                            note=f"{count:,} events, {GATES} gates, load {load_s:.0f}s"))
            prefix = "" if backend == "postgres" else "sqlite_"
            metrics[f"{prefix}{group}_query_ms_p95"] = round(percentile(s, 95), 2)
            metrics[f"{prefix}{group}_query_ms_p50"] = round(percentile(s, 50), 2)
    metrics["stats_query_events"] = n
    metrics["search_query_events"] = n
    return BenchResult(rows=rows, metrics=metrics)
