"""P8a: Omega OS-MINI / Calex PyroUSB over Modbus RTU, see spec §P8a.

The frame layer (CRC-16/MODBUS, PDU classes and sizes) comes from pymodbus; this module
adds hunting for a frame start in a noisy stream and the two register maps. Both maps have
a 7-register block [average, minimum, maximum, filtered, unfiltered, sensor, status],
read in one request; temperatures are signed tenths of °C.
"""

from __future__ import annotations

from typing import ClassVar

from ..base import (
    BAD_FIELD,
    CHECKSUM,
    DEVICE_ERROR,
    TRUNCATED,
    Codec,
    Frame,
    FrameError,
    Rejected,
    Result,
    in_range,
)
from ..device import DeviceModel, Scene

READ_HOLDING, READ_INPUT, WRITE_SINGLE = 0x03, 0x04, 0x06
RESPONSE_FUNCTIONS = {READ_HOLDING, READ_INPUT, WRITE_SINGLE, 0x83, 0x84, 0x86}
BLOCK = ("average", "minimum", "maximum", "filtered", "unfiltered", "sensor", "status")
STATUS_BITS = ("measurement_error", "sensor_low", "sensor_high", "object_low", "object_high")
HOLD_MODES = {"off": 0, "peak": 1, "valley": 2}


def _framer(server: bool):
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU

    return FramerRTU(DecodePDU(server))


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


class ModbusIrCodec(Codec):
    name = "modbus"
    default_baud = 9600
    polled = True
    poll_interval_s = 0.2
    frame_period_s = 0.2
    typical_frame_bytes = 19
    object_range = (-50.0, 1000.0)
    ambient_range = (-40.0, 125.0)
    block_start: ClassVar[int] = 0
    emissivity_register: ClassVar[int] = 0  # the volatile copy: not worn into flash on every start
    hold_mode_register: ClassVar[int] = 0
    hold_period_register: ClassVar[int] = 0

    def __init__(self, slave: int = 1, hold: str = "off", hold_period_s: float = 1.0, **options: object) -> None:
        super().__init__(**options)
        if not 1 <= slave <= 255:
            raise ValueError("Modbus slave address must be 1..255")
        if hold not in HOLD_MODES:
            raise ValueError(f"hold must be one of {', '.join(HOLD_MODES)}")
        self.slave = slave
        self.hold = hold
        self.hold_period_s = hold_period_s
        self._client = _framer(server=False)

    # ---- commands ----
    def _request(self, pdu) -> bytes:
        return self._client.buildFrame(pdu)

    def read_block_command(self) -> bytes:
        from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

        return self._request(ReadHoldingRegistersRequest(address=self.block_start, count=len(BLOCK), dev_id=self.slave))

    def write_command(self, register: int, value: int) -> bytes:
        from pymodbus.pdu.register_message import WriteSingleRegisterRequest

        return self._request(WriteSingleRegisterRequest(address=register, registers=[value & 0xFFFF], dev_id=self.slave))

    def start_commands(self) -> list[bytes]:
        if self.hold == "off":
            return []
        # device-side peak hold: the passing forehead's maximum over the hold period (spec §P8a)
        return [self.write_command(self.hold_mode_register, HOLD_MODES[self.hold]),
                self.write_command(self.hold_period_register, max(1, round(self.hold_period_s * 10)))]

    def poll_commands(self) -> list[bytes]:
        return [self.read_block_command()]

    def emissivity_command(self, emissivity: float) -> bytes | None:
        if not 0.1 <= emissivity <= 1.0:
            raise ValueError("emissivity must be within 0.1..1.0")
        return self.write_command(self.emissivity_register, round(emissivity * 10000))

    # ---- parsing ----
    def _is_our_id(self, byte: int) -> bool:
        # address 255 asks "whichever single sensor is connected": it answers with its own id
        return byte == self.slave or (self.slave == 255 and 1 <= byte <= 247)

    def _find_start(self, buf: bytearray) -> int | None:
        for i in range(len(buf) - 1):
            if buf[i + 1] in RESPONSE_FUNCTIONS and self._is_our_id(buf[i]):
                return i
        return None

    def _partial_start_len(self, buf: bytearray) -> int:
        return 1 if buf and self._is_our_id(buf[-1]) else 0

    def _frame_size(self, buf: bytearray) -> int | None:
        function = buf[1]
        if function & 0x80:
            return 5
        if function == WRITE_SINGLE:
            return 8
        if len(buf) < 3:
            return None
        count = buf[2]
        if count == 0 or count % 2 or count > 250:
            raise FrameError(BAD_FIELD, f"impossible byte count {count}")
        return count + 5

    def _parse(self, buf: bytearray) -> tuple[int, Result | None] | None:
        size = self._frame_size(buf)
        if size is None or len(buf) < size:
            return None
        frame = bytes(buf[:size])
        crc = int.from_bytes(frame[-2:], "big")
        if not self._client.check_CRC(frame[:-2], crc):
            cut = self._find_start(bytearray(frame[1:]))
            if cut is not None and self._complete_elsewhere(bytes(buf[cut + 1:])):
                return cut + 1, Rejected(TRUNCATED, f"frame cut after {cut + 1} bytes", frame[:cut + 1])
            return 1, Rejected(CHECKSUM, f"CRC 0x{self._client.compute_CRC(frame[:-2]):04X} != 0x{crc:04X}", frame)
        try:
            return size, self._decode(frame)
        except FrameError as err:
            return size, Rejected(err.cause, err.detail, frame)

    def _complete_elsewhere(self, rest: bytes) -> bool:
        try:
            size = self._frame_size(bytearray(rest))
        except FrameError:
            return False
        if size is None or len(rest) < size:
            return True
        return self._client.check_CRC(rest[:size - 2], int.from_bytes(rest[size - 2:size], "big"))

    def _decode(self, frame: bytes) -> Frame:
        try:
            pdu = self._client.decoder.decode(frame[1:-2])
        except Exception as err:  # pymodbus raises its own exception types for malformed PDUs
            raise FrameError(BAD_FIELD, f"undecodable Modbus PDU: {err}") from None
        if pdu is None:
            raise FrameError(BAD_FIELD, "undecodable Modbus PDU")
        if frame[1] & 0x80:
            raise FrameError(DEVICE_ERROR, f"Modbus exception {pdu.exception_code} to function 0x{frame[1] & 0x7F:02X}")
        if frame[1] == WRITE_SINGLE:
            return Frame(kind="ack", raw=frame)
        words = [_signed(w) for w in pdu.registers]
        if len(words) == 1:  # a single temperature register (e.g. filtered)
            return Frame(object_c=in_range(words[0] / 10, self.object_range, "temperature"), raw=frame)
        if len(words) != len(BLOCK):
            return Frame(kind="registers", raw=frame)
        block = dict(zip(BLOCK, words, strict=True))
        status = block["status"] & 0xFFFF
        flags = tuple(name for bit, name in enumerate(STATUS_BITS) if status & (1 << bit))
        if "measurement_error" in flags:
            raise FrameError(DEVICE_ERROR, f"status 0x{status:04X}: measurement error")
        return Frame(
            object_c=in_range(block["filtered"] / 10, self.object_range, "filtered temperature"),
            ambient_c=in_range(block["sensor"] / 10, self.ambient_range, "sensor temperature"),
            flags=flags,
            raw=frame,
        )


