"""Serial IR thermometers: protocol codecs, a threaded driver, simulators and the measurement model.

    from drivers.thermometer import open_thermometer
    drv = open_thermometer("/dev/serial/by-id/usb-...", "gy-mcu90614")
    drv.start(); reading = drv.get(timeout=1.0); drv.health(); drv.stop()

The simulator lives in `drivers.thermometer.simulator` (ThermoSimulator) and the
measurement model in `drivers.thermometer.measurement` (MeasurementConfig, Measurer).
"""

from .base import Frame, Reading, Rejected
from .reader import Thermometer, ThermometerDriver, open_thermometer
from .registry import PROTOCOLS, UnknownProtocol, make_codec

__all__ = [
    "PROTOCOLS", "Frame", "Reading", "Rejected", "Thermometer", "ThermometerDriver", "UnknownProtocol",
    "make_codec", "open_thermometer",
]
