"""`checkgate demo`: the whole chain on one machine.

Starts a private Mosquitto, the central server (SQLite) and N gate daemons with
simulated thermometers, cameras and visitors (some with fever, some with forged or
revoked codes). With `--chaos` it also restarts the broker, kills -9 and restarts a
gate, restarts the server and cuts a gate's link for a while. At the end it stops the
visitors, waits for the queues to drain and prints one JSON line counting decided
events (from the gates' outboxes) against stored events (from the server database).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run broker + server + simulated gates on this machine",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gates", type=int, default=2, help="number of simulated gates (default 2)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds and print the summary")
    p.add_argument("--chaos", action="store_true",
                   help="restart the broker, kill -9 a gate, restart the server and cut a link during the run")
    p.add_argument("--interval", type=float, default=1.5, help="mean seconds between visitors per gate")
    p.add_argument("--http-port", type=int, default=0, help="dashboard port (default: a free one)")
    p.add_argument("--workdir", help="keep the demo's files here (default: a temporary folder)")
    p.add_argument("--drain-timeout", type=float, default=90.0, help="seconds to wait for queues to drain")
    p.add_argument("--json", action="store_true", help="(the summary line is always JSON)")
    p.set_defaults(func=cmd_demo)


def _die_with_parent() -> None:
    """Child processes get SIGTERM when the demo dies, even by kill -9: no orphans."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """A checkgate subprocess (server or gate) that can be stopped, killed and restarted."""

    def __init__(self, name: str, args: list[str], log_path: pathlib.Path):
        self.name, self.args, self.log_path = name, args, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "checkgate.cli", *self.args], stdout=log,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _wait_http(url: str, timeout: float) -> bool:
    """Wait until the server answers and its ingest is subscribed to the broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200 and json.loads(r.read() or b"{}").get("mqtt") is not False:
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    return False


def _make_codes(work: pathlib.Path, n_residents: int = 40):
    """An issuer key, valid passes, and bad codes (forged, revoked, red, expired)."""
    import datetime as dt

    from edge.credentials import keys
    from edge.credentials.passes import issue_pass
    from edge.credentials.signed import sign_document
    from edge.credentials.status import status_body

    priv_path, pub_path = keys.generate_keypair(work / "keys", kid="demo1")
    priv = keys.load_private_key(priv_path)
    kid = keys.kid_of_file(pub_path)
    year = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    valid = [issue_pass(priv, kid, f"p_{i:04d}", "resident", zones=("north",), expires=year)
             for i in range(n_residents)]
    revoked = issue_pass(priv, kid, "p_revoked", "resident", expires=year)
    red = issue_pass(priv, kid, "p_red", "resident", expires=year)
    expired = issue_pass(priv, kid, "p_expired", "visitor",
                         not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
                         expires=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    forger_priv, _ = keys.generate_keypair(work / "forger", kid="demo1")
    forged = issue_pass(keys.load_private_key(forger_priv), kid, "p_0001", "resident", expires=year)
    status_doc = sign_document("status", 1, status_body({"p_revoked": "revoked", "p_red": "red"}), priv, kid)
    (work / "status.signed.json").write_bytes(status_doc)
    return {"priv": priv_path, "pub": pub_path, "valid": valid, "bad": [revoked, red, expired, forged]}


def _gate_config(gate_id: str, mqtt_port: int, work: pathlib.Path, codes: dict, interval: float,
                 screen_port: int, seed: int) -> pathlib.Path:
    cfg = {
        "gate_id": gate_id,
        "data_dir": str(work / gate_id),
        "mqtt": {"port": mqtt_port, "reconnect_max_s": 2.0},
        "thermometer": {"protocol": "gy-mcu90614", "port": "sim", "measurement": {"warmup_s": 0}},
        "camera": {"source": "sim", "fps": 10},
        "credentials": {"trust_keys": [str(codes["pub"])], "status_list": str(work / "status.signed.json")},
        "screen": {"enabled": True, "port": screen_port},
        "simulation": {"visitors": True, "interval_s": interval, "seed": seed,
                       "valid_codes": codes["valid"], "bad_codes": codes["bad"]},
    }
    path = work / f"{gate_id}.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


def _outbox_counts(paths: list[pathlib.Path]) -> tuple[list[str], int]:
    import sqlite3

    ids, pending = [], 0
    for p in paths:
        if not p.exists():
            continue
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5)
        try:
            ids += [r[0] for r in db.execute("SELECT event_id FROM outbox")]
            pending += db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
        finally:
            db.close()
    return ids, pending


def summarize(outboxes: list[pathlib.Path], database_url: str) -> dict:
    """Count independently: decided from the outboxes, stored from the server database."""
    from server.store import stored_event_keys

    decided_ids, _ = _outbox_counts(outboxes)
    rows = stored_event_keys(database_url)
    stored_ids = [r[0] for r in rows]
    stored_set = set(stored_ids)
    decided_set = set(decided_ids)
    by_gate_seq = {(r[1], r[2]) for r in rows}
    duplicates = (len(stored_ids) - len(stored_set)) + (len(stored_set) - len(by_gate_seq))
    return {"decided": len(decided_set), "stored": len(decided_set & stored_set),
            "lost": len(decided_set - stored_set), "duplicates": duplicates}


