"""Every test vector of the thermometer spec (../shared/specs/thermometers.md §13) decodes exactly;
corrupted vectors are rejected with the right cause and the next good frame is still found."""

from __future__ import annotations

import hashlib
import struct

import pytest

from drivers.thermometer import PROTOCOLS, make_codec
from drivers.thermometer.protocols import gy614, gy_mcu, gy_mcu90640, lu90614, modbus_ir, optris


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def decode(protocol: str, data: bytes, **options):
    codec = make_codec(protocol, **options)
    return codec.feed(data) + codec.flush(), codec


def good(results):
    return [r for r in results if r.ok]


def bad(results):
    return [r for r in results if not r.ok]


def test_protocol_names_are_the_contract():
    assert PROTOCOLS == ("gy-mcu90614", "gy-mcu90615", "gy-mcu90640", "gy-614", "lu90614", "optris",
                         "modbus-omega", "modbus-calex", "ascii")
    for name in PROTOCOLS:
        assert make_codec(name).name == name


# ---- P1 GY-MCU90614 / 90615 ----
P1 = [
    ("5A 5A 45 04 0C 78 0D 19 A7", 31.92, 33.53),
    ("5A 5A 45 04 0E 42 09 C4 1A", 36.50, 25.00),
    ("5A 5A 45 04 0E A8 09 B1 6D", 37.52, 24.81),
    ("5A 5A 45 04 09 C4 FE 0C D4", 25.00, -5.00),
    ("5A 5A 45 04 FE 0C FB FF 01", -5.00, -10.25),
]


@pytest.mark.parametrize("protocol", ["gy-mcu90614", "gy-mcu90615"])
@pytest.mark.parametrize("vector, obj, amb", P1)
def test_p1_vectors(protocol, vector, obj, amb):
    results, codec = decode(protocol, h(vector))
    assert [(r.object_c, r.ambient_c) for r in results] == [(obj, amb)]
    assert gy_mcu.encode_frame(obj, amb) == h(vector)


def test_p1_bad_checksum_rejected():
    results, codec = decode("gy-mcu90614", h("5A 5A 45 04 0C 78 0D 19 A8"))
    assert [r.cause for r in results] == ["checksum"]
    assert codec.rejected == {"checksum": 1}


def test_p1_resync_after_leading_junk():
    results, codec = decode("gy-mcu90614", h("19 A7 5A 5A 45 04 0C 78 0D 19 A7"))
    assert [r.cause for r in bad(results)] == ["garbage"]
    assert [(r.object_c, r.ambient_c) for r in good(results)] == [(31.92, 33.53)]


def test_p1_truncated_frame_followed_by_a_good_one():
    results, codec = decode("gy-mcu90614", h("5A 5A 45 04 0C 78") + h(P1[1][0]))
    assert [r.cause for r in bad(results)] == ["truncated"]
    assert [r.object_c for r in good(results)] == [36.5]


def test_p1_bad_checksum_then_good_frame_and_stream_end_cut():
    stream = h("5A 5A 45 04 0C 78 0D 19 A8") + h(P1[2][0]) + h("5A 5A 45")
    results, codec = decode("gy-mcu90614", stream)
    assert [r.ok and r.object_c or r.cause for r in results] == ["checksum", 37.52, "truncated"]


def test_p1_shifted_by_one_bit_is_rejected():
    frame = bytearray(h(P1[1][0]))
    frame[5] ^= 0x10
    results, _ = decode("gy-mcu90614", bytes(frame) + h(P1[0][0]))
    assert [r.cause for r in bad(results)] == ["checksum"]
    assert [r.object_c for r in good(results)] == [31.92]


def test_p1_out_of_physical_range_rejected_even_with_good_checksum():
    results, _ = decode("gy-mcu90615", gy_mcu.encode_frame(200.0, 25.0))  # 90615 object range ends at 115
    assert [r.cause for r in results] == ["out_of_range"]


def test_p1_other_frame_types_are_recognised_not_temperatures():
    body = bytes([0x5A, 0x5A, 0x25, 0x01, 0x62])
    frame = body + bytes([sum(body) & 0xFF])
    results, _ = decode("gy-mcu90614", frame + h(P1[0][0]))
    assert [r.kind for r in results] == ["emissivity", "temperature"]


