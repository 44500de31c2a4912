"""`checkgate provision`: broker configuration, gate credentials and install sheets.

One provisioning directory holds everything for a deployment:

    registry.json          the gates and server instances provisioned so far (no secrets)
    ca/ca.crt, ca/ca.key   the broker CA (keep ca.key on this machine, never on the broker)
    broker/                copy to the broker host: mosquitto.conf, passwd, acl, TLS files
    server/                one config per server instance (MQTT user, TLS, shared subscription)
    gates/<id>/            one bundle per gate: gate.yaml, TLS files, INSTALL.txt
    bridges/<name>/        for a district broker: the bridge section of its config + our CA

`provision broker` creates it; `provision gate` adds (or rotates, or revokes) a gate and
`provision bridge` a district broker; both rewrite broker/passwd and broker/acl from the
registry, so the broker's view of who may do what is always derived from one file. Gate
users are `gate.<id>`, server instances `server.<n>`, bridges `bridge.<name>`; a '.' cannot
appear in a gate id, so no gate can ever be named like a server's or a bridge's user.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import pathlib
import re
import sys

import yaml
from pydantic import Field, ValidationError, field_validator

from checkgate import protocol
from checkgate.config import StrictModel, describe_validation_error

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE = 0, 1, 2
REGISTRY_NAME = "registry.json"
SERVER_USER_PREFIX = "server."  # one broker user per server instance: server.1, server.2, ...
GATE_USER_PREFIX = "gate."
BRIDGE_USER_PREFIX = "bridge."
DEFAULT_BROKER_INSTALL_DIR = "/etc/mosquitto/checkgate"
DEFAULT_BROKER_DATA_DIR = "/var/lib/mosquitto"
DEFAULT_GATE_INSTALL_DIR = "/etc/checkgate"
DEFAULT_SERVER_INSTALL_DIR = "/etc/checkgate"
DEFAULT_GATE_DATA_DIR = "/var/lib/checkgate"


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says what to do instead."""


HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def gate_user(gate_id: str) -> str:
    return f"{GATE_USER_PREFIX}{gate_id}"


def bridge_user(name: str) -> str:
    return f"{BRIDGE_USER_PREFIX}{name}"


# --- the registry ---------------------------------------------------------------------


class BrokerSettings(StrictModel):
    hostnames: list[str] = Field(min_length=1)
    bind_address: str = ""  # empty: all interfaces
    tls_port: int = Field(8883, ge=1, le=65535)
    cert_port: int | None = Field(8884, ge=1, le=65535)  # client-certificate listener; None: off
    install_dir: str = DEFAULT_BROKER_INSTALL_DIR
    data_dir: str = DEFAULT_BROKER_DATA_DIR
    run_as: str = "mosquitto"
    # Per client, QoS 1 messages held while it is away: the server's session must hold
    # every event published while all server instances are down.
    max_queued_messages: int = Field(200_000, ge=1000)
    # Towards each client. The server acknowledges a message only after the database commit
    # of its batch, so this bounds its batch size: too low and every batch is a small commit.
    max_inflight_messages: int = Field(1000, ge=1, le=65535)
    # Trust and status lists can be large (a national DCC trust list is ~1 MB).
    max_packet_kb: int = Field(4096, ge=64)
    # Sessions of clients that went away for good (a replaced server instance).
    session_expiry: str = Field("14d", pattern=r"^\d+[hdwmy]$")


    @field_validator("hostnames")
    @classmethod
    def _hostnames_usable(cls, v: list[str]) -> list[str]:
        import ipaddress

        for name in v:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                if not HOSTNAME_RE.match(name):
                    raise ValueError(f"{name!r} is neither an IP address nor a DNS name") from None
        return v


class ServerInstance(StrictModel):
    name: str  # server-N: its config is server/server-N.yaml
    client_id: str
    user: str
    password_hash: str


class GateRecord(StrictModel):
    auth: str = Field(pattern=r"^(password|cert)$")
    password_hash: str | None = None
    cert_serial: int | None = None
    cert_expires: str | None = None
    created: str
    rotated: str | None = None


class BridgeRecord(StrictModel):
    """A district broker forwarding its gates' events here and our control documents there."""

    password_hash: str
    gates: list[str] = Field(min_length=1)
    created: str


class Registry(StrictModel):
    schema_: str = Field("checkgate.provision/1", alias="schema")
    broker: BrokerSettings
    servers: list[ServerInstance]
    server_install_dir: str = DEFAULT_SERVER_INSTALL_DIR
    gate_install_dir: str = DEFAULT_GATE_INSTALL_DIR  # may contain {gate}
    # How the servers reach the broker when that differs from the gates' name for it
    # (a compose service name, a private address). None: the first broker hostname.
    server_broker_host: str | None = None
    http_host: str = "127.0.0.1"
    http_base_port: int = Field(8080, ge=1, le=65000)  # instance i listens on base + i - 1
    share_group: str = "checkgate-ingest"
    # The server's Ed25519 key that signs passes and control documents; gates trust its kid.
    signing_kid: str
    gates: dict[str, GateRecord] = Field(default_factory=dict)
    bridges: dict[str, BridgeRecord] = Field(default_factory=dict)
    revoked_serials: list[int] = Field(default_factory=list)

    @field_validator("gates")
    @classmethod
    def _gate_ids_valid(cls, v: dict[str, GateRecord]) -> dict[str, GateRecord]:
        bad = [g for g in v if not protocol.valid_gate_id(g)]
        if bad:
            raise ValueError(f"invalid gate ids {bad}")
        return v


