"""The broker as the front door: a real Mosquitto running the config that
`checkgate provision broker` generates, probed with real MQTT clients over TLS.

Every "cannot" below is paired with a "can" on the same connection, so a test cannot
pass just because nothing was delivered at all.
"""

from __future__ import annotations

import getpass
import json
import pathlib
import socket
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from checkgate import protocol
from checkgate.broker import MosquittoProcess, free_port, wait_for_port
from checkgate.cli import main as checkgate_main
from tests.conftest import wait_until

pytestmark = pytest.mark.security

GATE_A, GATE_B, GATE_C = "north-1", "south-2", "east-3"


# --- helpers ---------------------------------------------------------------------------


class Probe:
    """A real MQTT client that records what the broker answers and delivers."""

    def __init__(self, name: str, port: int, ca_file: pathlib.Path | None, *, username: str | None = None,
                 password: str | None = None, cert_file: pathlib.Path | None = None,
                 key_file: pathlib.Path | None = None, mqtt_version=mqtt.MQTTv5):
        self.port = port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt_version)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file), certfile=cert_file and str(cert_file),
                                keyfile=key_file and str(key_file), cert_reqs=ssl.CERT_REQUIRED)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(5, 30)  # a refused probe should not hammer the broker
        self.lock = threading.Lock()
        self.connack = None
        self.disconnected = threading.Event()
        self.messages: list[mqtt.MQTTMessage] = []
        self.puback: dict[int, object] = {}
        self.suback: dict[int, list] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = reason_code

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append(message)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.puback[mid] = reason_code

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.suback[mid] = reason_codes

    def start(self) -> Probe:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self

    def connect(self, timeout: float = 10.0):
        """Connect and return the CONNACK reason code (the connection is kept when it succeeds)."""
        self.start()
        wait_until(lambda: self.connack is not None or self.disconnected.is_set(), timeout, message="CONNACK")
        if self.connack is None or self.connack.is_failure:
            self.close()
        return self.connack

    def subscribe(self, *topics: str) -> None:
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        wait_until(lambda: mid in self.suback, message=f"SUBACK for {topics}")

    def publish(self, topic: str, payload: bytes | str, retain: bool = False):
        """Publish with QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        wait_until(lambda: info.mid in self.puback, message=f"PUBACK for {topic}")
        return self.puback[info.mid]

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.messages if m.topic == topic]

    def got(self, topic: str, payload: bytes) -> bool:
        return payload in self.payloads(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def assert_refused_at_tls(probe: Probe) -> None:
    """The TLS handshake (or the first read after it, with TLS 1.3) fails: no CONNACK ever."""
    try:
        probe.client.connect("127.0.0.1", probe.port)
    except (ssl.SSLError, OSError):
        return
    probe.client.loop_start()
    wait_until(probe.disconnected.is_set, message="the broker to drop the client")
    probe.client.loop_stop()
    assert probe.connack is None or probe.connack.is_failure


def event_payload(gate_id: str, seq: int = 1) -> bytes:
    event = protocol.Event.model_validate({
        "event_id": protocol.new_event_id(), "gate_id": gate_id, "seq": seq, "ts": protocol.utc_iso(),
        "type": "screening", "outcome": "pass", "reasons": [],
    })
    return event.model_dump_json(by_alias=True).encode()


def read_yaml(path: pathlib.Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


class Deployment:
    """A provisioning directory made by the CLI and the Mosquitto that runs its config."""

    def __init__(self, out: pathlib.Path, tls_port: int, cert_port: int):
        self.out = out
        self.tls_port = tls_port
        self.cert_port = cert_port
        self.broker: MosquittoProcess | None = None

    @property
    def ca(self) -> pathlib.Path:
        return self.out / "ca" / "ca.crt"

    def gate_mqtt(self, gate_id: str) -> dict:
        return read_yaml(self.out / "gates" / gate_id / "gate.yaml")["mqtt"]

    def server_mqtt(self, instance: int = 1) -> dict:
        return read_yaml(self.out / "server" / f"server-{instance}.yaml")["mqtt"]

    def start_broker(self) -> MosquittoProcess:
        conf = (self.out / "broker" / "mosquitto.conf").read_text()
        self.broker = MosquittoProcess(port=self.tls_port, workdir=self.out / "broker-run", config_text=conf)
        self.broker.start()
        assert wait_for_port("127.0.0.1", self.cert_port), self.broker.log_tail()
        return self.broker

    def gate_probe(self, gate_id: str, name: str | None = None, mqtt_version=mqtt.MQTTv5) -> Probe:
        """A client logging in exactly as the gate's bundle says (password or certificate)."""
        m = self.gate_mqtt(gate_id)
        bundle = self.out / "gates" / gate_id
        cert = bundle / "gate.crt" if m.get("cert_file") else None
        key = bundle / "gate.key" if m.get("key_file") else None
        return Probe(name or f"checkgate-gate-{gate_id}", m["port"], self.ca, username=m.get("username"),
                     password=m.get("password"), cert_file=cert, key_file=key, mqtt_version=mqtt_version)

    def server_probe(self, instance: int = 1, name: str | None = None) -> Probe:
        """A client with the server's credentials (its own client id unless `name` is given)."""
        m = self.server_mqtt(instance)
        return Probe(name or m["client_id"], m["port"], self.ca, username=m["username"], password=m["password"])

    def cli(self, *args: str) -> int:
        return checkgate_main(["provision", *args, "--out", str(self.out)])


