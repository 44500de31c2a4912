"""Events the broker lost are healed from the gate's outbox: the server sees the seq hole
(or a tail the gate reports but it never got) and asks the gate to send them again."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt

from checkgate import protocol
from edge.outbox import Outbox
from edge.uplink import MqttConfig, Uplink
from server.repair import GapRepair
from server.store import stored_event_keys
from server.testing import running_ingest, server_config
from tests.conftest import wait_until


def test_lost_events_are_requested_and_resent(tmp_path, mosquitto, sqlite_url):
    box = Outbox(tmp_path / "o.sqlite3", "north-1")
    events = [box.append({"type": "screening", "outcome": "pass"}) for _ in range(8)]
    # the broker acknowledged 3, 4 and 7, 8 but lost them (as after a crash): delivered, never stored
    box.mark_delivered([3, 4, 7, 8])
    up = Uplink(MqttConfig(port=mosquitto.port), "north-1", box,
                health=lambda: {"queue": {"pending": box.pending_count, "last_seq": box.last_seq}})
    with running_ingest(server_config(sqlite_url, mosquitto.port)) as (store, ingest):
        up.start()
        try:
            wait_until(lambda: {k[2] for k in stored_event_keys(sqlite_url)} == {1, 2, 5, 6}, 10,
                       message="what the broker did deliver")
            wait_until(lambda: (store.gate("north-1").health or "").find('"last_seq": 8') >= 0, 10,
                       message="the gate's state with its last seq")
            repair = GapRepair(store, lambda t, p: ingest.publish(t, p, retain=False), interval_s=3600)
            assert repair.run_once() == 0  # a hole is only asked for once it has been seen twice
            assert repair.run_once() == 2  # the hole 3-4 and the tail 7-8
            wait_until(lambda: sorted(k[2] for k in stored_event_keys(sqlite_url)) == list(range(1, 9)), 15,
                       message="missing events resent and stored once")
            ids = [k[0] for k in stored_event_keys(sqlite_url)]
            assert sorted(ids) == sorted(e["event_id"] for e in events) and up.resend_requests == 2
            assert repair.run_once() == 0
        finally:
            up.stop()
            box.close()


def test_retained_or_malformed_resend_requests_are_ignored(tmp_path, mosquitto):
    box = Outbox(tmp_path / "o.sqlite3", "north-1")
    box.append({"type": "screening"})
    box.mark_delivered([1])
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    topic = protocol.resend_topic("north-1")
    # a stale retained request waiting for the gate when it subscribes
    pub.publish(topic, json.dumps({"from_seq": 1, "to_seq": 1}).encode(), qos=1, retain=True).wait_for_publish(5)
    up = Uplink(MqttConfig(port=mosquitto.port), "north-1", box)
    up.start()
    try:
        assert up.wait_connected(10)
        for payload in (b"garbage", json.dumps({"from_seq": 5, "to_seq": 1}).encode(),
                        json.dumps({"from_seq": True, "to_seq": 1}).encode()):
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
        ev = box.append({"type": "screening"})  # the uplink keeps working
        wait_until(lambda: box.pending_count == 0 and ev["seq"] == 2, 10, message="still delivering")
        # a good request after them (same topic, so delivered in order) is the only one acted on
        pub.publish(topic, json.dumps({"from_seq": 2, "to_seq": 2}).encode(), qos=1).wait_for_publish(5)
        wait_until(lambda: up.resend_requests >= 1, 10, message="the good request")
        assert up.resend_requests == 1
        pub.loop_stop()
        pub.disconnect()
    finally:
        up.stop()
        box.close()
