"""QR decoding for the gate: the decoding chain, de-duplication across frames, the scan loop.

`QrDecoder` is the one chain used by the daemon and by `checkgate scan`; `CodeDeduper`
turns "seen in 30 consecutive frames" into "reported once"; see drivers/qr/chain.py for
the order of decoders and docs/camera.md for the measurements behind it.

Names are loaded on first use, so that importing `drivers.qr.cli` for `checkgate --help`
does not load numpy, zxing-cpp and libzbar.
"""

from __future__ import annotations

from checkgate.lazy import lazy_exports

_EXPORTS = {
    "DecodedCode": "drivers.qr.chain",
    "QrConfig": "drivers.qr.chain",
    "QrDecoder": "drivers.qr.chain",
    "backends_available": "drivers.qr.chain",
    "decode_file": "drivers.qr.chain",
    "read_image": "drivers.qr.chain",
    "to_gray": "drivers.qr.chain",
    "CodeDeduper": "drivers.qr.dedupe",
    "bytes_to_text": "drivers.qr.text",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