def test_p1_host_commands():
    assert gy_mcu.CMD_CONTINUOUS == h("A5 45 EA")
    assert gy_mcu.CMD_QUERY == h("A5 15 BA")
    assert gy_mcu.CMD_BAUD_9600 == h("A5 AE 53")
    assert gy_mcu.CMD_BAUD_115200 == h("A5 AF 54")
    assert gy_mcu.CMD_AUTO_ON_POWER_UP == h("A5 51 F6")
    assert gy_mcu.CMD_NO_AUTO_ON_POWER_UP == h("A5 52 F7")
    assert make_codec("gy-mcu90614").start_commands() == [h("A5 45 EA")]
    assert make_codec("gy-mcu90614", continuous=False).poll_commands() == [h("A5 15 BA")]


# ---- P2 GY-MCU90640 ----
def v24_frame() -> bytes:
    pixels = [25.0] * gy_mcu90640.PIXELS
    for r in range(10, 13):
        for c in range(14, 17):
            pixels[r * 32 + c] = 34.8
    pixels[11 * 32 + 15] = 36.5
    return gy_mcu90640.encode_frame(pixels, 30.0)


def test_p2_zero_frame_vector():
    frame = gy_mcu90640.encode_frame([0.0] * gy_mcu90640.PIXELS, 0.0)
    assert frame[-2:] == h("5C 60")
    assert hashlib.sha256(frame).hexdigest() == "51ae67b5e78ed463db9f4ec21eb4c989bd2ec7af688a19fdb36ed5d5f89f1869"
    results, _ = decode("gy-mcu90640", frame)
    assert [(r.object_c, r.ambient_c) for r in results] == [(0.0, 0.0)]


def test_p2_face_frame_vector():
    frame = v24_frame()
    assert frame[:8] == h("5A 5A 02 06 C4 09 C4 09") and frame[-4:] == h("B8 0B 32 DB")
    assert frame[738:740] == h("42 0E")
    assert hashlib.sha256(frame).hexdigest() == "fe4ad48aa4831812331586dce43d7fac17a3e2b3e4e236e0e64d5bdb9640ae79"
    results, _ = decode("gy-mcu90640", frame)
    assert len(results) == 1
    assert results[0].object_c == 36.5 and results[0].ambient_c == 30.0
    assert results[0].hotspot == (11, 15)


def test_p2_corrupted_vector_then_next_frame_found():
    frame = bytearray(v24_frame())
    frame[100] ^= 0x01
    results, codec = decode("gy-mcu90640", bytes(frame) + v24_frame())
    assert [r.cause for r in bad(results)] == ["checksum"]
    assert "0xDB33" in bad(results)[0].detail
    assert [r.object_c for r in good(results)] == [36.5]


def test_p2_truncated_frame_then_good_frame():
    results, _ = decode("gy-mcu90640", v24_frame()[:900] + v24_frame())
    assert [r.cause for r in bad(results)] == ["truncated"]
    assert [r.object_c for r in good(results)] == [36.5]


def test_p2_emissivity_replies_interleaved():
    stream = h("5A 5A 5F 13") + v24_frame() + h("5A 5A 62 16")
    results, _ = decode("gy-mcu90640", stream)
    assert [(r.kind, r.emissivity) for r in results] == [("emissivity", 0.95), ("temperature", None),
                                                          ("emissivity", 0.98)]


def test_p2_face_region_and_neighbourhood():
    frame = v24_frame()
    # a region that excludes the face sees only the background
    results, _ = decode("gy-mcu90640", frame, roi=(0, 5, 0, 31))
    assert results[0].object_c == 25.0
    results, _ = decode("gy-mcu90640", frame, spot="mean3x3")
    assert results[0].object_c == pytest.approx((36.5 + 8 * 34.8) / 9, abs=0.01)
    with pytest.raises(ValueError):
        make_codec("gy-mcu90640", roi=(0, 30, 0, 10))


def test_p2_host_commands():
    codec = make_codec("gy-mcu90640")
    assert codec.start_commands() == [h("A5 35 02 DC")]
    assert codec.rate_command(4) == h("A5 25 03 CD")
    assert codec.rate_command(0.5) == h("A5 25 00 CA")
    assert codec.emissivity_command(0.95) == h("A5 45 5F 49")
    assert codec.emissivity_command(0.98) == h("A5 45 62 4C")
    assert gy_mcu90640.CMD_QUERY == h("A5 35 01 DB")
    assert gy_mcu90640.CMD_READ_EMISSIVITY == h("A5 55 01 FB")
    assert gy_mcu90640.CMD_SAVE == h("A5 65 01 0B")
    assert gy_mcu90640.host_command(0x15, 0x03) == h("A5 15 03 BD")


