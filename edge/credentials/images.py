"""Decode code texts from an image file: zxing-cpp first (QR and Aztec), then pyzbar.

Used by `checkgate verify --image` when the drivers area's decoding chain is not
installed; on 32-bit boards without a zxing-cpp wheel pyzbar alone still works.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def decode_file(path: str) -> list[str]:
    """Raises OSError for an unreadable image and ValueError for an oversized one."""
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except Image.DecompressionBombError as err:  # not an OSError: would escape callers
        raise ValueError(f"image too large: {err}") from None
    with img:
        img = img.convert("L")
        try:
            import zxingcpp
        except ImportError:
            zxingcpp = None
        if zxingcpp is not None:
            texts = [r.text for r in zxingcpp.read_barcodes(img) if r.valid]
            if texts:
                return texts
        try:
            from pyzbar import pyzbar
        except ImportError:
            return []
        return [r.data.decode("utf-8", "replace") for r in pyzbar.decode(img)]
