"""Helpers for tests and benchmarks: synthetic events and an in-process server.

Everything here uses the real components (a real broker, a real database); it
only saves each test from repeating the wiring.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import threading
from collections.abc import Iterator

from checkgate import protocol
from server.config import ServerConfig

OUTCOME_MIX = (("pass", 0.86), ("deny", 0.06), ("retry", 0.06), ("manual", 0.02))
DENY_REASONS = ("fever", "code_red", "code_yellow", "expired", "revoked", "forged", "not_allowed_zone")
RETRY_REASONS = ("come_closer", "remeasure", "no_code")


def make_event(gate_id: str, seq: int, *, ts: dt.datetime | None = None, outcome: str = "pass",
               reasons: list[str] | None = None, subject: str | None = "p_000001",
               temperature: float | None = 36.5, event_id: str | None = None, **extra) -> dict:
    ts = ts or dt.datetime.now(dt.UTC)
    event = {
        "schema": protocol.EVENT_SCHEMA,
        "event_id": event_id or protocol.new_event_id(int(ts.timestamp() * 1000)),
        "gate_id": gate_id,
        "seq": seq,
        "ts": protocol.utc_iso(ts),
        "type": "screening",
        "outcome": outcome,
        "reasons": reasons or [],
        "temperature": {"value_c": temperature, "raw_c": None, "ambient_c": 22.0, "sensor": "sim"}
        if temperature is not None else None,
        "credential": {"kind": "pass", "subject": subject, "status": "green", "issuer": "k1"} if subject else None,
        "operator": None,
        "timings_ms": {"decode": 4.0, "decide": 0.2, "total": 150.0},
    }
    event.update(extra)
    return event


def realistic_event(gate_id: str, seq: int, rng: random.Random, ts: dt.datetime | None = None) -> dict:
    """An event drawn from a plausible checkpoint mix (mostly passes, some fevers and red codes)."""
    roll, outcome = rng.random(), "pass"
    for name, share in OUTCOME_MIX:
        if roll < share:
            outcome = name
            break
        roll -= share
    reasons = []
    temperature = round(rng.gauss(36.5, 0.25), 1)
    if outcome == "deny":
        reasons = [rng.choice(DENY_REASONS)]
        if reasons[0] == "fever":
            temperature = round(rng.uniform(37.3, 38.6), 1)
    elif outcome == "retry":
        reasons = [rng.choice(RETRY_REASONS)]
    elif outcome == "manual":
        reasons = ["no_smartphone"]
    subject = f"p_{rng.randrange(16**6):06x}"
    return make_event(gate_id, seq, ts=ts, outcome=outcome, reasons=reasons, subject=subject,
                      temperature=temperature)


def publish_events(port: int, events: list[dict | bytes], *, topic_gate: str | None = None,
                   host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    """Publish events QoS 1 from one client and wait until the broker has them all."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{random.randrange(1 << 30)}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = []
        for ev in events:
            if isinstance(ev, dict):
                gate, payload = topic_gate or ev["gate_id"], json.dumps(ev).encode()
            else:
                gate, payload = topic_gate or "unknown-gate", ev
            infos.append(client.publish(protocol.events_topic(gate), payload, qos=1))
        for info in infos:
            info.wait_for_publish(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def publish_raw(port: int, topic: str, payload: bytes, *, retain: bool = False, host: str = "127.0.0.1") -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


TEST_PASSWORD_HASH = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}


def server_config(database_url: str, mqtt_port: int, **overrides) -> ServerConfig:
    """A config for tests and benchmarks. Uses cheap password hashing (and applies it
    right away, since tests create users before they build the app)."""
    from server.auth import configure_password_hashing

    configure_password_hashing(TEST_PASSWORD_HASH["time_cost"], TEST_PASSWORD_HASH["memory_kib"],
                               TEST_PASSWORD_HASH["parallelism"])
    data = {
        "password_hash": dict(TEST_PASSWORD_HASH),
        "database_url": database_url,
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": "test-server"},
        "http": {"host": "127.0.0.1", "port": 0},
        "api_token": "test-admin-token-0123456789",
        "retention_interval_s": 3600,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ServerConfig.model_validate(data)


@contextlib.contextmanager
def running_ingest(config: ServerConfig) -> Iterator:
    """Migrated store + started IngestService; yields (store, ingest)."""
    from server.ingest import IngestService
    from server.store import Store, migrate

    migrate(config.database_url)
    store = Store(config.database_url, timezone=config.timezone)
    ingest = IngestService(config, store)
    ingest.start()
    try:
        if not ingest.wait_connected(15):
            raise RuntimeError("ingest did not connect to the broker")
        yield store, ingest
    finally:
        ingest.stop()
        store.close()


class LiveServer:
    """The whole app under uvicorn on a free port, in a thread (for browser tests)."""

    def __init__(self, config: ServerConfig, with_ingest: bool = True):
        from checkgate.broker import free_port

        self.port = config.http.port or free_port()
        self.config = config.model_copy(update={"http": config.http.model_copy(update={"port": self.port})})
        self.with_ingest = with_ingest
        self._server = None
        self._thread: threading.Thread | None = None
        self.store = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        import uvicorn

        from checkgate.broker import wait_for_port
        from server.app import create_app
        from server.ingest import IngestService
        from server.store import Store, migrate

        migrate(self.config.database_url)
        self.store = Store(self.config.database_url, timezone=self.config.timezone)
        ingest = IngestService(self.config, self.store) if self.with_ingest else None
        app = create_app(self.config, self.store, ingest)
        self.ingest = ingest
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     access_log=False, timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self._server.run, name="live-server", daemon=True)
        self._thread.start()
        if not wait_for_port("127.0.0.1", self.port, 15):
            raise RuntimeError("server did not start")
        if ingest is not None and not ingest.wait_connected(15):
            raise RuntimeError("ingest did not connect")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
