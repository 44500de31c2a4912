"""P2: GY-MCU90640 (MLX90640 32x24 array behind an STM32), see spec §P2.

Temperature frame: 5A 5A 02 06, 768 pixels + TA as int16 little-endian °C×100, then a
16-bit sum of the 771 preceding little-endian words. Emissivity replies (5A 5A xx ss,
8-bit sum) can be interleaved. The reading is the hottest pixel of the face region.
"""

from __future__ import annotations

import struct

from ..base import BAD_FIELD, OUT_OF_RANGE, Frame, FrameError, HeaderCodec, in_range, sum8
from ..device import DeviceModel, Scene

ROWS, COLS = 24, 32
PIXELS = ROWS * COLS
FRAME_LEN = 4 + 2 * PIXELS + 2 + 2  # 1544
DATA_COUNT = b"\x02\x06"  # 0x0602 = 1538 bytes of pixels + TA
EMISSIVITY_REPLY_LEN = 4
_WORDS = struct.Struct(f"<{FRAME_LEN // 2 - 1}H")
_PIXELS_TA = struct.Struct(f"<{PIXELS + 1}h")

RATES_HZ = {0.5: 0x00, 1: 0x01, 2: 0x02, 4: 0x03, 8: 0x04}
BAUD_ARGS = {9600: 0x01, 115200: 0x02, 460800: 0x03}


def host_command(cmd: int, arg: int) -> bytes:
    return bytes([0xA5, cmd, arg, (0xA5 + cmd + arg) & 0xFF])


CMD_AUTO = host_command(0x35, 0x02)
CMD_QUERY = host_command(0x35, 0x01)
CMD_READ_EMISSIVITY = host_command(0x55, 0x01)
CMD_SAVE = host_command(0x65, 0x01)


def encode_frame(pixels: list[float], ambient_c: float) -> bytes:
    """A temperature frame from 768 pixel values (row-major, sensor order) and TA."""
    if len(pixels) != PIXELS:
        raise ValueError(f"need {PIXELS} pixels, got {len(pixels)}")
    body = b"\x5a\x5a" + DATA_COUNT + _PIXELS_TA.pack(*(round(p * 100) for p in pixels), round(ambient_c * 100))
    checksum = sum(_WORDS.unpack(body)) & 0xFFFF
    return body + struct.pack("<H", checksum)


def encode_emissivity_reply(emissivity: float) -> bytes:
    body = bytes([0x5A, 0x5A, round(emissivity * 100)])
    return body + bytes([sum8(body)])


