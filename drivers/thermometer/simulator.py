"""A thermometer simulator on a real pseudo-terminal, speaking a device's exact bytes.

The driver opens `sim.port` exactly as it would open /dev/serial/by-id/...: `port` is a
symlink to the current pty slave, removed on `unplug()` and recreated (to a new pty) on
`replug()`, like udev does for a USB adapter. The simulator reads the baud rate the host
set on the pty and emits noise when it differs from the device's rate, so baud probing is
exercised for real.

Scenarios (`scenario=`): ambient, person, noise, fever, garbage, silence, unplug. Live
controls (set_person, set_ambient, set_silent, garbage_burst, unplug/replug) work with or
without a scenario.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pty
import random
import select
import shutil
import tempfile
import termios
import threading
import time
import tty
import weakref

from .device import DeviceModel, Scene
from .registry import make_device

logger = logging.getLogger(__name__)

# Each scenario: a cycle of (seconds, action) steps; actions are method names with arguments.
# SKIN stands for the scenario's skin temperature (`scenario_skin_c`, else the default below).
SKIN = "skin"
SCENARIOS: dict[str, list[tuple[float, tuple]]] = {
    "ambient": [(1.0, ("set_person", None))],
    # a person walks up (skin reading rises over 0.4 s), stays 4 s, leaves
    "person": [(3.0, ("set_person", None)), (4.0, ("set_person", SKIN, 0.4))],
    "fever": [(3.0, ("set_person", None)), (4.0, ("set_person", SKIN, 0.4))],
    "noise": [(3.0, ("set_person", None)), (4.0, ("set_person", SKIN, 0.4)), (0.0, ("corrupt_next", 3))],
    "garbage": [(2.0, ("set_person", SKIN)), (0.0, ("garbage_burst", 64)), (2.0, ("set_person", None))],
    "silence": [(3.0, ("set_silent", False)), (3.0, ("set_silent", True))],
    "unplug": [(3.0, ("replug",)), (2.0, ("unplug",))],
}
SCENARIO_SKIN_C = {"fever": 36.4}  # forehead skin; 34.6 for the others (a normal forehead at 5-10 cm)


@dataclasses.dataclass
class _Live:
    silent: bool = False
    plugged: bool = True
    corrupt: int = 0  # corrupt this many upcoming frames (one flipped bit each)
    ramp_from: float | None = None
    ramp_to: float | None = None
    ramp_start: float = 0.0
    ramp_s: float = 0.0


class ThermoSimulator:
    """See module doc. `port` is the path a driver opens."""

    def __init__(self, protocol: str, scenario: str | None = None, *, noise_c: float = 0.03,
                 seed: int | None = None, check_baud: bool = True, link_dir: str | None = None,
                 speed: float = 1.0, scenario_skin_c: float | None = None) -> None:
        if scenario is not None and scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        self.protocol = protocol
        self.device: DeviceModel = make_device(protocol)
        self.scenario = scenario
        self.speed = speed  # scenario clock multiplier (tests run scenarios faster)
        self.scenario_skin_c = scenario_skin_c or SCENARIO_SKIN_C.get(scenario or "", 34.6)
        self.scene = Scene()
        self.noise_c = noise_c
        self.check_baud = check_baud
        self._rng = random.Random(seed)
        self._live = _Live()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_dir = link_dir is None
        self._dir = link_dir or tempfile.mkdtemp(prefix="checkgate-thermo-")
        if self._own_dir:  # removed even when the owner dies without calling stop()
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self.port = os.path.join(self._dir, f"usb-checkgate-sim-{protocol}-if00")
        self.pts: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self.frames_sent = 0
        self.commands_seen = bytearray()

    # ---- lifecycle ----
    def start(self) -> ThermoSimulator:
        self._plug_in()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"thermo-sim-{self.protocol}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2.0)
            self._thread = None
        with self._lock:
            self._pull_out()
        if self._own_dir:
            self._cleanup()

    def __enter__(self) -> ThermoSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- live controls ----
    def set_person(self, skin_c: float | None, ramp_s: float = 0.0, body_c: float | None = None) -> None:
        """Someone with this skin temperature in front of the sensor (None: they left)."""
        with self._lock:
            if ramp_s > 0 and skin_c is not None:
                self._live.ramp_from, self._live.ramp_to = self.scene.object_c, skin_c
                self._live.ramp_start, self._live.ramp_s = time.monotonic(), ramp_s
            else:
                self._live.ramp_to = None
            self.scene.skin_c = skin_c
            self.scene.body_c = body_c

    def set_ambient(self, ambient_c: float) -> None:
        with self._lock:
            self.scene.ambient_c = ambient_c

    def set_silent(self, silent: bool) -> None:
        with self._lock:
            self._live.silent = silent

    def corrupt_next(self, n: int = 1) -> None:
        with self._lock:
            self._live.corrupt += n

    def garbage_burst(self, n_bytes: int = 64) -> None:
        self._write(bytes(self._rng.getrandbits(8) for _ in range(n_bytes)))

    def send_raw(self, data: bytes) -> float:
        """Write bytes to the host now (tests, benchmarks); returns time.monotonic() after the write."""
        self._write(data)
        return time.monotonic()

    def unplug(self) -> None:
        with self._lock:
            self._pull_out()

    def replug(self) -> None:
        with self._lock:
            if not self._live.plugged:
                self.device.power_cycle()
                self._plug_in()

    # ---- internals ----
    def _plug_in(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass untouched
        os.set_blocking(master, False)  # a host that stops reading must not block the simulator
        attrs = termios.tcgetattr(slave)
        speed = getattr(termios, f"B{self.device.baud}", None)
        if speed is not None:  # a naive reader (cat, screen) sees real frames
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self._master, self._slave = master, slave
        self.pts = os.ttyname(slave)
        tmp = self.port + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.pts, tmp)
        os.replace(tmp, self.port)  # atomic, like udev creating the by-id link
        self._live.plugged = True
        logger.info("simulated %s plugged in at %s (%s)", self.protocol, self.port, self.pts)

    def _pull_out(self) -> None:
        if not self._live.plugged:
            return
        self._live.plugged = False
        if os.path.lexists(self.port):
            os.unlink(self.port)
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        logger.info("simulated %s unplugged", self.protocol)

    def _baud_matches(self) -> bool:
        if not self.check_baud or self._master is None:
            return True
        try:
            speed = termios.tcgetattr(self._master)[4]
        except termios.error:
            return True
        return speed == getattr(termios, f"B{self.device.baud}", speed)

    def _write(self, data: bytes) -> None:
        with self._lock:
            if not data or not self._live.plugged or self._master is None:
                return
            try:
                os.write(self._master, data)
            except OSError as err:  # the host side is not draining: drop, like a real UART
                logger.debug("simulator write dropped: %s", err)

    def _current_scene(self) -> Scene:
        with self._lock:
            scene = dataclasses.replace(self.scene)
            live = self._live
            if live.ramp_to is not None and scene.skin_c is not None:
                frac = min(1.0, (time.monotonic() - live.ramp_start) / live.ramp_s)
                scene.skin_c = live.ramp_from + (live.ramp_to - live.ramp_from) * frac
        if self.noise_c:
            scene.ambient_c += self._rng.gauss(0, self.noise_c / 3)
            if scene.skin_c is not None:
                scene.skin_c += self._rng.gauss(0, self.noise_c)
        return scene

    def _emit(self, frame: bytes | None) -> None:
        if not frame:
            return
        with self._lock:
            if self._live.silent:
                return
            corrupt = self._live.corrupt > 0
            if corrupt:
                self._live.corrupt -= 1
        if not self._baud_matches():  # what a UART at the wrong rate makes of the frame
            frame = bytes(self._rng.getrandbits(8) for _ in range(len(frame)))
        elif corrupt:
            buf = bytearray(frame)
            buf[self._rng.randrange(len(buf) // 2, len(buf))] ^= 1 << self._rng.randrange(8)
            frame = bytes(buf)
        self.frames_sent += 1
        self._write(frame)

    def _run(self) -> None:
        steps = SCENARIOS.get(self.scenario or "", [])
        step_index, step_end = 0, time.monotonic()
        next_frame = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if steps and now >= step_end:
                seconds, action = steps[step_index % len(steps)]
                args = [self.scenario_skin_c if a == SKIN else a for a in action[1:]]
                getattr(self, action[0])(*args)
                step_index += 1
                step_end = now + seconds / self.speed
            master = self._master
            if master is None:  # unplugged
                self._stop.wait(0.02)
                continue
            timeout = max(0.0, min(next_frame - now, 0.05))
            try:
                ready, _, _ = select.select([master], [], [], timeout)
                data = os.read(master, 4096) if ready else b""
            except (OSError, ValueError):  # closed by unplug() meanwhile
                data = b""
            if data:
                self.commands_seen += data
                if self._baud_matches():
                    try:
                        reply = self.device.receive(data, self._current_scene())
                    except Exception:  # a simulator bug must not look like an unplugged device
                        logger.exception("simulated %s: command handling failed", self.protocol)
                        reply = b""
                    with self._lock:
                        silent = self._live.silent
                    if reply and not silent:
                        self._write(reply)
            if time.monotonic() >= next_frame:
                self._emit(self.device.stream_frame(self._current_scene()))
                next_frame += self.device.stream_period_s
                if next_frame < time.monotonic():  # fell behind (loaded machine): do not burst
                    next_frame = time.monotonic() + self.device.stream_period_s
