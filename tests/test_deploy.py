"""deploy/: systemd units, udev rules and the compose file, checked by the tools that will run them.

`systemd-analyze verify` needs the units' ExecStart binaries to exist; a gate has
checkgate installed in /opt/checkgate, this machine has it in the repository's .venv.
So the tests verify a copy of each unit in which only that path is rewritten: every
other line is verified exactly as shipped.
"""

from __future__ import annotations

import configparser
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from checkgate.cli import build_parser
from checkgate.cli import main as checkgate_main

pytestmark = pytest.mark.security

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED_CHECKGATE = "/opt/checkgate/.venv/bin/checkgate"


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze missing: install the Debian package 'systemd'")
    return tool


def local_checkgate() -> str:
    candidate = pathlib.Path(sys.executable).parent / "checkgate"
    assert candidate.exists(), "checkgate is not installed in this virtualenv (scripts/setup)"
    return str(candidate)


@pytest.fixture
def unit_copies(tmp_path) -> pathlib.Path:
    """The units with only the install path of checkgate pointed at this checkout's."""
    for unit in [*UNITS.glob("*.service"), *UNITS.glob("*.timer")]:
        text = unit.read_text().replace(INSTALLED_CHECKGATE, local_checkgate())
        name = unit.name.replace("@.service", "@1.service")  # verify an instance of the template
        (tmp_path / name).write_text(text)
    return tmp_path


def read_unit(path: pathlib.Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def exec_args(line: str) -> list[str]:
    args = shlex.split(line.replace("%i", "1"))
    assert args[0] == INSTALLED_CHECKGATE, line
    return args[1:]


def test_systemd_verifies_every_unit_without_a_warning(unit_copies):
    units = sorted(str(p) for p in [*unit_copies.glob("*.service"), *unit_copies.glob("*.timer")])
    assert len(units) == 5
    result = subprocess.run([systemd_analyze(), "verify", "--man=no", *units],
                            capture_output=True, text=True, cwd=unit_copies, timeout=60)
    # verify exits 0 on unknown keys and bad values too, printing them: treat any output as failure
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_verify_does_catch_a_broken_unit(unit_copies):
    """The check above is not vacuous: a misspelt key and a bad value are reported."""
    edge = unit_copies / "checkgate-edge.service"
    edge.write_text(edge.read_text().replace("WatchdogSec=", "WatchdogSecs=").replace("Restart=always",
                                                                                      "Restart=sometimes"))
    result = subprocess.run([systemd_analyze(), "verify", "--man=no", str(edge)],
                            capture_output=True, text=True, cwd=unit_copies, timeout=60)
    assert "WatchdogSecs" in result.stderr and "sometimes" in result.stderr


@pytest.mark.parametrize("unit", ["checkgate-edge.service", "checkgate-server@1.service"])
def test_units_are_hardened(unit_copies, unit):
    """systemd's own exposure score: below 3.0 of 10 ("OK") for both long-running services."""
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", "--threshold=30",
                             str(unit_copies / unit)], capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert result.returncode == 0 and score, result.stdout[-2000:] + result.stderr
    assert float(score.group(1)) < 3.0


def test_edge_unit_runs_the_daemon_as_a_watched_unprivileged_user():
    unit = read_unit(UNITS / "checkgate-edge.service")
    service = unit["Service"]
    assert service["Type"] == "notify"  # the daemon sends READY=1 and WATCHDOG=1
    assert service["User"] == "checkgate" and service["User"] != "root"
    assert set(service["SupplementaryGroups"].split()) == {"dialout", "gpio", "video", "audio"}
    assert service["Restart"] == "always" and int(service["WatchdogSec"]) > 0
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    args = build_parser().parse_args(exec_args(service["ExecStart"]))
    assert (args.command, args.edge_command) == ("edge", "run")
    pre = build_parser().parse_args(exec_args(service["ExecStartPre"]))
    assert pre.validate_config and pre.config == args.config == "/etc/checkgate/gate.yaml"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_server_units_migrate_once_before_any_instance_starts():
    server = read_unit(UNITS / "checkgate-server@.service")
    migrate = read_unit(UNITS / "checkgate-migrate.service")
    assert "checkgate-migrate.service" in server["Unit"]["Requires"].split()
    assert "checkgate-migrate.service" in server["Unit"]["After"].split()
    assert migrate["Service"]["Type"] == "oneshot"
    mig_args = exec_args(migrate["Service"]["ExecStart"])
    assert mig_args[:2] == ["server", "migrate"] and build_parser().parse_args(mig_args).config
    run_args = exec_args(server["Service"]["ExecStart"])
    assert run_args[:2] == ["server", "run"] and build_parser().parse_args(run_args).config.endswith("server-1.yaml")


def test_backup_runs_nightly_and_keeps_two_weeks():
    service, timer = read_unit(UNITS / "checkgate-backup.service"), read_unit(UNITS / "checkgate-backup.timer")
    assert timer["Timer"]["OnCalendar"].endswith("03:30:00") and timer["Timer"]["Persistent"] == "true"
    assert "pg_dump --format=custom" in service["Service"]["ExecStart"]
    assert "-mtime +14 -delete" in service["Service"]["ExecStartPost"]
    assert service["Service"]["StateDirectory"] == "checkgate-backups"


def test_mosquitto_drop_in_runs_the_provisioned_config():
    from checkgate import provision

    drop_in = read_unit(UNITS / "mosquitto.service.d" / "checkgate.conf")
    starts = [line for line in (UNITS / "mosquitto.service.d" / "checkgate.conf").read_text().splitlines()
              if line.startswith("ExecStart=")]
    assert starts[0] == "ExecStart="  # clears Debian's ExecStart before replacing it
    assert starts[-1].endswith(f"-c {provision.DEFAULT_BROKER_INSTALL_DIR}/mosquitto.conf")
    assert drop_in["Service"]["Restart"] == "on-failure"


