"""Frame capture with a watchdog: the part every camera source shares.

A `FrameSource` runs one reader thread per capture attempt ("generation") and one
watchdog thread. The reader opens its own `FrameReader`, reads, and publishes only
the newest frame (no backlog: a consumer always gets the current picture). Reads can
block for ever when a USB camera is unplugged or a stream hangs, so the watchdog never
waits for a reader: when frames stop for `stalled_after_s` it reports "camera stalled",
abandons that generation (the stuck thread closes its own handle if its read ever
returns) and starts a new one, with retries paced from `retry_min_s` doubling up to
`retry_max_s`. A source that cannot be opened, or ends, is "disconnected" and retried
the same way, so a device that comes back is picked up again without a restart.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

STARTING, OK, STALLED, DISCONNECTED = "starting", "ok", "stalled", "disconnected"


class CameraUnavailable(Exception):
    """The source cannot be opened now (missing device, refused stream, empty folder)."""


@dataclasses.dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8
    seq: int  # 1, 2, 3 ... for this source, across restarts
    ts: float  # time.monotonic() when the frame was captured
    meta: dict[str, Any] | None = None  # simulators say what the frame shows (tests, benchmarks)


class FrameReader(abc.ABC):
    """One capture attempt on a device. Each generation gets a fresh reader."""

    paced = False  # True for sources that would otherwise deliver as fast as they can be read

    @abc.abstractmethod
    def open(self) -> None:
        """Open the source or raise CameraUnavailable with the reason."""

    @abc.abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame; None when the source has ended or vanished. May block."""

    def read_meta(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:  # noqa: B027 - most readers have nothing to release
        """Release the device; called from the reader's own thread."""


@dataclasses.dataclass
class _Attempt:
    number: int
    started: float
    last_frame: float | None = None
    ended: str | None = None  # why the reader stopped (None while it runs)


class FrameSource:
    """start(), stop(), latest(timeout) -> Frame | None, health() -> dict. Subclasses give readers."""

    name = "camera"

    def __init__(self, fps: float = 15.0, stalled_after_s: float = 3.0, retry_min_s: float = 0.5,
                 retry_max_s: float = 10.0, open_timeout_s: float = 10.0):
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.stalled_after_s = stalled_after_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.open_timeout_s = max(open_timeout_s, stalled_after_s)
        self.restarts = 0
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0
        self._returned: dict[int, int] = {}  # consumer thread -> last seq it got
        self._state, self._detail = STARTING, "opening the source"
        self._attempt: _Attempt | None = None
        self._next_try = 0.0
        self._delay = retry_min_s
        self._frame_times: collections.deque[float] = collections.deque(maxlen=64)
        self._watchdog: threading.Thread | None = None
        self._give_up_lock = threading.Lock()
        self._readers: list[threading.Thread] = []  # live reader threads, including abandoned ones

    # -- for subclasses -------------------------------------------------------------------
    def _make_reader(self) -> FrameReader:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    # -- interface ------------------------------------------------------------------------
    def start(self) -> None:
        if self._watchdog is not None:
            return
        self._watchdog = threading.Thread(target=self._watch, name=f"{self.name}-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop capture. Waits up to `timeout` for the threads, so device handles are released
        before the caller moves on (or the interpreter exits); a read hung for good is left."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        if self._watchdog is not None:
            self._watchdog.join(timeout)  # first: it is the one that starts readers
        threads = list(self._readers)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            logger.warning("%s: %s still blocked in the driver after stop", self.describe(), ", ".join(stuck))

    def latest(self, timeout: float = 0.5) -> Frame | None:
        """The newest frame. Waits up to `timeout` for one newer than this thread last got;
        after that returns the newest there is (possibly the same one), or None if none yet."""
        me = threading.get_ident()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                frame = self._latest
                if frame is not None and frame.seq != self._returned.get(me):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            frame = self._latest
            if frame is not None:
                if len(self._returned) > 64 and me not in self._returned:
                    self._returned.clear()  # consumers come and go (thread pools): forget old ones
                self._returned[me] = frame.seq
            return frame

    def health(self) -> dict:
        now = time.monotonic()
        recent = [t for t in list(self._frame_times) if now - t <= 2.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 and recent[-1] > recent[0] else 0.0
        latest = self._latest
        return {"state": self._state, "detail": self._detail, "fps": round(fps, 1),
                "last_frame_age_s": None if latest is None else round(now - latest.ts, 2),
                "restarts": self.restarts, "source": self.describe()}

    # -- threads --------------------------------------------------------------------------
    def _watch(self) -> None:
        tick = min(0.1, self.stalled_after_s / 4)
        while not self._stop.is_set():
            now = time.monotonic()
            attempt = self._attempt
            if attempt is None or attempt.ended is not None:
                if now >= self._next_try:
                    self._begin_attempt(now)
            else:
                since = attempt.last_frame if attempt.last_frame is not None else attempt.started
                limit = self.stalled_after_s if attempt.last_frame is not None else self.open_timeout_s
                if now - since > limit:
                    self._give_up(attempt, STALLED, f"no frame for {now - since:.1f} s")
            self._stop.wait(tick)

    def _begin_attempt(self, now: float) -> None:
        number = (self._attempt.number + 1) if self._attempt else 1
        if self._attempt is not None:
            self.restarts += 1
            logger.info("%s: restarting capture (attempt %d)", self.describe(), number)
        attempt = _Attempt(number=number, started=now)
        self._attempt = attempt
        reader = threading.Thread(target=self._read_loop, args=(attempt,), daemon=True,
                                  name=f"{self.name}-reader-{number}")
        self._readers = [t for t in self._readers if t.is_alive()] + [reader]
        reader.start()

    def _give_up(self, attempt: _Attempt, state: str, detail: str) -> None:
        """Mark `attempt` over and schedule the next one after the current retry delay."""
        with self._give_up_lock:  # the reader and the watchdog may both conclude at once
            if attempt.ended is not None:
                return
            attempt.ended = detail
        if state == STALLED:
            logger.warning("camera stalled: %s: %s; restarting capture in %.1f s", self.describe(), detail,
                           self._delay)
        elif self._state != DISCONNECTED or self._detail != detail:
            logger.warning("camera disconnected: %s: %s; retrying in %.1f s", self.describe(), detail, self._delay)
        self._state, self._detail = state, detail
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.retry_max_s)

    def _read_loop(self, attempt: _Attempt) -> None:
        reader = self._make_reader()
        try:
            reader.open()
        except CameraUnavailable as err:
            self._give_up(attempt, DISCONNECTED, f"cannot open: {err}")
            return
        except Exception as err:  # a driver bug must not kill capture for good
            logger.exception("%s: opening failed", self.describe())
            self._give_up(attempt, DISCONNECTED, f"cannot open: {err}")
            return
        period = 1.0 / self.fps
        try:
            while not self._stop.is_set() and attempt.ended is None:
                started = time.monotonic()
                try:
                    image = reader.read()
                except Exception as err:
                    logger.warning("%s: read failed: %s", self.describe(), err)
                    image = None
                if attempt.ended is not None:
                    break  # the watchdog gave up on this attempt while we were blocked
                if image is None:
                    self._give_up(attempt, DISCONNECTED, "the source stopped delivering frames")
                    break
                self._publish(attempt, image, reader.read_meta())
                if reader.paced:
                    self._stop.wait(max(0.0, period - (time.monotonic() - started)))
        finally:
            try:
                reader.close()
            except Exception as err:
                logger.debug("%s: close failed: %s", self.describe(), err)

    def _publish(self, attempt: _Attempt, image: np.ndarray, meta: dict | None) -> None:
        now = time.monotonic()
        with self._cond:
            self._seq += 1
            self._latest = Frame(image, self._seq, now, meta)
            self._cond.notify_all()
        attempt.last_frame = now
        self._frame_times.append(now)
        if self._state != OK:
            logger.info("%s: delivering frames", self.describe())
            self._state, self._detail = OK, ""
        self._delay = self.retry_min_s
