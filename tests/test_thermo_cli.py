"""`checkgate thermo decode|simulate|read` as the command-line contract in DESIGN.md specifies."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from checkgate.cli import main

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(["thermo", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], out, err


def test_decode_hex_json_lines(capsys):
    stream = "13 5a 5A5A45040E4209C41A 5A5A45040C780D19A8 5A5A4504FE0CFBFF01"
    code, lines, _, _ = run_cli(capsys, "decode", "--protocol", "gy-mcu90614", "--json", "--hex", stream)
    assert code == 0
    assert [(d["object_c"], d["ambient_c"]) for d in lines if d["ok"]] == [(36.5, 25.0), (-5.0, -10.25)]
    errors = [d["error"] for d in lines if not d["ok"]]
    assert any(e.startswith("checksum") for e in errors) and any(e.startswith("garbage") for e in errors)


def test_decode_raw_stdin(capsys, monkeypatch):
    code, lines, _, _ = run_cli(capsys, "decode", "--protocol", "lu90614", "--json",
                                stdin=bytes.fromhex("FEAC243A0000000008"), monkeypatch=monkeypatch)
    assert code == 0
    assert lines == [{"ok": True, "kind": "temperature", "object_c": None, "ambient_c": None, "body_c": 36.58}]


def test_decode_array_gives_hottest_pixel(capsys):
    from drivers.thermometer.protocols.gy_mcu90640 import PIXELS, encode_frame

    pixels = [24.0] * PIXELS
    pixels[300] = 35.25
    code, lines, _, _ = run_cli(capsys, "decode", "--protocol", "gy-mcu90640", "--json",
                                "--hex", encode_frame(pixels, 26.0).hex())
    assert code == 0 and lines[0]["object_c"] == 35.25 and lines[0]["ambient_c"] == 26.0
    assert lines[0]["hotspot"] == [300 // 32, 300 % 32]


def test_decode_body_mode_device_adds_body(capsys):
    code, lines, _, _ = run_cli(capsys, "decode", "--protocol", "gy-614", "--json",
                                "--hex", "A4 03 07 07 62 0D B6 0A 28 0E A1 BB")
    assert lines[0]["body_c"] == 37.45 and lines[0]["object_c"] == 35.1


def test_decode_human_text(capsys):
    code, _, out, err = run_cli(capsys, "decode", "--protocol", "optris", "--hex", "0555")
    assert code == 0 and "object_c=36.5" in out and "1 frame(s) decoded" in err


def test_decode_nothing_valid_is_a_negative_result(capsys):
    code, lines, _, _ = run_cli(capsys, "decode", "--protocol", "gy-mcu90614", "--json", "--hex", "5A5A45040C780D19A8")
    assert code == 1 and lines[0]["ok"] is False and lines[0]["error"].startswith("checksum")


def test_decode_bad_usage_exits_2(capsys):
    code, _, _, err = run_cli(capsys, "decode", "--protocol", "gy-mcu90614", "--hex", "5A5G")
    assert code == 2 and "not valid hex" in err
    with pytest.raises(SystemExit) as exc:
        main(["thermo", "decode", "--protocol", "nope", "--hex", "00"])
    assert exc.value.code == 2


def _checkgate(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "checkgate.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_simulate_then_read_through_the_cli():
    sim = _checkgate("thermo", "simulate", "--protocol", "gy-mcu90614", "--skin", "34.5", "--ambient", "20", "--json")
    try:
        first = json.loads(sim.stdout.readline())
        assert os.path.islink(first["port"]) and first["pts"].startswith("/dev/pts/")
        read = subprocess.run([sys.executable, "-m", "checkgate.cli", "thermo", "read", "--port", first["port"],
                               "--protocol", "gy-mcu90614", "--count", "3", "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        assert read.returncode == 0, read.stderr
        lines = [json.loads(line) for line in read.stdout.splitlines()]
        assert len(lines) == 3
        for line in lines:
            assert set(line) == {"object_c", "ambient_c", "body_c"}
            assert line["object_c"] == pytest.approx(34.5, abs=0.2) and line["body_c"] is None
    finally:
        sim.send_signal(signal.SIGINT)
        assert sim.wait(timeout=10) == 0
    assert not os.path.exists(first["port"])  # the simulator cleans up its link


def test_read_from_a_missing_port_gives_up_with_exit_1():
    read = subprocess.run([sys.executable, "-m", "checkgate.cli", "thermo", "read", "--port", "/dev/serial/by-id/none",
                           "--protocol", "ascii", "--timeout", "1", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert read.returncode == 1 and "disconnected" in read.stderr


def test_contract_checker_passes(shared_dir):
    checker = shared_dir / "tools" / "check_contract.py"
    result = subprocess.run([sys.executable, str(checker), "thermo"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok")


def test_read_at_the_wrong_baud_explains_what_it_saw():
    from drivers.thermometer.simulator import ThermoSimulator

    with ThermoSimulator("gy-mcu90614", seed=12) as sim:
        read = subprocess.run([sys.executable, "-m", "checkgate.cli", "thermo", "read", "--port", sim.port,
                               "--protocol", "gy-mcu90614", "--baud", "115200", "--timeout", "2.5"],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
    assert read.returncode == 1
    assert "silent" in read.stderr and "garbage" in read.stderr  # noise seen, rejected, nothing invented
    assert read.stdout == ""


def test_decode_with_codec_options(capsys):
    code, lines, _, _ = run_cli(capsys, "decode", "--protocol", "modbus-omega", "--json", "--option", "slave=2",
                                "--hex", "02 03 02 01 6D" + _crc("0203 02 016D"))
    assert code == 0 and lines[0]["object_c"] == 36.5
    code, _, _, err = run_cli(capsys, "decode", "--protocol", "modbus-omega", "--option", "slave=900", "--hex", "00")
    assert code == 2 and "slave" in err
    code, _, _, err = run_cli(capsys, "decode", "--protocol", "ascii", "--option", "colour=red", "--hex", "00")
    assert code == 2 and "colour" in err
    code, _, _, err = run_cli(capsys, "decode", "--protocol", "ascii", "--option", "nonsense", "--hex", "00")
    assert code == 2 and "KEY=VALUE" in err


def _crc(hex_text: str) -> str:
    from pymodbus.framer import FramerRTU

    return FramerRTU.compute_CRC(bytes.fromhex(hex_text.replace(" ", ""))).to_bytes(2, "big").hex()
