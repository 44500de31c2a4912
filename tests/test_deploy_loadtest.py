"""deploy/loadtest.py, the sizing tool of docs/scaling.md, on a small load: it must build the
centre from `checkgate provision`, carry the events over TLS and check they are stored once."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.security]

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_loadtest_reports_every_event_stored_once():
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "loadtest.py"), "--instances", "1",
                             "--gates", "3", "--events", "40", "--json"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["events"] == 120 and report["rows"] == 120 and report["stored_once"]
    assert report["per_instance"] == [120] and report["stored_eps"] > 0