def load_registry(out: pathlib.Path) -> Registry:
    path = out / REGISTRY_NAME
    if not path.exists():
        raise ProvisionError(f"{path} does not exist: run `checkgate provision broker --out {out}` first")
    try:
        return Registry.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as err:
        detail = describe_validation_error(err) if isinstance(err, ValidationError) else str(err)
        raise ProvisionError(f"{path} is damaged: {detail}") from None


def save_registry(out: pathlib.Path, registry: Registry) -> None:
    path = out / REGISTRY_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(registry.model_dump(by_alias=True), indent=2, sort_keys=True) + "\n",
                   encoding="utf-8")
    tmp.replace(path)  # never leave a half-written registry behind


# --- broker files, all derived from the registry ---------------------------------------


def render_acl(registry: Registry) -> str:
    """Per-user rules; anything not granted is denied (including `$SYS` and other gates)."""
    prefix = protocol.PREFIX
    lines = [
        "# Generated by `checkgate provision`; edit through it, not by hand.",
        "# Anything not granted below is denied. Shared subscriptions ($share/<group>/...)",
        "# are checked against the topic after the group, so the server's read rule covers them.",
        "",
    ]
    for instance in registry.servers:
        lines += [f"user {instance.user}", f"topic read {prefix}/gates/#", f"topic readwrite {prefix}/control/#", ""]
    for gate_id in sorted(registry.gates):
        lines += [
            f"user {gate_user(gate_id)}",
            f"topic write {prefix}/gates/{gate_id}/#",
            f"topic read {prefix}/control/{gate_id}/#",
            f"topic read {prefix}/control/all/#",
            "",
        ]
    for name in sorted(registry.bridges):
        # a district broker speaks only for the gates assigned to it, and reads only their controls
        gates = registry.bridges[name].gates
        lines += [f"user {bridge_user(name)}"]
        lines += [f"topic write {prefix}/gates/{g}/#" for g in gates]
        lines += [f"topic read {prefix}/control/{g}/#" for g in gates]
        lines += [f"topic read {prefix}/control/all/#", ""]
    return "\n".join(lines)


def render_passwd(registry: Registry) -> str:
    lines = [f"{instance.user}:{instance.password_hash}" for instance in registry.servers]
    for gate_id in sorted(registry.gates):
        record = registry.gates[gate_id]
        if record.auth == "password" and record.password_hash:
            lines.append(f"{gate_user(gate_id)}:{record.password_hash}")
    for name in sorted(registry.bridges):
        lines.append(f"{bridge_user(name)}:{registry.bridges[name].password_hash}")
    return "\n".join(lines) + "\n"


def render_mosquitto_conf(registry: Registry) -> str:
    b = registry.broker
    inst = b.install_dir.rstrip("/")
    bind = f" {b.bind_address}" if b.bind_address else ""
    tls_files = [f"cafile {inst}/ca.crt", f"certfile {inst}/broker.crt", f"keyfile {inst}/broker.key",
                 "tls_version tlsv1.2"]
    lines = [
        "# Mosquitto 2 configuration generated by `checkgate provision broker`.",
        "# Complete by itself: run with `mosquitto -c <this file>` (see docs/security.md).",
        "",
        "# Files are read after privileges are dropped: they must be readable by this user.",
        f"user {b.run_as}",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {inst}/passwd",
        f"acl_file {inst}/acl",
        "",
        "# Keep queued events and retained control documents across a broker restart;",
        "# save often so a crash loses at most a minute.",
        "persistence true",
        f"persistence_location {b.data_dir.rstrip('/')}/",
        "autosave_interval 60",
        f"persistent_client_expiration {b.session_expiry}",
        "",
        "# Queue limits: the server's session holds events while no server instance runs;",
        "# gates keep their own durable outbox, so this is a buffer, not the guarantee.",
        f"max_queued_messages {b.max_queued_messages}",
        f"max_inflight_messages {b.max_inflight_messages}",
        f"max_packet_size {b.max_packet_kb * 1024}",
        "max_keepalive 300",
        "",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "",
        "# Gates with a password, and the server: TLS only, no plain-TCP listener at all.",
        f"listener {b.tls_port}{bind}",
        "protocol mqtt",
        *tls_files,
        "require_certificate false",
    ]
    if b.cert_port:
        lines += [
            "",
            "# Gates with a client certificate: the certificate's CN is the user name.",
            f"listener {b.cert_port}{bind}",
            "protocol mqtt",
            *tls_files,
            "require_certificate true",
            "use_identity_as_username true",
            f"crlfile {inst}/crl.pem",
        ]
    return "\n".join(lines) + "\n"


def write_broker_files(out: pathlib.Path, registry: Registry) -> None:
    from checkgate import pki

    broker = out / "broker"
    broker.mkdir(parents=True, exist_ok=True)
    (broker / "mosquitto.conf").write_text(render_mosquitto_conf(registry), encoding="utf-8")
    (broker / "acl").write_text(render_acl(registry), encoding="utf-8")
    pki.write_secret(broker / "passwd", render_passwd(registry), mode=0o640)
    if registry.broker.cert_port:
        ca = pki.load_pair(out / "ca" / "ca.crt", out / "ca" / "ca.key")
        (broker / "crl.pem").write_bytes(pki.make_crl(ca, registry.revoked_serials))


def reload_hint(registry: Registry, out: pathlib.Path) -> str:
    inst = registry.broker.install_dir
    return (f"copy {out / 'broker'}/passwd, acl and crl.pem to {inst} on the broker host, then reload: "
            f"`sudo systemctl reload mosquitto` (or `docker compose kill -s HUP mosquitto`). "
            f"A revoked client certificate needs a restart instead of a reload.")


# --- server and gate bundles -----------------------------------------------------------


def _mqtt_host(registry: Registry) -> str:
    return registry.broker.hostnames[0]


