"""`checkgate scan`: the contract's JSON lines and exit codes, with the gate's chain."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import segno

from checkgate.cli import main


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def write_code(path, text: str) -> None:
    segno.make_qr(text, error="m").save(str(path), scale=5, border=4)


def test_scan_json_one_line_per_image_with_exact_text(tmp_path, capsys):
    first, second = tmp_path / "a.png", tmp_path / "b.jpg"
    write_code(first, "CG1:alpha")
    image = np.full((480, 640, 3), 200, np.uint8)
    code = cv2.imread(str(first))
    image[50:50 + code.shape[0], 80:80 + code.shape[1]] = code
    cv2.imwrite(str(second), image)
    assert main(["scan", "--json", str(first), str(second)]) == 0
    records = lines(capsys.readouterr().out)
    assert [r["file"] for r in records] == [str(first), str(second)]
    for r in records:
        assert [c["text"] for c in r["codes"]] == ["CG1:alpha"]
        assert base64.b64decode(r["codes"][0]["raw_b64"]) == b"CG1:alpha"
        assert isinstance(r["ms"], float) and r["ms"] >= 0


def test_scan_image_without_code_exits_1(tmp_path, capsys):
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.full((240, 320), 128, np.uint8))
    code = tmp_path / "code.png"
    write_code(code, "CG1:beta")
    assert main(["scan", "--json", str(code), str(empty)]) == 1
    records = lines(capsys.readouterr().out)
    assert records[1] == {"file": str(empty), "ms": records[1]["ms"], "codes": []}


def test_scan_unreadable_file_exits_2_but_still_reports_every_image(tmp_path, capsys):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff" + b"\x00garbled" * 50)
    code = tmp_path / "code.png"
    write_code(code, "CG1:gamma")
    missing = tmp_path / "missing.png"
    assert main(["scan", "--json", str(garbage), str(code), str(missing)]) == 2
    records = lines(capsys.readouterr().out)
    assert len(records) == 3
    assert records[0]["codes"] == [] and "not an image" in records[0]["error"]
    assert [c["text"] for c in records[1]["codes"]] == ["CG1:gamma"]
    assert "No such file" in records[2]["error"]


def test_scan_human_output(tmp_path, capsys):
    code = tmp_path / "code.png"
    write_code(code, "CG1:delta")
    assert main(["scan", str(code)]) == 0
    out = capsys.readouterr().out
    assert "'CG1:delta'" in out and "zxing-cpp" in out


def test_scan_without_images_is_a_usage_error(capsys):
    try:
        main(["scan"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("scan without IMAGE must fail")