def provision_deployment(tmp_path: pathlib.Path, gates: str = f"{GATE_A},{GATE_B}",
                         extra: tuple[str, ...] = ()) -> Deployment:
    tls_port, cert_port = free_port(), free_port()
    out = tmp_path / "provision"
    rc = checkgate_main([
        "provision", "broker", "--out", str(out), "--hostname", "localhost,127.0.0.1",
        "--port", str(tls_port), "--cert-port", str(cert_port), "--gates", gates,
        # as root Mosquitto would drop to the 'mosquitto' user, who cannot read a test's tmp dir
        "--run-as", getpass.getuser(), *extra,
    ])
    assert rc == 0
    return Deployment(out, tls_port, cert_port)


@pytest.fixture
def deployment(tmp_path):
    dep = provision_deployment(tmp_path)
    assert dep.cli("gate", GATE_C, "--auth", "cert") == 0
    dep.start_broker()
    yield dep
    dep.broker.cleanup()


@pytest.fixture
def server(deployment):
    probe = deployment.server_probe()
    assert not probe.connect().is_failure
    yield probe
    probe.close()


# --- who may connect -------------------------------------------------------------------


def test_anonymous_client_is_refused(deployment):
    probe = Probe("anonymous", deployment.tls_port, deployment.ca)
    assert probe.connect().getName() == "Not authorized"


def test_wrong_password_and_unknown_user_are_refused(deployment):
    right = deployment.gate_mqtt(GATE_A)
    assert Probe("wrong", deployment.tls_port, deployment.ca, username=right["username"],
                 password=right["password"] + "x").connect().is_failure
    assert Probe("nobody", deployment.tls_port, deployment.ca, username="gate.nowhere",
                 password=right["password"]).connect().is_failure
    # the same user with the password from its bundle gets in
    ok = deployment.gate_probe(GATE_A)
    assert not ok.connect().is_failure
    ok.close()


def test_plain_tcp_is_refused_where_tls_is_required(deployment):
    creds = deployment.gate_mqtt(GATE_A)
    plain = Probe("plain", deployment.tls_port, None, username=creds["username"], password=creds["password"])
    plain.start()
    wait_until(plain.disconnected.is_set, message="the broker to drop a plain-TCP client")
    assert plain.connack is None  # never reached MQTT at all
    plain.close()
    wait_until(lambda: "wrong version number" in deployment.broker.log_tail(50), message="the broker's TLS error")


def test_gate_refuses_a_broker_it_cannot_verify(deployment, tmp_path):
    """A gate pointed at an impostor broker (certificate from another CA) does not talk to it."""
    from checkgate import pki

    other = pki.make_ca("impostor CA")
    other_ca = tmp_path / "other-ca.crt"
    pki.write_pair(other, other_ca, None)
    creds = deployment.gate_mqtt(GATE_A)
    probe = Probe("gate-with-other-ca", deployment.tls_port, other_ca, username=creds["username"],
                  password=creds["password"])
    with pytest.raises(ssl.SSLError):
        probe.client.connect("127.0.0.1", deployment.tls_port)


def test_client_certificate_listener_needs_a_certificate_from_our_ca(deployment, tmp_path):
    from checkgate import pki

    gate_c = deployment.gate_probe(GATE_C)
    assert not gate_c.connect().is_failure
    gate_c.close()

    # a password alone is not enough on the certificate listener
    creds = deployment.gate_mqtt(GATE_A)
    no_cert = Probe("no-cert", deployment.cert_port, deployment.ca, username=creds["username"],
                    password=creds["password"])
    assert_refused_at_tls(no_cert)

    # a certificate claiming to be gate C but issued by another CA is refused
    other = pki.make_ca("impostor CA")
    forged = pki.issue_cert(other, "gate.east-3", client=True)
    pki.write_pair(forged, tmp_path / "forged.crt", tmp_path / "forged.key")
    impostor = Probe("impostor", deployment.cert_port, deployment.ca,
                     cert_file=tmp_path / "forged.crt", key_file=tmp_path / "forged.key")
    assert_refused_at_tls(impostor)