def server_config_document(registry: Registry, instance: ServerInstance, number: int, password: str,
                           database_url: str) -> dict:
    """A complete `checkgate server run` config for one instance (server.config.ServerConfig)."""
    inst = registry.server_install_dir.rstrip("/")
    return {
        "database_url": database_url,
        "signing_key": f"{inst}/signing.key",
        "signing_kid": registry.signing_kid,
        "http": {"host": registry.http_host, "port": registry.http_base_port + number - 1},
        "mqtt": {
            "host": registry.server_broker_host or _mqtt_host(registry),
            "port": registry.broker.tls_port,
            "username": instance.user,
            "password": password,
            "tls": True,
            "tls_ca": f"{inst}/ca.crt",
            "client_id": instance.client_id,
            "share_group": registry.share_group,
        },
    }


CONTROL_KEY_NAME = "control.pub.pem"


def gate_config_document(registry: Registry, gate_id: str, install_dir: str,
                         password: str | None) -> dict:
    """A gate daemon config (edge.config.EdgeConfig) for real hardware: the broker log-in,
    the server's key for passes and control documents, the udev names from deploy/udev.
    Everything else keeps the daemon's defaults; the installer edits pins and protocol."""
    inst = install_dir.rstrip("/")
    mqtt: dict = {"host": _mqtt_host(registry), "tls": True, "ca_file": f"{inst}/ca.crt"}
    if password is not None:
        mqtt |= {"port": registry.broker.tls_port, "username": gate_user(gate_id), "password": password}
    else:
        mqtt |= {"port": registry.broker.cert_port, "cert_file": f"{inst}/gate.crt",
                 "key_file": f"{inst}/gate.key"}
    key = f"{inst}/{CONTROL_KEY_NAME}"
    return {
        "gate_id": gate_id,
        "data_dir": DEFAULT_GATE_DATA_DIR,
        "mqtt": mqtt,
        "credentials": {"trust_keys": [key], "control_keys": [key]},
        # the simulators are the daemon's defaults: a real gate must never run on them
        "thermometer": {"protocol": "gy-mcu90614", "port": "/dev/checkgate-thermo"},
        "camera": {"source": "/dev/checkgate-camera"},
        "gate": {"pin_factory": "lgpio"},
        "audio": {"backend": "aplay"},
    }


def _fingerprint(cert) -> str:
    from cryptography.hazmat.primitives import hashes

    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def render_install_sheet(registry: Registry, gate_id: str, doc: dict, install_dir: str,
                         ca_cert, expires: dt.datetime | None) -> str:
    """One printable page for the volunteer who installs the gate."""
    inst = install_dir.rstrip("/")
    mqtt = doc["mqtt"]
    auth = "client certificate (gate.crt + gate.key)" if "cert_file" in mqtt else "password (in gate.yaml)"
    files = ["gate.yaml", "ca.crt", CONTROL_KEY_NAME] + (["gate.crt", "gate.key"] if "cert_file" in mqtt else [])
    lines = [
        f"CHECKGATE GATE INSTALL SHEET - gate {gate_id}",
        "=" * 60,
        f"Gate id ........ {gate_id}",
        f"Broker ......... {mqtt['host']}:{mqtt['port']} (MQTT over TLS)",
        f"Log-in ......... {auth}",
        f"Credentials end  {expires.date().isoformat() if expires else 'never (rotate if the card is lost)'}",
        "CA fingerprint . SHA256",
        f"  {_fingerprint(ca_cert)}",
        "",
        "1. Prepare the Pi as in docs/deploy-pi.md steps 1-3 (Raspberry Pi OS Bookworm 64-bit,",
        "   UART, camera) and clone checkgate into /opt/checkgate.",
        "   Shortcut: edit gate.yaml here as in step 3 below; then everything else is one command:",
        "     sudo /opt/checkgate/deploy/install-gate.sh <this folder>",
        "   Without it: the guide's steps 4-5 (packages, user, udev names), then 2-4 below.",
        f"2. Copy this bundle's files ({', '.join(files)}) to {inst}/ :",
        f"     sudo install -d -m 0750 -o root -g checkgate {inst}",
        "     sudo install -m 0640 -o root -g checkgate \\",
        f"          {' '.join(files)} {inst}/",
        "3. Edit gate.yaml only for the local hardware (thermometer protocol, pins);",
        "   keep the mqtt and credentials sections as issued.",
        "4. Check the config and the broker log-in, then start the daemon at boot:",
        "     sudo -u checkgate /opt/checkgate/.venv/bin/checkgate edge run \\",
        f"          --validate-config --config {inst}/gate.yaml",
        "     sudo -u checkgate /opt/checkgate/.venv/bin/checkgate provision check \\",
        f"          --config {inst}/gate.yaml",
        "     sudo install -m 0644 /opt/checkgate/deploy/systemd/checkgate-edge.service \\",
        "          /etc/systemd/system/ && sudo systemctl daemon-reload",
        "     sudo systemctl enable --now checkgate-edge",
        "5. Confirm: `systemctl status checkgate-edge` says active (running), the local screen",
        "   shows the uplink as connected, and the dashboard lists this gate as online.",
        "",
        "If the CA fingerprint printed by `openssl x509 -noout -fingerprint -sha256 -in ca.crt`",
        "differs from the one above, stop: the bundle is not the one issued for this gate.",
        "Keep the bundle locked away: " + ("gate.key is the gate's identity." if "cert_file" in mqtt
                                            else "gate.yaml holds the gate's broker password."),
        f"Issued {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M')} UTC by `checkgate provision gate`.",
    ]
    return "\n".join(lines) + "\n"


# --- operations --------------------------------------------------------------------------


