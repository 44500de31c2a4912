"""P3: GY-614 V3 / GY-615 V3 register protocol, see spec §P3.

Frames are `addr 03 start count data... sum`; the standard read (start 7, count 7) carries
emissivity, TO, TA and BO ("forehead converted to body", computed in the module), the
temperatures as big-endian int16 °C×100. The driver polls; the module may also stream.
"""

from __future__ import annotations

import struct

from ..base import BAD_FIELD, Frame, FrameError, Sum8HeaderCodec, in_range, sum8
from ..device import DeviceModel, Scene

DEFAULT_ADDRESS = 0xA4
READ, WRITE = 0x03, 0x06
REGISTERS = 16
REG_RATE, REG_MODE, REG_FORMAT, REG_SAVE, REG_OFFSET, REG_EMISSIVITY = 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
REG_TO, REG_TA, REG_BO = 0x08, 0x0A, 0x0C
RATES_HZ = {1: 0, 2: 1, 5: 2, 10: 3}


def _with_sum(body: bytes) -> bytes:
    return body + bytes([sum8(body)])


def write_command(register: int, value: int, address: int = DEFAULT_ADDRESS) -> bytes:
    return _with_sum(bytes([address, WRITE, register, value]))


def read_command(start: int = REG_EMISSIVITY, count: int = 7, address: int = DEFAULT_ADDRESS) -> bytes:
    return _with_sum(bytes([address, READ, start, count]))


def encode_frame(emissivity: float, object_c: float, ambient_c: float, body_c: float,
                 address: int = DEFAULT_ADDRESS) -> bytes:
    data = bytes([round(emissivity * 100)]) + struct.pack(
        ">hhh", round(object_c * 100), round(ambient_c * 100), round(body_c * 100))
    return _with_sum(bytes([address, READ, REG_EMISSIVITY, 7]) + data)


class Gy614Codec(Sum8HeaderCodec):
    name = "gy-614"
    min_length = 4
    default_baud = 9600
    probe_bauds = (115200,)
    polled = True
    poll_interval_s = 0.2
    frame_period_s = 0.2
    typical_frame_bytes = 12
    object_range = (-70.0, 380.0)
    ambient_range = (-40.0, 125.0)
    body_range = (-70.0, 380.0)  # BO follows TO when nobody is there (V3.3)

    def __init__(self, address: int = DEFAULT_ADDRESS, **options: object) -> None:
        super().__init__(**options)
        if not 0 < address < 255:
            raise ValueError("gy-614 address must be 1..254")
        self.address = address
        self.header = bytes([address, READ])

    def start_commands(self) -> list[bytes]:
        # binary output, query mode: stored settings vary between units (spec §11.4)
        return [write_command(REG_FORMAT, 0, self.address), write_command(REG_MODE, 1, self.address)]

    def poll_commands(self) -> list[bytes]:
        return [read_command(address=self.address)]

    def rate_command(self, hz: float) -> bytes | None:
        if hz not in RATES_HZ:
            raise ValueError(f"gy-614 rates: {sorted(RATES_HZ)} Hz")
        return write_command(REG_RATE, RATES_HZ[hz], self.address)

    def emissivity_command(self, emissivity: float) -> bytes | None:
        value = round(emissivity * 100)
        if not 1 <= value <= 100:
            raise ValueError("emissivity must be within 0.01..1.00")
        return write_command(REG_EMISSIVITY, value, self.address)

    def _frame_length(self, buf: bytearray) -> int | None:
        start, count = buf[2], buf[3]
        if count == 0 or start >= REGISTERS or start + count > REGISTERS:
            raise FrameError(BAD_FIELD, f"register window {start}+{count} outside the {REGISTERS} registers")
        return count + 5

    def _decode(self, frame: bytes) -> Frame:
        start, count = frame[2], frame[3]
        regs = dict(zip(range(start, start + count), frame[4:-1], strict=True))

        def word(reg: int) -> float | None:
            if reg in regs and reg + 1 in regs:
                return struct.unpack(">h", bytes([regs[reg], regs[reg + 1]]))[0] / 100
            return None

        to, ta, bo = word(REG_TO), word(REG_TA), word(REG_BO)
        emissivity = regs[REG_EMISSIVITY] / 100 if REG_EMISSIVITY in regs else None
        if emissivity is not None and not 0.01 <= emissivity <= 1.0:
            raise FrameError(BAD_FIELD, f"emissivity register {regs[REG_EMISSIVITY]} outside 1..100")
        if to is None:
            return Frame(kind="registers", emissivity=emissivity, raw=frame)
        return Frame(
            object_c=in_range(to, self.object_range, "object (TO)"),
            ambient_c=None if ta is None else in_range(ta, self.ambient_range, "ambient (TA)"),
            body_c=None if bo is None else in_range(bo, self.body_range, "body (BO)"),
            emissivity=emissivity,
            raw=frame,
        )


class Gy614Device(DeviceModel):
    protocol = "gy-614"
    default_baud = 9600
    stream_period_s = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.address = DEFAULT_ADDRESS
        self.streaming = False  # shipped in query mode in the public projects
        self.registers = bytearray(REGISTERS)
        self.registers[0], self.registers[1], self.registers[REG_RATE] = DEFAULT_ADDRESS, 2, 3
        self.registers[REG_MODE], self.registers[REG_OFFSET], self.registers[REG_EMISSIVITY] = 1, 100, 98

    def _values(self, scene: Scene) -> bytes:
        offset = (self.registers[REG_OFFSET] - 100) / 10
        to = scene.object_c + offset
        bo = scene.device_body_c() + offset
        regs = bytearray(self.registers)
        regs[REG_TO:REG_TO + 6] = struct.pack(">hhh", round(to * 100), round(scene.ambient_c * 100), round(bo * 100))
        return bytes(regs)

    def stream_frame(self, scene: Scene) -> bytes | None:
        if not self.streaming:
            return None
        regs = self._values(scene)
        return _with_sum(bytes([self.address, READ, REG_EMISSIVITY, 7]) + regs[REG_EMISSIVITY:REG_EMISSIVITY + 7])

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        if rx[0] not in (self.address, 0):
            return 1, b""
        if len(rx) < 5:
            return None
        func, a, b, check = rx[1], rx[2], rx[3], rx[4]
        if func not in (READ, WRITE) or check != sum8(rx[:4]):
            return 1, b""
        if func == READ:
            if b == 0 or a + b > REGISTERS:
                return 5, b""
            regs = self._values(scene)
            return 5, _with_sum(bytes([self.address, READ, a, b]) + regs[a:a + b])
        if a == REG_MODE:
            self.streaming = b == 0
        elif a == REG_RATE and b in RATES_HZ.values():
            self.stream_period_s = 1 / {v: k for k, v in RATES_HZ.items()}[b]
        if a not in (REG_SAVE,) and a < REG_TO:
            self.registers[a] = b
        return 5, b""
