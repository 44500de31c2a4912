"""`checkgate scan`: decode QR codes in image files with the gate's own chain."""

from __future__ import annotations

import argparse
import json
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="decode QR codes in image files (the gate's decoding chain)",
                       description="Decode QR codes in image files with the same chain the gate uses. "
                                   "Exit 0 if every image was read and had a code, 1 if some had none, "
                                   "2 if a file could not be read.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=cmd_scan)


def cmd_scan(args) -> int:
    import cv2

    from drivers.qr import QrDecoder

    decoder = QrDecoder()
    worst = 0
    for path in args.images:
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if image is None:
            worst = 2
            _emit(args, {"file": path, "codes": [], "ms": 0.0, "error": "cannot read image"})
            continue
        if image.dtype != "uint8":
            image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
        t0 = time.perf_counter()
        codes = decoder.decode(image, thorough=True)
        ms = (time.perf_counter() - t0) * 1000
        if not codes:
            worst = max(worst, 1)
        _emit(args, {"file": path, "codes": [{"text": c.text, "decoder": c.decoder} for c in codes],
                     "ms": round(ms, 2)})
    return worst


def _emit(args, record: dict) -> None:
    if args.json:
        print(json.dumps(record, ensure_ascii=False), flush=True)
        return
    if "error" in record:
        print(f"{record['file']}: error: {record['error']}", file=sys.stderr)
    elif not record["codes"]:
        print(f"{record['file']}: no code ({record['ms']} ms)")
    else:
        for c in record["codes"]:
            print(f"{record['file']}: {c['text']!r} ({record['ms']} ms, {c['decoder']})")