# ---- P3 GY-614 ----
P3 = [
    ("A4 03 07 07 62 0D 5C 09 E2 0E 4C C5", 0.98, 34.20, 25.30, 36.60),
    ("A4 03 07 07 62 0D B6 0A 28 0E A1 BB", 0.98, 35.10, 26.00, 37.45),
    ("A4 03 07 07 62 08 A2 08 FC 08 A2 6F", 0.98, 22.10, 23.00, 22.10),
]


@pytest.mark.parametrize("vector, e, to, ta, bo", P3)
def test_p3_vectors(vector, e, to, ta, bo):
    results, _ = decode("gy-614", h(vector))
    assert [(r.emissivity, r.object_c, r.ambient_c, r.body_c) for r in results] == [(e, to, ta, bo)]
    assert gy614.encode_frame(e, to, ta, bo) == h(vector)


def test_p3_corrupt_and_impossible_windows():
    frame = bytearray(h(P3[0][0]))
    frame[6] ^= 0x04
    results, _ = decode("gy-614", bytes(frame) + h(P3[1][0]))
    assert [r.cause for r in bad(results)] == ["checksum"]
    assert [r.body_c for r in good(results)] == [37.45]
    # start+count beyond the 16 registers: a coincidental A4 03 in noise, skipped
    results, _ = decode("gy-614", h("A4 03 0E 09 00") + h(P3[0][0]))
    assert [r.body_c for r in good(results)] == [36.6]
    assert all(r.cause == "garbage" for r in bad(results))


def test_p3_host_commands():
    assert gy614.write_command(gy614.REG_MODE, 1) == h("A4 06 03 01 AE")
    assert gy614.write_command(0x01, 6) == h("A4 06 01 06 B1")
    assert gy614.write_command(gy614.REG_MODE, 0) == h("A4 06 03 00 AD")
    assert make_codec("gy-614").rate_command(10) == h("A4 06 02 03 AF")
    assert gy614.write_command(gy614.REG_FORMAT, 0) == h("A4 06 04 00 AE")
    assert make_codec("gy-614").emissivity_command(0.98) == h("A4 06 07 62 13")
    assert gy614.write_command(gy614.REG_OFFSET, 100) == h("A4 06 06 64 14")
    assert gy614.write_command(gy614.REG_SAVE, 0x55) == h("A4 06 05 55 04")
    assert make_codec("gy-614").poll_commands() == [h("A4 03 07 07 B5")]


# ---- P4 LU90614 ----
@pytest.mark.parametrize("vector, kind, value", [
    ("FE AA 28 1E 00 00 00 00 EE", "object", 40.30),
    ("FE AC 28 1E 00 00 00 00 F0", "body", 40.30),
    ("FE AC 24 3A 00 00 00 00 08", "body", 36.58),
    ("FE AC 25 32 00 00 00 00 01", "body", 37.50),
])
def test_p4_vectors(vector, kind, value):
    results, _ = decode("lu90614", h(vector))
    assert len(results) == 1
    assert (results[0].body_c if kind == "body" else results[0].object_c) == value
    assert lu90614.encode_frame(value, kind == "body") == h(vector)


def test_p4_mode_mismatch_is_flagged():
    codec = make_codec("lu90614", modes="body")
    assert codec.poll_commands() == [h("FA C5 BF FA CA C4")]
    results = codec.feed(h("FE AA 28 1E 00 00 00 00 EE"))
    assert results[0].object_c == 40.3 and results[0].flags == ("wrong_mode",)


def test_p4_corrupt_frames():
    results, _ = decode("lu90614", h("FE AC 24 3A 00 00 00 00 09") + h("FE AC 25 32 00 00 00 00 01"))
    assert [r.cause for r in bad(results)] == ["checksum"]
    assert [r.body_c for r in good(results)] == [37.5]
    body = h("FE AC 24 64 00 00 00 00")  # hundredths byte 100: impossible
    results, _ = decode("lu90614", body + bytes([sum(body) & 0xFF]))
    assert [r.cause for r in results] == ["bad_field"]


