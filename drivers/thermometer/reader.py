"""The thermometer driver: one thread per serial device, readings out through a bounded queue.

The thread owns the port. It opens it (by any path, including /dev/serial/by-id/...),
probes the baud rate where the device's default varies, sends the mode command, polls if
the device needs it, feeds bytes to the protocol codec and puts readings on a queue. No
valid frame for `silent_timeout_s` -> state "silent" and the start command is re-sent;
the port vanishing -> state "disconnected" and reopen with exponential backoff.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Protocol

from .base import Codec, Frame, Reading, Rejected, Result
from .registry import make_codec

logger = logging.getLogger(__name__)

STARTING, OK, SILENT, DISCONNECTED = "starting", "ok", "silent", "disconnected"


class Thermometer(Protocol):
    """What the gate needs from any thermometer (the serial driver, or a future I2C one)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def get(self, timeout: float | None = None) -> Reading | None: ...
    def health(self) -> dict: ...


class ThermometerDriver:
    """Reads one serial thermometer in its own thread (see module doc)."""

    def __init__(
        self,
        port: str,
        codec: Codec,
        baud: int | None = None,
        *,
        silent_timeout_s: float | None = None,
        resend_interval_s: float = 0.2,
        reply_timeout_s: float | None = None,
        queue_size: int = 64,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 2.0,
        probe_window_s: float | None = None,
        reprobe_after_s: float = 10.0,
        emissivity: float | None = None,
        rate_hz: float | None = None,
        raw_history: int = 50,
    ) -> None:
        self.port = port
        self.codec = codec
        self.protocol = codec.name
        self._fixed_baud = baud
        self.baud = baud or codec.default_baud
        self.resend_interval_s = resend_interval_s
        self.reply_timeout_s = reply_timeout_s or max(0.15, codec.poll_interval_s * 0.8)
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.probe_window_s = probe_window_s
        self.reprobe_after_s = reprobe_after_s
        self.emissivity = emissivity
        self.rate_hz = rate_hz
        # bad settings are a configuration error now, not a failure inside the thread later
        if emissivity is not None and codec.emissivity_command(emissivity) is None:
            raise ValueError(f"{codec.name} has no emissivity command")
        if rate_hz is not None and codec.rate_command(rate_hz) is None:
            raise ValueError(f"{codec.name} has no update-rate command")
        codec.reset()
        self._auto_silent = silent_timeout_s is None
        self.silent_timeout_s = silent_timeout_s or self._default_silent_timeout()
        self._queue: queue.Queue[Reading] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._state = STARTING
        self._detail = "not started"
        self._last_reading: float | None = None
        self._last_valid: float | None = None
        self._rejected: dict[str, int] = {}  # snapshot of the codec's counters, for other threads
        self.raw_log: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=raw_history)
        self.stats = collections.Counter()  # frames, readings, dropped, reconnects, probes

    # ---- public interface ----
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"thermo-{self.protocol}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None

    def get(self, timeout: float | None = None) -> Reading | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def health(self) -> dict:
        now = time.monotonic()
        with self._lock:
            age = None if self._last_reading is None else round(now - self._last_reading, 3)
            return {
                "state": self._state,
                "detail": self._detail,
                "protocol": self.protocol,
                "port": self.port,
                "baud": self.baud,
                "rejected": dict(self._rejected),
                "last_reading_age_s": age,
                "frames": self.stats["frames"],
                "readings": self.stats["readings"],
                "dropped": self.stats["dropped"],
                "reconnects": self.stats["reconnects"],
            }

    def diagnostics(self) -> list[dict]:
        """The last raw chunks read and frames rejected, oldest first."""
        return [{"t": round(t, 3), "what": what, "data": data} for t, what, data in list(self.raw_log)]

    # ---- thread ----
    def _set_state(self, state: str, detail: str) -> None:
        with self._lock:
            changed = state != self._state
            self._state, self._detail = state, detail
        if changed:
            level = logging.INFO if state in (OK, STARTING) else logging.WARNING
            logger.log(level, "thermometer %s on %s: %s (%s)", self.protocol, self.port, state, detail)

    def _run(self) -> None:
        backoff = self.reconnect_min_s
        first = True
        while not self._stop.is_set():
            try:
                ser = self._open()
            except (OSError, ValueError) as err:  # SerialException is an OSError
                self._set_state(DISCONNECTED, f"cannot open {self.port}: {err}; retry in {backoff:.1f}s")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.reconnect_max_s)
                continue
            if not first:
                self.stats["reconnects"] += 1
            first = False
            backoff = self.reconnect_min_s
            try:
                self._session(ser)
            except (OSError, ValueError) as err:
                self._set_state(DISCONNECTED, f"port lost: {err}")
                self._stop.wait(self.reconnect_min_s)
            except Exception:  # a bug must not end the thread: the gate would wait for readings forever
                logger.exception("thermometer %s on %s: driver error, reopening", self.protocol, self.port)
                self._set_state(DISCONNECTED, "driver error (see log); reopening")
                self._stop.wait(self.reconnect_max_s)
            finally:
                try:
                    ser.close()
                except OSError:
                    pass
        with self._lock:
            self._detail = "stopped"

    def _open(self):
        import serial  # pyserial; kept local so importing the package stays cheap

        ser = serial.Serial(self.port, self.baud, timeout=0.05, write_timeout=1.0)
        if getattr(self.codec, "needs_dtr", False):
            try:
                ser.dtr = True  # Optris CS USB cables take their power from DTR
            except OSError as err:  # pseudo-terminals have no modem lines
                logger.debug("cannot set DTR on %s: %s", self.port, err)
        return ser

    def _send(self, ser, commands: list[bytes]) -> None:
        for cmd in commands:
            if cmd:
                ser.write(cmd)
                self.raw_log.append((time.monotonic(), "tx", cmd.hex()))

    def _setup_commands(self) -> list[bytes]:
        cmds = list(self.codec.start_commands())
        if self.emissivity is not None:
            cmds.append(self.codec.emissivity_command(self.emissivity) or b"")
        if self.rate_hz is not None:
            cmds.append(self.codec.rate_command(self.rate_hz) or b"")
        return cmds

    def _session(self, ser) -> None:
        self.codec.reset()
        ser.reset_input_buffer()  # bytes queued before we opened the port are stale readings
        if self._may_probe():
            self._probe(ser)
        now = time.monotonic()
        self._last_valid = now
        last_probe = now
        self._set_state(STARTING, f"opened at {self.baud} baud")
        self._send(ser, self._setup_commands())
        last_resend = now
        next_poll = now
        awaiting: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if self.codec.polled and now >= next_poll:
                self._send(ser, self.codec.poll_commands())
                awaiting = awaiting or now
                next_poll = max(next_poll + self.codec.poll_interval_s, now)
            data = ser.read(ser.in_waiting or 1)
            now = time.monotonic()
            if data:
                self.raw_log.append((now, "rx", data.hex()))
                if self._handle(self.codec.feed(data), now):
                    awaiting = None
            elif awaiting is not None and now - awaiting > self.reply_timeout_s:
                self._handle(self.codec.on_reply_timeout(), now)  # a half reply will never finish
                awaiting = None
            if now - self._last_valid > self.silent_timeout_s:
                self._set_state(SILENT, f"no valid frame for {now - self._last_valid:.1f}s")
                if now - last_resend >= self.resend_interval_s:
                    self._send(ser, self._setup_commands())
                    last_resend = now
                if self._may_probe() and now - max(self._last_valid, last_probe) > self.reprobe_after_s:
                    # a module on a fixed UART (no unplug) may come back from a power cycle at
                    # its other rate: look for it again rather than stay silent for ever
                    self._probe(ser)
                    last_probe = time.monotonic()
                    awaiting = None

    def _default_silent_timeout(self) -> float:
        """Spec §11.2: about 2 s, and never less than three frame periods at the current baud."""
        codec = self.codec
        period = 1 / self.rate_hz if self.rate_hz else (codec.poll_interval_s if codec.polled else codec.frame_period_s)
        return max(2.0, 3 * (period + codec.typical_frame_bytes * 10 / self.baud))

    def _may_probe(self) -> bool:
        return self._fixed_baud is None and bool(self.codec.probe_bauds)

    def _handle(self, results: list[Result], now: float) -> bool:
        got_frame = False
        if any(isinstance(r, Rejected) for r in results):
            with self._lock:
                self._rejected = dict(self.codec.rejected)
        for result in results:
            if isinstance(result, Rejected):
                self.raw_log.append((now, f"rejected:{result.cause}", result.raw[:64].hex()))
                if result.cause != "garbage":
                    logger.info("thermometer %s: rejected frame: %s %s", self.protocol, result.cause, result.detail)
                continue
            got_frame = True
            self.stats["frames"] += 1
            self._last_valid = now
            reading = self.codec.to_reading(result, now) if isinstance(result, Frame) else None
            if reading is None:
                continue
            self._put(reading)
            with self._lock:
                self._last_reading = now
            self._set_state(OK, f"readings at {self.baud} baud")
        return got_frame

    def _put(self, reading: Reading) -> None:
        self.stats["readings"] += 1
        while True:
            try:
                self._queue.put_nowait(reading)
                return
            except queue.Full:  # the consumer fell behind: the freshest reading matters most
                try:
                    self._queue.get_nowait()
                    self.stats["dropped"] += 1
                except queue.Empty:
                    pass

    def _probe(self, ser) -> None:
        """Try the current rate, then the others; accept one after two good frames in a row."""
        previous = self.baud
        candidates = [previous] + [b for b in (self.codec.default_baud, *self.codec.probe_bauds) if b != previous]
        for baud in candidates:
            if self._stop.is_set():
                return
            self.stats["probes"] += 1
            ser.baudrate = baud
            ser.reset_input_buffer()
            self.codec.reset()
            self._send(ser, self._setup_commands())
            window = self.probe_window_s or self.codec.probe_window(baud)
            deadline = time.monotonic() + window
            in_a_row = 0
            next_poll = time.monotonic()
            while time.monotonic() < deadline and not self._stop.is_set():
                if self.codec.polled and time.monotonic() >= next_poll:
                    self._send(ser, self.codec.poll_commands())
                    next_poll += self.codec.poll_interval_s
                data = ser.read(ser.in_waiting or 1)
                for result in self.codec.feed(data) if data else []:
                    in_a_row = in_a_row + 1 if isinstance(result, Frame) else 0
                if in_a_row >= 2:
                    self.baud = baud
                    if self._auto_silent:
                        self.silent_timeout_s = self._default_silent_timeout()
                    self.codec.reset()
                    logger.info("thermometer %s on %s: %d baud confirmed", self.protocol, self.port, baud)
                    return
            logger.info("thermometer %s on %s: nothing valid at %d baud", self.protocol, self.port, baud)
        ser.baudrate = self.baud = previous  # nothing answered: keep the last rate; "silent" follows
        self.codec.reset()


DRIVER_OPTIONS = {
    "silent_timeout_s", "resend_interval_s", "reply_timeout_s", "queue_size", "reconnect_min_s",
    "reconnect_max_s", "probe_window_s", "reprobe_after_s", "emissivity", "rate_hz", "raw_history",
}


def open_thermometer(port: str, protocol: str, baud: int | None = None, **opts: object) -> ThermometerDriver:
    """A driver for `protocol` on `port` (not started). Unknown options go to the codec."""
    driver_opts = {k: v for k, v in opts.items() if k in DRIVER_OPTIONS}
    codec_opts = {k: v for k, v in opts.items() if k not in DRIVER_OPTIONS}
    return ThermometerDriver(port, make_codec(protocol, **codec_opts), baud, **driver_opts)
