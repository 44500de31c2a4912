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