# --- what a gate may publish and read ----------------------------------------------------


@pytest.mark.parametrize("attacker", [GATE_A, GATE_C], ids=["password-gate", "certificate-gate"])
def test_gate_cannot_publish_as_another_gate(deployment, server, attacker):
    server.subscribe(f"$share/checkgate-ingest/{protocol.PREFIX}/gates/+/events", protocol.ALL_STATES_FILTER)
    gate = deployment.gate_probe(attacker)
    assert not gate.connect().is_failure
    forged = event_payload(GATE_B)
    own = event_payload(attacker)

    assert gate.publish(protocol.events_topic(GATE_B), forged).getName() == "Not authorized"
    assert gate.publish(protocol.state_topic(GATE_B), b'{"online": false}', retain=True).is_failure
    # the gate's own event on the same connection goes through and arrives
    assert not gate.publish(protocol.events_topic(attacker), own).is_failure
    wait_until(lambda: server.got(protocol.events_topic(attacker), own), message="the gate's own event")
    # events from one client arrive in order, so the forged one would already be here
    assert server.payloads(protocol.events_topic(GATE_B)) == []
    assert server.payloads(protocol.state_topic(GATE_B)) == []
    gate.close()


def test_gate_reads_only_its_own_and_the_shared_control_topics(deployment, server):
    gate = deployment.gate_probe(GATE_A)
    assert not gate.connect().is_failure
    # ask for everything, including the other gate's topic by name
    gate.subscribe(protocol.config_topic(GATE_B), f"{protocol.PREFIX}/control/#", f"{protocol.PREFIX}/gates/#")

    server.publish(protocol.config_topic(GATE_B), b"policy-for-b", retain=True)
    server.publish(protocol.config_topic(GATE_A), b"policy-for-a", retain=True)
    server.publish(protocol.TRUST_TOPIC, b"trust-for-all", retain=True)
    wait_until(lambda: gate.got(protocol.TRUST_TOPIC, b"trust-for-all"), message="the shared trust list")
    assert gate.got(protocol.config_topic(GATE_A), b"policy-for-a")
    assert gate.payloads(protocol.config_topic(GATE_B)) == []

    # the other gate's own traffic is invisible too
    other = deployment.gate_probe(GATE_B)
    assert not other.connect().is_failure
    other.publish(protocol.events_topic(GATE_B), event_payload(GATE_B))
    server.publish(protocol.STATUS_TOPIC, b"barrier")
    wait_until(lambda: gate.got(protocol.STATUS_TOPIC, b"barrier"), message="barrier on the status topic")
    assert gate.payloads(protocol.events_topic(GATE_B)) == []

    # a late subscriber gets its own retained policy and never gate B's
    late = deployment.gate_probe(GATE_A, name="checkgate-gate-north-1-late")
    assert not late.connect().is_failure
    late.subscribe(f"{protocol.PREFIX}/control/#")
    wait_until(lambda: late.got(protocol.config_topic(GATE_A), b"policy-for-a"), message="retained policy")
    assert late.payloads(protocol.config_topic(GATE_B)) == []
    for probe in (gate, other, late):
        probe.close()


def test_gate_cannot_publish_control_documents(deployment, server):
    gate = deployment.gate_probe(GATE_A)
    assert not gate.connect().is_failure
    for topic in (protocol.config_topic(GATE_A), protocol.config_topic(GATE_B), protocol.TRUST_TOPIC,
                  protocol.STATUS_TOPIC):
        assert gate.publish(topic, b'{"forged": true}', retain=True).getName() == "Not authorized"
    server.publish(protocol.STATUS_TOPIC, b"genuine-status", retain=True)

    # a gate connecting afterwards receives the genuine retained list and nothing forged
    victim = deployment.gate_probe(GATE_B)
    assert not victim.connect().is_failure
    victim.subscribe(f"{protocol.PREFIX}/control/#")
    wait_until(lambda: victim.got(protocol.STATUS_TOPIC, b"genuine-status"), message="genuine retained status")
    server.publish(protocol.TRUST_TOPIC, b"barrier")
    wait_until(lambda: victim.got(protocol.TRUST_TOPIC, b"barrier"), message="barrier")
    assert all(m.payload != b'{"forged": true}' for m in victim.messages)
    gate.close()
    victim.close()


