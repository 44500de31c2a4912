"""The relay through gpiozero's mock pins: off at start, timed opening, off on faults and at close."""

from __future__ import annotations

from gpiozero.pins.mock import MockFactory

from edge.gate import Gate, GateConfig
from tests.conftest import wait_until


def make(**kw):
    factory = MockFactory()
    return Gate(GateConfig(open_s=0.3, signal_s=0.2, **kw), pin_factory=factory), factory


def test_relay_off_at_start_and_closes_after_open_time():
    gate, factory = make()
    relay = factory.pin(17)
    assert relay.state == 0 and not gate.is_open
    gate.open()
    assert relay.state == 1 and gate.is_open
    wait_until(lambda: relay.state == 0, 2, message="relay closes by itself")
    gate.close()


def test_active_low_relay_is_released_at_start():
    gate, factory = make(relay_active_high=False)
    assert factory.pin(17).state == 1 and not gate.is_open  # active-low: high = off
    gate.open()
    assert factory.pin(17).state == 0
    gate.fail_safe()
    assert factory.pin(17).state == 1
    gate.close()


def test_deny_with_alarm_and_reason_output():
    gate, factory = make(deny_reason_pins={"fever": 24})
    gate.open()
    gate.signal_deny(("fever",), alarm=True)
    assert not gate.is_open
    assert factory.pin(22).state == 1 and factory.pin(23).state == 1 and factory.pin(24).state == 1
    wait_until(lambda: factory.pin(23).state == 0 and factory.pin(24).state == 0, 2, message="signals end")
    gate.close()


def test_close_leaves_relay_off():
    gate, factory = make()
    gate.open(seconds=60)
    gate.close()
    assert factory.pin(17).state == 0


def test_passage_sensor_confirms():
    gate, factory = make(passage_sensor_pin=5)
    pin = factory.pin(5)
    assert gate.wait_passage(0.01) is False
    gate.open()
    pin.drive_low()  # pull-up input: the beam pulls it low when someone walks through
    assert gate.wait_passage(1.0) is True
    gate.close()
    no_sensor, _ = make()
    assert no_sensor.wait_passage(0.01) is None
    no_sensor.close()
