"""Simulator -> driver over real pseudo-terminals: readings, silence, unplug/replug, baud probing."""

from __future__ import annotations

import pytest

from drivers.thermometer import open_thermometer
from drivers.thermometer.simulator import ThermoSimulator
from tests.conftest import wait_until


@pytest.fixture
def gy_sim():
    sim = ThermoSimulator("gy-mcu90614", seed=1)
    sim.start()
    yield sim
    sim.stop()


def _driver(sim, **opts):
    drv = open_thermometer(sim.port, sim.protocol, silent_timeout_s=0.5, **opts)
    drv.start()
    return drv


def test_person_reading_reaches_the_gate(gy_sim):
    gy_sim.set_ambient(22.0)
    gy_sim.set_person(34.5)
    drv = _driver(gy_sim)
    try:
        reading = drv.get(timeout=5)
        assert reading is not None
        assert reading.object_c == pytest.approx(34.5, abs=0.2)
        assert reading.ambient_c == pytest.approx(22.0, abs=0.2)
        assert reading.sensor == "gy-mcu90614"
        wait_until(lambda: drv.health()["state"] == "ok", 5, message="state ok")
        assert drv.health()["last_reading_age_s"] < 1.0
    finally:
        drv.stop()


def test_silence_is_reported_and_recovers_by_itself(gy_sim):
    drv = _driver(gy_sim)
    try:
        wait_until(lambda: drv.health()["state"] == "ok", 5, message="first readings")
        gy_sim.set_silent(True)
        wait_until(lambda: drv.health()["state"] == "silent", 2.0, message="sensor silent")
        gy_sim.set_silent(False)
        wait_until(lambda: drv.health()["state"] == "ok", 3.0, message="recovery after silence")
    finally:
        drv.stop()


def test_unplug_and_replug_reconnects_by_stable_path(gy_sim):
    drv = _driver(gy_sim, reconnect_max_s=0.3)
    try:
        wait_until(lambda: drv.health()["state"] == "ok", 5, message="first readings")
        gy_sim.unplug()
        wait_until(lambda: drv.health()["state"] == "disconnected", 3, message="disconnected")
        gy_sim.set_person(35.0)
        gy_sim.replug()
        wait_until(lambda: drv.health()["state"] == "ok", 5, message="reconnected")
        assert drv.health()["reconnects"] >= 1
        wait_until(lambda: (r := drv.get(0.2)) is not None and abs(r.object_c - 35.0) < 0.2, 5,
                   message="fresh readings after replug")
    finally:
        drv.stop()


def test_garbage_burst_is_counted_and_readings_continue(gy_sim):
    drv = _driver(gy_sim)
    try:
        wait_until(lambda: drv.health()["state"] == "ok", 5, message="first readings")
        gy_sim.garbage_burst(200)
        gy_sim.corrupt_next(2)
        wait_until(lambda: drv.health()["rejected"].get("checksum", 0) >= 1, 5, message="checksum rejections")
        before = drv.health()["readings"]
        wait_until(lambda: drv.health()["readings"] > before + 3, 5, message="readings continue")
        assert drv.health()["state"] == "ok"
        assert any(item["what"].startswith("rejected:") for item in drv.diagnostics())
    finally:
        drv.stop()


def test_baud_probing_finds_a_module_switched_to_the_other_rate():
    # a GY-MCU90615 that was told "A5 AE 53" (9600) and power-cycled, while its default is 115200
    with ThermoSimulator("gy-mcu90615", seed=4) as sim:
        sim.device.pending_baud = 9600
        sim.unplug()
        sim.replug()  # power cycle: the stored rate takes effect
        assert sim.device.baud == 9600
        sim.set_person(34.0)
        drv = open_thermometer(sim.port, "gy-mcu90615", silent_timeout_s=1.0)
        drv.start()
        try:
            reading = drv.get(timeout=6)
            assert reading is not None and reading.object_c == pytest.approx(34.0, abs=0.2)
            assert drv.health()["baud"] == 9600
        finally:
            drv.stop()


def test_fixed_wrong_baud_stays_silent_never_invents_readings():
    with ThermoSimulator("gy-mcu90614", seed=5) as sim:
        drv = open_thermometer(sim.port, "gy-mcu90614", baud=115200, silent_timeout_s=0.5)
        drv.start()
        try:
            wait_until(lambda: drv.health()["state"] == "silent", 3, message="silent at the wrong baud")
            # A frame the simulator wrote in the instant the driver switched the pty's rate is
            # still read whole (a pty cannot garble in flight as a UART does); it carries the
            # real temperature. What must never come through is a value made of noise.
            early = []
            while (reading := drv.get(timeout=0.05)) is not None:
                early.append(reading)
            assert all(r.object_c == pytest.approx(24.0, abs=0.5) for r in early), early
            assert drv.get(timeout=0.3) is None
            assert sum(drv.health()["rejected"].values()) > 0  # the noise was seen and rejected
        finally:
            drv.stop()


