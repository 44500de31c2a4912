"""QR decoding: the gate's one decoding chain, used by the daemon and `checkgate scan`.

Grayscale -> optional region of interest -> downscale to `max_side` -> zxing-cpp
(plain text mode, QR only). pyzbar runs as a fallback: on every image for single-image
scans, and on every n-th frame in the live loop, so it adds what it can read without
costing its time on every frame; it is also the whole chain on boards where zxing-cpp
has no wheel (32-bit Raspberry Pi OS). Payload bytes are kept; text is decoded as
UTF-8, then Shift_JIS (common in QR), then Latin-1, never with replacement characters
that could alter a payload silently.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from checkgate.config import StrictModel

logger = logging.getLogger(__name__)

try:  # optional: no wheel on 32-bit ARM
    import zxingcpp
except ImportError:  # pragma: no cover - depends on the platform
    zxingcpp = None

try:
    from pyzbar import pyzbar
except (ImportError, OSError):  # libzbar0 missing
    pyzbar = None


class QrConfig(StrictModel):
    max_side: int = 1280  # larger frames are downscaled first (a 4K photo wastes time)
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h of the area where codes are held
    fallback_every: int = 5  # live loop: pyzbar on every n-th frame where zxing found nothing (0: never)
    max_payload_bytes: int = 4096


@dataclasses.dataclass(frozen=True)
class DecodedCode:
    text: str
    raw: bytes
    decoder: str = "zxing-cpp"
    position: tuple[tuple[int, int], ...] = ()


def bytes_to_text(raw: bytes) -> str:
    for encoding in ("utf-8", "shift_jis"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def to_gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    import cv2

    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


class QrDecoder:
    def __init__(self, config: QrConfig | None = None):
        self.config = config or QrConfig()
        self._frames = 0
        if zxingcpp is None and pyzbar is None:
            raise RuntimeError("no QR decoder: install zxing-cpp or libzbar0 + pyzbar")

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        gray = to_gray(frame)
        if self.config.roi:
            x, y, w, h = self.config.roi
            gray = gray[y:y + h, x:x + w]
        side = max(gray.shape[:2])
        if side > self.config.max_side:
            import cv2

            scale = self.config.max_side / side
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(gray)

    def decode(self, frame: np.ndarray, thorough: bool = False) -> list[DecodedCode]:
        """All QR codes in the frame. `thorough` (single images) always tries the fallback."""
        self._frames += 1
        gray = self.prepare(frame)
        codes = self._zxing(gray) if zxingcpp is not None else []
        want_fallback = thorough or zxingcpp is None or (
            self.config.fallback_every and self._frames % self.config.fallback_every == 0)
        if not codes and want_fallback and pyzbar is not None:
            codes = self._pyzbar(gray)
            if not codes and thorough and gray.shape[0] * gray.shape[1] > 640 * 480:
                import cv2

                half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                codes = self._pyzbar(half)
        return [c for c in codes if len(c.raw) <= self.config.max_payload_bytes]

    def _zxing(self, gray: np.ndarray) -> list[DecodedCode]:
        out = []
        for r in zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode,
                                        text_mode=zxingcpp.TextMode.Plain):
            if not r.valid:
                continue
            raw = bytes(r.bytes)
            p = r.position
            pos = tuple((pt.x, pt.y) for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
            out.append(DecodedCode(text=r.text or bytes_to_text(raw), raw=raw, decoder="zxing-cpp", position=pos))
        return out

    def _pyzbar(self, gray: np.ndarray) -> list[DecodedCode]:
        out = []
        try:
            found = pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
        except Exception as err:  # a decoder error is a missed frame, never a crash
            logger.debug("pyzbar failed: %s", err)
            return out
        for r in found:
            raw = bytes(r.data)
            out.append(DecodedCode(text=bytes_to_text(raw), raw=raw, decoder="pyzbar",
                                   position=tuple((pt.x, pt.y) for pt in r.polygon)))
        return out


class CodeDeduper:
    """Report a code once per window, however many consecutive frames show it."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._seen: dict[bytes, float] = {}

    def fresh(self, codes: list[DecodedCode], now: float | None = None) -> list[DecodedCode]:
        now = time.monotonic() if now is None else now
        out = []
        for code in codes:
            last = self._seen.get(code.raw)
            if last is None or now - last >= self.window_s:
                out.append(code)
            self._seen[code.raw] = now if last is None or now - last >= self.window_s else last
        if len(self._seen) > 512:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self.window_s}
        return out

    def forget(self) -> None:
        self._seen.clear()


__all__ = ["CodeDeduper", "DecodedCode", "QrConfig", "QrDecoder", "bytes_to_text"]
