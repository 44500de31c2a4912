"""MQTT ingest: the gates' events and states into the store.

paho's callbacks only enqueue (bounded queue); one writer thread validates,
batches and writes. Messages are acknowledged to the broker (manual PUBACK) only
after their batch is committed, and the session is persistent (fixed client id,
clean start off, session expiry): a server killed mid-batch gets the same
messages again, and the idempotent insert stores them once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable

from checkgate import protocol
from server.config import MqttConfig, ServerConfig
from server.metrics import ServerMetrics
from server.normalize import Rejected, event_row
from server.store import Store, utcnow

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: dt.datetime
    generation: int  # which broker connection delivered it (acks only make sense on that one)


def events_subscription(share_group: str | None) -> str:
    if share_group:
        return f"$share/{share_group}/{protocol.ALL_EVENTS_FILTER}"
    return protocol.ALL_EVENTS_FILTER


def parse_state(payload: bytes) -> tuple[bool | None, dict | None] | Rejected:
    """A retained gate state `{"online": bool, "ts": ..., "health": {...}}`."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Rejected("state payload is not UTF-8 JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("online"), bool):
        return Rejected("state payload needs a boolean 'online'")
    health = doc.get("health")
    if health is not None and not isinstance(health, dict):
        return Rejected("state 'health' must be an object")
    return doc["online"], health


def make_client(mqtt_cfg: MqttConfig, client_id: str, *, persistent: bool, manual_ack: bool = False):
    """A paho client (MQTT 3.1.1 or 5, as configured) from the server config (not yet connected)."""
    import paho.mqtt.client as mqtt

    if mqtt_cfg.protocol == "5":
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             manual_ack=manual_ack)
    else:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=not persistent, manual_ack=manual_ack)
    client.suppress_exceptions = True
    if mqtt_cfg.username:
        client.username_pw_set(mqtt_cfg.username, mqtt_cfg.password)
    if mqtt_cfg.tls:
        client.tls_set(ca_certs=str(mqtt_cfg.tls_ca) if mqtt_cfg.tls_ca else None,
                       certfile=str(mqtt_cfg.tls_cert) if mqtt_cfg.tls_cert else None,
                       keyfile=str(mqtt_cfg.tls_key) if mqtt_cfg.tls_key else None)
        client.tls_insecure_set(mqtt_cfg.tls_insecure)
    client.reconnect_delay_set(1, 30)
    client.max_queued_messages_set(10000)
    paho_logger = logging.getLogger("server.ingest.paho")
    if not any(isinstance(f, _ShutdownNoise) for f in paho_logger.filters):
        paho_logger.addFilter(_ShutdownNoise())
    client.enable_logger(paho_logger)
    return client


