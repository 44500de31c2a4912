"""Camera capture: V4L2 devices, stream URLs, video files and image folders.

Each source reads in its own thread, because `VideoCapture.read()` can block for ever
when a device or stream disappears. Only the newest frame is kept (no backlog), and a
watchdog restarts capture with paced retries when frames stop: the health state says
`stalled` (frames stopped) or `disconnected` (the source cannot be opened).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import threading
import time

import numpy as np

logger = logging.getLogger(__name__)

STARTING, OK, STALLED, DISCONNECTED = "starting", "ok", "stalled", "disconnected"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


@dataclasses.dataclass(frozen=True)
class Frame:
    image: np.ndarray
    seq: int
    ts: float  # time.monotonic() when captured


class FrameSource:
    """The interface: start(), stop(), latest(timeout), health(). Subclasses implement _grab()."""

    def __init__(self, fps: float = 15.0, stalled_after_s: float = 3.0, retry_min_s: float = 0.5,
                 retry_max_s: float = 10.0):
        self.fps = fps
        self.stalled_after_s = stalled_after_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self._stop = threading.Event()
        self._new = threading.Condition()
        self._latest: Frame | None = None
        self._seq = 0
        self._state = STARTING
        self._detail = ""
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._frame_times: list[float] = []
        self.restarts = 0

    # -- interface ------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"camera-{type(self).__name__}", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name="camera-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        with self._new:
            self._new.notify_all()
        for t in (self._thread, self._watchdog):
            if t is not None:
                t.join(2)
        self._close()

    def latest(self, timeout: float = 0.5) -> Frame | None:
        """The newest frame, waiting up to `timeout` for one newer than the last returned."""
        with self._new:
            last = getattr(self, "_last_returned", None)
            if self._latest is None or self._latest.seq == last:
                self._new.wait(timeout)
            frame = self._latest
            if frame is not None:
                self._last_returned = frame.seq
            return frame

    def health(self) -> dict:
        now = time.monotonic()
        recent = [t for t in self._frame_times if now - t < 2.0]
        age = None if self._latest is None else round(now - self._latest.ts, 2)
        return {"state": self._state, "detail": self._detail, "fps": round(len(recent) / 2.0, 1),
                "last_frame_age_s": age, "restarts": self.restarts}

    # -- for subclasses ----------------------------------------------------------------
    def _open(self) -> bool:
        return True

    def _grab(self) -> np.ndarray | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _publish(self, image: np.ndarray) -> None:
        now = time.monotonic()
        with self._new:
            self._seq += 1
            self._latest = Frame(image, self._seq, now)
            self._new.notify_all()
        self._frame_times = [t for t in self._frame_times[-64:] if now - t < 2.0] + [now]
        if self._state != OK:
            logger.info("camera delivering frames")
        self._state, self._detail = OK, ""

    # -- threads -------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.retry_min_s
        period = 1.0 / self.fps if self.fps > 0 else 0
        while not self._stop.is_set():
            if not self._open():
                self._state, self._detail = DISCONNECTED, "cannot open the camera source"
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            delay = self.retry_min_s
            generation = self.restarts
            while not self._stop.is_set() and generation == self.restarts:
                t0 = time.monotonic()
                image = self._grab()
                if image is None:
                    if generation == self.restarts:
                        self._state, self._detail = DISCONNECTED, "the source stopped delivering"
                    break
                if generation != self.restarts:
                    break  # the watchdog gave up on this read; the new capture takes over
                self._publish(image)
                spare = period - (time.monotonic() - t0)
                if spare > 0:
                    self._stop.wait(spare)
            self._close()

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            latest = self._latest
            if self._state == OK and latest is not None and time.monotonic() - latest.ts > self.stalled_after_s:
                logger.warning("camera stalled: no frame for %.1fs; restarting capture", self.stalled_after_s)
                self._state, self._detail = STALLED, f"no frame for {self.stalled_after_s:.0f} s"
                self.restarts += 1
                # the old reader may be stuck in read() for ever: a new one takes over, and
                # the old one exits when (if) its read returns, seeing the generation changed
                self.start_reader()

    def start_reader(self) -> None:
        self._thread = threading.Thread(target=self._run, name="camera-reader", daemon=True)
        self._thread.start()


class OpenCvSource(FrameSource):
    """A V4L2 device (index or /dev/video path), an RTSP/HTTP URL or a video file."""

    def __init__(self, source: int | str, width: int = 640, height: int = 480, fps: float = 15.0,
                 loop: bool = False, **kw):
        super().__init__(fps=fps, **kw)
        self.source, self.width, self.height, self.loop = source, width, height, loop
        self._cap = None

    def _open(self) -> bool:
        import cv2

        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            return False
        if isinstance(self.source, int) or str(self.source).startswith("/dev/video"):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a backlog
        self._cap = cap
        return True

    def _grab(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        if not ok and self.loop:
            import cv2

            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        return image if ok else None

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource(FrameSource):
    """Images from a folder, in name order, looping: for tests, demos and replays."""

    def __init__(self, folder: str | pathlib.Path, fps: float = 5.0, loop: bool = True, **kw):
        super().__init__(fps=fps, **kw)
        self.folder, self.loop = pathlib.Path(folder), loop
        self._files: list[pathlib.Path] = []
        self._index = 0

    def _open(self) -> bool:
        if not self.folder.is_dir():
            return False
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self._index = 0
        return bool(self._files)

    def _grab(self) -> np.ndarray | None:
        import cv2

        if self._index >= len(self._files):
            if not self.loop:
                return None
            self._index = 0
        path = self._files[self._index]
        self._index += 1
        image = cv2.imread(str(path))
        if image is None:
            logger.warning("skipping unreadable image %s", path.name)
            return np.zeros((2, 2, 3), np.uint8)
        return image


def open_camera(source: int | str, width: int = 640, height: int = 480, fps: float = 15.0,
                **kw) -> FrameSource:
    """A frame source for a device index/path, stream URL, video file or image folder."""
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, str) and pathlib.Path(source).is_dir():
        return FolderSource(source, fps=fps, **kw)
    return OpenCvSource(source, width, height, fps, **kw)


__all__ = ["Frame", "FrameSource", "FolderSource", "OpenCvSource", "open_camera"]