def test_p4_poll_alternates_and_pairs():
    codec = make_codec("lu90614")
    assert codec.poll_commands() == [h("FA C6 C0 FA CA C4")]
    obj = codec.feed(h("FE AA 22 10 00 00 00 00") + bytes([(0xFE + 0xAA + 0x22 + 0x10) & 0xFF]))[0]
    assert codec.poll_commands() == [h("FA C5 BF FA CA C4")]
    body = codec.feed(h("FE AC 24 3A 00 00 00 00 08"))[0]
    assert codec.to_reading(obj, 1.0).object_c == 34.16
    reading = codec.to_reading(body, 1.3)
    assert (reading.object_c, reading.body_c) == (34.16, 36.58)
    assert codec.to_reading(body, 9.0).object_c is None  # too old to pair


# ---- P7 Optris ----
def test_p7_vectors():
    results, _ = decode("optris", h("04 D3") + h("05 55"))
    assert [r.object_c for r in results] == [23.5, 36.5]
    assert optris.temperature_raw(36.5) == h("05 55")


def test_p7_paired_replies_and_emissivity():
    codec = make_codec("optris")
    assert codec.poll_commands() == [h("01"), h("02")]
    results = codec.feed(h("05 55 04 D3"))
    assert [(r.object_c, r.ambient_c) for r in results] == [(36.5, 23.5)]
    assert codec.emissivity_command(0.95) == h("84 03 B6")
    assert codec.feed(h("03 B6"))[0].emissivity == 0.95
    assert make_codec("optris").emissivity_command(0.98) == h("84 03 D4")
    assert make_codec("optris", address=5).poll_commands()[0] == h("B5 01")


def test_p7_half_reply_dropped_on_timeout_and_implausible_rejected():
    codec = make_codec("optris")
    codec.poll_commands()
    codec.feed(h("05"))
    assert [r.cause for r in codec.on_reply_timeout()] == ["truncated"]
    results, _ = decode("optris", h("FF FF"))  # 6453.5 °C
    assert [r.cause for r in results] == ["out_of_range"]


# ---- P8a Modbus ----
def test_p8_vectors():
    results, _ = decode("modbus-omega", h("01 03 02 01 6D 78 39"))
    assert [r.object_c for r in results] == [36.5]
    results, _ = decode("modbus-omega", h("01 03 02 FF E7 B9 FE"))
    assert [r.object_c for r in results] == [-2.5]
    results, _ = decode("modbus-calex", h("01 83 02 C0 F1"))
    assert [r.cause for r in results] == ["device_error"]
    assert "exception 2" in results[0].detail


def test_p8_requests_built_with_the_modbus_library():
    omega, calex = make_codec("modbus-omega"), make_codec("modbus-calex")
    assert omega.read_block_command() == h("01 03 00 0B 00 07 75 CA")
    assert omega.write_command(0x0E, 1)[:6] == h("01 06 00 0E 00 01")
    assert omega.emissivity_command(0.98) == h("01 06 00 17 26 48 23 98")
    assert calex.poll_commands()[0][:6] == h("01 03 00 0F 00 07")
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

    framer = FramerRTU(DecodePDU(False))
    assert framer.buildFrame(ReadHoldingRegistersRequest(address=0x0E, count=1, dev_id=1)) == h("01 03 00 0E 00 01 E5 C9")
    assert framer.buildFrame(ReadHoldingRegistersRequest(address=0x12, count=1, dev_id=1)) == h("01 03 00 12 00 01 24 0F")


def test_p8_block_with_status_flags_and_crc_errors():
    device = modbus_ir.OmegaDevice()
    from drivers.thermometer.device import Scene

    reply = device.receive(make_codec("modbus-omega").read_block_command(), Scene(ambient_c=22.0, skin_c=34.5))
    results, _ = decode("modbus-omega", reply)
    assert [(r.object_c, r.ambient_c) for r in results] == [(34.5, 25.0)]
    nobody = device.receive(make_codec("modbus-omega").read_block_command(), Scene(ambient_c=22.0))
    assert decode("modbus-omega", nobody)[0][0].flags == ("object_low",)
    broken = bytearray(reply)
    broken[5] ^= 0x01
    results, _ = decode("modbus-omega", bytes(broken) + reply)
    assert [r.cause for r in bad(results)] == ["checksum"]
    assert len(good(results)) == 1
    results, _ = decode("modbus-omega", reply[:9] + reply)
    assert [r.cause for r in bad(results)] == ["truncated"]
    assert len(good(results)) == 1


