"""The gate's MQTT uplink: drains the outbox to the broker, QoS 1, losing nothing.

- A row is marked delivered only when the broker's PUBACK for it arrives.
- At most `max_inflight` events are unacknowledged at once.
- On every (re)connect everything still undelivered is sent again from the outbox;
  a duplicate on the wire is harmless because the server stores by `event_id`.
- paho's network thread only queues notices (acks, connects); one publisher thread
  owns the in-flight table and all outbox writes, so a callback can neither block
  nor kill the network thread, and there is no lock shared with paho's own locks.
- `state` is retained, with a Last Will saying offline; `online` is sent on every
  connect. Control topics are subscribed; their payloads go to a handler that must
  verify them (signed, versioned) before anything is applied.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from checkgate import protocol
from checkgate.config import StrictModel
from edge.outbox import Outbox

logger = logging.getLogger(__name__)


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_inflight: int = 100
    ack_timeout_s: float = 30.0
    state_interval_s: float = 60.0


ControlHandler = Callable[[str, bytes, bool], None]  # (topic, payload, retained)


class Uplink:
    def __init__(self, config: MqttConfig, gate_id: str, outbox: Outbox,
                 on_control: ControlHandler | None = None,
                 health: Callable[[], dict] | None = None):
        self.config = config
        self.gate_id = gate_id
        self.outbox = outbox
        self.on_control = on_control
        self.health = health or (lambda: {})
        self._notices: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (seq, sent at)
        self._cursor = 0  # highest seq sent in this connection
        self._delivered_total = 0
        self.resend_requests = 0
        self._connects = 0
        self._last_error = ""
        self._last_state_sent = 0.0
        self._last_state_body: str | None = None
        self._client = self._make_client()

    # -- public -------------------------------------------------------------------

    def start(self) -> None:
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="uplink-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.outbox.new_event.set()
        if self._thread:
            self._thread.join(timeout)
        try:
            if self._connected.is_set():
                info = self._client.publish(protocol.state_topic(self.gate_id),
                                            json.dumps({"online": False, "ts": protocol.utc_iso()}),
                                            qos=1, retain=True)
                info.wait_for_publish(timeout=2)
            self._client.disconnect()
        except Exception as err:  # shutting down: report, keep going
            logger.debug("disconnect: %s", err)
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def status(self) -> dict:
        return {
            "connected": self.connected,
            "inflight": len(self._inflight),
            "pending": self.outbox.pending_count,
            "delivered_since_start": self._delivered_total,
            "connects": self._connects,
            "last_error": self._last_error,
            "resend_requests": self.resend_requests,
        }

    def publish_state(self, force: bool = False) -> None:
        """Publish the retained state (online + health) if changed, or when forced."""
        if not self._connected.is_set():
            return
        body = {"online": True, "gate_id": self.gate_id, "health": self.health()}
        text = json.dumps(body, sort_keys=True, default=str)
        if not force and text == self._last_state_body:
            return
        body["ts"] = protocol.utc_iso()
        try:
            self._client.publish(protocol.state_topic(self.gate_id), json.dumps(body, default=str), qos=1, retain=True)
            self._last_state_body = text
            self._last_state_sent = time.monotonic()
        except Exception as err:
            logger.warning("state publish failed: %s", err)

    # -- paho wiring (network thread: only queue notices) -----------------------------

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"checkgate-gate-{self.gate_id}",
                        clean_session=True, protocol=mqtt.MQTTv311)
        if self.config.username:
            c.username_pw_set(self.config.username, self.config.password)
        if self.config.tls:
            c.tls_set(ca_certs=self.config.ca_file, certfile=self.config.cert_file,
                      keyfile=self.config.key_file, cert_reqs=ssl.CERT_REQUIRED)
        c.will_set(protocol.state_topic(self.gate_id), json.dumps({"online": False}), qos=1, retain=True)
        c.reconnect_delay_set(self.config.reconnect_min_s, self.config.reconnect_max_s)
        c.max_inflight_messages_set(self.config.max_inflight)
        c.max_queued_messages_set(self.config.max_inflight * 2)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._last_error = f"connect refused: {reason_code}"
            logger.warning("broker refused the connection: %s", reason_code)
            return
        topics = [(protocol.config_topic(self.gate_id), 1), (protocol.TRUST_TOPIC, 1), (protocol.STATUS_TOPIC, 1),
                  (protocol.resend_topic(self.gate_id), 1)]
        client.subscribe(topics)
        self._notices.put(("connected", None))
        self.outbox.new_event.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._notices.put(("disconnected", str(reason_code)))
        self.outbox.new_event.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._notices.put(("ack", mid))
        self.outbox.new_event.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            if message.topic == protocol.resend_topic(self.gate_id):
                self._notices.put(("resend", (bytes(message.payload), bool(message.retain))))
                self.outbox.new_event.set()
                return
            if self.on_control:
                self.on_control(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:  # a bad control message must never kill the network thread
            logger.exception("control message on %s rejected by an error", message.topic)

    # -- publisher thread --------------------------------------------------------------

    def _run(self) -> None:
        last_prune = time.monotonic()
        while not self._stop.is_set():
            self.outbox.new_event.wait(0.5)
            self.outbox.new_event.clear()
            try:
                self._drain_notices()
                if self._connected.is_set():
                    self._expire_unacked()
                    self._send_more()
                    if time.monotonic() - self._last_state_sent > self.config.state_interval_s:
                        self.publish_state(force=True)
                    else:
                        self.publish_state()
                if time.monotonic() - last_prune > 600:
                    self.outbox.prune()
                    last_prune = time.monotonic()
            except Exception:
                logger.exception("uplink publisher error; continuing")
                self._stop.wait(1.0)

    def _drain_notices(self) -> None:
        acked: list[int] = []
        while True:
            try:
                kind, value = self._notices.get_nowait()
            except queue.Empty:
                break
            if kind == "ack":
                entry = self._inflight.pop(value, None)
                if entry is not None:
                    acked.append(entry[0])
            elif kind == "connected":
                self._connects += 1
                self._inflight.clear()
                self._cursor = 0
                self._connected.set()
                self._last_error = ""
                logger.info("uplink connected to %s:%d; %d events to send",
                            self.config.host, self.config.port, self.outbox.pending_count)
                self.publish_state(force=True)
            elif kind == "resend":
                self._resend(*value)
            elif kind == "disconnected":
                if self._connected.is_set():
                    logger.warning("uplink disconnected (%s); events stay queued", value)
                self._connected.clear()
                self._last_error = f"disconnected: {value}"
                self._inflight.clear()
                self._cursor = 0
        if acked:
            self._delivered_total += self.outbox.mark_delivered(acked)

    def _resend(self, payload: bytes, retained: bool) -> None:
        """The centre is missing a seq range: send it again. Harmless if repeated (the server
        stores by event_id), so it needs no signature; a retained request is stale and ignored."""
        if retained:
            logger.warning("ignoring a retained resend request")
            return
        wanted = protocol.parse_resend(payload)
        if wanted is None:
            logger.warning("malformed resend request ignored: %r", payload[:80])
            return
        first, last = wanted
        requeued = self.outbox.mark_undelivered(first, min(last, self.outbox.last_seq))
        self.resend_requests += 1
        logger.warning("centre is missing seq %d-%d: %d kept events queued again", first, last, requeued)
        self._inflight.clear()
        self._cursor = 0

    def _expire_unacked(self) -> None:
        if not self._inflight:
            return
        oldest = min(sent for _, sent in self._inflight.values())
        if time.monotonic() - oldest > self.config.ack_timeout_s:
            logger.warning("%d events unacknowledged for %.0fs; sending them again",
                           len(self._inflight), self.config.ack_timeout_s)
            self._inflight.clear()
            self._cursor = 0

    def _send_more(self) -> None:
        room = self.config.max_inflight - len(self._inflight)
        while room > 0 and self._connected.is_set():
            rows = self.outbox.pending(after_seq=self._cursor, limit=room)
            if not rows:
                return
            for seq, payload in rows:
                info = self._client.publish(protocol.events_topic(self.gate_id), payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return  # not connected after all: the connect notice will restart us
                self._inflight[info.mid] = (seq, time.monotonic())
                self._cursor = seq
                room -= 1
            # acks may have arrived meanwhile; count them before asking for more
            self._drain_notices()
            room = self.config.max_inflight - len(self._inflight)
