"""`checkgate demo` as a user runs it: every decided event stored once, nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import wait_until


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def run_demo(*args: str, timeout: float) -> tuple[dict, str]:
    proc = subprocess.Popen([sys.executable, "-m", "checkgate.cli", "demo", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    try:
        while proc.poll() is None:
            seen |= _descendants(proc.pid)
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    wait_until(lambda: not _alive(seen), 10, message=f"no process left behind ({_alive(seen)})")
    assert len(seen) >= 3  # broker, server and at least one gate really ran
    return summary, out


@pytest.mark.slow
def test_demo_stores_every_decision_once():
    summary, out = run_demo("--gates", "2", "--duration", "20", "--interval", "1", timeout=180)
    assert summary["decided"] > 0
    assert summary["stored"] == summary["decided"]
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    assert "dashboard:" in out and "gate-2 screen:" in out


@pytest.mark.slow
@pytest.mark.chaos
def test_demo_with_chaos_loses_nothing():
    summary, out = run_demo("--gates", "2", "--duration", "45", "--chaos", "--interval", "1", timeout=300)
    for step in ("restart broker", "kill gate", "restart server", "cut link"):
        assert f"chaos: {step}" in out
    assert summary["decided"] > 0
    assert summary["lost"] == 0 and summary["duplicates"] == 0 and summary["stored"] == summary["decided"]


def test_ctrl_c_stops_everything(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "checkgate.cli", "demo", "--gates", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "screen:" in line:
                break
        seen = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any("dashboard:" in line for line in lines)
    wait_until(lambda: not _alive(seen), 15, message="children gone after Ctrl-C")