class GyMcu90640Codec(HeaderCodec):
    name = "gy-mcu90640"
    header = b"\x5a\x5a"
    min_length = 4
    default_baud = 115200
    probe_bauds = (460800, 9600)
    frame_period_s = 0.5
    typical_frame_bytes = FRAME_LEN
    max_buffer = 4 * FRAME_LEN
    object_range = (-40.0, 300.0)
    ambient_range = (-40.0, 125.0)

    def __init__(self, roi: tuple[int, int, int, int] | None = None, spot: str = "max",
                 continuous: bool = True, **options: object) -> None:
        """roi = (first_row, last_row, first_col, last_col), inclusive, 0-based, sensor order.

        spot = "max" (hottest pixel) or "mean3x3" (hottest pixel averaged with the
        neighbours within 2 °C of it, spec §12.4).
        """
        super().__init__(**options)
        r0, r1, c0, c1 = roi or (0, ROWS - 1, 0, COLS - 1)
        if not (0 <= r0 <= r1 < ROWS and 0 <= c0 <= c1 < COLS):
            raise ValueError(f"roi {roi} outside the {ROWS}x{COLS} array")
        if spot not in ("max", "mean3x3"):
            raise ValueError(f"spot must be 'max' or 'mean3x3', not {spot!r}")
        self.roi = (r0, r1, c0, c1)
        self.spot = spot
        self.continuous = continuous
        self.polled = not continuous

    def start_commands(self) -> list[bytes]:
        return [CMD_AUTO if self.continuous else CMD_QUERY]

    def poll_commands(self) -> list[bytes]:
        return [] if self.continuous else [CMD_QUERY]

    def rate_command(self, hz: float) -> bytes | None:
        if hz not in RATES_HZ:
            raise ValueError(f"gy-mcu90640 rates: {sorted(RATES_HZ)} Hz")
        return host_command(0x25, RATES_HZ[hz])

    def emissivity_command(self, emissivity: float) -> bytes | None:
        arg = round(emissivity * 100)
        if not 1 <= arg <= 0x64:
            raise ValueError("emissivity must be within 0.01..1.00")
        return host_command(0x45, arg)

    def _frame_length(self, buf: bytearray) -> int | None:
        if buf[2:4] == DATA_COUNT:
            return FRAME_LEN
        if buf[2] <= 0x64 and buf[3] == sum8(buf[:3]):
            return EMISSIVITY_REPLY_LEN
        raise FrameError(BAD_FIELD, f"neither a temperature frame nor an emissivity reply: {bytes(buf[:4]).hex()}")

    def _checksum_ok(self, frame: bytes) -> bool:
        if len(frame) == EMISSIVITY_REPLY_LEN:
            return True  # the 8-bit sum was already how we recognised it
        stored = frame[-2] | frame[-1] << 8
        return sum(_WORDS.unpack_from(frame)) & 0xFFFF == stored

    def _checksum_detail(self, frame: bytes) -> str:
        computed = sum(_WORDS.unpack_from(frame)) & 0xFFFF
        return f"sum 0x{computed:04X} != 0x{frame[-2] | frame[-1] << 8:04X}"

    def _decode(self, frame: bytes) -> Frame:
        if len(frame) == EMISSIVITY_REPLY_LEN:
            return Frame(kind="emissivity", emissivity=frame[2] / 100, raw=frame)
        values = _PIXELS_TA.unpack_from(frame, 4)
        ambient_c = in_range(values[PIXELS] / 100, self.ambient_range, "ambient (TA)")
        lo, hi = min(values[:PIXELS]) / 100, max(values[:PIXELS]) / 100
        if lo < self.object_range[0] or hi > self.object_range[1]:
            raise FrameError(OUT_OF_RANGE, f"pixels {lo:.2f}..{hi:.2f} °C outside {self.object_range}")
        r0, r1, c0, c1 = self.roi
        best, where = None, (r0, c0)
        for r in range(r0, r1 + 1):
            row = values[r * COLS + c0: r * COLS + c1 + 1]
            top = max(row)
            if best is None or top > best:
                best, where = top, (r, c0 + row.index(top))
        object_c = best / 100
        if self.spot == "mean3x3":
            object_c = self._neighbourhood_mean(values, where, object_c)
        return Frame(object_c=object_c, ambient_c=ambient_c, hotspot=where, raw=frame)

    @staticmethod
    def _neighbourhood_mean(values: tuple[int, ...], where: tuple[int, int], peak_c: float) -> float:
        r, c = where
        near = [values[rr * COLS + cc] / 100
                for rr in range(max(0, r - 1), min(ROWS, r + 2))
                for cc in range(max(0, c - 1), min(COLS, c + 2))]
        kept = [v for v in near if v >= peak_c - 2.0]  # cooler neighbours are background/hair
        return sum(kept) / len(kept)


class GyMcu90640Device(DeviceModel):
    protocol = "gy-mcu90640"
    default_baud = 115200
    stream_period_s = 0.25  # 4 Hz, comfortable at 115200

    # face region in the simulated scene (rows, cols, sensor order), the hottest point in the middle
    FACE = (8, 15, 12, 19)

    def pixels(self, scene: Scene) -> list[float]:
        background = scene.ambient_c
        pixels = [background] * PIXELS
        if scene.skin_c is not None:
            r0, r1, c0, c1 = self.FACE
            centre_r, centre_c = (r0 + r1) // 2, (c0 + c1) // 2
            for r in range(r0, r1 + 1):
                for c in range(c0, c1 + 1):
                    distance = max(abs(r - centre_r), abs(c - centre_c))
                    pixels[r * COLS + c] = scene.skin_c - 0.35 * distance  # cooler towards the edges
        return pixels

    def stream_frame(self, scene: Scene) -> bytes | None:
        return encode_frame(self.pixels(scene), scene.ambient_c) if self.streaming else None

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        if rx[0] != 0xA5:
            return 1, b""
        if len(rx) < 4:
            return None
        cmd, arg, check = rx[1], rx[2], rx[3]
        if check != (0xA5 + cmd + arg) & 0xFF:
            return 1, b""
        if cmd == 0x35:
            self.streaming = arg == 0x02
            if arg == 0x01:
                return 4, encode_frame(self.pixels(scene), scene.ambient_c)
        elif cmd == 0x25:
            hz = {v: k for k, v in RATES_HZ.items()}.get(arg)
            if hz:
                self.stream_period_s = 1 / hz
        elif cmd == 0x15:
            self.pending_baud = {v: k for k, v in BAUD_ARGS.items()}.get(arg)
        elif cmd == 0x45 and 1 <= arg <= 0x64:
            self.emissivity = arg / 100
        elif cmd == 0x55:
            return 4, encode_emissivity_reply(self.emissivity)
        return 4, b""
