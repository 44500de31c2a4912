"""P4: LU90614 body-temperature module, see spec §P4.

Polled: `FA C5 BF` (body mode) or `FA C6 C0` (object mode), then `FA CA C4` (measure).
Reply: `FE mode int frac 00 00 00 00 sum`, mode AC = body, AA = object; °C = int + frac/100.
The driver alternates object and body polls so a reading carries both values.
"""

from __future__ import annotations

from ..base import BAD_FIELD, Frame, FrameError, Reading, Sum8HeaderCodec, in_range, sum8
from ..device import DeviceModel, Scene

MODE_BODY, MODE_OBJECT = 0xAC, 0xAA
FRAME_LEN = 9


def host_command(cmd: int) -> bytes:
    return bytes([0xFA, cmd, (0xFA + cmd) & 0xFF])


CMD_BODY_MODE = host_command(0xC5)
CMD_OBJECT_MODE = host_command(0xC6)
CMD_MEASURE = host_command(0xCA)


def encode_frame(value_c: float, body: bool) -> bytes:
    hundredths = round(value_c * 100)
    body_bytes = bytes([0xFE, MODE_BODY if body else MODE_OBJECT, hundredths // 100, hundredths % 100, 0, 0, 0, 0])
    return body_bytes + bytes([sum8(body_bytes)])


class Lu90614Codec(Sum8HeaderCodec):
    name = "lu90614"
    header = b"\xfe"
    min_length = 2
    default_baud = 9600
    polled = True
    poll_interval_s = 0.3
    frame_period_s = 0.3
    object_range = (0.0, 100.0)  # unsigned integer byte; clients treat >= 100 as invalid
    ambient_range = (0.0, 100.0)
    pair_max_age_s = 1.5  # combine an object and a body value only when this close in time

    def __init__(self, modes: str = "both", **options: object) -> None:
        """modes: "both" (alternate object and body polls), "body" or "object"."""
        super().__init__(**options)
        if modes not in ("both", "body", "object"):
            raise ValueError("lu90614 modes must be both, body or object")
        self.modes = modes
        self._next_body = modes == "body"  # object first, so the first body reading has its pair
        self._expected: int | None = None
        self._last: dict[int, tuple[float, float]] = {}  # mode -> (value, ts)

    def poll_commands(self) -> list[bytes]:
        body = self._next_body
        if self.modes == "both":
            self._next_body = not self._next_body
        self._expected = MODE_BODY if body else MODE_OBJECT
        return [(CMD_BODY_MODE if body else CMD_OBJECT_MODE) + CMD_MEASURE]

    def _frame_length(self, buf: bytearray) -> int | None:
        if buf[1] not in (MODE_BODY, MODE_OBJECT):
            raise FrameError(BAD_FIELD, f"unknown mode byte 0x{buf[1]:02X}")
        return FRAME_LEN

    def _decode(self, frame: bytes) -> Frame:
        if frame[3] > 99:
            raise FrameError(BAD_FIELD, f"hundredths byte {frame[3]} > 99")
        value = (frame[2] * 100 + frame[3]) / 100
        mode = frame[1]
        flags = ("wrong_mode",) if self._expected is not None and mode != self._expected else ()
        if mode == MODE_BODY:
            return Frame(body_c=in_range(value, self.object_range, "body"), flags=flags, raw=frame)
        return Frame(object_c=in_range(value, self.object_range, "object"), flags=flags, raw=frame)

    def to_reading(self, frame: Frame, ts: float) -> Reading | None:
        if frame.kind != "temperature":
            return None
        mode = MODE_BODY if frame.body_c is not None else MODE_OBJECT
        self._last[mode] = (frame.body_c if mode == MODE_BODY else frame.object_c, ts)
        other = self._last.get(MODE_OBJECT if mode == MODE_BODY else MODE_BODY)
        other_value = other[0] if other and ts - other[1] <= self.pair_max_age_s else None
        object_c = frame.object_c if mode == MODE_OBJECT else other_value
        body_c = frame.body_c if mode == MODE_BODY else other_value
        return Reading(object_c, None, body_c, sensor=self.name, ts=ts, flags=frame.flags)

    def reset(self) -> None:
        super().reset()
        self._last.clear()


class Lu90614Device(DeviceModel):
    protocol = "lu90614"
    default_baud = 9600

    def __init__(self) -> None:
        super().__init__()
        self.streaming = False
        self.body_mode = True  # survives power loss on the real module

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        if rx[0] != 0xFA:
            return 1, b""
        if len(rx) < 3:
            return None
        if rx[2] != (0xFA + rx[1]) & 0xFF:
            return 1, b""
        if rx[1] == 0xC5:
            self.body_mode = True
        elif rx[1] == 0xC6:
            self.body_mode = False
        elif rx[1] == 0xCA:
            value = scene.device_body_c() if self.body_mode else scene.object_c
            return 3, encode_frame(max(0.0, min(99.99, value)), self.body_mode)
        return 3, b""
