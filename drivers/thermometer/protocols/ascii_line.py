"""P9: text-line bridges (an Arduino/ESP reading a GY-906 over I2C), see spec §P9.

Understood lines:
- Adafruit `mlxtest.ino`: `Ambient = 24.71*C\tObject = 33.45*C` (the `*F` twin is ignored);
  `nan`/`inf`/`ovf` values and "Error connecting to MLX sensor" are device errors.
- GY-MCU90614 bridge sketches: `TO:31.92` followed by `TA:33.53` (paired).
- The team's own one-line convention: `T=36.50,A=24.71` and `ERR=<text>`.
- iT12/iT22 style: `AT+TEMP=255,265,365,1` (ambient, object, body in tenths; last = stable).
"""

from __future__ import annotations

import re

from ..base import DEVICE_ERROR, GARBAGE, UNPARSABLE, Codec, Frame, FrameError, Rejected, Result, in_range
from ..device import DeviceModel, Scene

MAX_LINE = 160
_NUM = r"(-?\d+(?:\.\d+)?|nan|inf|ovf|-inf)"
ADAFRUIT_C = re.compile(rf"^Ambient = {_NUM}\*C\tObject = {_NUM}\*C$")
ADAFRUIT_F = re.compile(rf"^Ambient = {_NUM}\*F\tObject = {_NUM}\*F$")
PAIR_TO = re.compile(rf"^TO:{_NUM}$")
PAIR_TA = re.compile(rf"^TA:{_NUM}$")
TEAM = re.compile(rf"^T={_NUM},A={_NUM}$")
TEAM_ERR = re.compile(r"^ERR=(.*)$")
AT_TEMP = re.compile(r"^AT\+TEMP=(-?\d+),(-?\d+),(-?\d+),([01])$")
EMISSIVITY = re.compile(r"^Emissivity = (\d+\.\d+)$")
BANNER = ("Adafruit MLX90614 test", "MLX90614")
PRINTABLE = set(range(0x20, 0x7F)) | {0x09, 0x0D, 0x0A}


def encode_adafruit(object_c: float, ambient_c: float) -> bytes:
    f = lambda c: c * 9 / 5 + 32  # noqa: E731 - Arduino prints the °F twin line as well
    return (f"Ambient = {ambient_c:.2f}*C\tObject = {object_c:.2f}*C\r\n"
            f"Ambient = {f(ambient_c):.2f}*F\tObject = {f(object_c):.2f}*F\r\n\r\n").encode()


ADAFRUIT_BANNER = b"Adafruit MLX90614 test\r\nEmissivity = 1.00\r\n" + b"=" * 48 + b"\r\n"


class AsciiCodec(Codec):
    name = "ascii"
    default_baud = 9600
    probe_bauds = (115200,)
    frame_period_s = 0.5
    typical_frame_bytes = 90

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self._pending_to: float | None = None

    def _find_start(self, buf: bytearray) -> int | None:
        return 0

    def _parse(self, buf: bytearray) -> tuple[int, Result | None] | None:
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_LINE:  # no line end in sight: noise, not a line
                return len(buf), Rejected(GARBAGE, f"{len(buf)} bytes without a line end", bytes(buf[:MAX_LINE]))
            return None
        raw = bytes(buf[:end + 1])
        if len(raw) > MAX_LINE or any(b not in PRINTABLE for b in raw):
            return end + 1, Rejected(GARBAGE, "binary bytes or an overlong line", raw)
        line = raw.decode("ascii").strip("\r\n").strip()
        try:
            return end + 1, self._line(line, raw)
        except FrameError as err:
            return end + 1, Rejected(err.cause, err.detail, raw)

    def flush(self) -> list[Result]:
        self._pending_to = None
        if self._buf and not self._buf.strip():
            self._buf.clear()
        return super().flush()

    def _value(self, text: str, what: str, bounds: tuple[float, float]) -> float:
        if text in ("nan", "inf", "-inf", "ovf"):
            raise FrameError(DEVICE_ERROR, f"{what} reads {text} (sensor read failed)")
        return in_range(float(text), bounds, what)

    def _line(self, line: str, raw: bytes) -> Frame | None:
        if not line or line.startswith("====") or line in BANNER or ADAFRUIT_F.match(line):
            return None
        if m := ADAFRUIT_C.match(line):
            return Frame(ambient_c=self._value(m[1], "ambient", self.ambient_range),
                         object_c=self._value(m[2], "object", self.object_range), raw=raw)
        if m := TEAM.match(line):
            return Frame(object_c=self._value(m[1], "object", self.object_range),
                         ambient_c=self._value(m[2], "ambient", self.ambient_range), raw=raw)
        if m := PAIR_TO.match(line):
            self._pending_to = self._value(m[1], "object", self.object_range)
            return None
        if m := PAIR_TA.match(line):
            ambient = self._value(m[1], "ambient", self.ambient_range)
            object_c, self._pending_to = self._pending_to, None
            if object_c is None:
                return Frame(kind="info", ambient_c=ambient, raw=raw)
            return Frame(object_c=object_c, ambient_c=ambient, raw=raw)
        if m := AT_TEMP.match(line):
            ambient, obj, body = (int(m[i]) / 10 for i in (1, 2, 3))
            return Frame(ambient_c=in_range(ambient, self.ambient_range, "ambient"),
                         object_c=in_range(obj, self.object_range, "object"),
                         body_c=in_range(body, self.object_range, "body"),
                         flags=() if m[4] == "1" else ("unstable",), raw=raw)
        if m := EMISSIVITY.match(line):
            return Frame(kind="emissivity", emissivity=float(m[1]), raw=raw)
        if m := TEAM_ERR.match(line):
            raise FrameError(DEVICE_ERROR, m[1] or "error")
        if line.startswith("Error connecting"):
            raise FrameError(DEVICE_ERROR, line)
        raise FrameError(UNPARSABLE, f"unknown line {line[:40]!r}")

    def _partial_start_len(self, buf: bytearray) -> int:
        return len(buf)


class AsciiDevice(DeviceModel):
    """An Arduino running the Adafruit mlxtest sketch (prints every 500 ms, ignores input)."""

    protocol = "ascii"
    default_baud = 9600
    stream_period_s = 0.5

    def __init__(self) -> None:
        super().__init__()
        self._banner_due = True

    def power_cycle(self) -> None:
        super().power_cycle()
        self._banner_due = True

    def stream_frame(self, scene: Scene) -> bytes | None:
        out = encode_adafruit(scene.object_c, scene.ambient_c)
        if self._banner_due:
            self._banner_due = False
            out = ADAFRUIT_BANNER + out
        return out

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        return len(rx), b""
