"""The ingest benchmark's lean publisher speaks real MQTT 3.1.1 QoS 1 to a real Mosquitto."""

from __future__ import annotations

import pathlib
import sys
import threading

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

from mqtt_flood import FloodPublisher, _remaining_length  # noqa: E402

from tests.conftest import wait_until  # noqa: E402


@pytest.mark.parametrize("n, encoded", [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"),
                                        (16_383, b"\xff\x7f"), (2_097_151, b"\xff\xff\x7f")])
def test_remaining_length_is_the_mqtt_variable_byte_integer(n, encoded):
    assert _remaining_length(n) == encoded


def test_every_message_reaches_a_subscriber_once_and_in_order(mosquitto):
    import paho.mqtt.client as mqtt

    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood-sub", protocol=mqtt.MQTTv311)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()

    def on_message(_c, _u, msg):
        with lock:
            got.append((msg.topic, msg.payload))

    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("flood/#", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        # many times the in-flight window; payloads long enough for a two-byte remaining length
        messages = [(f"flood/g{i % 7}", b"x" * (i % 300) + str(i).encode()) for i in range(3000)]
        publisher = FloodPublisher("127.0.0.1", mosquitto.port, "flood-pub", window=100, batch=40)
        publisher.publish_all(messages, stamp=lambda p: p.replace(b"x", b"y", 1))
        publisher.close()
        assert publisher.acked == len(messages)
        wait_until(lambda: len(got) >= len(messages), message="all 3000 messages at the subscriber")
        assert got == [(t, p.replace(b"x", b"y", 1)) for t, p in messages]
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_paced_publishing_keeps_to_the_rate(mosquitto):
    import time

    publisher = FloodPublisher("127.0.0.1", mosquitto.port, "flood-paced")
    t0 = time.monotonic()
    publisher.publish_all([("flood/paced", b"{}")] * 200, rate=1000)
    publisher.close()
    assert publisher.acked == 200
    assert time.monotonic() - t0 >= 0.19  # 200 messages at 1,000/s cannot finish sooner
