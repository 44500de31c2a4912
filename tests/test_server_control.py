"""Passes, the status list and control documents: signed by the server, published retained
through a real Mosquitto, and verified the way a gate verifies them."""

from __future__ import annotations

import io
import threading

import pytest
from fastapi.testclient import TestClient

from checkgate import protocol
from edge.credentials.keys import generate_keypair, load_public_key
from edge.credentials.passes import parse_pass, verify_signature
from edge.credentials.signed import verify_document
from server.app import create_app
from server.store import Store, migrate
from server.testing import server_config

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}


@pytest.fixture
def keys(tmp_path):
    priv, pub = generate_keypair(tmp_path / "keys", kid="srv1")
    return priv, load_public_key(pub)


@pytest.fixture
def client(mosquitto, sqlite_url, keys):
    config = server_config(sqlite_url, mosquitto.port, signing_key=str(keys[0]), ingest_enabled=False)
    migrate(sqlite_url)
    store = Store(sqlite_url)
    app = create_app(config, store, None, run_jobs=False)
    with TestClient(app) as c:
        yield c
    store.close()


def retained(port: int, topic: str, timeout: float = 10.0) -> bytes:
    """What a gate connecting now would receive on `topic`."""
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    done = threading.Event()

    def on_message(_c, _u, msg):
        got.append(msg.payload)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(timeout), f"nothing retained on {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def test_issued_pass_verifies_with_the_server_key_and_keeps_the_person_on_the_server(client, keys):
    r = client.post("/api/v1/passes", headers=ADMIN, json={
        "kind": "resident", "name": "张三", "id_number": "330102199001011234", "zones": ["north"],
        "expires": "2027-01-31"})
    assert r.status_code == 201, r.text
    issued = r.json()
    parsed = parse_pass(issued["payload"])
    verify_signature(parsed, keys[1])
    assert "张三" not in issued["payload"] and issued["subject"].startswith("p_")
    assert issued["name"] == "张三"
    png = client.get(f"/api/v1/passes/{issued['pass_id']}/card.png", headers=ADMIN)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_list_import_revoke_and_publish_reach_the_gates_signed(client, keys, mosquitto):
    pass_id = client.post("/api/v1/passes", headers=ADMIN, json={"kind": "worker", "subject": "p_w1"}).json()["pass_id"]
    csv_text = "subject,status\np_y1,yellow\np_r1,red\np_g1,green\n"
    r = client.post("/api/v1/status/import", headers=ADMIN, files={"file": ("status.csv", io.BytesIO(csv_text.encode()))})
    assert r.json() == {"count": 3}
    assert client.post(f"/api/v1/passes/{pass_id}/revoke", headers=ADMIN, json={"reason": "moved away"}).json()["revoked"]
    published = client.post("/api/v1/status/publish", headers=ADMIN)
    assert published.status_code == 200, published.text
    doc = verify_document(retained(mosquitto.port, protocol.STATUS_TOPIC), {"srv1": keys[1]}, "status")
    assert doc.body["subjects"] == {"p_y1": "yellow", "p_r1": "red", "p_w1": "revoked"}
    assert doc.version == published.json()["version"]
    again = client.post("/api/v1/status/publish", headers=ADMIN).json()
    assert again["version"] > doc.version  # gates only take newer versions


def test_trust_list_and_gate_config_are_published_signed_and_retained(client, keys, mosquitto):
    assert client.post("/api/v1/trust/publish", headers=ADMIN, json={}).status_code == 200
    trust = verify_document(retained(mosquitto.port, protocol.TRUST_TOPIC), {"srv1": keys[1]}, "trust")
    assert [k["kid"] for k in trust.body["keys"]] == ["srv1"]
    policy = {"fever_c": 37.3, "require_status": True}
    r = client.put("/api/v1/gates/north-1/config", headers=ADMIN, json={"body": policy})
    assert r.status_code == 200, r.text
    cfg = verify_document(retained(mosquitto.port, protocol.config_topic("north-1")), {"srv1": keys[1]}, "config")
    assert cfg.body == policy
    docs = client.get("/api/v1/control-documents", headers=ADMIN).json()
    assert {d["doc_type"] for d in docs} == {"trust", "config"}


def test_bad_pass_and_status_input_is_rejected_with_a_reason(client):
    bad_csv = "subject,status\np_1,purple\n"
    r = client.post("/api/v1/status/import", headers=ADMIN, files={"file": ("s.csv", io.BytesIO(bad_csv.encode()))})
    assert r.status_code == 422 and "purple" in r.json()["detail"]
    r = client.post("/api/v1/status/import", headers=ADMIN, files={"file": ("s.csv", io.BytesIO(b"\xff\xfe\x00"))})
    assert r.status_code == 422
    r = client.post("/api/v1/passes", headers=ADMIN, json={"kind": "resident", "expires": "2020-01-01",
                                                           "not_before": "2021-01-01"})
    assert r.status_code == 422
    imported = client.post("/api/v1/passes/import", headers=ADMIN, files={"file": ("p.csv", io.BytesIO(
        "name,kind,expires\n李四,resident,2027-01-01\n王五,spaceship,2027-01-01\n".encode()))}).json()
    assert imported["issued"] == 1 and imported["errors"][0]["line"] == 3


def test_without_a_signing_key_issuing_is_refused_not_crashed(mosquitto, sqlite_url):
    config = server_config(sqlite_url, mosquitto.port, ingest_enabled=False)
    migrate(sqlite_url)
    store = Store(sqlite_url)
    with TestClient(create_app(config, store, None, run_jobs=False)) as c:
        r = c.post("/api/v1/passes", headers=ADMIN, json={"kind": "resident"})
        assert r.status_code == 503 and "signing_key" in r.json()["detail"]
    store.close()
