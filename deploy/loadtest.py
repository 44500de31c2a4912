#!/usr/bin/env python3
"""Load-test a centre built exactly as `checkgate provision` builds it, on this machine.

    .venv/bin/python deploy/loadtest.py --instances 2 --gates 20 --events 500 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/checkgate_load [--json]

Provisions a deployment into a temporary directory (CA, Mosquitto config with TLS, per-gate
users and ACL, N server configs on one shared subscription), starts Mosquitto on it, runs
`checkgate server migrate` once and N `checkgate server run` processes, then every gate
publishes its events over TLS with its own credentials, the way the gate daemon does
(MQTT 3.1.1, QoS 1). It reports how fast the centre stored them and checks that every
event was stored exactly once. Use it to size a centre before the gates arrive
(docs/scaling.md). The database must be empty; with no --database-url, a SQLite file in
the temporary directory is used (one instance only makes sense then).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import pathlib
import random
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

logger = logging.getLogger("loadtest")


def provision(out: pathlib.Path, args) -> tuple[int, list[str]]:
    from checkgate import provision as prov
    from checkgate.broker import free_port

    tls_port = free_port()
    gates = [f"load-{i:03d}" for i in range(1, args.gates + 1)]
    prov.provision_broker(
        out, hostnames=["localhost", "127.0.0.1"], gates=gates, server_instances=args.instances,
        database_url=args.database_url or f"sqlite:///{out / 'server.sqlite3'}",
        server_install_dir=str(out / "server"), gate_install_dir=str(out / "gates" / "{gate}"),
        tls_port=tls_port, cert_port=None, install_dir=str(out / "broker"), data_dir=str(out / "broker"),
        run_as=getpass.getuser())
    return tls_port, gates


def set_http_port(path: pathlib.Path, port: int) -> None:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    cfg["http"]["port"] = port
    path.write_text(yaml.safe_dump(cfg))


def metric(port: int, name: str) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def healthy(port: int) -> bool:
    import httpx

    try:
        body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return bool(body.get("ok") and body.get("mqtt"))


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def centre(out: pathlib.Path, args):
    """Mosquitto + migrations + N server processes on the provisioned files."""
    from checkgate.broker import MosquittoProcess, free_port

    tls_port, gates = provision(out, args)
    broker = MosquittoProcess(port=tls_port, workdir=out / "broker-run",
                              config_text=(out / "broker" / "mosquitto.conf").read_text()).start()
    procs, ports = [], []
    try:
        cli = [sys.executable, "-m", "checkgate.cli"]
        subprocess.run([*cli, "server", "migrate", "--config", str(out / "server" / "server-1.yaml")],
                       check=True, capture_output=True, timeout=300)
        for i in range(1, args.instances + 1):
            port = free_port()
            set_http_port(out / "server" / f"server-{i}.yaml", port)
            log = open(out / f"server-{i}.log", "ab")
            procs.append(subprocess.Popen([*cli, "server", "run", "--config", str(out / "server" / f"server-{i}.yaml")],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
            ports.append(port)
        for port in ports:
            wait(lambda p=port: healthy(p), 120, f"server on port {port}")
        yield gates, ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.cleanup()


class Gate(threading.Thread):
    """One provisioned gate publishing `count` events over TLS as fast as `rate` allows."""

    def __init__(self, out: pathlib.Path, gate_id: str, count: int, rate: float, start_at: threading.Event):
        super().__init__(name=gate_id, daemon=True)
        self.out, self.gate_id, self.count, self.rate, self.start_at = out, gate_id, count, rate, start_at
        self.error: BaseException | None = None
        self.event_ids: list[str] = []
        self.ready = threading.Event()  # logged in, events built: the clock may start

    def run(self) -> None:
        try:
            self._publish()
        except BaseException as err:  # reported by the main thread
            self.error = err
            self.ready.set()

    def _publish(self) -> None:
        import paho.mqtt.client as mqtt
        import yaml

        from checkgate import protocol
        from server.testing import realistic_event

        cfg = yaml.safe_load((self.out / "gates" / self.gate_id / "gate.yaml").read_text())["mqtt"]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"checkgate-gate-{self.gate_id}",
                             clean_session=True, protocol=mqtt.MQTTv311)
        client.tls_set(ca_certs=cfg["ca_file"])
        client.username_pw_set(cfg["username"], cfg["password"])
        client.max_inflight_messages_set(100)
        rng = random.Random(self.gate_id)
        payloads = [realistic_event(self.gate_id, seq, rng) for seq in range(1, self.count + 1)]
        connected = threading.Event()
        client.on_connect = lambda *a: connected.set()
        client.connect(cfg["host"], cfg["port"])
        client.loop_start()
        if not connected.wait(60):
            raise TimeoutError(f"{self.gate_id}: no CONNACK from {cfg['host']}:{cfg['port']}")
        self.ready.set()
        self.start_at.wait()
        t0 = time.monotonic()
        infos = []
        for n, event in enumerate(payloads):
            if self.rate > 0:
                delay = t0 + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            event["ts"] = protocol.utc_iso()
            self.event_ids.append(event["event_id"])
            infos.append(client.publish(protocol.events_topic(self.gate_id), json.dumps(event), qos=1))
        for info in infos:
            info.wait_for_publish(300)
        client.disconnect()
        client.loop_stop()


def stored_once(database_url: str) -> tuple[int, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            total, distinct = conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM events")).one()
    finally:
        engine.dispose()
    return int(total), int(distinct)


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="checkgate-load-") as tmp:
        out = pathlib.Path(tmp) / "provision"
        database_url = args.database_url or f"sqlite:///{out / 'server.sqlite3'}"
        with centre(out, args) as (gates, ports):
            start = threading.Event()
            threads = [Gate(out, g, args.events, args.rate, start) for g in gates]
            for t in threads:
                t.start()
            for t in threads:  # every gate logged in over TLS before the clock starts
                t.ready.wait(120)
            t0 = time.monotonic()
            start.set()
            for t in threads:
                t.join()
            errors = [f"{t.gate_id}: {t.error!r}" for t in threads if t.error]
            if errors:
                raise RuntimeError("; ".join(errors[:3]))
            t_published = time.monotonic()
            expected = args.gates * args.events
            wait(lambda: sum(metric(p, "checkgate_ingest_events_stored_total") for p in ports) >= expected,
                 args.timeout, f"{expected} events stored")
            t_stored = time.monotonic()
            per_instance = [int(metric(p, "checkgate_ingest_events_stored_total")) for p in ports]
            total, distinct = stored_once(database_url)
    return {
        "instances": args.instances, "gates": args.gates, "events": expected,
        "database": database_url.split(":", 1)[0].split("+")[0],
        "publish_s": round(t_published - t0, 2), "stored_s": round(t_stored - t0, 2),
        "stored_eps": round(expected / (t_stored - t0), 1), "per_instance": per_instance,
        "stored_once": total == distinct == expected, "rows": total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1, help="server instances on the shared subscription")
    parser.add_argument("--gates", type=int, default=10)
    parser.add_argument("--events", type=int, default=200, help="events per gate")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s per gate (0: as fast as possible)")
    parser.add_argument("--database-url", help="an empty database (default: SQLite in the temporary directory)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['events']} events from {result['gates']} gates over TLS, {result['instances']} server "
              f"instance(s), {result['database']}: published in {result['publish_s']} s, all stored after "
              f"{result['stored_s']} s = {result['stored_eps']} events/s; per instance {result['per_instance']}; "
              f"stored exactly once: {result['stored_once']}")
    return 0 if result["stored_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
