"""P1: GY-MCU90614 / GY-MCU90615 (MLX9061x behind an STM32), see spec §P1.

Frame: 5A 5A type len data... sum; type 0x45 carries TO and TA as big-endian int16 °C×100.
The frame length is taken from the length byte (newer firmware adds other frame types).
"""

from __future__ import annotations

import struct

from ..base import BAD_FIELD, Frame, FrameError, Sum8HeaderCodec, in_range, sum8
from ..device import DeviceModel, Scene

TEMPERATURE = 0x45
KNOWN_TYPES = {TEMPERATURE: "temperature", 0x25: "emissivity", 0x35: "offset"}
MAX_DATA = 8  # no documented frame type carries more


def host_command(cmd: int) -> bytes:
    return bytes([0xA5, cmd, (0xA5 + cmd) & 0xFF])


CMD_CONTINUOUS = host_command(0x45)
CMD_QUERY = host_command(0x15)
CMD_BAUD_9600 = host_command(0xAE)
CMD_BAUD_115200 = host_command(0xAF)
CMD_AUTO_ON_POWER_UP = host_command(0x51)
CMD_NO_AUTO_ON_POWER_UP = host_command(0x52)


def encode_frame(object_c: float, ambient_c: float) -> bytes:
    body = bytes([0x5A, 0x5A, TEMPERATURE, 0x04]) + struct.pack(">hh", round(object_c * 100), round(ambient_c * 100))
    return body + bytes([sum8(body)])


class GyMcu90614Codec(Sum8HeaderCodec):
    name = "gy-mcu90614"
    header = b"\x5a\x5a"
    min_length = 4
    default_baud = 9600
    probe_bauds = (115200,)
    frame_period_s = 0.1
    object_range = (-70.0, 380.0)
    ambient_range = (-40.0, 125.0)

    def __init__(self, continuous: bool = True, **options: object) -> None:
        super().__init__(**options)
        self.continuous = continuous
        self.polled = not continuous

    def start_commands(self) -> list[bytes]:
        return [CMD_CONTINUOUS if self.continuous else CMD_QUERY]

    def poll_commands(self) -> list[bytes]:
        return [] if self.continuous else [CMD_QUERY]

    def _frame_length(self, buf: bytearray) -> int | None:
        kind, count = buf[2], buf[3]
        if kind not in KNOWN_TYPES:
            raise FrameError(BAD_FIELD, f"unknown frame type 0x{kind:02X}")
        if count == 0 or count > MAX_DATA or (kind == TEMPERATURE and count != 4):
            raise FrameError(BAD_FIELD, f"impossible length byte {count} for type 0x{kind:02X}")
        return count + 5

    def _decode(self, frame: bytes) -> Frame:
        kind = frame[2]
        if kind != TEMPERATURE:  # settings echo on newer firmware: valid, no temperature
            return Frame(kind=KNOWN_TYPES[kind], raw=frame)
        to_raw, ta_raw = struct.unpack(">hh", frame[4:8])
        object_c = in_range(to_raw / 100, self.object_range, "object")
        ambient_c = in_range(ta_raw / 100, self.ambient_range, "ambient")
        return Frame(object_c=object_c, ambient_c=ambient_c, raw=frame)


class GyMcu90615Codec(GyMcu90614Codec):
    name = "gy-mcu90615"
    default_baud = 115200
    probe_bauds = (9600,)
    object_range = (-40.0, 115.0)
    ambient_range = (-40.0, 85.0)


class GyMcu90614Device(DeviceModel):
    protocol = "gy-mcu90614"
    default_baud = 9600
    stream_period_s = 0.1  # 10 Hz, the newer listing

    def __init__(self) -> None:
        super().__init__()
        self.auto_on_power_up = True

    def stream_frame(self, scene: Scene) -> bytes | None:
        return encode_frame(scene.object_c, scene.ambient_c) if self.streaming else None

    def power_cycle(self) -> None:
        super().power_cycle()
        self.streaming = self.auto_on_power_up

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        if rx[0] != 0xA5:
            return 1, b""
        if len(rx) < 3:
            return None
        cmd = bytes(rx[:3])
        if cmd[2] != (0xA5 + cmd[1]) & 0xFF:
            return 1, b""
        if cmd == CMD_CONTINUOUS:
            self.streaming = True
        elif cmd == CMD_QUERY:
            self.streaming = False
            return 3, encode_frame(scene.object_c, scene.ambient_c)
        elif cmd == CMD_BAUD_9600:
            self.pending_baud = 9600
        elif cmd == CMD_BAUD_115200:
            self.pending_baud = 115200
        elif cmd == CMD_AUTO_ON_POWER_UP:
            self.auto_on_power_up = True
        elif cmd == CMD_NO_AUTO_ON_POWER_UP:
            self.auto_on_power_up = False
        return 3, b""


class GyMcu90615Device(GyMcu90614Device):
    protocol = "gy-mcu90615"
    default_baud = 115200