def test_module_saved_without_auto_output_is_woken_by_the_start_command():
    with ThermoSimulator("gy-mcu90614", seed=6) as sim:
        sim.device.auto_on_power_up = False
        sim.unplug()
        sim.replug()
        assert sim.device.streaming is False
        drv = _driver(sim)
        try:
            assert drv.get(timeout=5) is not None
            assert bytes.fromhex("a545ea") in bytes(sim.commands_seen)
        finally:
            drv.stop()


def test_query_mode_polling():
    with ThermoSimulator("gy-mcu90614", seed=7) as sim:
        sim.set_person(33.3)
        drv = open_thermometer(sim.port, "gy-mcu90614", continuous=False, silent_timeout_s=0.8)
        drv.start()
        try:
            reading = drv.get(timeout=5)
            assert reading is not None and reading.object_c == pytest.approx(33.3, abs=0.2)
            assert sim.device.streaming is False
            assert bytes.fromhex("a515ba") in bytes(sim.commands_seen)
        finally:
            drv.stop()


def test_array_rate_and_emissivity_commands_reach_the_module():
    with ThermoSimulator("gy-mcu90640", seed=8) as sim:
        sim.set_person(35.2)
        drv = open_thermometer(sim.port, "gy-mcu90640", emissivity=0.95, rate_hz=8, silent_timeout_s=1.0)
        drv.start()
        try:
            reading = drv.get(timeout=6)
            assert reading.object_c == pytest.approx(35.2, abs=0.2)
            assert reading.hotspot is not None
            wait_until(lambda: sim.device.emissivity == 0.95 and sim.device.stream_period_s == 1 / 8, 3,
                       message="settings applied")
        finally:
            drv.stop()


def test_queue_is_bounded_and_keeps_the_freshest(gy_sim):
    drv = open_thermometer(gy_sim.port, "gy-mcu90614", queue_size=3)
    drv.start()
    try:
        wait_until(lambda: drv.health()["dropped"] >= 2, 5, message="old readings dropped")
        gy_sim.set_person(36.0)
        before = drv.health()["readings"]
        wait_until(lambda: drv.health()["readings"] >= before + 4, 5, message="newer readings")
        # a slow consumer finds at most 3 readings, the newest ones
        drained = [drv.get(0) for _ in range(5)]
        assert [r for r in drained if r is not None][-1].object_c == pytest.approx(36.0, abs=0.2)
        assert sum(r is not None for r in drained) <= 4  # 3 queued + at most one that arrived meanwhile
    finally:
        drv.stop()


def test_unopenable_port_is_disconnected_with_the_reason(tmp_path):
    drv = open_thermometer(str(tmp_path / "no-such-tty"), "gy-mcu90614", reconnect_max_s=0.2)
    drv.start()
    try:
        wait_until(lambda: drv.health()["state"] == "disconnected", 3, message="disconnected")
        assert "no-such-tty" in drv.health()["detail"]
        assert drv.get(timeout=0.2) is None
    finally:
        drv.stop()


def test_unknown_protocol_and_bad_options_are_rejected():
    from drivers.thermometer import UnknownProtocol

    with pytest.raises(UnknownProtocol):
        open_thermometer("/dev/null", "gy-9999")
    with pytest.raises(TypeError):
        open_thermometer("/dev/null", "gy-mcu90614", no_such_option=1)


SCENARIO_CHECKS = {
    "ambient": lambda seen, h: seen and all(abs(r.object_c - 24.0) < 0.3 for r in seen),
    "person": lambda seen, h: any(abs(r.object_c - 34.6) < 0.2 for r in seen)
    and any(abs(r.object_c - 24.0) < 0.3 for r in seen),
    "fever": lambda seen, h: any(abs(r.object_c - 36.4) < 0.2 for r in seen),
    "noise": lambda seen, h: h["rejected"].get("checksum", 0) + h["rejected"].get("truncated", 0) >= 1
    and any(abs(r.object_c - 34.6) < 0.2 for r in seen),
    "garbage": lambda seen, h: h["rejected"].get("garbage", 0) >= 1 and len(seen) > 5,
    "silence": lambda seen, h: "silent" in h["states"] and h["state"] == "ok",
    "unplug": lambda seen, h: "disconnected" in h["states"] and h["state"] == "ok" and h["reconnects"] >= 1,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIO_CHECKS))