def test_server_reads_every_gate_through_a_shared_subscription_and_is_read_only_on_gates(deployment, server):
    server.subscribe(f"$share/checkgate-ingest/{protocol.ALL_EVENTS_FILTER}")
    payloads = {}
    for gate_id in (GATE_A, GATE_B, GATE_C):
        gate = deployment.gate_probe(gate_id)
        assert not gate.connect().is_failure
        payloads[gate_id] = event_payload(gate_id)
        gate.publish(protocol.events_topic(gate_id), payloads[gate_id])
        gate.close()
    for gate_id, payload in payloads.items():
        wait_until(lambda g=gate_id, p=payload: server.got(protocol.events_topic(g), p), message=gate_id)
    # the server cannot speak for a gate either
    assert server.publish(protocol.events_topic(GATE_A), event_payload(GATE_A)).is_failure


def test_system_topics_are_closed_to_gates(deployment):
    gate = deployment.gate_probe(GATE_A)
    assert not gate.connect().is_failure
    gate.subscribe("$SYS/#", protocol.TRUST_TOPIC)
    probe_server = deployment.server_probe()
    assert not probe_server.connect().is_failure
    probe_server.publish(protocol.TRUST_TOPIC, b"barrier")
    wait_until(lambda: gate.got(protocol.TRUST_TOPIC, b"barrier"), message="barrier")
    assert not [m for m in gate.messages if m.topic.startswith("$SYS")]
    gate.close()
    probe_server.close()


# --- changing who is provisioned, on a running broker --------------------------------------


def reload_broker(deployment: Deployment) -> None:
    """What `systemctl reload mosquitto` does: SIGHUP re-reads the password and ACL files."""
    import signal

    marker = deployment.broker.log_tail(200).count("Reloading config")
    deployment.broker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: deployment.broker.log_tail(200).count("Reloading config") > marker, message="reload")


def test_gate_added_later_works_after_a_reload(deployment, server):
    new_gate = "west-4"
    assert deployment.cli("gate", new_gate) == 0
    reload_broker(deployment)
    server.subscribe(protocol.ALL_EVENTS_FILTER)
    gate = deployment.gate_probe(new_gate)
    assert not gate.connect().is_failure
    payload = event_payload(new_gate)
    assert gate.publish(protocol.events_topic(new_gate), payload).getName() == "Success"
    wait_until(lambda: server.got(protocol.events_topic(new_gate), payload), message="new gate's event")
    assert gate.publish(protocol.events_topic(GATE_A), event_payload(GATE_A)).is_failure
    gate.close()


def test_rotated_password_replaces_the_old_one_and_revoked_gate_is_locked_out(deployment):
    old = deployment.gate_mqtt(GATE_A)
    assert deployment.cli("gate", GATE_A) == 2  # already there: rotation must be asked for
    assert deployment.cli("gate", GATE_A, "--rotate") == 0
    reload_broker(deployment)
    assert Probe("old", deployment.tls_port, deployment.ca, username=old["username"],
                 password=old["password"]).connect().is_failure
    fresh = deployment.gate_probe(GATE_A)
    assert not fresh.connect().is_failure
    fresh.close()

    assert deployment.cli("gate", GATE_B, "--revoke") == 0
    reload_broker(deployment)
    assert deployment.gate_probe(GATE_B).connect().is_failure
    registry = json.loads((deployment.out / "registry.json").read_text())
    assert GATE_B not in registry["gates"]


def test_revoked_client_certificate_is_refused_after_restart(deployment):
    before = deployment.gate_probe(GATE_C)
    assert not before.connect().is_failure
    before.close()
    kept = deployment.out / "kept"
    kept.mkdir()
    for name in ("gate.crt", "gate.key"):
        (kept / name).write_bytes((deployment.out / "gates" / GATE_C / name).read_bytes())
    assert deployment.cli("gate", GATE_C, "--revoke") == 0
    deployment.broker.restart()
    assert wait_for_port("127.0.0.1", deployment.cert_port)
    stale = Probe("stale", deployment.cert_port, deployment.ca, cert_file=kept / "gate.crt",
                  key_file=kept / "gate.key")
    assert_refused_at_tls(stale)


