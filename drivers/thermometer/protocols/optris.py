"""P7: Optris CS / CSmicro / CT binary protocol (industrial pyrometers), see spec §P7.

Request/response with no framing: each 1-byte read command gets a 2-byte reply,
°C = (raw − 1000) / 10. Replies are matched to the commands in the order they were sent;
a reply that does not complete in time is dropped (the driver's reply timeout), which is
how this protocol resynchronises. Without commands on record (`thermo decode`), every
2 bytes are taken as a target-temperature reply.
"""

from __future__ import annotations

import collections

from ..base import GARBAGE, Codec, Frame, FrameError, Reading, Rejected, Result, in_range
from ..device import DeviceModel, Scene

CMD_TARGET, CMD_HEAD, CMD_CURRENT, CMD_EMISSIVITY, CMD_TRANSMISSION = 0x01, 0x02, 0x03, 0x04, 0x05
CMD_SET_EMISSIVITY = 0x84
REPLY_LEN = 2


def temperature_raw(value_c: float) -> bytes:
    return (round(value_c * 10) + 1000).to_bytes(2, "big")


def decode_temperature(reply: bytes) -> float:
    return (int.from_bytes(reply, "big") - 1000) / 10


class OptrisCodec(Codec):
    name = "optris"
    default_baud = 9600  # CS family; CT ships at 115200
    probe_bauds = (115200,)
    polled = True
    poll_interval_s = 0.1
    frame_period_s = 0.1
    typical_frame_bytes = 4
    needs_dtr = True
    object_range = (-50.0, 1030.0)  # CS/CSmicro LT measuring range
    ambient_range = (-20.0, 180.0)  # head (sensor) operating range, high-temperature heads

    def __init__(self, ct_checksum: bool = False, address: int | None = None, **options: object) -> None:
        """ct_checksum: append the CT's XOR checksum to SET commands; address: RS-485 multidrop."""
        super().__init__(**options)
        self.ct_checksum = ct_checksum
        self.prefix = b"" if address is None else bytes([0xB0 + address])
        self._expect: collections.deque[int] = collections.deque()
        self._target: float | None = None
        self._driven = False  # True once we send commands: then every reply must match one

    def _expecting(self, *commands: int) -> None:
        self._driven = True
        self._expect.extend(commands)

    def poll_commands(self) -> list[bytes]:
        self._expecting(CMD_TARGET, CMD_HEAD)
        return [self.prefix + bytes([CMD_TARGET]), self.prefix + bytes([CMD_HEAD])]

    def emissivity_command(self, emissivity: float) -> bytes | None:
        raw = round(emissivity * 1000)
        if not 100 <= raw <= 1100:
            raise ValueError("emissivity must be within 0.100..1.100")
        cmd = bytes([CMD_SET_EMISSIVITY]) + raw.to_bytes(2, "big")
        if self.ct_checksum:
            cmd += bytes([cmd[0] ^ cmd[1] ^ cmd[2]])
        self._expecting(CMD_SET_EMISSIVITY)
        return self.prefix + cmd

    def _find_start(self, buf: bytearray) -> int | None:
        return 0

    def _parse(self, buf: bytearray) -> tuple[int, Result | None] | None:
        if len(buf) < REPLY_LEN:
            return None
        reply = bytes(buf[:REPLY_LEN])
        if self._driven and not self._expect:  # a late reply to a request we gave up on
            return REPLY_LEN, Rejected(GARBAGE, "reply without a pending request", reply)
        cmd = self._expect.popleft() if self._expect else None
        try:
            return REPLY_LEN, self._decode(cmd, reply)
        except FrameError as err:
            self._target = None
            return REPLY_LEN, Rejected(err.cause, err.detail, reply)

    def _decode(self, cmd: int | None, reply: bytes) -> Frame | None:
        if cmd in (CMD_EMISSIVITY, CMD_TRANSMISSION, CMD_SET_EMISSIVITY):
            value = int.from_bytes(reply, "big") / 1000
            if not 0.1 <= value <= 1.1:
                raise FrameError("out_of_range", f"emissivity {value:.3f} outside 0.100..1.100")
            return Frame(kind="emissivity", emissivity=value, raw=reply)
        value = decode_temperature(reply)
        if cmd == CMD_HEAD:
            ambient = in_range(value, self.ambient_range, "head")
            target, self._target = self._target, None
            if target is None:
                return Frame(kind="info", ambient_c=ambient, raw=reply)
            return Frame(object_c=target, ambient_c=ambient, raw=reply)
        target = in_range(value, self.object_range, "target")
        if cmd is None:  # decoding a capture: nothing to pair with
            return Frame(object_c=target, raw=reply)
        self._target = target  # wait for the head temperature that follows
        return None

    def on_reply_timeout(self) -> list[Result]:
        self._expect.clear()
        self._target = None
        return self.flush()

    def reset(self) -> None:
        super().reset()
        self._expect.clear()
        self._target = None

    def to_reading(self, frame: Frame, ts: float) -> Reading | None:
        if frame.kind != "temperature":
            return None
        return Reading(frame.object_c, frame.ambient_c, None, sensor=self.name, ts=ts)


class OptrisDevice(DeviceModel):
    protocol = "optris"
    default_baud = 9600

    def __init__(self) -> None:
        super().__init__()
        self.streaming = False
        self.emissivity = 0.95
        self.head_c_offset = 6.0  # the head runs warmer than the air around it

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        cmd = rx[0]
        if 0xB0 <= cmd <= 0xBF:  # multidrop address prefix: this unit answers any address
            return 1, b""
        if cmd in (CMD_TARGET, CMD_CURRENT):
            return 1, temperature_raw(scene.object_c)
        if cmd == CMD_HEAD:
            return 1, temperature_raw(scene.ambient_c + self.head_c_offset)
        if cmd == CMD_EMISSIVITY:
            return 1, round(self.emissivity * 1000).to_bytes(2, "big")
        if cmd == CMD_TRANSMISSION:
            return 1, (1000).to_bytes(2, "big")
        if cmd == CMD_SET_EMISSIVITY:
            if len(rx) < 3:
                return None
            raw = int.from_bytes(rx[1:3], "big")
            self.emissivity = raw / 1000
            return 3, rx[1:3]
        return 1, b""
