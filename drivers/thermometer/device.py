"""The device side of each protocol, used by the simulator.

A `DeviceModel` knows what bytes a real module emits for a given scene (what the sensor
sees) and how it answers host commands. Each protocol module defines one beside its codec,
so parser and simulator are written from the same section of the spec.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar


@dataclasses.dataclass
class Scene:
    """What the sensor sees right now (°C)."""

    ambient_c: float = 24.0
    skin_c: float | None = None  # a person's skin in front of the sensor, None = nobody
    body_c: float | None = None  # the device's own body-mode estimate (devices that have one)

    @property
    def object_c(self) -> float:
        """Spot sensors see the skin when someone is there, else the background (~ambient)."""
        return self.ambient_c if self.skin_c is None else self.skin_c

    def device_body_c(self) -> float:
        """A plausible body-mode output: explicit value, else the default forehead offset."""
        if self.body_c is not None:
            return self.body_c
        return self.object_c + 2.0 if self.skin_c is not None else self.object_c


class DeviceModel:
    """Byte-level behaviour of one device family (subclass per protocol)."""

    protocol: ClassVar[str] = ""
    default_baud: ClassVar[int] = 9600
    stream_period_s: ClassVar[float] = 0.1

    def __init__(self) -> None:
        self.baud = self.default_baud
        self.pending_baud: int | None = None  # takes effect after a power cycle
        self.streaming = True  # continuous output (False: only answers polls)
        self.emissivity = 0.98
        self._rx = bytearray()

    def receive(self, data: bytes, scene: Scene) -> bytes:
        """Bytes from the host; returns the device's reply bytes (may be empty)."""
        self._rx += data
        reply = bytearray()
        while self._rx:
            step = self._command(self._rx, scene)
            if step is None:
                if len(self._rx) > 64:  # line noise the device would also ignore
                    del self._rx[:1]
                    continue
                break
            consumed, out = step
            del self._rx[:max(consumed, 1)]
            reply += out
        return bytes(reply)

    def stream_frame(self, scene: Scene) -> bytes | None:
        """The frame emitted every stream_period_s in continuous mode (None: not streaming)."""
        return None

    def power_cycle(self) -> None:
        if self.pending_baud:
            self.baud, self.pending_baud = self.pending_baud, None
        self._rx.clear()

    def _command(self, rx: bytearray, scene: Scene) -> tuple[int, bytes] | None:
        """Parse one command at the start of rx: (consumed, reply) or None to wait for more."""
        return 1, b""
