"""End-to-end ingest: simulated gates -> real Mosquitto -> `checkgate server run` -> SQLite / PostgreSQL.

Two load-generator processes publish realistic events (QoS 1) from many simulated
gates as fast as the pipeline takes them; the server runs as its own process,
exactly as deployed. Reported: events/s from the first publish until the last
event is in the database, and the lag (received - decided) per stored event.

    python bench/run.py --only ingest [--quick] [--json]

The server's ingest session uses MQTT 5, its default; CHECKGATE_BENCH_MQTT_PROTOCOL=3.1.1
measures the other setting.
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
# the server's ingest session as deployed by default ("5"); "3.1.1" to compare
SERVER_MQTT_PROTOCOL = os.environ.get("CHECKGATE_BENCH_MQTT_PROTOCOL", "5")
TARGET_EPS = {"sqlite": 2_000, "postgres": 5_000}  # the targets on this 2-core machine


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
    # MQTT 3.1.1 with QoS 1, as the gate daemon's uplink publishes (lean framing: see mqtt_flood)
    from mqtt_flood import FloodPublisher

    publisher = FloodPublisher("127.0.0.1", port, f"bench-gen-{seed}")
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0 = time.process_time()

    def stamp(payload: bytes) -> bytes:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
        return payload.replace(TS_MARK, now, 1)

    publisher.publish_all(messages, stamp, rate)
    publisher.close()
    print(f"cpu {time.process_time() - cpu0:.4f}", flush=True)


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


def _lags(url: str, after_id: int) -> list[float]:
    import sqlalchemy as sa

    from server.models import events
    from server.store import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(events.c.ts, events.c.received_at).where(events.c.id > after_id)).all()
    finally:
        engine.dispose()
    return [(r.received_at - r.ts).total_seconds() * 1000 for r in rows]


def _received_stamps(url: str, after_id: int) -> list:
    import sqlalchemy as sa

    from server.models import events
    from server.store import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(events.c.received_at).where(events.c.id > after_id)))
    finally:
        engine.dispose()


def _drain_rate(url: str, after_id: int) -> tuple[int, float]:
    """(events, events/s) of rows after `after_id`, over the middle 80 % of their received_at
    stamps (leaves out the server's start-up and the last partial batch)."""
    stamps = _received_stamps(url, after_id)
    n = len(stamps)
    lo, hi = stamps[n // 10], stamps[(9 * n) // 10]
    return n, ((9 * n) // 10 - n // 10) / max((hi - lo).total_seconds(), 1e-6)


def _window_rates(samples: list[tuple[float, int]]) -> list[float]:
    """Storage rate (events/s) in each window between polls of the stored count: 1 s windows,
    or every poll for a run shorter than 5 s. The windows before the first stored event and
    the last (partial) one are left out."""
    moving = [i for i in range(1, len(samples)) if samples[i][1] > samples[0][1]]
    if not moving:
        return [0.0]
    start = max(moving[0] - 1, 0)
    span = samples[-1][0] - samples[start][0]
    window = 1.0 if span >= 5 else 0.0
    rates, (t_prev, n_prev) = [], samples[start]
    for t, n in samples[start + 1:-1]:
        if t - t_prev >= window:
            rates.append((n - n_prev) / (t - t_prev))
            t_prev, n_prev = t, n
    if not rates:  # too short to split
        rates = [(samples[-1][1] - samples[start][1]) / max(span, 1e-6)]
    return rates


def _max_id(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM events")).scalar_one()
    finally:
        engine.dispose()


class Pipeline:
    """A private broker and `checkgate server run` on one database, plus load generators."""

    def __init__(self, database_url: str, workdir: pathlib.Path):
        from checkgate.broker import MosquittoProcess, free_port

        self.url = database_url
        self.workdir = workdir
        self.port = free_port()
        self.http_port = free_port()
        self.broker = MosquittoProcess(port=self.port, workdir=workdir / "broker",
                                       config_text=broker_config(self.port, workdir / "broker"))
        self.cfg = self._config(0, self.http_port)
        self.cfg2 = self._config(1, free_port())
        self.server: subprocess.Popen | None = None
        self.server2: subprocess.Popen | None = None
        self.next_gate = 0
        self.seed = 0

    def _config(self, index: int, http_port: int) -> pathlib.Path:
        path = self.workdir / f"server-{index}.json"
        path.write_text(json.dumps({
            "database_url": self.url, "http": {"port": http_port},
            "mqtt": {"port": self.port, "client_id": f"bench-server-{index}", "protocol": SERVER_MQTT_PROTOCOL},
            "ingest": {"batch_size": 2000, "queue_size": 20000},
        }))
        return path

    def _start(self, cfg: pathlib.Path) -> subprocess.Popen:
        import httpx

        from checkgate.broker import wait_for_port

        http_port = json.loads(cfg.read_text())["http"]["port"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "checkgate.cli", "server", "run", "--config", str(cfg)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "server.log", "ab"))
        if not wait_for_port("127.0.0.1", http_port, 60):
            raise RuntimeError(f"server did not start: {(self.workdir / 'server.log').read_text()[-2000:]}")
        deadline = time.monotonic() + 30
        while not httpx.get(f"http://127.0.0.1:{http_port}/healthz").json().get("mqtt"):
            if time.monotonic() > deadline:
                raise RuntimeError("server did not connect to the broker")
            time.sleep(0.1)
        return proc

    def start_server(self, second: bool = False) -> None:
        if self.server is not None or self.server2 is not None:
            raise RuntimeError("a server is still running: stop it first (no orphan processes)")
        self.server = self._start(self.cfg)
        if second:
            self.server2 = self._start(self.cfg2)

    def stop_server(self) -> None:
        for name in ("server", "server2"):
            proc = getattr(self, name)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            setattr(self, name, None)

    def generators(self, events: int, rate: int) -> list[subprocess.Popen]:
        """Start load generators (each for half of a fresh set of gates) and wait until they are ready."""
        gens = []
        per_gen = events // GENERATORS
        for k in range(GENERATORS):
            self.seed += 1
            first = self.next_gate + k * GATES // GENERATORS
            gens.append(subprocess.Popen(
                [sys.executable, __file__, "--generate", str(self.port), str(first), str(GATES // GENERATORS),
                 str(per_gen), str(self.seed), str(rate // GENERATORS)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        self.next_gate += GATES  # every phase uses new gate names, so seq stays gap-free per gate
        for g in gens:
            if g.stdout.readline().strip() != "ready":
                raise RuntimeError("load generator failed")
        return gens

    @staticmethod
    def go(gens) -> float:
        t0 = time.monotonic()
        for g in gens:
            g.stdin.write("go\n")
            g.stdin.flush()
        return t0

    def wait_stored(self, target: int, poll: float = 0.25, timeout: float = 240):
        """Poll until `target` events are stored; returns (done time, [(time, stored count), ...])."""
        stored = _count(self.url)
        samples = [(time.monotonic(), stored)]
        limit = time.monotonic() + timeout
        while stored < target:
            if time.monotonic() > limit:
                raise RuntimeError(f"only {stored} of {target} events stored in time")
            time.sleep(poll)
            stored = _count(self.url)
            samples.append((time.monotonic(), stored))
        return time.monotonic(), samples

    def run_phases(self, events: int, paced_s: float) -> dict:
        """Saturation (as fast as taken), paced at half that rate (lag), backlog drain."""
        out = {}
        self.broker.start()
        try:
            self.start_server()
            # 1. saturation
            base = max(_count(self.url), 0)
            gens = self.generators(events, 0)
            t0 = self.go(gens)
            done, samples = self.wait_stored(base + events)
            out["max"] = {"events": events, "seconds": done - t0, "eps": events / (done - t0),
                          "per_second": _window_rates(samples),
                          "generator_cpu_us": _wait_all(gens) / events * 1e6}
            # 2. paced below capacity, for the lag
            rate = max(100, int(out["max"]["eps"] / 2))
            n = max(GENERATORS, int(rate * paced_s)) // GENERATORS * GENERATORS
            base, after_id = _count(self.url), _max_id(self.url)
            gens = self.generators(n, rate)
            self.go(gens)
            self.wait_stored(base + n)
            _wait_all(gens)
            out["paced"] = {"events": n, "rate": rate, "lag_ms": _lags(self.url, after_id)}
            # 3. a backlog published while the server is down (its session queues it), then drained
            # (rate from the server's own received_at stamps: it starts draining while
            # it is still reporting itself ready)
            self.stop_server()
            base, after_id = _count(self.url), _max_id(self.url)
            gens = self.generators(events, 0)
            self.go(gens)
            _wait_all(gens)
            self.start_server()
            self.wait_stored(base + events, poll=0.1)
            n, eps = _drain_rate(self.url, after_id)
            out["drain"] = {"events": n, "eps": eps}
            # 4. the same backlog drained by two instances on the shared subscription (both
            # sessions exist before the backlog is published, so the broker splits it)
            self.stop_server()  # the single instance of phase 3 (it would be left running otherwise)
            self.start_server(second=True)
            self.stop_server()
            base, after_id = _count(self.url), _max_id(self.url)
            gens = self.generators(events, 0)
            self.go(gens)
            _wait_all(gens)
            self.start_server(second=True)
            self.wait_stored(base + events, poll=0.1)
            n, eps = _drain_rate(self.url, after_id)
            out["drain2"] = {"events": n, "eps": eps}
        finally:
            self.stop_server()
            self.broker.cleanup()
        return out


def _wait_all(gens) -> float:
    """Wait for the generators; returns the CPU seconds they spent publishing."""
    cpu = 0.0
    for g in gens:
        try:
            out, _ = g.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            g.kill()
            continue
        for line in out.splitlines():
            if line.startswith("cpu "):
                cpu += float(line.split()[1])
    return cpu


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
    """Per backend: saturation (events/s), paced at half that rate (lag), backlog drain."""
    quick = getattr(args, "quick", False)
    events = 8_000 if quick else 100_000
    paced_s = 5 if quick else 10
    rows, metrics = [], {}
    results = {}
    with tempfile.TemporaryDirectory(prefix="checkgate-bench-ingest-") as tmp:
        tmp = pathlib.Path(tmp)
        for name in ("sqlite", "postgres"):
            work = tmp / name
            work.mkdir()
            url = f"sqlite:///{work}/bench.sqlite3" if name == "sqlite" else _fresh_pg()
            try:
                results[name] = Pipeline(url, work).run_phases(events, paced_s)
            finally:
                if name == "postgres":
                    _drop_pg(url)
    for name, runs in results.items():
        top, paced, drained = runs["max"], runs["paced"], runs["drain"]
        target = TARGET_EPS[name]
        per_s = top["per_second"]
        # throughput: the median window, and the rate that 95 % of the windows reached
        rows.append(Row(f"ingest {name}", "events/s", percentile(per_s, 50), percentile(per_s, 5),
                        f"target {target:,}", target,
                        note=f"{top['events']} events, {GATES} gates, {top['eps']:,.0f}/s first publish to last "
                             f"stored ({top['seconds']:.1f}s), server on MQTT {SERVER_MQTT_PROTOCOL}; generators {top['generator_cpu_us']:.0f} us CPU/event"))
        lags = paced["lag_ms"]
        rows.append(Row(f"ingest {name} lag", "ms", percentile(lags, 50), percentile(lags, 95),
                        note=f"received - decided at {paced['rate']} events/s offered ({paced['events']} events)"))
        rows.append(Row(f"ingest {name} backlog drain", "events/s", drained["eps"], drained["eps"],
                        note=f"{drained['events']} events queued while the server was down"))
        rows.append(Row(f"ingest {name} backlog drain, 2 instances", "events/s", runs["drain2"]["eps"],
                        runs["drain2"]["eps"], "1 instance", drained["eps"],
                        note="two server processes on one shared subscription"))
        metrics[f"ingest_{name}_eps"] = round(top["eps"], 1)
        metrics[f"ingest_{name}_eps_per_second_median"] = round(percentile(per_s, 50), 1)
        metrics[f"ingest_{name}_events"] = top["events"]
        metrics[f"ingest_{name}_generator_cpu_us_per_event"] = round(top["generator_cpu_us"], 1)
        metrics[f"ingest_{name}_lag_ms_p50"] = round(percentile(lags, 50), 1)
        metrics[f"ingest_{name}_lag_ms_p95"] = round(percentile(lags, 95), 1)
        metrics[f"ingest_{name}_lag_offered_eps"] = paced["rate"]
        metrics[f"ingest_{name}_drain_eps"] = round(drained["eps"], 1)
        metrics[f"ingest_{name}_drain_2_instances_eps"] = round(runs["drain2"]["eps"], 1)
    return BenchResult(rows=rows, metrics=metrics)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--generate":
    generate(*(int(x) for x in sys.argv[2:8]))