def cmd_demo(args) -> int:
    from checkgate.broker import MosquittoProcess, free_port
    from checkgate.linkcut import LinkCut

    if args.gates < 1:
        print("checkgate demo: --gates must be at least 1", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.INFO if args.verbose == 0 else logging.DEBUG)
    work = pathlib.Path(args.workdir) if args.workdir else pathlib.Path(tempfile.mkdtemp(prefix="checkgate-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = MosquittoProcess(workdir=work / "broker")
    children: list[Child] = []
    links: list[LinkCut] = []
    stop_requested = False

    def on_term(*_):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        codes = _make_codes(work)
        broker.start()
        token = secrets.token_urlsafe(18)
        http_port = args.http_port or free_port()
        db_url = f"sqlite:///{work / 'server.sqlite3'}"
        server_cfg = work / "server.json"
        server_cfg.write_text(json.dumps({
            # one server instance: a plain subscription. (Mosquitto drops messages for a shared
            # subscription whose session was connected when the broker restarted, until it
            # reconnects; docs/scaling.md says how several instances deal with that.)
            "database_url": db_url, "mqtt": {"port": broker.port, "share_group": None},
            "http": {"port": http_port}, "api_token": token, "signing_key": str(codes["priv"]),
        }, indent=2))
        server = Child("server", ["server", "run", "--config", str(server_cfg)], work / "server.log")
        server.start()
        children.append(server)
        if not _wait_http(f"http://127.0.0.1:{http_port}/healthz", 30):
            print(f"checkgate demo: the server did not start; see {work / 'server.log'}", file=sys.stderr)
            return 1
        gates: list[Child] = []
        outboxes: list[pathlib.Path] = []
        screens = []
        for i in range(args.gates):
            gate_id = f"gate-{i + 1}"
            link = LinkCut(broker.port).start()
            links.append(link)
            screen_port = free_port()
            cfg = _gate_config(gate_id, link.port, work, codes, args.interval, screen_port, seed=1000 + i)
            child = Child(gate_id, ["edge", "run", "--config", str(cfg)], work / f"{gate_id}.log")
            child.start()
            children.append(child)
            gates.append(child)
            outboxes.append(work / gate_id / "outbox.sqlite3")
            screens.append(f"http://127.0.0.1:{screen_port}/")
        print(f"checkgate demo running in {work}")
        print(f"  dashboard:  http://127.0.0.1:{http_port}/   (API token: {token})")
        for g, url in zip(gates, screens, strict=True):
            print(f"  {g.name} screen: {url}")
        print("  stop with Ctrl-C" + (f"; stopping by itself after {args.duration:.0f} s" if args.duration else ""),
              flush=True)

        start = time.monotonic()
        chaos = _chaos_plan(args.duration) if args.chaos else []
        while not stop_requested:
            elapsed = time.monotonic() - start
            if args.duration is not None and elapsed >= args.duration:
                break
            while chaos and elapsed >= chaos[0][0]:
                _, action = chaos.pop(0)
                _do_chaos(action, broker, server, gates, links)
            for child in gates:
                if not child.alive() and not stop_requested:
                    logger.warning("%s exited (code %s); restarting", child.name, child.proc.returncode)
                    child.start()
            time.sleep(0.2)
        for link in links:
            link.restore()
        if not broker.running():
            broker.start()
        if not server.alive():
            server.start()
        for g in gates:
            if not g.alive():
                g.start()
            g.signal(signal.SIGUSR1)  # no more visitors: let the queues drain
        summary = _drain(outboxes, db_url, args.drain_timeout)
        print(json.dumps(summary), flush=True)
        ok = summary["decided"] > 0 and summary["lost"] == 0 and summary["duplicates"] == 0
        return 0 if ok or args.duration is None else 1
    except KeyboardInterrupt:
        print("checkgate demo: stopping", file=sys.stderr)
        return 130
    finally:
        for child in reversed(children):
            child.stop()
        for link in links:
            link.stop()
        broker.cleanup()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _drain(outboxes: list[pathlib.Path], db_url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    summary = summarize(outboxes, db_url)
    while time.monotonic() < deadline:
        _, pending = _outbox_counts(outboxes)
        summary = summarize(outboxes, db_url)
        if pending == 0 and summary["lost"] == 0:
            time.sleep(0.5)  # anything decided in the last instant gets recorded first
            _, pending = _outbox_counts(outboxes)
            summary = summarize(outboxes, db_url)
            if pending == 0 and summary["lost"] == 0:
                break
        time.sleep(0.3)
    return summary


def _chaos_plan(duration: float | None) -> list[tuple[float, str]]:
    d = duration or 120.0
    return [(0.15 * d, "restart_broker"), (0.3 * d, "kill_gate"), (0.45 * d, "restart_server"),
            (0.6 * d, "cut_link"), (0.75 * d, "restore_link")]


def _do_chaos(action: str, broker, server: Child, gates: list[Child], links) -> None:
    print(f"chaos: {action.replace('_', ' ')}", flush=True)
    if action == "restart_broker":
        broker.stop()
        time.sleep(1.0)  # a real outage lasts a while: let the clients notice
        broker.start()
    elif action == "kill_gate":
        gates[0].kill9()
        gates[0].start()
    elif action == "restart_server":
        server.stop()
        server.start()
    elif action == "cut_link":
        links[-1].cut()
    elif action == "restore_link":
        links[-1].restore()