def provision_broker(out: pathlib.Path, *, hostnames: list[str], gates: list[str] = (),
                     gate_auth: str = "password", ca_cert: pathlib.Path | None = None,
                     ca_key: pathlib.Path | None = None, server_instances: int = 1,
                     database_url: str = "sqlite:////var/lib/checkgate/server.sqlite3",
                     server_install_dir: str = DEFAULT_SERVER_INSTALL_DIR,
                     gate_install_dir: str = DEFAULT_GATE_INSTALL_DIR, signing_key: pathlib.Path | None = None,
                     server_broker_host: str | None = None, http_host: str = "127.0.0.1",
                     http_base_port: int = 8080, **broker_options) -> dict:
    """Create a provisioning directory: CA, broker config, server configs, gate bundles."""
    from checkgate import pki

    if (out / REGISTRY_NAME).exists():
        raise ProvisionError(f"{out} is already provisioned: add gates with `checkgate provision gate "
                             f"NAME --out {out}`, or choose an empty directory")
    for gate_id in gates:
        _check_gate_id(gate_id)
    if len(set(gates)) != len(gates):
        raise ProvisionError(f"a gate id is listed twice in {','.join(gates)}")
    if (ca_cert is None) != (ca_key is None):
        raise ProvisionError("--ca-cert and --ca-key go together")
    if server_instances < 1:
        raise ProvisionError("--server-instances must be at least 1")
    broker = BrokerSettings(hostnames=hostnames, **broker_options)
    if gate_auth == "cert" and not broker.cert_port:
        raise ProvisionError("client-certificate gates need the certificate listener (--cert-port)")

    if ca_cert is not None:
        ca = pki.load_pair(ca_cert, ca_key)
        if not pki.is_ca(ca.cert):
            raise ProvisionError(f"{ca_cert} is not a CA certificate (basicConstraints CA:FALSE)")
    else:
        ca = pki.make_ca()
    out.mkdir(parents=True, exist_ok=True)
    pki.write_pair(ca, out / "ca" / "ca.crt", out / "ca" / "ca.key")
    broker_dir = out / "broker"
    server_pair = pki.issue_cert(ca, hostnames[0], server_names=hostnames)
    pki.write_pair(server_pair, broker_dir / "broker.crt", None)
    pki.write_secret(broker_dir / "broker.key", server_pair.key_pem(), mode=0o640)  # group: mosquitto
    (broker_dir / "ca.crt").write_bytes(ca.cert_pem())

    server_dir = out / "server"
    kid = _install_signing_key(out, server_dir, signing_key)
    passwords = [pki.new_password() for _ in range(server_instances)]
    servers = [ServerInstance(name=f"server-{i}", client_id=f"checkgate-server-{i}", user=f"{SERVER_USER_PREFIX}{i}",
                              password_hash=pki.mosquitto_password_hash(password))
               for i, password in enumerate(passwords, start=1)]
    registry = Registry(broker=broker, servers=servers, server_install_dir=server_install_dir, signing_kid=kid,
                        gate_install_dir=gate_install_dir,
                        server_broker_host=server_broker_host, http_host=http_host,
                        http_base_port=http_base_port)
    (server_dir / "ca.crt").write_bytes(ca.cert_pem())
    for number, (instance, password) in enumerate(zip(servers, passwords, strict=True), start=1):
        doc = server_config_document(registry, instance, number, password, database_url)
        pki.write_secret(server_dir / f"{instance.name}.yaml", _yaml(doc, f"server instance {instance.name}"))

    issued = [_add_gate(out, registry, ca, gate_id, gate_auth, gate_install_dir) for gate_id in gates]
    save_registry(out, registry)
    write_broker_files(out, registry)
    logger.info("provisioned broker in %s with %d gate(s)", out, len(gates))
    return {"out": str(out), "broker_config": str(broker_dir / "mosquitto.conf"),
            "servers": [str(server_dir / f"{s.name}.yaml") for s in servers], "gates": issued}


def provision_gate(out: pathlib.Path, gate_id: str, *, auth: str = "password", rotate: bool = False,
                   install_dir: str | None = None) -> dict:
    """Add a gate (or rotate its credentials); rewrites the broker's passwd/acl/crl."""
    from checkgate import pki

    _check_gate_id(gate_id)
    registry = load_registry(out)
    install_dir = install_dir or registry.gate_install_dir
    if gate_id in registry.gates and not rotate:
        raise ProvisionError(f"gate {gate_id} is already provisioned: use --rotate to issue new "
                             f"credentials (the old ones stop working after the broker reloads)")
    if auth == "cert" and not registry.broker.cert_port:
        raise ProvisionError("this broker has no client-certificate listener: use --auth password")
    ca = pki.load_pair(out / "ca" / "ca.crt", out / "ca" / "ca.key")
    old = registry.gates.get(gate_id)
    if old is not None and old.cert_serial is not None:
        registry.revoked_serials.append(old.cert_serial)
    result = _add_gate(out, registry, ca, gate_id, auth, install_dir)
    if old is not None:
        registry.gates[gate_id].created = old.created
        registry.gates[gate_id].rotated = _now()
    save_registry(out, registry)
    write_broker_files(out, registry)
    result["reload"] = reload_hint(registry, out)
    return result


def revoke_gate(out: pathlib.Path, gate_id: str) -> dict:
    registry = load_registry(out)
    record = registry.gates.pop(gate_id, None)
    if record is None:
        raise ProvisionError(f"gate {gate_id} is not provisioned in {out}")
    if record.cert_serial is not None:
        registry.revoked_serials.append(record.cert_serial)
    save_registry(out, registry)
    write_broker_files(out, registry)
    return {"gate_id": gate_id, "revoked": True, "reload": reload_hint(registry, out)}


