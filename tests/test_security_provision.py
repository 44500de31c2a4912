"""`checkgate provision` without a broker: what it writes, what it refuses, what it keeps secret."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest
import yaml

from checkgate import pki, provision
from checkgate.cli import main as checkgate_main
from checkgate.config import load_config

pytestmark = pytest.mark.security


def run(*args: str) -> int:
    return checkgate_main(["provision", *args])


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "prov"
    assert run("broker", "--out", str(d), "--gates", "north-1,south-2", "--hostname",
               "gate-broker.example.org,10.0.0.5", "--server-instances", "2",
               "--install-dir", "/etc/mosquitto/checkgate", "--data-dir", "/var/lib/mosquitto") == 0
    return d


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_not_readable_by_others(out):
    for secret in ("ca/ca.key", "server/server-1.yaml", "server/signing.key", "gates/north-1/gate.yaml"):
        assert mode(out / secret) == 0o600, secret
    # the broker's own secrets are group-readable so the 'mosquitto' group can read them
    for secret in ("broker/broker.key", "broker/passwd"):
        assert mode(out / secret) == 0o640, secret
    assert not (out / "broker" / "ca.key").exists()  # the CA key never goes to the broker


def test_registry_and_password_file_hold_hashes_only(out):
    gate = yaml.safe_load((out / "gates" / "north-1" / "gate.yaml").read_text())
    password = gate["mqtt"]["password"]
    for name in ("registry.json", "broker/passwd", "broker/acl", "broker/mosquitto.conf"):
        assert password not in (out / name).read_text(), name
    line = next(li for li in (out / "broker" / "passwd").read_text().splitlines() if li.startswith("gate.north-1:"))
    assert pki.check_mosquitto_password(password, line.split(":", 1)[1])
    assert not pki.check_mosquitto_password(password + "x", line.split(":", 1)[1])


def test_password_hash_is_what_mosquitto_passwd_writes(tmp_path):
    """Same format as Debian's mosquitto_passwd (PBKDF2-SHA512, `$7$`): each side checks the other."""
    import shutil

    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd missing: install the Debian package 'mosquitto'")
    pwfile = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(pwfile), "alice", "s3cret"], check=True)
    theirs = pwfile.read_text().strip().split(":", 1)[1]
    assert pki.check_mosquitto_password("s3cret", theirs)
    ours = pki.mosquitto_password_hash("s3cret", iterations=101, salt=b"\x01" * 12)
    assert ours.startswith("$7$101$") and pki.check_mosquitto_password("s3cret", ours)


