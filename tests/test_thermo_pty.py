"""Every protocol end to end: simulator on a real pty -> the same driver code that runs on a device.

For each: readings arrive with the simulated values, silence is reported within the configured
timeout and recovers by itself, an unplug is seen as "disconnected" and a replug reconnects."""

from __future__ import annotations

import pytest

from drivers.thermometer import PROTOCOLS, open_thermometer
from drivers.thermometer.simulator import ThermoSimulator
from tests.conftest import wait_until

# continuous ascii prints every 500 ms: give it a longer silence timeout than the 10 Hz devices
SILENT_AFTER = {"ascii": 1.3, "gy-mcu90640": 0.9}


def _fresh(drv, predicate, timeout, message):
    """Wait for a reading (taken from the queue) that satisfies predicate."""
    def check():
        reading = drv.get(0.1)
        return reading if reading is not None and predicate(reading) else None
    return wait_until(check, timeout, message=message)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_simulator_to_driver_full_lifecycle(protocol):
    silent_after = SILENT_AFTER.get(protocol, 0.6)
    with ThermoSimulator(protocol, seed=3, noise_c=0.0) as sim:
        sim.set_ambient(21.0)
        sim.set_person(34.4)
        drv = open_thermometer(sim.port, protocol, silent_timeout_s=silent_after, reconnect_max_s=0.3)
        drv.start()
        try:
            reading = _fresh(drv, lambda r: True, 6, "a first reading")
            assert reading.sensor == protocol
            if protocol == "lu90614":  # a body-temperature module: object and body from alternating polls
                reading = _fresh(drv, lambda r: r.object_c is not None and r.body_c is not None, 4, "a paired reading")
                assert reading.body_c == pytest.approx(36.4, abs=0.05)
            else:
                assert reading.object_c == pytest.approx(34.4, abs=0.05)
            if protocol not in ("lu90614",):
                assert reading.ambient_c is not None
            if protocol == "gy-614":
                assert reading.body_c == pytest.approx(36.4, abs=0.05)
            assert drv.health()["state"] == "ok"

            # the person leaves: readings follow
            sim.set_person(None)
            _fresh(drv, lambda r: r.object_c is not None and r.object_c < 30 or
                   r.object_c is None and r.body_c is not None and r.body_c < 30, 4, "readings without a person")

            # silence: reported within the configured timeout, recovery by itself
            sim.set_silent(True)
            wait_until(lambda: drv.health()["state"] == "silent", silent_after + 0.8, message="sensor silent")
            assert drv.health()["last_reading_age_s"] >= silent_after * 0.8
            sim.set_silent(False)
            wait_until(lambda: drv.health()["state"] == "ok", 4, message="recovery from silence")

            # unplug / replug through the stable (by-id style) path
            sim.unplug()
            wait_until(lambda: drv.health()["state"] == "disconnected", 4, message="disconnected")
            sim.set_person(35.0)
            sim.replug()
            wait_until(lambda: drv.health()["state"] == "ok", 6, message="reconnected")
            if protocol == "lu90614":
                _fresh(drv, lambda r: r.body_c is not None and abs(r.body_c - 37.0) < 0.1, 4, "reading after replug")
            else:
                _fresh(drv, lambda r: r.object_c is not None and abs(r.object_c - 35.0) < 0.1, 4,
                       "reading after replug")
            assert drv.health()["reconnects"] >= 1
        finally:
            drv.stop()


def _visit_result(drv, measurer, timeout=6.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reading = drv.get(0.2)
        if reading is not None:
            result = measurer.feed(reading, reading.ts)
            if result is not None:
                return result
    pytest.fail("no measurement result")


@pytest.mark.parametrize("protocol, site", [("gy-mcu90614", "forehead"), ("gy-614", "device")])
def test_gate_sees_normal_fever_too_far_and_silent(protocol, site):
    """The whole temperature half of a gate over a real pty: driver + measurement window."""
    import time

    from drivers.thermometer.measurement import MeasurementConfig, Measurer

    measurer = Measurer(MeasurementConfig(site=site, warmup_s=0, window_s=0.6, presence_leave_s=0.3,
                                          silent_after_s=0.8))
    with ThermoSimulator(protocol, seed=9, noise_c=0.05) as sim:
        sim.set_ambient(22.0)
        drv = open_thermometer(sim.port, protocol, silent_timeout_s=0.8)
        drv.start()
        try:
            visits = [(34.0, "normal"), (None, None), (35.9, "fever"), (None, None), (30.5, "too_low")]
            for skin, expected in visits:
                if skin is None:  # gap between visitors: readings near ambient end the visit
                    sim.set_person(None)
                    wait_until(lambda: (r := drv.get(0.2)) is not None and not measurer.feed(r, r.ts)
                               and not measurer.presence(r.ts), 5, message="visitor gone")
                    continue
                sim.set_person(skin, ramp_s=0.3)  # walking up to the sensor
                result = _visit_result(drv, measurer)
                assert result.status == expected, result
                assert result.sensor == protocol and result.site == site
            sim.set_silent(True)
            wait_until(lambda: drv.health()["state"] == "silent", 3, message="driver silent")
            assert measurer.current(time.monotonic()).status == "silent"
        finally:
            drv.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_random_bytes_on_the_wire_never_become_impossible_readings(protocol):
    import random

    from drivers.thermometer import make_codec

    codec = make_codec(protocol)
    rng = random.Random(protocol)
    with ThermoSimulator(protocol, seed=16) as sim:
        sim.set_silent(True)  # only noise on the line
        drv = open_thermometer(sim.port, protocol, baud=sim.device.baud, silent_timeout_s=0.5)
        drv.start()
        try:
            wait_until(lambda: drv.health()["detail"].startswith("opened"), 3, message="port open")
            for _ in range(20):
                sim.send_raw(bytes(rng.getrandbits(8) for _ in range(100)))
            wait_until(lambda: sum(drv.health()["rejected"].values()) > 0, 3, message="noise rejected")
            wait_until(lambda: drv.health()["state"] == "silent", 3, message="silent on noise")
            while (reading := drv.get(0.05)) is not None:  # anything that passed must be physical
                for value in (reading.object_c, reading.body_c):
                    assert value is None or codec.object_range[0] <= value <= codec.object_range[1]
            sim.set_silent(False)
            sim.set_person(34.0)
            wait_until(lambda: drv.health()["state"] == "ok", 5, message="back to real frames")
        finally:
            drv.stop()
