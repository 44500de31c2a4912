"""The gate's outputs and inputs through gpiozero: relay, lamps, buzzer, passage sensor.

The relay is off at start, off after every opening, off on every error path and at
shutdown. With `pin_factory: mock` (demo, tests, a laptop) gpiozero's own mock pins
stand in for the header, so the same code runs everywhere.
"""

from __future__ import annotations

import logging
import threading
import time

from checkgate.config import StrictModel

logger = logging.getLogger(__name__)


class GateConfig(StrictModel):
    pin_factory: str = "mock"  # mock | lgpio | rpigpio | native | pigpio
    relay_pin: int = 17
    relay_active_high: bool = True
    open_s: float = 3.0
    green_lamp_pin: int | None = 27
    red_lamp_pin: int | None = 22
    buzzer_pin: int | None = 23
    passage_sensor_pin: int | None = None  # beam sensor: active when someone walks through
    passage_sensor_pull_up: bool = True
    deny_reason_pins: dict[str, int] = {}  # e.g. {"fever": 24}: an extra output per reason
    signal_s: float = 2.0  # how long lamps / reason outputs stay on


def make_pin_factory(name: str):
    if name == "mock":
        from gpiozero.pins.mock import MockFactory
        return MockFactory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory
        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory
        return RPiGPIOFactory()
    if name == "pigpio":
        from gpiozero.pins.pigpio import PiGPIOFactory
        return PiGPIOFactory()
    if name == "native":
        from gpiozero.pins.native import NativeFactory
        return NativeFactory()
    raise ValueError(f"unknown pin_factory '{name}' (mock, lgpio, rpigpio, pigpio, native)")


class Gate:
    """Drives the relay and signals. Thread-safe; one timer thread closes things again."""

    def __init__(self, config: GateConfig, pin_factory=None):
        from gpiozero import DigitalInputDevice, OutputDevice

        self.config = config
        self.factory = pin_factory or make_pin_factory(config.pin_factory)
        out = lambda pin, active_high=True: OutputDevice(  # noqa: E731
            pin, active_high=active_high, initial_value=False, pin_factory=self.factory)
        self.relay = out(config.relay_pin, config.relay_active_high)
        self.green = out(config.green_lamp_pin) if config.green_lamp_pin is not None else None
        self.red = out(config.red_lamp_pin) if config.red_lamp_pin is not None else None
        self.buzzer = out(config.buzzer_pin) if config.buzzer_pin is not None else None
        self.reason_outputs = {r: out(p) for r, p in config.deny_reason_pins.items()}
        self.sensor = None
        if config.passage_sensor_pin is not None:
            self.sensor = DigitalInputDevice(config.passage_sensor_pin, pull_up=config.passage_sensor_pull_up,
                                             pin_factory=self.factory)
        self._lock = threading.Lock()
        self._deadlines: dict[str, float] = {}
        self._passage = threading.Event()
        self._stop = threading.Event()
        self.opened_at: float | None = None  # monotonic time of the last relay command (benchmarks)
        self.open_count = 0
        if self.sensor is not None:
            self.sensor.when_activated = self._passage.set
        self._thread = threading.Thread(target=self._run, name="gate-timer", daemon=True)
        self._thread.start()

    # -- actions --------------------------------------------------------------------

    def open(self, seconds: float | None = None) -> None:
        with self._lock:
            self._passage.clear()
            self.relay.on()
            self.opened_at = time.monotonic()
            self.open_count += 1
            self._deadlines["relay"] = self.opened_at + (seconds or self.config.open_s)
            self._signal_locked(self.green, "green")

    def signal_deny(self, reasons: tuple[str, ...] | list[str] = (), alarm: bool = False) -> None:
        with self._lock:
            self.relay.off()
            self._deadlines.pop("relay", None)
            self._signal_locked(self.red, "red")
            if alarm:
                self._signal_locked(self.buzzer, "buzzer")
            for reason in reasons:
                dev = self.reason_outputs.get(reason)
                if dev is not None:
                    self._signal_locked(dev, f"reason:{reason}")

    def fail_safe(self) -> None:
        """Close the gate now (error path)."""
        with self._lock:
            if self._stop.is_set():
                return  # outputs already switched off and released
            self.relay.off()
            self._deadlines.pop("relay", None)

    @property
    def is_open(self) -> bool:
        return bool(self.relay.value)

    def wait_passage(self, timeout: float) -> bool | None:
        """True when the beam saw someone; None when no sensor is wired (unconfirmed)."""
        if self.sensor is None:
            return None
        return self._passage.wait(timeout)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            for dev in self._all_outputs():
                try:
                    dev.off()
                    dev.close()
                except Exception as err:
                    logger.warning("closing output: %s", err)
            if self.sensor is not None:
                self.sensor.close()

    # -- internals ------------------------------------------------------------------------

    def _signal_locked(self, dev, key: str) -> None:
        if dev is None:
            return
        dev.on()
        self._deadlines[key] = time.monotonic() + self.config.signal_s

    def _all_outputs(self):
        return [d for d in (self.relay, self.green, self.red, self.buzzer, *self.reason_outputs.values())
                if d is not None]

    def _device_for(self, key: str):
        if key == "relay":
            return self.relay
        if key.startswith("reason:"):
            return self.reason_outputs.get(key[7:])
        return {"green": self.green, "red": self.red, "buzzer": self.buzzer}.get(key)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = time.monotonic()
            with self._lock:
                for key, deadline in list(self._deadlines.items()):
                    if now >= deadline:
                        dev = self._device_for(key)
                        try:
                            if dev is not None:
                                dev.off()
                        except Exception as err:
                            logger.error("cannot switch %s off: %s", key, err)
                        del self._deadlines[key]
