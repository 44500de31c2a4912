"""The README's install section, followed as written: its provisioning commands run, and
the gate install it points at accepts the bundle they produce (in dry-run mode)."""

from __future__ import annotations

import pathlib
import shlex
import subprocess
import sys

import pytest

pytestmark = pytest.mark.security

ROOT = pathlib.Path(__file__).resolve().parents[1]


def install_section_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Installing a real deployment", 1)[1].split("\n## ", 1)[0]
    return [shlex.split(line[2:]) for line in section.splitlines() if line.startswith("$ ")]


def test_readme_install_section_works_as_written(tmp_path):
    commands = install_section_commands()
    assert [c[0] for c in commands[:3]] == ["checkgate"] * 3 and commands[-1][:2] == ["sudo", "deploy/install-gate.sh"]
    work = tmp_path / "centre"
    (work / "deploy").mkdir(parents=True)
    for argv in commands:
        if argv[0] == "checkgate":
            done = subprocess.run([sys.executable, "-m", "checkgate.cli", *argv[1:]], cwd=work,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (argv, done.stderr[-2000:])
    prov = work / "deploy" / "provision"
    for gate in ("north-1", "south-1", "east-1"):
        assert (prov / "gates" / gate / "gate.yaml").exists()
        assert (prov / "gates" / gate / "INSTALL.txt").exists()
    # the gate step, on the bundle just made (dry run: nothing is installed on this machine)
    _, script, bundle = commands[-1]
    done = subprocess.run(["bash", str(ROOT / script), str(work / bundle), "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "checkgate-edge" in done.stdout
