"""Property tests: arbitrary bytes never crash a parser or yield an impossible value, and good
frames hidden in noise are all recovered, however the stream is cut into reads."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.thermometer import PROTOCOLS, make_codec
from drivers.thermometer.protocols import ascii_line, gy614, gy_mcu, gy_mcu90640, lu90614

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def run(protocol: str, pieces: list[bytes]):
    codec = make_codec(protocol)
    out = []
    for piece in pieces:
        out += codec.feed(piece)
    return out + codec.flush(), codec


def assert_physical(codec, results):
    for r in results:
        if not r.ok:
            assert r.cause in {"garbage", "checksum", "truncated", "bad_field", "out_of_range",
                               "device_error", "unparsable"}
            continue
        lo, hi = codec.object_range
        for value in (r.object_c, getattr(r, "body_c", None)):
            if value is not None:
                assert lo <= value <= hi, (value, codec.object_range)
        if r.ambient_c is not None:
            assert codec.ambient_range[0] <= r.ambient_c <= codec.ambient_range[1]
        if r.emissivity is not None:
            assert 0 < r.emissivity <= 1.1


@pytest.mark.parametrize("protocol", PROTOCOLS)
@SETTINGS
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=8))
def test_arbitrary_bytes_never_crash_and_stay_physical(protocol, data, cuts):
    results, codec = run(protocol, chunked(data, cuts))
    assert_physical(codec, results)
    assert sum(codec.rejected.values()) == sum(1 for r in results if not r.ok)


@pytest.mark.parametrize("protocol", ["gy-mcu90614", "gy-mcu90640", "gy-614"])
@SETTINGS
@given(data=st.data())
def test_frame_shaped_noise_stays_physical(protocol, data):
    """Noise that starts with the right header reaches the checksum and range checks."""
    header = {"gy-mcu90614": b"\x5a\x5a\x45\x04", "gy-mcu90640": b"\x5a\x5a\x02\x06", "gy-614": b"\xa4\x03\x07\x07"}
    body_len = {"gy-mcu90614": 5, "gy-mcu90640": 1540, "gy-614": 8}[protocol]
    body = data.draw(st.binary(min_size=body_len, max_size=body_len))
    frame = bytearray(header[protocol] + body)
    if data.draw(st.booleans()):  # make the checksum right so the range checks must catch it
        if protocol == "gy-mcu90640":
            import struct

            words = struct.unpack(f"<{(len(frame) - 2) // 2}H", bytes(frame[:-2]))
            frame[-2:] = struct.pack("<H", sum(words) & 0xFFFF)
        else:
            frame[-1] = sum(frame[:-1]) & 0xFF
    results, codec = run(protocol, [bytes(frame)])
    assert_physical(codec, results)


# ---- recovery: frames in noise ----
def centi(lo: float, hi: float):
    return st.integers(round(lo * 100), round(hi * 100)).map(lambda v: v / 100)


FRAMES = {
    "gy-mcu90614": st.tuples(centi(-70, 327), centi(-40, 125)).map(
        lambda v: (gy_mcu.encode_frame(*v), v[0])),
    "gy-mcu90615": st.tuples(centi(-40, 115), centi(-40, 85)).map(
        lambda v: (gy_mcu.encode_frame(*v), v[0])),
    "gy-614": st.tuples(centi(-70, 327), centi(-40, 125), centi(20, 45)).map(
        lambda v: (gy614.encode_frame(0.98, *v), v[0])),
    "lu90614": centi(0, 99.99).map(lambda v: (lu90614.encode_frame(v, body=False), v)),
    "ascii": st.tuples(centi(-70, 380), centi(-40, 125)).map(
        lambda v: (f"T={v[0]:.2f},A={v[1]:.2f}\n".encode(), v[0])),
    "modbus-omega": st.integers(-500, 10000).map(lambda v: (_modbus_block(v), v / 10)),
}
START_BYTE = {"gy-mcu90614": 0x5A, "gy-mcu90615": 0x5A, "gy-614": 0xA4, "lu90614": 0xFE, "modbus-omega": 0x01}


def _modbus_block(tenths: int) -> bytes:
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

    regs = [tenths & 0xFFFF] * 5 + [250, 0]
    return FramerRTU(DecodePDU(True)).buildFrame(ReadHoldingRegistersResponse(registers=regs, dev_id=1))


def noise_for(protocol: str):
    if protocol == "ascii":  # text resynchronises at the next line end
        return st.binary(max_size=40).filter(lambda b: b"\n" not in b).map(lambda b: b + b"\n" if b else b)
    start = START_BYTE[protocol]
    return st.binary(max_size=40).map(lambda b: bytes(x for x in b if x != start))


@pytest.mark.parametrize("protocol", sorted(FRAMES))
@SETTINGS
@given(data=st.data(), cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_good_frames_in_noise_are_all_recovered(protocol, data, cuts):
    items = data.draw(st.lists(st.tuples(noise_for(protocol), FRAMES[protocol]), min_size=1, max_size=6))
    tail = data.draw(noise_for(protocol))
    stream = b"".join(noise + frame for noise, (frame, _) in items) + tail
    results, codec = run(protocol, chunked(stream, cuts))
    got = [r.object_c for r in results if r.ok and r.kind == "temperature"]
    assert got == [value for _, (_, value) in items]


@SETTINGS
@given(data=st.data())
def test_array_frames_in_noise_are_recovered(data):
    hot = data.draw(centi(30, 42))
    background = data.draw(centi(10, 29))
    where = data.draw(st.integers(0, gy_mcu90640.PIXELS - 1))
    pixels = [background] * gy_mcu90640.PIXELS
    pixels[where] = hot
    frame = gy_mcu90640.encode_frame(pixels, background)
    noise = [bytes(x for x in data.draw(st.binary(max_size=60)) if x != 0x5A) for _ in range(3)]
    stream = noise[0] + frame + noise[1] + frame + noise[2]
    results, _ = run("gy-mcu90640", chunked(stream, data.draw(st.lists(st.integers(0, 4000), max_size=6))))
    got = [(r.object_c, r.hotspot) for r in results if r.ok]
    assert got == [(hot, divmod(where, 32))] * 2


@SETTINGS
@given(noise=st.binary(max_size=200))
def test_ascii_noise_lines_never_pass_as_readings(noise):
    results, _ = run("ascii", [noise.replace(b"\n", b" ") + b"\n"])
    for r in results:
        if r.ok and r.kind == "temperature":  # only if the noise happens to be a well-formed line
            assert ascii_line.TEAM.match(noise.decode("ascii", "replace").strip()) or \
                   ascii_line.ADAFRUIT_C.match(noise.decode("ascii", "replace").strip())


@pytest.mark.parametrize("protocol", ["modbus-omega", "modbus-calex"])
@SETTINGS
@given(function=st.sampled_from([0x03, 0x04, 0x06, 0x83, 0x84, 0x86]), body=st.binary(max_size=40))
def test_modbus_frames_with_a_valid_crc_but_random_content(protocol, function, body):
    """A CRC-correct frame with nonsense inside is rejected or decoded within range, never a crash."""
    from pymodbus.framer import FramerRTU

    head = bytes([1, function]) + (bytes([len(body)]) if function in (0x03, 0x04) else b"") + body
    frame = head + FramerRTU.compute_CRC(head).to_bytes(2, "big")
    results, codec = run(protocol, [frame])
    assert_physical(codec, results)


# ---- the measurement model ----
readings = st.lists(
    st.tuples(
        st.one_of(st.none(), st.floats(-20, 60, allow_nan=False)),  # object
        st.one_of(st.none(), st.floats(-10, 45, allow_nan=False)),  # ambient
        st.one_of(st.none(), st.floats(20, 45, allow_nan=False)),   # device body
        st.floats(0.01, 0.5),                                       # time step
    ),
    max_size=80,
)


@SETTINGS
@given(seq=readings, site=st.sampled_from(["forehead", "wrist", "inner_canthus", "device"]))
def test_every_status_agrees_with_its_body_value(seq, site):
    from drivers.thermometer import Reading
    from drivers.thermometer.measurement import MeasurementConfig, Measurer

    cfg = MeasurementConfig(site=site, warmup_s=0, window_s=0.5)
    m = Measurer(cfg)
    t = 0.0
    for obj, amb, body, dt_s in seq:
        t += dt_s
        result = m.feed(Reading(obj, amb, body), t)
        if result is None:
            continue
        b = result.body_c
        if result.status == "normal":
            assert cfg.valid_min_c <= b < cfg.fever_threshold_c - cfg.recheck_band_c
        elif result.status == "recheck":
            assert cfg.fever_threshold_c - cfg.recheck_band_c <= b < cfg.fever_threshold_c
        elif result.status == "fever":
            assert cfg.fever_threshold_c <= b <= cfg.valid_max_c
        elif result.status == "too_low":
            assert b < cfg.valid_min_c
        else:
            assert result.status == "invalid"
        assert result.samples >= cfg.min_samples
