"""QR decoding for the gate: the decoding chain, de-duplication across frames, the scan loop.

`QrDecoder` is the one chain used by the daemon and by `checkgate scan`; `CodeDeduper`
turns "seen in 30 consecutive frames" into "reported once"; see drivers/qr/chain.py for
the order of decoders and docs/camera.md for the measurements behind it.
"""

from __future__ import annotations

from drivers.qr.chain import (
    DecodedCode,
    QrConfig,
    QrDecoder,
    backends_available,
    decode_file,
    read_image,
    to_gray,
)
from drivers.qr.dedupe import CodeDeduper
from drivers.qr.text import bytes_to_text

__all__ = ["CodeDeduper", "DecodedCode", "QrConfig", "QrDecoder", "backends_available", "bytes_to_text",
           "decode_file", "read_image", "to_gray"]
