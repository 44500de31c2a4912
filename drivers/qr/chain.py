"""The gate's QR decoding chain: one object per camera thread, also behind `checkgate scan`.

Live frames (`decode(frame)`), the daemon's loop at 10-30 fps:

    frame -> grayscale -> region of interest -> downscale to `max_side`
          -> zxing-cpp on the image as it is (QR only, plain text mode: no GS1 rewriting)
          -> on every `secondary_every`-th frame in a row without a code, ONE extra pass,
             in turn: zxing-cpp on the inverted image (dark-mode screens), then pyzbar
             on a half-size copy (a few damaged or odd prints zxing-cpp misses)

Still images (`decode(frame, thorough=True)`, `checkgate scan`, `verify --image`) run
every pass at once: zxing-cpp with its inverted and downscaled retries, pyzbar at full
size, pyzbar on a lightly blurred copy.

Why (numbers in docs/camera.md): zxing-cpp reads the most codes and is the cheapest on
frames with nothing in them; the inverted retry doubles its cost and pyzbar costs ten
times more on a busy empty scene, so the live loop spreads them over idle frames
instead of paying for them on every frame. On 32-bit ARM, where zxing-cpp has no wheel,
pyzbar alone is the chain and runs on every frame.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

import numpy as np
from pydantic import Field, field_validator

from checkgate.config import StrictModel
from drivers.qr.text import bytes_to_text

logger = logging.getLogger(__name__)

try:  # no wheel on 32-bit ARM: the chain then runs on pyzbar alone
    import zxingcpp
except ImportError:  # pragma: no cover - depends on the platform
    zxingcpp = None

try:
    from pyzbar import pyzbar as _pyzbar
    from pyzbar import wrapper as _zbar
except (ImportError, OSError):  # pragma: no cover - libzbar0 missing
    _pyzbar = _zbar = None

# zbar's ZBAR_CFG_BINARY (zbar >= 0.23): keep payload bytes as they are instead of
# converting them to UTF-8 by guesswork. pyzbar's enum predates it.
_ZBAR_CFG_BINARY = 4


class QrConfig(StrictModel):
    """Tuning of the decoding chain (the `qr` section of a gate's camera config)."""

    max_side: int = Field(1280, ge=64)  # larger frames are downscaled first (a 4K photo wastes time)
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h (pixels) where people hold codes
    try_invert: bool = True  # look for light-on-dark codes too: phones in dark mode, some passes
    secondary_every: int = Field(3, ge=0)  # one extra pass on every n-th empty frame in a row (0: never)
    zbar_scale: float = Field(0.5, gt=0, le=1)  # live frames: pyzbar on a copy this size (its cost ~ pixels)
    # an empty scene that has not changed since the last plain pass is not decoded again
    # (the extra passes keep their turns): most of a gate's day is an unchanged empty view
    skip_static: bool = True
    static_threshold: int = Field(12, ge=1, le=255)  # grey levels an 8x8 block mean must move by
    static_max_skip: int = Field(5, ge=0)  # decode anyway after this many skipped frames
    max_payload_bytes: int = Field(4096, ge=1)  # longer payloads are rejected, never passed on

    @field_validator("roi")
    @classmethod
    def _roi_has_area(cls, roi):
        if roi is not None and (roi[2] <= 0 or roi[3] <= 0 or roi[0] < 0 or roi[1] < 0):
            raise ValueError("roi needs x, y >= 0 and a positive width and height")
        return roi


@dataclasses.dataclass(frozen=True)
class DecodedCode:
    """One code found in a frame: its text, the exact payload bytes, where it was."""

    text: str
    raw: bytes
    decoder: str = "zxing-cpp"
    position: tuple[tuple[int, int], ...] = ()  # corners in the coordinates of the input frame


def backends_available() -> list[str]:
    return [name for name, mod in (("zxing-cpp", zxingcpp), ("pyzbar", _zbar)) if mod is not None]


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A 2-D uint8 view or copy of a gray, BGR or BGRA frame; ValueError for anything else."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError("a frame must be a uint8 numpy image")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] in (1, 3, 4):
        if frame.shape[2] == 1:
            return frame[:, :, 0]
        import cv2

        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(frame, code)
    raise ValueError(f"unsupported frame shape {frame.shape}")


class ZxingReader:
    """zxing-cpp, QR only, plain text mode (payload text as encoded, no GS1/HRI rewriting).
    `thorough` adds its inverted and downscaled retries (used for still images)."""

    name = "zxing-cpp"

    def __init__(self, thorough: bool = False):
        self.thorough = thorough

    def read(self, gray: np.ndarray) -> list[DecodedCode]:
        found = zxingcpp.read_barcodes(
            gray, formats=zxingcpp.BarcodeFormat.QRCode, text_mode=zxingcpp.TextMode.Plain,
            try_rotate=False,  # QR finders are rotation-invariant; the rotated pass only costs time
            try_invert=self.thorough, try_downscale=self.thorough)
        out = []
        for r in found:
            if not r.valid:
                continue
            raw = bytes(r.bytes)
            p = r.position
            corners = tuple((int(pt.x), int(pt.y)) for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
            out.append(DecodedCode(text=r.text, raw=raw, decoder=self.name, position=corners))
        return out


class ZbarReader:
    """pyzbar's libzbar with one persistent scanner set to QR only and binary payloads."""

    name = "pyzbar"

    def __init__(self):
        self._lock = threading.Lock()
        self._scanner = _zbar.zbar_image_scanner_create()
        qr = _pyzbar.ZBarSymbol.QRCODE
        _zbar.zbar_image_scanner_set_config(self._scanner, 0, _zbar.ZBarConfig.CFG_ENABLE, 0)  # 0: all
        _zbar.zbar_image_scanner_set_config(self._scanner, qr, _zbar.ZBarConfig.CFG_ENABLE, 1)
        self.binary = _zbar.zbar_image_scanner_set_config(self._scanner, qr, _ZBAR_CFG_BINARY, 1) == 0
        if not self.binary:
            logger.warning("this libzbar cannot return raw QR bytes; non-UTF-8 payloads may be mangled")

    def read(self, gray: np.ndarray) -> list[DecodedCode]:
        from ctypes import c_void_p, cast, string_at

        height, width = gray.shape
        pixels = np.ascontiguousarray(gray).tobytes()
        out = []
        with self._lock:
            image = _zbar.zbar_image_create()
            try:
                _zbar.zbar_image_set_format(image, _pyzbar._FOURCC["L800"])
                _zbar.zbar_image_set_size(image, width, height)
                _zbar.zbar_image_set_data(image, cast(pixels, c_void_p), len(pixels), None)
                if _zbar.zbar_scan_image(self._scanner, image) < 0:
                    raise RuntimeError("zbar rejected the image format")
                symbol = _zbar.zbar_image_first_symbol(image)
                while symbol:
                    raw = string_at(_zbar.zbar_symbol_get_data(symbol), _zbar.zbar_symbol_get_data_length(symbol))
                    corners = tuple((_zbar.zbar_symbol_get_loc_x(symbol, i), _zbar.zbar_symbol_get_loc_y(symbol, i))
                                    for i in range(_zbar.zbar_symbol_get_loc_size(symbol)))
                    out.append(DecodedCode(text=bytes_to_text(raw), raw=raw, decoder=self.name, position=corners))
                    symbol = _zbar.zbar_symbol_next(symbol)
            finally:
                _zbar.zbar_image_destroy(image)
        return out

    def __del__(self):
        scanner, self._scanner = getattr(self, "_scanner", None), None
        if scanner is not None and _zbar is not None:
            _zbar.zbar_image_scanner_destroy(scanner)


class QrDecoder:
    """All QR codes in a frame. Not shared between threads: make one per camera loop."""

    def __init__(self, config: QrConfig | None = None, *, use_zxing: bool = True, use_zbar: bool = True):
        self.config = config or QrConfig()
        have_zxing = use_zxing and zxingcpp is not None
        self.primary = ZxingReader() if have_zxing else None
        self.still = ZxingReader(thorough=True) if have_zxing else None
        self.fallback = ZbarReader() if use_zbar and _zbar is not None else None
        if self.primary is None and self.fallback is None:
            raise RuntimeError("no QR decoder available: install zxing-cpp, or libzbar0 and pyzbar")
        # the extra passes the live loop takes turns with on idle frames
        self._rotation = [name for name, usable in (("inverted", have_zxing and self.config.try_invert),
                                                    ("pyzbar", self.fallback is not None)) if usable]
        self._empty_run = 0  # frames in a row where nothing was found: paces the extra passes
        self._reference: np.ndarray | None = None  # block means of the last empty plain-pass frame
        self._skipped = 0  # plain passes skipped since the last one
        self._since_change = 0  # frames since the view last changed (or a code was seen)
        self.last_pass = ""  # which pass found the codes of the last frame (benchmarks, logs)

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, int, int, float]:
        """Gray, cropped and downscaled image plus the offset and scale back to frame pixels."""
        gray = to_gray(frame)
        x0 = y0 = 0
        if self.config.roi:
            x0, y0, w, h = self.config.roi
            gray = gray[y0:y0 + h, x0:x0 + w]
            if gray.size == 0:
                raise ValueError(f"roi {self.config.roi} lies outside the {frame.shape[1]}x{frame.shape[0]} frame")
        scale = 1.0
        side = max(gray.shape[:2])
        if side > self.config.max_side:
            import cv2

            scale = self.config.max_side / side
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(gray), x0, y0, scale

    def decode(self, frame: np.ndarray, thorough: bool = False) -> list[DecodedCode]:
        """Codes in `frame` (BGR/BGRA/gray uint8). `thorough`: a single still image, try every pass."""
        gray, x0, y0, scale = self.prepare(frame)
        if thorough:
            codes, scale_back = self._still(gray), 1.0
        else:
            codes, scale_back = self._live(gray)
        return self._accept(codes, x0, y0, scale * scale_back)

    def _live(self, gray: np.ndarray) -> tuple[list[DecodedCode], float]:
        if self.primary is None:  # pyzbar is the whole chain here: full size, every frame
            self.last_pass = "pyzbar"
            return self._run(self.fallback, gray), 1.0
        if self._unchanged_and_empty(gray):
            codes, self.last_pass = [], "skipped"
        else:
            codes, self.last_pass = self._run(self.primary, gray), "zxing-cpp"
        if codes:
            self._empty_run = 0
            self._reference = None  # a code in view: decode every frame while it stays
            return codes, 1.0
        self._empty_run += 1
        every = self.config.secondary_every
        if not every or not self._rotation or self._empty_run % every:
            return [], 1.0
        if self._since_change > every * len(self._rotation):
            return [], 1.0  # every extra pass has had its turn on this unchanged view
        extra = self._rotation[(self._empty_run // every - 1) % len(self._rotation)]
        self.last_pass = extra
        scale_back = 1.0
        if extra == "inverted":
            import cv2

            codes = self._run(self.primary, cv2.bitwise_not(gray))
        else:
            small = gray
            if self.config.zbar_scale < 1.0:
                import cv2

                scale_back = self.config.zbar_scale
                small = cv2.resize(gray, None, fx=scale_back, fy=scale_back, interpolation=cv2.INTER_AREA)
            codes = self._run(self.fallback, small)
        if codes:
            self._empty_run = 0
        return codes, scale_back

    def _unchanged_and_empty(self, gray: np.ndarray) -> bool:
        """True when the last plain pass found nothing and no 8x8 block has changed since.
        Costs ~0.05 ms; the plain pass it saves ~0.5-1 ms. A code held up changes many
        blocks by far more than sensor noise moves a block mean (noise / 8)."""
        if not self.config.skip_static:
            return False
        import cv2

        h, w = gray.shape
        blocks = cv2.resize(gray, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
        reference = self._reference
        unchanged = (reference is not None and reference.shape == blocks.shape
                     and int(cv2.absdiff(blocks, reference).max()) < self.config.static_threshold)
        self._since_change = self._since_change + 1 if unchanged else 0
        if unchanged and self._skipped < self.config.static_max_skip:
            self._skipped += 1
            return True
        self._reference, self._skipped = blocks, 0  # this frame gets the plain pass
        return False

    def _still(self, gray: np.ndarray) -> list[DecodedCode]:
        if self.still is not None:
            codes = self._run(self.still, gray)
            if codes:
                self.last_pass = "zxing-cpp"
                return codes
        if self.fallback is None:
            return []
        self.last_pass = "pyzbar"
        codes = self._run(self.fallback, gray)
        if not codes:
            import cv2

            # a light blur merges print dots and screen moire that break zbar's scan lines
            self.last_pass = "pyzbar-blurred"
            codes = self._run(self.fallback, cv2.GaussianBlur(gray, (3, 3), 0))
        return codes

    @staticmethod
    def _run(reader, gray: np.ndarray) -> list[DecodedCode]:
        try:
            return reader.read(gray)
        except Exception as err:  # a decoder failure is a missed frame, never a crash of the loop
            logger.warning("%s failed on a %dx%d frame: %s", reader.name, gray.shape[1], gray.shape[0], err)
            return []

    def _accept(self, codes: list[DecodedCode], x0: int, y0: int, scale: float) -> list[DecodedCode]:
        out: list[DecodedCode] = []
        seen: set[bytes] = set()
        for code in codes:
            if len(code.raw) > self.config.max_payload_bytes:
                logger.warning("rejected a QR payload of %d bytes (limit %d)", len(code.raw),
                               self.config.max_payload_bytes)
                continue
            if code.raw in seen:  # one symbol found twice (normal and inverted retries)
                continue
            seen.add(code.raw)
            if x0 or y0 or scale != 1.0:
                corners = tuple((round(x / scale) + x0, round(y / scale) + y0) for x, y in code.position)
                code = dataclasses.replace(code, position=corners)
            out.append(code)
        return out


# Decoded images larger than this are refused (a decompression bomb, not a photo of a pass).
MAX_IMAGE_PIXELS = 60_000_000


def read_image(path: str) -> np.ndarray:
    """An image file as a BGR array; OSError when unreadable, ValueError when absurdly large."""
    import cv2

    with open(path, "rb") as fh:  # OSError with the reason for missing/unreadable files
        data = fh.read()
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size == 0:
        raise OSError(f"{path}: empty file")
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: not an image OpenCV can decode")
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"{path}: image of {image.shape[1]}x{image.shape[0]} pixels is too large")
    return image


def decode_file(path: str, decoder: QrDecoder | None = None) -> list[DecodedCode]:
    """Codes in one image file with the gate's chain (OSError/ValueError for a bad file)."""
    return (decoder or QrDecoder()).decode(read_image(path), thorough=True)