def test_p8_measurement_error_status_is_a_device_error():
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

    frame = FramerRTU(DecodePDU(True)).buildFrame(
        ReadHoldingRegistersResponse(registers=[365, 360, 370, 365, 366, 250, 0x0001], dev_id=1))
    results, _ = decode("modbus-omega", frame)
    assert [r.cause for r in results] == ["device_error"]


# ---- P9 ASCII ----
def test_p9_vectors():
    results, _ = decode("ascii", b"Ambient = 24.71*C\tObject = 33.45*C\r\n")
    assert [(r.ambient_c, r.object_c) for r in results] == [(24.71, 33.45)]
    results, _ = decode("ascii", b"Ambient = nan*C\tObject = nan*C\r\n")
    assert [r.cause for r in results] == ["device_error"]


def test_p9_formats_and_failures():
    stream = (b"Adafruit MLX90614 test\r\nEmissivity = 1.00\r\n" + b"=" * 48 + b"\r\n"
              b"Ambient = 24.71*C\tObject = 33.45*C\r\nAmbient = 76.48*F\tObject = 92.21*F\r\n\r\n"
              b"TO:31.92\r\nTA:33.53\r\n"
              b"T=36.50,A=24.71\n"
              b"ERR=no ack\n"
              b"AT+TEMP=255,265,365,1\r\n"
              b"\x00\xff\xfe garbage\n"
              b"Error connecting to MLX sensor. Check wiring.\r\n"
              b"Ambient = 24.7")
    results, _ = decode("ascii", stream)
    temps = [(r.object_c, r.ambient_c, r.body_c) for r in results if r.ok and r.kind == "temperature"]
    assert temps == [(33.45, 24.71, None), (31.92, 33.53, None), (36.5, 24.71, None), (26.5, 25.5, 36.5)]
    assert [r.cause for r in bad(results)] == ["device_error", "garbage", "device_error", "truncated"]


def test_p9_ignores_fahrenheit_twin_and_rejects_unknown_lines():
    results, _ = decode("ascii", b"Ambient = 76.48*F\tObject = 92.21*F\r\nhello world\r\n")
    assert [r.cause for r in results] == ["unparsable"]


# ---- every protocol ----
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_byte_at_a_time_equals_all_at_once(protocol):
    from drivers.thermometer.device import Scene
    from drivers.thermometer.registry import make_device

    device = make_device(protocol)
    codec = make_codec(protocol)
    scene = Scene(ambient_c=22.0, skin_c=34.5)
    stream = b""
    for _ in range(3):
        stream += device.stream_frame(scene) or device.receive(b"".join(codec.poll_commands()), scene)
    whole = [r.to_json() for r in make_codec(protocol).feed(stream)]
    byte_codec = make_codec(protocol)
    pieces = []
    for i in range(len(stream)):
        pieces += [r.to_json() for r in byte_codec.feed(stream[i:i + 1])]
    assert pieces == whole
    assert any(r["ok"] for r in whole)


def test_p1_encoder_matches_struct_rule():
    b = bytes([0x5A, 0x5A, 0x45, 0x04]) + struct.pack(">hh", 3650, 2500)
    assert gy_mcu.encode_frame(36.5, 25.0) == b + bytes([sum(b) & 0xFF])


def test_p7_late_reply_after_timeout_is_not_taken_for_a_target():
    codec = make_codec("optris")
    codec.poll_commands()
    codec.on_reply_timeout()  # gave up waiting
    results = codec.feed(optris.temperature_raw(28.0))  # the head reply arrives late
    assert [r.cause for r in results] == ["garbage"]
    codec.poll_commands()
    results = codec.feed(optris.temperature_raw(36.0) + optris.temperature_raw(28.0))
    assert [(r.object_c, r.ambient_c) for r in results] == [(36.0, 28.0)]


def test_p8_any_sensor_address_255():
    codec = make_codec("modbus-omega", slave=255)
    assert codec.read_block_command()[:2] == h("FF 03")
    assert [r.object_c for r in codec.feed(h("01 03 02 01 6D 78 39"))] == [36.5]  # answers with its own id 1
    other = make_codec("modbus-omega", slave=2).feed(h("01 03 02 01 6D 78 39"))  # another sensor's reply
    assert [r.cause for r in other] == ["garbage"]