class OmegaCodec(ModbusIrCodec):
    name = "modbus-omega"
    block_start = 0x0B
    emissivity_register = 0x17
    hold_mode_register = 0x08
    hold_period_register = 0x09


class CalexCodec(ModbusIrCodec):
    name = "modbus-calex"
    block_start = 0x0F
    emissivity_register = 0x18
    hold_mode_register = 0x0C
    hold_period_register = 0x0D


class ModbusIrDevice(DeviceModel):
    """A register file answering Modbus RTU requests, built on pymodbus's PDU classes."""

    default_baud = 9600
    codec: ClassVar[type[ModbusIrCodec]] = ModbusIrCodec
    sensor_type: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.streaming = False
        self.slave = 1
        self.registers: dict[int, int] = {0x00: self.sensor_type, self.codec.emissivity_register: 9500,
                                          self.codec.hold_mode_register: 0, self.codec.hold_period_register: 10}
        self._server = _framer(server=True)

    def _live_registers(self, scene: Scene) -> dict[int, int]:
        regs = dict(self.registers)
        obj = round(scene.object_c * 10) & 0xFFFF
        status = 1 << 3 if scene.skin_c is None and scene.object_c < 30 else 0  # "object temperature low"
        values = {"average": obj, "minimum": obj, "maximum": obj, "filtered": obj, "unfiltered": obj,
                  "sensor": round((scene.ambient_c + 3) * 10) & 0xFFFF, "status": status}
        for offset, name in enumerate(BLOCK):
            regs[self.codec.block_start + offset] = values[name]
        return regs

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        from pymodbus.pdu import ExceptionResponse
        from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, WriteSingleRegisterResponse

        if rx[0] not in (self.slave, 0xFF):
            return 1, b""
        if len(rx) < 8:  # every request this device understands is 8 bytes
            return None
        frame = bytes(rx[:8])
        if not self._server.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big")):
            return 1, b""
        request = self._server.decoder.decode(frame[1:-2])
        if request is None:
            return 8, b""
        regs = self._live_registers(scene)
        if frame[1] in (READ_HOLDING, READ_INPUT):
            wanted = range(request.address, request.address + request.count)
            if any(r not in regs for r in wanted):
                reply = ExceptionResponse(frame[1], exception_code=2, device_id=self.slave)
            else:
                reply = ReadHoldingRegistersResponse(registers=[regs[r] for r in wanted], dev_id=self.slave)
                reply.function_code = frame[1]
        elif frame[1] == WRITE_SINGLE:
            self.registers[request.address] = request.registers[0]
            if request.address == self.codec.emissivity_register:
                self.emissivity = request.registers[0] / 10000
            reply = WriteSingleRegisterResponse(address=request.address, registers=request.registers, dev_id=self.slave)
        else:
            reply = ExceptionResponse(frame[1], exception_code=1, device_id=self.slave)
        return 8, self._server.buildFrame(reply)


class OmegaDevice(ModbusIrDevice):
    protocol = "modbus-omega"
    codec = OmegaCodec
    sensor_type = 16


class CalexDevice(ModbusIrDevice):
    protocol = "modbus-calex"
    codec = CalexCodec
    sensor_type = 21