class _ShutdownNoise(logging.Filter):
    """paho's network thread reports one 'not connected' error after a clean disconnect."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected. Socket: None")


def connect_properties(session_expiry_s: int):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = 65535  # let the broker's own in-flight limit decide
    return props


class IngestService:
    """Subscribes to all gates, stores what arrives, and publishes control documents."""

    def __init__(self, config: ServerConfig, store: Store, metrics: ServerMetrics | None = None):
        self.config = config
        self.store = store
        self.metrics = metrics or ServerMetrics()
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=config.ingest.queue_size)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._generation = 0
        self._client = None
        self._writer: threading.Thread | None = None
        self._event_messages = self.metrics.messages.labels("event")
        self._state_messages = self.metrics.messages.labels("state")
        self.stored_total = 0
        self.duplicate_total = 0
        self.dead_letter_total = 0
        self.on_alert: Callable[[], None] | None = None  # called after a batch holding an alert is stored

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        cfg = self.config.mqtt
        self._client = make_client(cfg, cfg.client_id, persistent=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        if cfg.protocol == "5":
            self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
                                       properties=connect_properties(cfg.session_expiry_s))
        else:  # the persistent session was asked for in the client (clean_session=False)
            self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self._client.loop_start()
        logger.info("ingest connecting to %s:%d as %r (subscription %s)", cfg.host, cfg.port, cfg.client_id,
                    events_subscription(cfg.share_group))

    def stop(self, timeout: float = 10.0) -> None:
        """Store what is queued, then disconnect (unacked messages stay with the broker)."""
        deadline = time.monotonic() + timeout
        if self._client is not None:
            # Keep the session and subscription; whatever arrives from now on stays unacked
            # with the broker for the next start.
            self._client.on_message = None
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        if self._writer is not None:
            self._writer.join(max(0.1, deadline - time.monotonic()))
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self.metrics.connected.set(0)

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def publish(self, topic: str, payload: bytes, *, retain: bool = True, timeout: float = 10.0) -> bool:
        """Publish QoS 1 and wait for the broker's acknowledgement."""
        if self._client is None:
            raise RuntimeError("ingest not started")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as err:
            logger.warning("publish to %s failed: %s", topic, err)
            return False
        return info.is_published()

    # --- paho callbacks (network thread: enqueue only) -----------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _props):
        try:
            if reason_code.is_failure:
                logger.error("broker refused the connection: %s", reason_code)
                return
            self._generation += 1
            # "connected" (and /healthz's mqtt flag) waits for the SUBACK: until then the
            # broker would drop events for a first-time subscription
            client.subscribe([(events_subscription(self.config.mqtt.share_group), 1),
                              (protocol.ALL_STATES_FILTER, 1)])
            self.metrics.connected.set(1)
            logger.info("ingest connected (session present: %s)", flags.session_present)
        except Exception:
            logger.exception("on_connect failed")

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props):
        if any(rc.is_failure for rc in reason_codes):
            logger.error("broker refused the ingest subscription: %s", [str(rc) for rc in reason_codes])
            return
        self._connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props):
        self._connected.clear()
        self.metrics.connected.set(0)
        if not self._stop.is_set():
            logger.warning("ingest disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, _client, _userdata, msg):
        try:
            item = _Message(msg.topic, msg.payload, msg.mid, msg.qos, utcnow(), self._generation)
            # Blocking here is the backpressure: the broker keeps what we have not acked.
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.5)
                    return
                except queue.Full:
                    continue
        except Exception:
            logger.exception("on_message failed for topic %s", getattr(msg, "topic", "?"))

    # --- the writer -----------------------------------------------------------

    def _take_batch(self) -> list[_Message]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        limit = self.config.ingest.batch_size
        deadline = time.monotonic() + self.config.ingest.batch_wait_ms / 1000
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        return batch

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            self.metrics.queue_depth.set(self._queue.qsize())
            if not batch:
                continue
            backoff = 0.1
            while True:
                try:
                    self._store_batch(batch)
                    break
                except Exception:
                    # The database is down or refused the batch: nothing was acked, so keep
                    # retrying; the broker holds everything behind us.
                    self.metrics.db_errors.inc()
                    logger.exception("storing a batch of %d messages failed; retrying in %.1fs", len(batch), backoff)
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, 5.0)
            self._ack(batch)

    def _store_batch(self, batch: list[_Message]) -> None:
        rows: dict[str, dict] = {}
        letters = []
        states = []
        late_after = self.config.ingest.late_after_s
        for msg in batch:
            if msg.topic.endswith("/state"):
                self._state_messages.inc()
                states.append(msg)
                continue
            self._event_messages.inc()
            result = event_row(msg.topic, msg.payload, msg.received_at, late_after)
            if isinstance(result, Rejected):
                letters.append((msg.received_at, msg.topic, result.reason, msg.payload))
                logger.warning("dead letter from %s: %s", msg.topic, result.reason)
            else:
                rows.setdefault(result["event_id"], result)
        new = self.store.insert_events(list(rows.values())) if rows else 0
        self.store.add_dead_letters(letters)
        for msg in states:
            self._store_state(msg)
        dupes = len(rows) - new
        self.stored_total += new
        self.duplicate_total += dupes
        self.dead_letter_total += len(letters)
        self.metrics.events_stored.inc(new)
        self.metrics.duplicates.inc(dupes)
        self.metrics.dead_letters.inc(len(letters))
        self.metrics.batch_size.observe(len(batch))
        if self.on_alert is not None and any(row["alert"] for row in rows.values()):
            self.on_alert()
        now = utcnow()
        for row in rows.values():
            lag = (now - row["ts"]).total_seconds()
            self.metrics.lag.observe(max(lag, 0.0))
            if row["late"]:
                self.metrics.late_events.inc()

    def _store_state(self, msg: _Message) -> None:
        gate_id = protocol.gate_from_topic(msg.topic)
        if not msg.payload:  # a cleared retained message
            return
        if gate_id is None or not protocol.valid_gate_id(gate_id):
            self.store.add_dead_letters([(msg.received_at, msg.topic, "state from an invalid gate id", msg.payload)])
            return
        parsed = parse_state(msg.payload)
        if isinstance(parsed, Rejected):
            logger.warning("bad state from %s: %s", gate_id, parsed.reason)
            self.store.add_dead_letters([(msg.received_at, msg.topic, parsed.reason, msg.payload)])
            self.dead_letter_total += 1
            self.metrics.dead_letters.inc()
            return
        online, health = parsed
        self.store.record_gate_state(gate_id, online, health, msg.received_at)

    def _ack(self, batch: list[_Message]) -> None:
        client = self._client
        if client is None:
            return
        for msg in batch:
            if msg.qos > 0 and msg.generation == self._generation:
                client.ack(msg.mid, msg.qos)


class OneShotPublisher:
    """Publishes control documents when the server runs without ingest (own short connection)."""

    def __init__(self, mqtt_cfg: MqttConfig):
        self.mqtt_cfg = mqtt_cfg

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> bool:
        cfg = self.mqtt_cfg
        client = make_client(cfg, f"{cfg.client_id}-pub", persistent=False)
        try:
            client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        except OSError as err:
            logger.warning("cannot reach the broker to publish %s: %s", topic, err)
            return False
        client.loop_start()
        try:
            info = client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(timeout)
            return info.is_published()
        except (RuntimeError, ValueError) as err:
            logger.warning("publish to %s failed: %s", topic, err)
            return False
        finally:
            client.disconnect()
            client.loop_stop()
