"""Trust and status lists as retained MQTT messages on a real Mosquitto: a gate that
connects later receives them and they verify; forged, rolled-back or mislabelled
documents published on the same topics are refused."""

from __future__ import annotations

import datetime as dt
import queue

import paho.mqtt.client as mqtt
import pytest

from checkgate import protocol
from edge.credentials import keys, passes
from edge.credentials.signed import DocumentRejected, sign_document
from edge.credentials.status import StatusList, status_body
from edge.credentials.trust import TrustList, trust_body
from edge.credentials.verifier import Verifier
from tests.conftest import wait_until

NOW = dt.datetime.now(dt.UTC)


def _client(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish_retained(port: int, topic: str, payload: bytes) -> None:
    client = _client(port, "server-test")
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()  # before loop_stop, so the network thread wakes at once
        client.loop_stop()


def _receive_retained(port: int, topic: str) -> bytes:
    """Connect like a gate that just booted and take the retained message."""
    got: queue.Queue[bytes] = queue.Queue(maxsize=4)
    client = _client(port, "gate-test")
    client.on_message = lambda c, u, msg: got.put_nowait(msg.payload)
    try:
        wait_until(client.is_connected, 10, message="gate connected")
        client.subscribe(topic, qos=1)
        wait_until(lambda: not got.empty(), 10, message=f"retained message on {topic}")
        return got.get_nowait()
    finally:
        client.disconnect()  # before loop_stop, so the network thread wakes at once
        client.loop_stop()


@pytest.fixture
def issuer(tmp_path):
    priv, pub = keys.generate_keypair(tmp_path, kid="centre-1")
    return keys.load_private_key(priv), {"centre-1": keys.load_public_key(pub)}


def test_retained_lists_reach_a_late_gate_and_verify(mosquitto, issuer):
    key, control_keys = issuer
    _publish_retained(mosquitto.port, protocol.TRUST_TOPIC,
                      sign_document("trust", 5, trust_body(control_keys), key, "centre-1"))
    _publish_retained(mosquitto.port, protocol.STATUS_TOPIC,
                      sign_document("status", 12, status_body({"p_red": "red", "p_gone": "revoked"}), key, "centre-1"))
    trust = TrustList.from_document(_receive_retained(mosquitto.port, protocol.TRUST_TOPIC), control_keys)
    status = StatusList.from_document(_receive_retained(mosquitto.port, protocol.STATUS_TOPIC), control_keys)
    assert (trust.version, status.version) == (5, 12)
    assert trust.age_s() < 60 and status.age_s() < 60
    verifier = Verifier(trust, status)
    expires = NOW + dt.timedelta(days=1)
    assert verifier.verify(passes.issue_pass(key, "centre-1", "p_red", "resident", expires=expires)).health == "red"
    assert verifier.verify(passes.issue_pass(key, "centre-1", "p_gone", "resident", expires=expires)).revoked


def test_forged_old_and_mislabelled_documents_are_refused(mosquitto, issuer, tmp_path):
    key, control_keys = issuer
    intruder = keys.load_private_key(keys.generate_keypair(tmp_path / "x", kid="centre-1")[0])
    cases = {
        "bad signature": sign_document("status", 99, status_body({}), intruder, "centre-1"),
        "older": sign_document("status", 3, status_body({}), key, "centre-1"),
        "wrong document type": sign_document("trust", 50, trust_body(control_keys), key, "centre-1"),
        "unsigned": b'{"type": "status", "version": 100, "body": {"subjects": {}}}',
    }
    for expected, document in cases.items():
        _publish_retained(mosquitto.port, protocol.STATUS_TOPIC, document)
        received = _receive_retained(mosquitto.port, protocol.STATUS_TOPIC)
        assert received == document
        with pytest.raises(DocumentRejected, match=expected.split()[0]):
            StatusList.from_document(received, control_keys, min_version=4)
