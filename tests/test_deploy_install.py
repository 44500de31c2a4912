"""deploy/install-gate.sh, the one-command gate install, in dry-run mode: it must install every
file of a provisioned bundle, and every checkgate command it runs must be a real one."""

from __future__ import annotations

import pathlib
import shlex
import subprocess

import pytest

from checkgate.cli import build_parser
from checkgate.cli import main as checkgate_main

pytestmark = pytest.mark.security

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "install-gate.sh"


def bundle(tmp_path: pathlib.Path, auth: str) -> pathlib.Path:
    out = tmp_path / "prov"
    if not (out / "registry.json").exists():
        assert checkgate_main(["provision", "broker", "--out", str(out)]) == 0
    assert checkgate_main(["provision", "gate", f"g-{auth}", "--out", str(out), "--auth", auth]) == 0
    return out / "gates" / f"g-{auth}"


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args, "--dry-run"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def commands(output: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in output.splitlines() if line.startswith("+ ")]


def test_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    assert SCRIPT.stat().st_mode & 0o111, "deploy/install-gate.sh must be executable"


@pytest.mark.parametrize("auth", ["password", "cert"])
def test_dry_run_installs_the_whole_bundle_with_real_commands(tmp_path, auth):
    gate_bundle = bundle(tmp_path, auth)
    result = dry_run(str(gate_bundle))
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)

    installed = {pathlib.Path(c[-1]).name: c for c in cmds if c[0] == "install" and c[-1].startswith("/etc/checkgate/")}
    assert set(installed) == {p.name for p in gate_bundle.iterdir() if p.name != "INSTALL.txt"}
    for name, cmd in installed.items():
        assert cmd[cmd.index("-m") + 1] == "0640" and cmd[cmd.index("-g") + 1] == "checkgate", name

    # every file it copies from the checkout exists, and lands where the guide says
    for cmd in cmds:
        if cmd[0] == "install" and cmd[-2].startswith("deploy/"):
            assert (ROOT / cmd[-2]).exists(), cmd
    assert ["systemctl", "enable", "--now", "checkgate-edge"] in cmds
    # the kiosk gets a font for the zh-CN screen
    assert any(c[-1] == "fonts-noto-cjk" and "install" in c for c in cmds)

    # the checkgate commands parse with the real CLI and use the installed config
    checkgate_cmds = [c[c.index(".venv/bin/checkgate") + 1:] for c in cmds if ".venv/bin/checkgate" in c]
    assert [c[:2] for c in checkgate_cmds] == [["edge", "run"], ["provision", "check"], ["edge", "voices"]]
    for args in checkgate_cmds:
        assert build_parser().parse_args(args).config == "/etc/checkgate/gate.yaml"
    # the user gets exactly the groups the unit asks for
    usermod = next(c for c in cmds if c[0] == "usermod")
    unit = (ROOT / "deploy" / "systemd" / "checkgate-edge.service").read_text()
    wanted = next(line for line in unit.splitlines() if line.startswith("SupplementaryGroups=")).split("=", 1)[1]
    assert set(usermod[usermod.index("-aG") + 1].split(",")) == set(wanted.split())


def test_refuses_something_that_is_not_a_bundle(tmp_path):
    result = dry_run(str(tmp_path))
    assert result.returncode == 2 and "not a gate bundle" in result.stderr
    gate_bundle = bundle(tmp_path, "password")
    (gate_bundle / "control.pub.pem").unlink()
    result = dry_run(str(gate_bundle))
    assert result.returncode == 2 and "control.pub.pem is missing" in result.stderr
    assert subprocess.run(["bash", str(SCRIPT)], capture_output=True, cwd=ROOT).returncode == 2
