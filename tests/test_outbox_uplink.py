"""The outbox keeps every event with a gap-free seq; the uplink delivers each one,
marking it delivered only on the broker's acknowledgement, across broker restarts."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest

from checkgate import protocol
from edge.outbox import Outbox, OutboxFull, read_outbox_event_ids
from edge.uplink import MqttConfig, Uplink
from tests.conftest import wait_until


class Collector:
    """A plain subscriber on the real broker that records every event it sees."""

    def __init__(self, port: int, topic: str = protocol.ALL_EVENTS_FILTER):
        self.messages: list[dict] = []
        self.retained: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="collector")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(topic, 1), (protocol.ALL_STATES_FILTER, 1)])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self._lock:
            if msg.topic.endswith("/state"):
                self.retained[msg.topic] = msg.payload
            else:
                self.messages.append(json.loads(msg.payload))

    def event_ids(self) -> set[str]:
        with self._lock:
            return {m["event_id"] for m in self.messages}

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def test_seq_is_gap_free_across_restarts(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, "north-1")
    seqs = [box.append({"type": "screening", "outcome": "pass"})["seq"] for _ in range(5)]
    box.mark_delivered(seqs[:3])
    box.prune(now=10**12)  # delivered rows go; the counter must not rewind
    box.close()
    box = Outbox(path, "north-1")
    more = [box.append({"type": "screening"})["seq"] for _ in range(3)]
    assert seqs + more == list(range(1, 9))
    assert [s for s, _ in box.pending()] == [4, 5, 6, 7, 8]
    box.close()


def test_event_carries_contract_fields(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", "north-1")
    ev = box.append({"type": "screening", "outcome": "deny", "reasons": ["fever"]})
    parsed = protocol.Event.model_validate(ev)
    assert parsed.gate_id == "north-1" and parsed.seq == 1 and parsed.reasons == ["fever"]
    assert read_outbox_event_ids(tmp_path / "o.sqlite3") == [ev["event_id"]]


def test_full_outbox_refuses_instead_of_dropping(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", "g", max_pending=3)
    for _ in range(3):
        box.append({"type": "screening"})
    assert box.stats()["nearly_full"]
    with pytest.raises(OutboxFull):
        box.append({"type": "screening"})
    assert box.pending_count == 3


def test_uplink_delivers_and_marks_on_ack(tmp_path, mosquitto):
    box = Outbox(tmp_path / "o.sqlite3", "north-1")
    collector = Collector(mosquitto.port)
    up = Uplink(MqttConfig(port=mosquitto.port), "north-1", box)
    up.start()
    try:
        ids = {box.append({"type": "screening", "outcome": "pass"})["event_id"] for _ in range(50)}
        wait_until(lambda: box.pending_count == 0, 10, message="all events acknowledged")
        wait_until(lambda: collector.event_ids() >= ids, 10, message="collector saw all events")
        state = wait_until(lambda: collector.retained.get(protocol.state_topic("north-1")), 5,
                           message="retained state")
        assert json.loads(state)["online"] is True
    finally:
        up.stop()
        collector.close()
        box.close()


def test_events_decided_while_broker_down_arrive_after_restart(tmp_path, mosquitto):
    box = Outbox(tmp_path / "o.sqlite3", "north-1")
    up = Uplink(MqttConfig(port=mosquitto.port, reconnect_max_s=1), "north-1", box)
    up.start()
    try:
        assert up.wait_connected(10)
        first = {box.append({"type": "screening"})["event_id"] for _ in range(10)}
        wait_until(lambda: box.pending_count == 0, 10, message="first batch delivered")
        mosquitto.stop()
        wait_until(lambda: not up.connected, 10, message="uplink sees the broker gone")
        during = {box.append({"type": "screening"})["event_id"] for _ in range(20)}
        assert box.pending_count == 20
        mosquitto.start()
        collector = Collector(mosquitto.port)
        wait_until(lambda: box.pending_count == 0, 20, message="queued events delivered after restart")
        wait_until(lambda: collector.event_ids() >= during, 10, message="events reach subscribers")
        collector.close()
        assert len(first | during) == 30
    finally:
        up.stop()
        box.close()


def test_daemon_crash_before_ack_resends_on_start(tmp_path, mosquitto):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, "north-1")
    ids = {box.append({"type": "screening"})["event_id"] for _ in range(5)}
    box.close()  # decided, never sent: as after a kill -9 with the broker away
    box = Outbox(path, "north-1")
    collector = Collector(mosquitto.port)
    up = Uplink(MqttConfig(port=mosquitto.port), "north-1", box)
    up.start()
    try:
        wait_until(lambda: collector.event_ids() >= ids, 10, message="replayed events")
        wait_until(lambda: box.pending_count == 0, 10, message="replayed events acknowledged")
    finally:
        up.stop()
        collector.close()
        box.close()


def test_bad_control_message_does_not_kill_the_network_thread(tmp_path, mosquitto):
    box = Outbox(tmp_path / "o.sqlite3", "north-1")
    seen = []

    def handler(topic, payload, retained):
        seen.append(payload)
        raise ValueError("garbage")

    up = Uplink(MqttConfig(port=mosquitto.port), "north-1", box, on_control=handler)
    up.start()
    try:
        assert up.wait_connected(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        wait_until(lambda: pub.is_connected(), 5)
        wait_until(lambda: (pub.publish(protocol.TRUST_TOPIC, b"\xff\x00not json", qos=1), seen)[1], 5,
                   message="control message handled")
        ev = box.append({"type": "screening"})
        wait_until(lambda: box.pending_count == 0, 10, message="uplink still delivering")
        assert ev["seq"] == 1
        pub.loop_stop()
        pub.disconnect()
    finally:
        up.stop()
        box.close()
