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


TS_MARK = b"2000-01-01T00:00:00.000Z"


def generate(port: int, first_gate: int, n_gates: int, count: int, seed: int, rate: int = 0) -> None:
    """Publish `count` events spread over gates [first_gate, first_gate + n_gates).

    Payloads are built before the start signal (a line on stdin) so the measurement is
    the pipeline, not JSON encoding in the generator; each event's `ts` is stamped
    when it is published. `rate` > 0 paces publishing (events/s).
    """
    import datetime as dt

    import paho.mqtt.client as mqtt

    from checkgate import protocol
    from server.testing import realistic_event

    rng = random.Random(seed)
    seqs = [0] * n_gates
    messages = []
    for i in range(count):
        g = i % n_gates
        seqs[g] += 1
        gate_id = f"gate-{first_gate + g:04d}"
        event = realistic_event(gate_id, seqs[g], rng, ts=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        messages.append((protocol.events_topic(gate_id), json.dumps(event).encode()))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-gen-{seed}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    last = None
    for i, (topic, payload) in enumerate(messages):
        if rate and i % 50 == 0:
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
        last = client.publish(topic, payload.replace(TS_MARK, now, 1), qos=1)
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


def run_one(database_url: str, events: int, workdir: pathlib.Path, rate: int = 0, drain: bool = False) -> dict:
    """One run. drain=True: publish while the server is stopped (the broker queues for its
    persistent session), then start it and time how fast it empties the backlog - the
    catch-up after an outage, without the load generators competing for the CPU."""
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
    def start_server():
        return subprocess.Popen([sys.executable, "-m", "checkgate.cli", "server", "run", "--config", str(cfg)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "ab"))

    server = start_server()
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
        if drain:
            server.terminate()
            server.wait(30)
        per_gen = events // GENERATORS
        for k in range(GENERATORS):
            gens.append(subprocess.Popen(
                [sys.executable, __file__, "--generate", str(port), str(k * GATES // GENERATORS),
                 str(GATES // GENERATORS), str(per_gen), str(k + 1), str(rate // GENERATORS)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for g in gens:
            if g.stdout.readline().strip() != "ready":
                raise RuntimeError("load generator failed")
        t0 = time.monotonic()
        for g in gens:
            g.stdin.write("go\n")
            g.stdin.flush()
        total = per_gen * GENERATORS
        first_seen = None
        if drain:
            for g in gens:
                g.wait(120)
            server = start_server()
        stored = 0
        limit = time.monotonic() + 240
        while stored < total:
            if time.monotonic() > limit:
                raise RuntimeError(f"only {stored} of {total} events stored in time")
            time.sleep(0.1 if drain else 0.25)
            stored = _count(database_url)
            if drain and first_seen is None and stored > 0:
                first_seen = (time.monotonic(), stored)
        if drain:
            t0, already = first_seen
            total_measured = total - already
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
    measured = total_measured if drain else total
    return {"events": total, "seconds": elapsed, "eps": measured / elapsed, "lag_ms": lags}


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
    """Per backend: a saturation run (events/s), then a paced run at half that rate (lag)."""
    quick = getattr(args, "quick", False)
    events = 10_000 if quick else 40_000
    rows, metrics = [], {}
    results = {}
    with tempfile.TemporaryDirectory(prefix="checkgate-bench-ingest-") as tmp:
        tmp = pathlib.Path(tmp)
        for name in ("sqlite", "postgres"):
            runs = {}
            for phase in ("max", "paced", "drain"):
                work = tmp / f"{name}-{phase}"
                work.mkdir()
                rate = 0 if phase != "paced" else max(100, int(runs["max"]["eps"] / 2))
                n = min(events // 2, rate * (10 if quick else 20)) if phase == "paced" else events
                url = f"sqlite:///{work}/bench.sqlite3" if name == "sqlite" else _fresh_pg()
                try:
                    runs[phase] = run_one(url, n, work, 0 if phase == "drain" else rate, drain=phase == "drain")
                    runs[phase]["rate"] = rate
                finally:
                    if name == "postgres":
                        _drop_pg(url)
            results[name] = runs
    for name, runs in results.items():
        top, paced = runs["max"], runs["paced"]
        rows.append(Row(f"ingest {name}", "events/s", top["eps"], top["eps"],
                        note=f"{top['events']} events as fast as taken, {GATES} gates, {top['seconds']:.1f}s"))
        lags = paced["lag_ms"]
        rows.append(Row(f"ingest {name} lag", "ms", percentile(lags, 50), percentile(lags, 95),
                        note=f"received - decided at {paced['rate']} events/s offered ({paced['events']} events)"))
        metrics[f"ingest_{name}_eps"] = round(top["eps"], 1)
        metrics[f"ingest_{name}_events"] = top["events"]
        metrics[f"ingest_{name}_lag_ms_p50"] = round(percentile(lags, 50), 1)
        metrics[f"ingest_{name}_lag_ms_p95"] = round(percentile(lags, 95), 1)
        metrics[f"ingest_{name}_lag_offered_eps"] = paced["rate"]
        drained = runs["drain"]
        rows.append(Row(f"ingest {name} backlog drain", "events/s", drained["eps"], drained["eps"],
                        note=f"{drained['events']} events queued while the server was down"))
        metrics[f"ingest_{name}_drain_eps"] = round(drained["eps"], 1)
    return BenchResult(rows=rows, metrics=metrics)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--generate":
    generate(*(int(x) for x in sys.argv[2:8]))