def test_configs_match_the_daemons_own_models(out):
    from edge.config import EdgeConfig
    from server.config import ServerConfig

    gate = load_config(EdgeConfig, out / "gates" / "north-1" / "gate.yaml")
    assert gate.gate_id == "north-1" and gate.mqtt.tls and gate.mqtt.port == 8883
    assert gate.mqtt.username == "gate.north-1"
    assert gate.thermometer.port != "sim" and gate.camera.source != "sim" and gate.gate.pin_factory != "mock"
    servers = [load_config(ServerConfig, out / "server" / f"server-{i}.yaml") for i in (1, 2)]
    assert {s.mqtt.client_id for s in servers} == {"checkgate-server-1", "checkgate-server-2"}
    assert {s.mqtt.share_group for s in servers} == {"checkgate-ingest"}
    assert {s.http.port for s in servers} == {8080, 8081}
    assert servers[0].mqtt.tls and [s.mqtt.username for s in servers] == ["server.1", "server.2"]
    acl = (out / "broker" / "acl").read_text()
    for user in ("server.1", "server.2"):  # each instance its own user, with the same rights
        block = acl.split(f"user {user}\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert block == ["topic read checkgate/v1/gates/#", "topic readwrite checkgate/v1/control/#"]


def test_gates_trust_the_server_signing_key(out):
    from edge.credentials import keys

    signing = out / "server" / "signing.key"
    gate_key = out / "gates" / "north-1" / provision.CONTROL_KEY_NAME
    server_cfg = yaml.safe_load((out / "server" / "server-1.yaml").read_text())
    assert keys.kid_of_file(gate_key) == keys.kid_of_file(signing) == server_cfg["signing_kid"]
    private = keys.load_private_key(signing)
    assert keys.public_raw(private.public_key()) == keys.public_raw(keys.load_public_key(gate_key))


def test_broker_certificate_names_every_hostname_and_chains_to_the_ca(out):
    from cryptography import x509

    cert = pki.load_cert(out / "broker" / "broker.crt")
    ca = pki.load_cert(out / "ca" / "ca.crt")
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gate-broker.example.org" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert pki.is_ca(ca) and not pki.is_ca(cert)


def test_broker_config_is_closed_by_default(out):
    conf = (out / "broker" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "persistence true" in conf
    assert "password_file /etc/mosquitto/checkgate/passwd" in conf
    assert "persistence_location /var/lib/mosquitto/" in conf
    listeners = [line for line in conf if line.startswith("listener ")]
    assert len(listeners) == 2
    assert conf.count("certfile /etc/mosquitto/checkgate/broker.crt") == 2  # every listener is TLS
    assert any(line.startswith("max_queued_messages ") for line in conf)


def test_acl_gives_each_gate_only_its_own_subtree(out):
    acl = (out / "broker" / "acl").read_text()
    block = acl.split("user gate.north-1\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == ["topic write checkgate/v1/gates/north-1/#", "topic read checkgate/v1/control/north-1/#",
                     "topic read checkgate/v1/control/all/#"]
    assert "pattern" not in acl  # explicit rules per user, nothing implied


def test_adding_a_gate_extends_the_existing_broker_config(out, capsys):
    before = (out / "ca" / "ca.crt").read_bytes()
    assert run("gate", "west-3", "--out", str(out), "--auth", "cert") == 0
    printed = capsys.readouterr().out
    assert "reload" in printed and "INSTALL.txt" in printed
    assert (out / "ca" / "ca.crt").read_bytes() == before
    assert "user gate.west-3" in (out / "broker" / "acl").read_text()
    assert "gate.west-3:" not in (out / "broker" / "passwd").read_text()  # certificate, no password
    cert = pki.load_cert(out / "gates" / "west-3" / "gate.crt")
    cert.verify_directly_issued_by(pki.load_cert(out / "ca" / "ca.crt"))
    assert run("list", "--out", str(out), "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(listed["gates"]) == ["north-1", "south-2", "west-3"]


def test_install_sheet_fits_one_page_and_names_what_the_installer_needs(out):
    sheet = (out / "gates" / "north-1" / "INSTALL.txt").read_text()
    assert len(sheet.splitlines()) <= 60 and max(len(line) for line in sheet.splitlines()) <= 100
    from cryptography.hazmat.primitives import hashes

    ca_fp = pki.load_cert(out / "ca" / "ca.crt").fingerprint(hashes.SHA256()).hex().upper()
    assert ca_fp[:8] in sheet.replace(":", "")
    assert "gate-broker.example.org:8883" in sheet
    assert "systemctl enable --now checkgate-edge" in sheet
    assert "deploy/install-gate.sh" in sheet
    password = yaml.safe_load((out / "gates" / "north-1" / "gate.yaml").read_text())["mqtt"]["password"]
    assert password not in sheet  # the sheet can be printed; the secret stays in the file


def test_revoking_a_certificate_gate_lists_it_in_the_crl(out):
    from cryptography import x509

    assert run("gate", "west-3", "--out", str(out), "--auth", "cert") == 0
    serial = pki.load_cert(out / "gates" / "west-3" / "gate.crt").serial_number
    assert run("gate", "west-3", "--out", str(out), "--revoke") == 0
    crl = x509.load_pem_x509_crl((out / "broker" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert "gate.west-3" not in (out / "broker" / "acl").read_text()


@pytest.mark.parametrize("args, message", [
    (["gate", "North 1"], "invalid gate id"),
    (["gate", "gate.x"], "invalid gate id"),
    (["gate", "north-1"], "already provisioned"),
    (["gate", "nowhere", "--revoke"], "not provisioned"),
    (["broker", "--gates", "a"], "already provisioned"),
])
def test_bad_requests_exit_2_with_a_reason(out, capsys, args, message):
    assert run(*args, "--out", str(out)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--hostname", "broker example.org"], "neither an IP address nor a DNS name"),
    (["--hostname", "bad_host.example.org"], "neither an IP address nor a DNS name"),
    (["--gates", "a,b,a"], "listed twice"),
    (["--gates", "ok,Not-OK"], "invalid gate id"),
    (["--server-instances", "0"], "at least 1"),
])
def test_bad_broker_requests_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "prov"
    assert run("broker", "--out", str(out), *args) == 2
    assert message in capsys.readouterr().err
    assert not (out / "registry.json").exists()


def test_gate_before_broker_says_what_to_run_first(tmp_path, capsys):
    assert run("gate", "north-1", "--out", str(tmp_path / "empty")) == 2
    assert "provision broker" in capsys.readouterr().err


def test_damaged_registry_is_reported_not_a_crash(out, capsys):
    (out / "registry.json").write_text('{"broker": {"hostnames": []}, "surprise": 1}')
    assert run("gate", "west-3", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "surprise" in err
    (out / "registry.json").write_bytes(b"\xff\xfe not json")
    assert run("list", "--out", str(out)) == 2


def test_bring_your_own_ca(tmp_path, capsys):
    ca = pki.make_ca("district CA")
    pki.write_pair(ca, tmp_path / "ca.crt", tmp_path / "ca.key")
    out = tmp_path / "prov"
    assert run("broker", "--out", str(out), "--ca-cert", str(tmp_path / "ca.crt"),
               "--ca-key", str(tmp_path / "ca.key")) == 0
    assert (out / "ca" / "ca.crt").read_bytes() == (tmp_path / "ca.crt").read_bytes()
    pki.load_cert(out / "broker" / "broker.crt").verify_directly_issued_by(ca.cert)

    # a leaf certificate is not a CA, a key that does not match is refused, half a pair too
    leaf = pki.issue_cert(ca, "not-a-ca", client=True)
    pki.write_pair(leaf, tmp_path / "leaf.crt", tmp_path / "leaf.key")
    other = pki.make_ca("other")
    pki.write_pair(other, tmp_path / "other.crt", tmp_path / "other.key")
    for cert, key, message in [("leaf.crt", "leaf.key", "not a CA"), ("ca.crt", "other.key", "not the key"),
                               ("ca.crt", None, "go together"), ("missing.crt", "ca.key", "not a readable")]:
        extra = ["--ca-cert", str(tmp_path / cert)] + (["--ca-key", str(tmp_path / key)] if key else [])
        assert run("broker", "--out", str(tmp_path / f"o-{cert}-{key}"), *extra) == 2
        assert message in capsys.readouterr().err


def test_provision_module_keeps_crypto_out_of_cli_start_up():
    code = "import sys, checkgate.provision; print('cryptography' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