def render_bridge_conf(registry: Registry, name: str, password: str, install_dir: str) -> str:
    """The `connection` section a district Mosquitto appends to its own generated config."""
    prefix = protocol.PREFIX
    return "\n".join([
        f"# Bridge from a district broker to the centre, generated by `checkgate provision bridge {name}`.",
        "# Append to the district broker's mosquitto.conf (after its listeners). Holds a password.",
        f"connection checkgate-{name}",
        f"address {_mqtt_host(registry)}:{registry.broker.tls_port}",
        f"bridge_cafile {install_dir.rstrip('/')}/centre-ca.crt",
        "bridge_insecure false",
        f"remote_username {bridge_user(name)}",
        f"remote_password {password}",
        f"remote_clientid checkgate-bridge-{name}",
        "bridge_protocol_version mqttv311",
        "try_private true",
        # the centre keeps our session (control documents) and we queue events over link cuts
        "cleansession false",
        "restart_timeout 5 60",
        "notifications_local_only true",
        f"topic {prefix}/gates/# out 1",
        f"topic {prefix}/control/# in 1",
        "",
    ])


def provision_bridge(out: pathlib.Path, name: str, gates: list[str], *,
                     install_dir: str = DEFAULT_BROKER_INSTALL_DIR, rotate: bool = False) -> dict:
    """Let a district broker forward the events of `gates` to this broker (and control back)."""
    from checkgate import pki

    if not protocol.valid_gate_id(name):
        raise ProvisionError(f"invalid bridge name {name!r}: use lowercase letters, digits, '-' or '_'")
    if not gates:
        raise ProvisionError("a bridge needs the ids of the gates behind it (--gates a,b)")
    for gate_id in gates:
        _check_gate_id(gate_id)
    registry = load_registry(out)
    if name in registry.bridges and not rotate:
        raise ProvisionError(f"bridge {name} is already provisioned: use --rotate to replace it")
    password = pki.new_password()
    registry.bridges[name] = BridgeRecord(password_hash=pki.mosquitto_password_hash(password),
                                          gates=sorted(set(gates)), created=_now())
    bundle = out / "bridges" / name
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "centre-ca.crt").write_bytes((out / "ca" / "ca.crt").read_bytes())
    pki.write_secret(bundle / "bridge.conf", render_bridge_conf(registry, name, password, install_dir))
    save_registry(out, registry)
    write_broker_files(out, registry)
    return {"bridge": name, "user": bridge_user(name), "gates": sorted(set(gates)), "bundle": str(bundle),
            "reload": reload_hint(registry, out)}


def rotate_server_password(out: pathlib.Path, number: int) -> dict:
    """A new broker password for server instance `number`; its server-N.yaml keeps every other edit."""
    from checkgate import pki

    registry = load_registry(out)
    if not 1 <= number <= len(registry.servers):
        raise ProvisionError(f"there is no server instance {number} (1..{len(registry.servers)})")
    instance = registry.servers[number - 1]
    path = out / "server" / f"{instance.name}.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["mqtt"]["password"] = password = pki.new_password()
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise ProvisionError(f"{path}: cannot update its mqtt.password ({err})") from None
    instance.password_hash = pki.mosquitto_password_hash(password)
    pki.write_secret(path, _yaml(doc, f"server instance {instance.name}"))
    save_registry(out, registry)
    write_broker_files(out, registry)
    return {"server": instance.name, "user": instance.user, "config": str(path), "reload": reload_hint(registry, out)}


def renew_broker_cert(out: pathlib.Path, hostnames: list[str] | None = None) -> dict:
    """Issue a new broker certificate from the same CA (before the old one expires, or to add
    a name). Gates keep their bundles: they trust the CA, not one certificate."""
    from checkgate import pki

    registry = load_registry(out)
    if hostnames:
        registry.broker = BrokerSettings.model_validate(registry.broker.model_dump() | {"hostnames": hostnames})
    ca = pki.load_pair(out / "ca" / "ca.crt", out / "ca" / "ca.key")
    names = registry.broker.hostnames
    pair = pki.issue_cert(ca, names[0], server_names=names)
    pki.write_pair(pair, out / "broker" / "broker.crt", None)
    pki.write_secret(out / "broker" / "broker.key", pair.key_pem(), mode=0o640)
    save_registry(out, registry)
    return {"hostnames": names, "expires": protocol.utc_iso(pair.not_after()),
            "next": f"copy {out / 'broker'}/broker.crt and broker.key to {registry.broker.install_dir} on the "
                    f"broker host and restart Mosquitto (it reads certificates only at start)"}