def test_simulator_scenarios(scenario):
    with ThermoSimulator("gy-mcu90614", scenario, seed=11, speed=8) as sim:
        drv = open_thermometer(sim.port, "gy-mcu90614", silent_timeout_s=0.25, reconnect_max_s=0.1)
        drv.start()
        seen, states = [], set()

        def check():
            reading = drv.get(0.05)
            if reading is not None:
                seen.append(reading)
            health = drv.health()
            states.add(health["state"])
            return SCENARIO_CHECKS[scenario](seen, {**health, "states": states})

        try:
            wait_until(check, 8, message=f"scenario {scenario}")
        finally:
            drv.stop()


def test_diagnostics_ring_buffer_is_bounded_and_shows_the_wire(gy_sim):
    drv = open_thermometer(gy_sim.port, "gy-mcu90614", raw_history=6)
    drv.start()
    try:
        wait_until(lambda: drv.health()["readings"] >= 8, 5, message="readings")
        items = drv.diagnostics()
        assert len(items) == 6
        assert all(item["what"] in ("rx", "tx") or item["what"].startswith("rejected:") for item in items)
        wire = "".join(item["data"] for item in items if item["what"] == "rx")
        assert "5a5a4504" in wire  # the frames as they came off the port
    finally:
        drv.stop()
    assert drv.health()["detail"] == "stopped"


def test_silent_module_on_a_fixed_uart_is_found_again_at_its_other_rate():
    """No unplug on a GPIO UART: the module comes back from a power cycle at 115200."""
    with ThermoSimulator("gy-mcu90614", seed=13) as sim:
        sim.set_person(34.8)
        drv = open_thermometer(sim.port, "gy-mcu90614", silent_timeout_s=0.4, reprobe_after_s=0.8)
        drv.start()
        try:
            wait_until(lambda: drv.health()["state"] == "ok" and drv.health()["baud"] == 9600, 5)
            sim.device.baud = 115200  # its stored rate after a power cycle; the port stays
            wait_until(lambda: drv.health()["state"] == "silent", 3, message="silent at the old rate")
            wait_until(lambda: drv.health()["state"] == "ok" and drv.health()["baud"] == 115200, 8,
                       message="found again at 115200")
            assert drv.health()["reconnects"] == 0
        finally:
            drv.stop()


@pytest.mark.parametrize("protocol, opts", [
    ("gy-mcu90614", {"rate_hz": 4}),          # P1 has no rate command
    ("gy-mcu90640", {"rate_hz": 3}),          # not one of 0.5/1/2/4/8 Hz
    ("gy-mcu90640", {"emissivity": 1.5}),
    ("ascii", {"emissivity": 0.98}),
])
def test_impossible_device_settings_fail_at_configuration(protocol, opts):
    with pytest.raises(ValueError):
        open_thermometer("/dev/null", protocol, **opts)


def test_default_silence_timeout_follows_the_frame_period():
    assert open_thermometer("/dev/null", "gy-mcu90614").silent_timeout_s == 2.0
    slow_array = open_thermometer("/dev/null", "gy-mcu90640", rate_hz=0.5)
    assert slow_array.silent_timeout_s >= 3 * 2.0  # three frame periods at 0.5 Hz
    assert open_thermometer("/dev/null", "gy-mcu90640", baud=9600).silent_timeout_s >= 3 * 1.6  # 1.6 s per frame
    assert open_thermometer("/dev/null", "gy-mcu90614", silent_timeout_s=0.5).silent_timeout_s == 0.5


def test_scenario_visitor_with_a_given_skin_temperature():
    with ThermoSimulator("gy-614", "person", seed=14, speed=8, scenario_skin_c=35.7) as sim:
        drv = open_thermometer(sim.port, "gy-614")
        drv.start()
        try:
            wait_until(lambda: (r := drv.get(0.1)) is not None and abs(r.object_c - 35.7) < 0.15, 6,
                       message="the scripted visitor at 35.7 °C")
        finally:
            drv.stop()


def test_a_naive_reader_like_cat_sees_real_frames():
    """Opening the port without setting a baud rate (cat, screen) gets the device's frames."""
    import os
    import select

    from drivers.thermometer import make_codec

    with ThermoSimulator("gy-mcu90614", seed=15) as sim:
        sim.set_person(33.9)
        fd = os.open(sim.port, os.O_RDONLY | os.O_NOCTTY)
        try:
            data = b""

            def enough():
                nonlocal data
                if select.select([fd], [], [], 0.1)[0]:
                    data += os.read(fd, 256)
                return len(data) >= 40
            wait_until(enough, 5, message="bytes from the simulator")
        finally:
            os.close(fd)
    results = make_codec("gy-mcu90614").feed(data)
    values = [r.object_c for r in results if r.ok]
    # every byte forms valid frames; the first ones may predate the visitor (ambient)
    assert values and all(r.ok for r in results[1:])
    assert abs(values[-1] - 33.9) < 0.2
