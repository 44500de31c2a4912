"""End-to-end ingest: simulated gates -> real Mosquitto -> `checkgate server run` -> SQLite / PostgreSQL.

Two load-generator processes publish realistic events (QoS 1) from many simulated
gates as fast as the pipeline takes them; the server runs as its own process,
exactly as deployed. Reported: events/s from the first publish until the last
event is in the database, and the lag (received - decided) per stored event.

    python bench/run.py --only ingest [--quick] [--json]
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from common import BenchResult, Row, percentile  # noqa: E402

PG_ADMIN_URL = os.environ.get("CHECKGATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
GATES = 200
GENERATORS = 2


def broker_config(port: int, workdir: pathlib.Path) -> str:
    # The server acknowledges after each database commit, so the broker must allow
    # more than the default 20 messages in flight towards it.
    return "\n".join([
        f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
        f"persistence_location {workdir}/", "max_inflight_messages 2000", "max_queued_messages 1000000",
        "log_type error", "log_type warning",
    ]) + "\n"


def generate(port: int, first_gate: int, n_gates: int, count: int, seed: int) -> None:
    """Publish `count` events spread over gates [first_gate, first_gate + n_gates)."""
    import paho.mqtt.client as mqtt

    from checkgate import protocol
    from server.testing import realistic_event

    rng = random.Random(seed)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-gen-{seed}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    seqs = [0] * n_gates
    last = None
    for i in range(count):
        g = i % n_gates
        seqs[g] += 1
        gate_id = f"gate-{first_gate + g:04d}"
        event = realistic_event(gate_id, seqs[g], rng)
        last = client.publish(protocol.events_topic(gate_id), json.dumps(event), qos=1)
    if last is not None:
        last.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _count(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
    except sa.exc.OperationalError:
        return -1
    finally:
        engine.dispose()


def _lags(url: str) -> list[float]:
    import sqlalchemy as sa

    from server.store import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            from server.models import events

            rows = conn.execute(sa.select(events.c.ts, events.c.received_at)).all()
    finally:
        engine.dispose()
    return [(r.received_at - r.ts).total_seconds() * 1000 for r in rows]


def run_one(database_url: str, events: int, workdir: pathlib.Path) -> dict:
    from checkgate.broker import MosquittoProcess, free_port, wait_for_port

    port = free_port()
    broker = MosquittoProcess(port=port, workdir=workdir / "broker", config_text=broker_config(port, workdir / "broker"))
    broker.start()
    http_port = free_port()
    cfg = workdir / "server.json"
    cfg.write_text(json.dumps({
        "database_url": database_url, "http": {"port": http_port},
        "mqtt": {"port": port, "client_id": "bench-server"},
        "ingest": {"batch_size": 2000, "queue_size": 20000},
    }))
    server = subprocess.Popen([sys.executable, "-m", "checkgate.cli", "server", "run", "--config", str(cfg)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"))
    gens = []
    try:
        if not wait_for_port("127.0.0.1", http_port, 60):
            raise RuntimeError(f"server did not start: {(workdir / 'server.log').read_text()[-2000:]}")
        import httpx

        deadline = time.monotonic() + 30
        while not httpx.get(f"http://127.0.0.1:{http_port}/healthz").json().get("mqtt"):
            if time.monotonic() > deadline:
                raise RuntimeError("server did not connect to the broker")
            time.sleep(0.1)
        per_gen = events // GENERATORS
        t0 = time.monotonic()
        for k in range(GENERATORS):
            gens.append(subprocess.Popen(
                [sys.executable, __file__, "--generate", str(port), str(k * GATES // GENERATORS),
                 str(GATES // GENERATORS), str(per_gen), str(k + 1)], cwd=ROOT))
        total = per_gen * GENERATORS
        stored = 0
        limit = time.monotonic() + 240
        while stored < total:
            if time.monotonic() > limit:
                raise RuntimeError(f"only {stored} of {total} events stored in time")
            time.sleep(0.25)
            stored = _count(database_url)
        elapsed = time.monotonic() - t0
        for g in gens:
            g.wait(30)
        lags = _lags(database_url)
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        broker.cleanup()
    return {"events": total, "seconds": elapsed, "eps": total / elapsed, "lag_ms": lags}


def _fresh_pg() -> str:
    import sqlalchemy as sa

    name = f"checkgate_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg(url: str) -> None:
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def run(args) -> BenchResult:
    events = 10_000 if getattr(args, "quick", False) else 60_000
    rows, metrics = [], {}
    with tempfile.TemporaryDirectory(prefix="checkgate-bench-ingest-") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "sqlite").mkdir()
        sqlite = run_one(f"sqlite:///{tmp}/sqlite/bench.sqlite3", events, tmp / "sqlite")
        pg_url = _fresh_pg()
        try:
            (tmp / "pg").mkdir()
            pg = run_one(pg_url, events, tmp / "pg")
        finally:
            _drop_pg(pg_url)
    for name, result in (("sqlite", sqlite), ("postgres", pg)):
        lags = result["lag_ms"]
        rows.append(Row(f"ingest {name}", "events/s", result["eps"], result["eps"],
                        note=f"{result['events']} events, {GATES} gates, {result['seconds']:.1f}s"))
        rows.append(Row(f"ingest {name} lag", "ms", percentile(lags, 50), percentile(lags, 95),
                        note="received - decided"))
        metrics[f"ingest_{name}_eps"] = round(result["eps"], 1)
        metrics[f"ingest_{name}_lag_ms_p50"] = round(percentile(lags, 50), 1)
        metrics[f"ingest_{name}_lag_ms_p95"] = round(percentile(lags, 95), 1)
        metrics[f"ingest_{name}_events"] = result["events"]
    return BenchResult(rows=rows, metrics=metrics)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--generate":
    generate(*(int(x) for x in sys.argv[2:7]))