def test_raw_garbage_on_the_tls_port_does_not_hurt_the_broker(deployment):
    for junk in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256))):
        with socket.create_connection(("127.0.0.1", deployment.tls_port), timeout=5) as sock:
            sock.sendall(junk)
            try:
                sock.recv(64)
            except (ConnectionError, TimeoutError):
                pass
    assert deployment.broker.running()
    gate = deployment.gate_probe(GATE_A)
    assert not gate.connect().is_failure
    gate.close()


# --- the installer's check -------------------------------------------------------------------


def test_provision_check_confirms_a_working_bundle_and_names_what_is_wrong(deployment, server, tmp_path, capsys):
    import yaml

    server.publish(protocol.TRUST_TOPIC, b"trust-doc", retain=True)
    gate_yaml = deployment.out / "gates" / GATE_A / "gate.yaml"
    local = yaml.safe_load(gate_yaml.read_text())
    local["mqtt"]["ca_file"] = str(deployment.ca)  # the bundle names /etc/checkgate/ca.crt
    good = tmp_path / "gate.yaml"
    good.write_text(yaml.safe_dump(local))
    assert checkgate_main(["provision", "check", "--config", str(good), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and protocol.TRUST_TOPIC in report["retained_control_documents"]

    cases = {
        "login": lambda d: d["mqtt"].update(password="wrong"),
        "tls": lambda d: d["mqtt"].update(host="127.0.0.2"),  # not a name in the broker certificate
        "mqtt": lambda d: d["mqtt"].update(tls=False),  # plain MQTT on the TLS port
    }
    for step, change in cases.items():
        doc = yaml.safe_load(good.read_text())
        change(doc)
        bad = tmp_path / f"bad-{step}.yaml"
        bad.write_text(yaml.safe_dump(doc))
        assert checkgate_main(["provision", "check", "--config", str(bad), "--json", "--timeout", "5"]) == 1
        assert json.loads(capsys.readouterr().out)["step"] == step
    # a server instance's config works the same way (its TLS keys are named tls_ca/tls_cert/tls_key)
    server_cfg = yaml.safe_load((deployment.out / "server" / "server-1.yaml").read_text())
    server_cfg["mqtt"]["tls_ca"] = str(deployment.ca)
    (tmp_path / "server-1.yaml").write_text(yaml.safe_dump(server_cfg))
    assert checkgate_main(["provision", "check", "--config", str(tmp_path / "server-1.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: logged in")
    (tmp_path / "broken.yaml").write_text("gate_id: [unclosed")
    assert checkgate_main(["provision", "check", "--config", str(tmp_path / "broken.yaml")]) == 2


def test_rotating_one_server_instance_password_leaves_the_others_alone(tmp_path):
    dep = provision_deployment(tmp_path, extra=("--server-instances", "2"))
    dep.start_broker()
    try:
        old = dep.server_mqtt(1)
        assert dep.cli("server", "1", "--rotate") == 0
        reload_broker(dep)
        assert Probe("old-server-1", dep.tls_port, dep.ca, username=old["username"],
                     password=old["password"]).connect().is_failure
        for instance in (1, 2):  # the new password of instance 1, and instance 2 untouched
            probe = dep.server_probe(instance)
            assert not probe.connect().is_failure, instance
            probe.close()
        assert dep.cli("server", "3", "--rotate") == 2
    finally:
        dep.broker.cleanup()


def test_renewed_broker_certificate_keeps_every_gate_working(deployment, capsys):
    from cryptography import x509

    from checkgate import pki

    old = pki.load_cert(deployment.out / "broker" / "broker.crt")
    assert deployment.cli("renew", "--hostname", "gates.example.org,localhost,127.0.0.1") == 0
    new = pki.load_cert(deployment.out / "broker" / "broker.crt")
    assert new.serial_number != old.serial_number
    new.verify_directly_issued_by(pki.load_cert(deployment.ca))
    assert "gates.example.org" in new.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    deployment.broker.restart()  # Mosquitto reads certificates at start
    assert wait_for_port("127.0.0.1", deployment.cert_port)
    for gate_id in (GATE_A, GATE_C):  # password and certificate gates, bundles unchanged
        gate = deployment.gate_probe(gate_id)
        assert not gate.connect().is_failure, gate_id
        gate.close()
    capsys.readouterr()
    assert deployment.cli("list", "--json") == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listing["broker_cert_expires"] == protocol.utc_iso(new.not_valid_after_utc)
    assert listing["gates"][GATE_C]["cert_expires"] and listing["gates"][GATE_A]["cert_expires"] is None
    assert deployment.cli("renew", "--hostname", "bad name") == 2