def _install_signing_key(out: pathlib.Path, server_dir: pathlib.Path, signing_key: pathlib.Path | None) -> str:
    """Put the server's signing key in server/ and its public half in keys/; returns its kid."""
    from cryptography.hazmat.primitives import serialization

    from checkgate import pki
    from edge.credentials import keys

    server_dir.mkdir(parents=True, exist_ok=True)
    keys_dir = out / "keys"
    try:
        if signing_key is None:
            private_path, generated_pub = keys.generate_keypair(keys_dir)
            generated_pub.unlink()  # rewritten below under the name the gates look for
        else:
            private_path = signing_key
        private = keys.load_private_key(private_path)
        kid = keys.kid_of_file(private_path)
    except (OSError, ValueError) as err:
        raise ProvisionError(f"signing key {signing_key}: {err}") from None
    header = f"{keys.KID_LINE} {kid}\n".encode()
    pki.write_secret(server_dir / "signing.key", header + private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    keys_dir.mkdir(parents=True, exist_ok=True)
    (keys_dir / CONTROL_KEY_NAME).write_bytes(header + private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    if signing_key is None:
        private_path.unlink()  # one copy of the private key: the server's
    return kid


def _add_gate(out: pathlib.Path, registry: Registry, ca, gate_id: str, auth: str, install_dir: str) -> dict:
    from checkgate import pki

    bundle = out / "gates" / gate_id
    bundle.mkdir(parents=True, exist_ok=True)
    install_dir = install_dir.replace("{gate}", gate_id)
    for stale in ("gate.crt", "gate.key"):
        (bundle / stale).unlink(missing_ok=True)
    (bundle / "ca.crt").write_bytes(ca.cert_pem())
    (bundle / CONTROL_KEY_NAME).write_bytes((out / "keys" / CONTROL_KEY_NAME).read_bytes())
    if auth == "cert":
        pair = pki.issue_cert(ca, gate_user(gate_id), client=True)
        pki.write_pair(pair, bundle / "gate.crt", bundle / "gate.key")
        record = GateRecord(auth="cert", cert_serial=pair.cert.serial_number, created=_now(),
                            cert_expires=protocol.utc_iso(pair.not_after()))
        doc = gate_config_document(registry, gate_id, install_dir, None)
        expires = pair.not_after()
    else:
        password = pki.new_password()
        record = GateRecord(auth="password", password_hash=pki.mosquitto_password_hash(password),
                            created=_now())
        doc = gate_config_document(registry, gate_id, install_dir, password)
        expires = None
    registry.gates[gate_id] = record
    pki.write_secret(bundle / "gate.yaml", _yaml(doc, f"gate {gate_id}"))
    (bundle / "INSTALL.txt").write_text(
        render_install_sheet(registry, gate_id, doc, install_dir, ca.cert, expires), encoding="utf-8")
    return {"gate_id": gate_id, "auth": auth, "bundle": str(bundle), "user": gate_user(gate_id)}


def _check_gate_id(gate_id: str) -> None:
    if not protocol.valid_gate_id(gate_id):
        raise ProvisionError(f"invalid gate id {gate_id!r}: use lowercase letters, digits, '-' or '_' "
                             f"(at most 63, starting with a letter or digit)")


def _yaml(doc: dict, what: str) -> str:
    return f"# {what}: generated by `checkgate provision`. Holds a secret: keep it 0600/0640.\n" + \
        yaml.safe_dump(doc, sort_keys=False)


def _now() -> str:
    return protocol.utc_iso()


# --- command line --------------------------------------------------------------------------


def _split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _print(args: argparse.Namespace, result: dict, human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        print(human)


def _cmd_broker(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    # Without --install-dir the broker runs from this directory (a test, a demo, one box).
    install_dir = args.install_dir or str(out.resolve() / "broker")
    data_dir = args.data_dir or (DEFAULT_BROKER_DATA_DIR if args.install_dir else f"{install_dir}/data")
    options = {"tls_port": args.port, "cert_port": args.cert_port or None, "install_dir": install_dir,
               "data_dir": data_dir, "run_as": args.run_as, "max_queued_messages": args.max_queued,
               "max_inflight_messages": args.max_inflight,
               "bind_address": args.bind}
    try:
        result = provision_broker(
            out, hostnames=_split_list(args.hostname) or ["localhost", "127.0.0.1"],
            gates=_split_list(args.gates), gate_auth=args.gate_auth,
            ca_cert=pathlib.Path(args.ca_cert) if args.ca_cert else None,
            ca_key=pathlib.Path(args.ca_key) if args.ca_key else None,
            server_instances=args.server_instances, database_url=args.database_url,
            server_install_dir=args.server_install_dir, gate_install_dir=args.gate_install_dir,
            signing_key=pathlib.Path(args.signing_key) if args.signing_key else None,
            server_broker_host=args.server_broker_host, http_host=args.http_host, http_base_port=args.http_port,
            **options)
    except (ProvisionError, ValidationError, ValueError) as err:
        return _fail(err)
    if not args.install_dir:
        pathlib.Path(data_dir).mkdir(parents=True, exist_ok=True)
    _print(args, result, f"broker config written to {result['broker_config']}\n"
                         f"server configs: {', '.join(result['servers'])}\n"
                         f"gates: {', '.join(g['gate_id'] for g in result['gates']) or '(none yet)'}\n"
                         f"keep {out / 'ca' / 'ca.key'} on this machine; see docs/security.md")
    return EXIT_OK


def _cmd_gate(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    try:
        if args.revoke:
            result = revoke_gate(out, args.name)
            _print(args, result, f"gate {args.name} revoked; {result['reload']}")
            return EXIT_OK
        result = provision_gate(out, args.name, auth=args.auth, rotate=args.rotate,
                                install_dir=args.install_dir)
    except (ProvisionError, ValidationError, ValueError) as err:
        return _fail(err)
    _print(args, result, f"gate {args.name}: bundle in {result['bundle']} (print INSTALL.txt)\n"
                         f"{result['reload']}")
    return EXIT_OK


def _cmd_bridge(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    try:
        if args.revoke:
            registry = load_registry(out)
            if registry.bridges.pop(args.name, None) is None:
                raise ProvisionError(f"bridge {args.name} is not provisioned in {out}")
            save_registry(out, registry)
            write_broker_files(out, registry)
            result = {"bridge": args.name, "revoked": True, "reload": reload_hint(registry, out)}
            _print(args, result, f"bridge {args.name} revoked; {result['reload']}")
            return EXIT_OK
        result = provision_bridge(out, args.name, _split_list(args.gates), install_dir=args.install_dir,
                                  rotate=args.rotate)
    except (ProvisionError, ValidationError, ValueError) as err:
        return _fail(err)
    _print(args, result, f"bridge {args.name} for {', '.join(result['gates'])}: append {result['bundle']}/bridge.conf "
                         f"to the district broker's mosquitto.conf and put centre-ca.crt beside it, then restart it\n"
                         f"here: {result['reload']}")
    return EXIT_OK


def _cmd_server(args: argparse.Namespace) -> int:
    try:
        result = rotate_server_password(pathlib.Path(args.out), args.number)
    except ProvisionError as err:
        return _fail(err)
    _print(args, result, f"new broker password for {result['user']} in {result['config']}: install it on that "
                         f"server and restart the instance; {result['reload']}")
    return EXIT_OK


def _cmd_renew(args: argparse.Namespace) -> int:
    try:
        result = renew_broker_cert(pathlib.Path(args.out), _split_list(args.hostname) or None)
    except (ProvisionError, ValidationError, ValueError) as err:
        return _fail(err)
    _print(args, result, f"new broker certificate for {', '.join(result['hostnames'])}, valid until "
                         f"{result['expires']}; {result['next']}")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    try:
        registry = load_registry(pathlib.Path(args.out))
    except ProvisionError as err:
        return _fail(err)
    gates = {g: {"auth": r.auth, "created": r.created, "rotated": r.rotated, "cert_expires": r.cert_expires}
             for g, r in registry.gates.items()}
    try:
        from checkgate import pki

        broker_expires = protocol.utc_iso(pki.load_cert(pathlib.Path(args.out) / "broker" / "broker.crt")
                                          .not_valid_after_utc)
    except ValueError:
        broker_expires = None
    bridges = {b: {"gates": r.gates, "created": r.created} for b, r in registry.bridges.items()}
    human = f"broker certificate valid until {broker_expires or '(unreadable)'}\n"
    human += "\n".join(f"{g}\t{r['auth']}\t{r['created']}" + (f"\tcertificate until {r['cert_expires']}"
                                                              if r["cert_expires"] else "")
                       for g, r in sorted(gates.items())) or "(no gates)"
    human += "".join(f"\nbridge {b}\t{','.join(r['gates'])}\t{r['created']}" for b, r in sorted(bridges.items()))
    _print(args, {"broker_cert_expires": broker_expires, "gates": gates, "bridges": bridges,
                  "servers": {s.name: {"user": s.user, "client_id": s.client_id} for s in registry.servers}}, human)
    return EXIT_OK


def check_connection(config_path: pathlib.Path, timeout: float = 10.0) -> dict:
    """Log in to the broker with a gate's or server's config, as the installer's last check.

    Uses its own client id, so a running daemon with the same credentials is not kicked off.
    Returns {"ok": bool, "step": ..., "detail": ...}; raises ProvisionError on a bad file.
    """
    import secrets
    import ssl
    import threading

    import paho.mqtt.client as mqtt

    try:
        doc = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        m = doc["mqtt"]
        host, port = m["host"], int(m["port"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise ProvisionError(f"{config_path}: no usable mqtt section ({err})") from None
    gate_id = doc.get("gate_id")
    ca = m.get("ca_file") or m.get("tls_ca")
    cert, key = m.get("cert_file") or m.get("tls_cert"), m.get("key_file") or m.get("tls_key")
    target = f"{host}:{port}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"checkgate-check-{secrets.token_hex(4)}",
                         protocol=mqtt.MQTTv5)
    if m.get("tls"):
        try:
            client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as err:
            return {"ok": False, "step": "tls-files", "detail": f"cannot load the TLS files: {err}"}
    if m.get("username"):
        client.username_pw_set(m["username"], m.get("password"))
    answered = threading.Event()
    result: dict = {}
    retained: list[str] = []

    def on_connect(c, userdata, flags, reason_code, properties):
        result["connack"] = str(reason_code)
        result["refused"] = reason_code.is_failure
        answered.set()

    client.on_connect = on_connect
    client.on_message = lambda c, u, msg: retained.append(msg.topic) if msg.retain else None
    client.on_disconnect = lambda *a: answered.set()
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    try:
        client.connect(host, port, keepalive=30)
    except ssl.SSLCertVerificationError as err:
        return {"ok": False, "step": "tls", "detail": f"{target}: the broker's certificate is not trusted "
                f"({err.verify_message}); is ca.crt the one from this bundle, and is '{host}' one of the "
                f"names it was provisioned for?"}
    except (OSError, ssl.SSLError) as err:
        return {"ok": False, "step": "network", "detail": f"{target}: cannot connect ({err})"}
    client.loop_start()
    try:
        if not answered.wait(timeout) or "connack" not in result:
            return {"ok": False, "step": "mqtt", "detail": f"{target}: no answer to the log-in (a plain-TCP "
                    f"client on a TLS port, or a firewall?)"}
        if result["refused"]:
            who = m.get("username") or "the certificate's user"
            return {"ok": False, "step": "login", "detail": f"{target} refused {who}: {result['connack']} "
                    f"(wrong password, or the gate was not provisioned / the broker not reloaded)"}
        if gate_id:
            from checkgate import protocol

            client.subscribe([(f"{protocol.PREFIX}/control/{gate_id}/#", 1), (f"{protocol.PREFIX}/control/all/#", 1)])
            # retained documents follow the SUBACK at once; a second covers a slow uplink
            if subscribed.wait(timeout):
                subscribed.clear()
                subscribed.wait(1.0)
        return {"ok": True, "step": "done", "detail": f"logged in to {target} over "
                f"{'TLS' if m.get('tls') else 'plain TCP'}", "retained_control_documents": sorted(set(retained))}
    finally:
        client.disconnect()
        client.loop_stop()


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        result = check_connection(pathlib.Path(args.config), args.timeout)
    except ProvisionError as err:
        return _fail(err)
    human = ("ok: " if result["ok"] else f"FAILED at {result['step']}: ") + result["detail"]
    if result.get("retained_control_documents") is not None:
        human += f"; control documents waiting: {', '.join(result['retained_control_documents']) or 'none yet'}"
    _print(args, result, human)
    return EXIT_OK if result["ok"] else EXIT_NEGATIVE


def _fail(err: Exception) -> int:
    detail = describe_validation_error(err) if isinstance(err, ValidationError) else str(err)
    logger.error("provision: %s", detail)
    print(f"checkgate provision: {detail}", file=sys.stderr)
    return EXIT_USAGE


def register(subparsers) -> None:
    p = subparsers.add_parser("provision", help="broker config, gate credentials and install sheets",
                              description="Create and extend a deployment's provisioning directory.")
    sub = p.add_subparsers(dest="provision_command", metavar="WHAT", required=True)

    b = sub.add_parser("broker", help="CA, Mosquitto config (TLS, per-gate users, ACL), server configs")
    b.add_argument("--out", required=True, help="provisioning directory to create")
    b.add_argument("--hostname", help="comma-separated names/IPs the gates use to reach the broker "
                                      "(first one goes into the configs; default localhost,127.0.0.1)")
    b.add_argument("--gates", help="comma-separated gate ids to provision now")
    b.add_argument("--gate-auth", choices=["password", "cert"], default="password")
    b.add_argument("--ca-cert", help="bring your own CA certificate (PEM)")
    b.add_argument("--ca-key", help="the key of --ca-cert (PEM, unencrypted)")
    b.add_argument("--port", type=int, default=8883, help="TLS listener (password log-in)")
    b.add_argument("--cert-port", type=int, default=8884, help="TLS listener for client certificates; 0: off")
    b.add_argument("--bind", default="", help="address the listeners bind to (default: all)")
    b.add_argument("--install-dir", help=f"where broker/ will live on the broker host "
                                         f"(e.g. {DEFAULT_BROKER_INSTALL_DIR}; default: this directory)")
    b.add_argument("--data-dir", help=f"Mosquitto persistence directory (e.g. {DEFAULT_BROKER_DATA_DIR})")
    b.add_argument("--run-as", default="mosquitto", help="user Mosquitto drops to when started as root")
    b.add_argument("--max-queued", type=int, default=200_000, help="QoS 1 messages queued per absent client")
    b.add_argument("--max-inflight", type=int, default=1000,
                   help="unacknowledged QoS 1 messages towards a client (bounds the server's batches)")
    b.add_argument("--server-instances", type=int, default=1, help="server configs to write (shared subscription)")
    b.add_argument("--server-install-dir", default=DEFAULT_SERVER_INSTALL_DIR)
    b.add_argument("--gate-install-dir", default=DEFAULT_GATE_INSTALL_DIR,
                   help="where each gate's bundle goes on the gate ({gate} is replaced by the gate id)")
    b.add_argument("--database-url", default="sqlite:////var/lib/checkgate/server.sqlite3")
    b.add_argument("--server-broker-host", help="broker address for the servers (default: the first --hostname)")
    b.add_argument("--http-host", default="127.0.0.1", help="address the servers' HTTP API binds to")
    b.add_argument("--http-port", type=int, default=8080, help="HTTP port of server instance 1 (n: port + n - 1)")
    b.add_argument("--signing-key", help="the server's Ed25519 private key (`checkgate pass keygen`); "
                                         "default: a new one")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_broker)

    g = sub.add_parser("gate", help="add a gate: broker user + ACL, gate.yaml, install sheet")
    g.add_argument("name", help="gate id, e.g. north-1")
    g.add_argument("--out", required=True, help="the provisioning directory made by `provision broker`")
    g.add_argument("--auth", choices=["password", "cert"], default="password")
    g.add_argument("--rotate", action="store_true", help="replace the credentials of an existing gate")
    g.add_argument("--revoke", action="store_true", help="remove the gate from the broker")
    g.add_argument("--install-dir", help="where the bundle goes on the gate ({gate} is replaced by the gate id; "
                                         "default: as given to `provision broker`, else /etc/checkgate)")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_cmd_gate)

    br = sub.add_parser("bridge", help="let a district broker forward its gates' events here (and control back)")
    br.add_argument("name", help="bridge name, e.g. district-7")
    br.add_argument("--out", required=True, help="the centre's provisioning directory")
    br.add_argument("--gates", help="comma-separated ids of the gates behind the district broker")
    br.add_argument("--install-dir", default=DEFAULT_BROKER_INSTALL_DIR,
                    help="where the district broker keeps its config (for centre-ca.crt)")
    br.add_argument("--rotate", action="store_true", help="replace an existing bridge's password and gates")
    br.add_argument("--revoke", action="store_true", help="remove the bridge from this broker")
    br.add_argument("--json", action="store_true")
    br.set_defaults(func=_cmd_bridge)

    ck = sub.add_parser("check", help="log in to the broker with a gate.yaml or server-N.yaml (installer's check)")
    ck.add_argument("--config", required=True)
    ck.add_argument("--timeout", type=float, default=10.0)
    ck.add_argument("--json", action="store_true")
    ck.set_defaults(func=_cmd_check)

    sv = sub.add_parser("server", help="a new broker password for one server instance")
    sv.add_argument("number", type=int, help="the instance number N (server-N.yaml)")
    sv.add_argument("--out", required=True)
    sv.add_argument("--rotate", action="store_true", required=True, help="issue the new password")
    sv.add_argument("--json", action="store_true")
    sv.set_defaults(func=_cmd_server)

    rn = sub.add_parser("renew", help="a new broker certificate from the same CA (gates keep their bundles)")
    rn.add_argument("--out", required=True)
    rn.add_argument("--hostname", help="replace the names in the certificate (comma-separated)")
    rn.add_argument("--json", action="store_true")
    rn.set_defaults(func=_cmd_renew)

    ls = sub.add_parser("list", help="the gates, bridges and certificate expiry dates of a directory")
    ls.add_argument("--out", required=True)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_cmd_list)
