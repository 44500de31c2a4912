"""Protocol name -> codec class and device model class."""

from __future__ import annotations

import importlib

from .base import Codec
from .device import DeviceModel

# name: (module, codec class, device model class)
_TABLE: dict[str, tuple[str, str, str]] = {
    "gy-mcu90614": ("gy_mcu", "GyMcu90614Codec", "GyMcu90614Device"),
    "gy-mcu90615": ("gy_mcu", "GyMcu90615Codec", "GyMcu90615Device"),
    "gy-mcu90640": ("gy_mcu90640", "GyMcu90640Codec", "GyMcu90640Device"),
    "gy-614": ("gy614", "Gy614Codec", "Gy614Device"),
    "lu90614": ("lu90614", "Lu90614Codec", "Lu90614Device"),
    "optris": ("optris", "OptrisCodec", "OptrisDevice"),
    "modbus-omega": ("modbus_ir", "OmegaCodec", "OmegaDevice"),
    "modbus-calex": ("modbus_ir", "CalexCodec", "CalexDevice"),
    "ascii": ("ascii_line", "AsciiCodec", "AsciiDevice"),
}

PROTOCOLS: tuple[str, ...] = tuple(_TABLE)


class UnknownProtocol(ValueError):
    pass


def _load(name: str, index: int) -> type:
    try:
        entry = _TABLE[name]
    except KeyError:
        raise UnknownProtocol(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None
    module = importlib.import_module(f"{__package__}.protocols.{entry[0]}")
    return getattr(module, entry[index])


def codec_class(name: str) -> type[Codec]:
    return _load(name, 1)


def make_codec(name: str, **options: object) -> Codec:
    return codec_class(name)(**options)


def device_class(name: str) -> type[DeviceModel]:
    return _load(name, 2)


def make_device(name: str) -> DeviceModel:
    return device_class(name)()