# --- udev ------------------------------------------------------------------------------------

UDEV_KEY = re.compile(r'^\s*([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*$')
MATCH_KEYS = {"SUBSYSTEM", "KERNEL", "ATTR", "ATTRS", "ENV", "KERNELS", "SUBSYSTEMS", "DRIVERS"}
ASSIGN_KEYS = {"SYMLINK", "GROUP", "MODE", "OWNER", "TAG", "ENV"}


def udev_rules(path: pathlib.Path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs = []
        for part in line.split(", "):
            m = UDEV_KEY.match(part)
            assert m, f"{path.name}:{number}: cannot parse {part!r}"
            key, op, value = m.groups()
            base = key.split("{")[0]
            allowed = MATCH_KEYS if op in ("==", "!=") else ASSIGN_KEYS
            assert base in allowed, f"{path.name}:{number}: {key}{op} is not a valid udev key here"
            pairs.append((base, op, value))
        yield number, pairs


def test_udev_rules_parse_and_give_the_names_gate_yaml_uses(tmp_path):
    rules = list(udev_rules(DEPLOY / "udev" / "99-checkgate.rules"))
    assert rules
    names = {value for _, pairs in rules for key, op, value in pairs if key == "SYMLINK"}
    for _, pairs in rules:
        assert any(op == "==" for _, op, _ in pairs), "a rule without a match would apply to every device"
    # the names must be the ones `provision gate` writes into gate.yaml
    out = tmp_path / "prov"
    assert checkgate_main(["provision", "broker", "--out", str(out), "--gates", "north-1"]) == 0
    gate = yaml.safe_load((out / "gates" / "north-1" / "gate.yaml").read_text())
    assert gate["thermometer"]["port"].removeprefix("/dev/") in names
    assert gate["camera"]["source"].removeprefix("/dev/") in names


# --- compose ---------------------------------------------------------------------------------


def documented_commands(text: str) -> list[list[str]]:
    """The `$ checkgate ...` lines of a file's comments, as argument lists."""
    return [shlex.split(line.split("$ ", 1)[1]) for line in text.splitlines()
            if line.lstrip("# ").startswith("$ checkgate")]


def test_compose_provisioning_as_documented_fits_the_compose_file(tmp_path):
    text = (DEPLOY / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"mosquitto", "postgres", "migrate", "server"} <= set(services)

    # run the documented provisioning commands, into a scratch copy of deploy/
    work = tmp_path / "repo"
    (work / "deploy").mkdir(parents=True)
    commands = documented_commands(text)
    assert commands, "compose.yaml documents no provisioning command"
    for argv in commands:
        assert argv[0] == "checkgate"
        assert subprocess.run([local_checkgate(), *argv[1:]], cwd=work, capture_output=True,
                              timeout=60).returncode == 0, argv
    out = work / "deploy" / "provision"

    def mount(service: str, source: str) -> str:
        for volume in services[service]["volumes"]:
            parts = volume.split(":")
            if parts[0] == source:
                return parts[1]
        raise AssertionError(f"{service} does not mount {source}")

    # the broker config only names files inside its mounts
    conf = (out / "broker" / "mosquitto.conf").read_text()
    config_dir = mount("mosquitto", "./provision/broker")
    data_dir = mount("mosquitto", "mosquitto-data")
    for path in re.findall(r"^\S+ (/\S+)$", conf, flags=re.M):
        assert path.startswith((config_dir + "/", data_dir + "/")), path
        if path.startswith(config_dir + "/"):
            assert (out / "broker" / path.removeprefix(config_dir + "/")).exists(), path
    listeners = {int(p) for p in re.findall(r"^listener (\d+)", conf, flags=re.M)}
    published = {int(p.split(":")[-1]) for p in services["mosquitto"]["ports"]}
    assert listeners == published

    # the server config names the compose services and files inside its mount
    server_dir = mount("server", "./provision/server")
    cfg = yaml.safe_load((out / "server" / "server-1.yaml").read_text())
    assert cfg["mqtt"]["host"] == "mosquitto" and cfg["database_url"].split("@")[1].startswith("postgres:")
    for key in (cfg["mqtt"]["tls_ca"], cfg["signing_key"]):
        assert key.startswith(server_dir + "/") and (out / "server" / key.removeprefix(server_dir + "/")).exists()
    assert cfg["http"]["host"] == "0.0.0.0"
    assert str(cfg["http"]["port"]) == services["server"]["ports"][0].split(":")[-1]
    from cryptography import x509

    from checkgate import pki

    san = pki.load_cert(out / "broker" / "broker.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "mosquitto" in san  # the server reaches the broker by its service name, over TLS

    # the containers' commands are real checkgate commands on that config
    for service in ("migrate", "server"):
        args = build_parser().parse_args(services[service]["command"])
        assert args.config == f"{server_dir}/server-1.yaml"
    assert services["server"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # both gates documented exist, and the secrets stay out of git
    assert sorted(p.name for p in (out / "gates").iterdir()) == ["north-1", "south-1"]
    assert "provision/" in (DEPLOY / ".gitignore").read_text().split()


def test_dockerfile_copies_every_package_the_server_imports():
    text = (DEPLOY / "Dockerfile").read_text()
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in {p.rstrip("*") for p in include}:
        assert re.search(rf"^COPY {package} \./{package}$", text, flags=re.M), package
    assert re.search(r"^USER checkgate$", text, flags=re.M)
