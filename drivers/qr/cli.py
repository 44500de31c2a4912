"""`checkgate scan [--json] IMAGE...`: decode QR codes in image files with the gate's chain.

Exit status: 0 when every image held at least one code, 1 when some image held none
(a negative result), 2 when some file could not be read as an image (bad input; its
JSON line carries an "error"). Every image gets its line either way.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import time

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan", help="decode QR codes in image files (the gate's decoding chain)",
        description="Decode QR codes in image files with the chain the gate uses (zxing-cpp, then "
                    "pyzbar). Exit 0 if every image had a code, 1 if some had none, 2 if a file "
                    "could not be read.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, WebP, BMP or TIFF files")
    p.add_argument("--json", action="store_true",
                   help='one JSON line per image: {"file", "codes": [{"text", "raw_b64", "decoder"}], "ms"}')
    p.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    from drivers.qr.chain import QrDecoder, read_image

    try:
        decoder = QrDecoder()
    except RuntimeError as err:
        print(f"scan: {err}", file=sys.stderr)
        return 2
    worst = 0
    for path in args.images:
        try:
            image = read_image(path)
        except (OSError, ValueError) as err:
            logger.warning("scan: rejected %s: %s", path, err)
            worst = 2
            _emit(args, {"file": path, "codes": [], "ms": 0.0, "error": _reason(err)})
            continue
        t0 = time.perf_counter()
        codes = decoder.decode(image, thorough=True)  # one still image: every pass of the chain
        ms = (time.perf_counter() - t0) * 1000
        if not codes:
            worst = max(worst, 1)
        _emit(args, {"file": path, "ms": round(ms, 3),
                     "codes": [{"text": c.text, "raw_b64": base64.b64encode(c.raw).decode("ascii"),
                                "decoder": c.decoder} for c in codes]})
    return worst


def _reason(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"cannot read file: {err.strerror}"
    return str(err)


def _emit(args: argparse.Namespace, record: dict) -> None:
    if args.json:
        print(json.dumps(record, ensure_ascii=False), flush=True)
    elif "error" in record:
        print(f"{record['file']}: error: {record['error']}", flush=True)
    elif not record["codes"]:
        print(f"{record['file']}: no code ({record['ms']:.2f} ms)", flush=True)
    else:
        for c in record["codes"]:
            print(f"{record['file']}: {c['text']!r} ({record['ms']:.2f} ms, {c['decoder']})", flush=True)
