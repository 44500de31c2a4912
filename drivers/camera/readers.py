"""Readers for real sources: V4L2 devices, RTSP/HTTP streams, video files, image folders."""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from drivers.camera.capture import CameraUnavailable, FrameReader

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
# Streams: give up opening/reading after this long instead of OpenCV's own 30 s default.
STREAM_TIMEOUT_MS = 5000


def source_kind(source: int | str) -> str:
    """"device", "stream", "folder" or "file" for a camera source setting."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "device"
    if source.startswith("/dev/"):
        return "device"
    if source.lower().startswith(STREAM_PREFIXES):
        return "stream"
    if pathlib.Path(source).is_dir():
        return "folder"
    return "file"


def fit_within(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Downscale (never upscale) to fit width x height: a 1080p stream would otherwise cost
    the decoder four times as much on every frame."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    if scale >= 1.0:
        return image
    import cv2

    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class OpenCvReader(FrameReader):
    """A V4L2 device (index or /dev/video path), a stream URL or a video file via OpenCV."""

    def __init__(self, source: int | str, width: int, height: int, fps: float, loop: bool = True):
        self.source, self.width, self.height, self.fps, self.loop = source, width, height, fps, loop
        self.kind = source_kind(source)
        self.paced = self.kind == "file"  # a file would otherwise play as fast as it decodes
        self._cap = None

    def open(self) -> None:
        import cv2

        if self.kind == "device":
            device = int(self.source) if str(self.source).isdigit() else self.source
            cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        elif self.kind == "stream":
            cap = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        else:
            if not pathlib.Path(self.source).is_file():
                raise CameraUnavailable(f"no such file: {self.source}")
            cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"OpenCV cannot open {self.kind} {self.source}")
        if self.kind == "device":
            # MJPEG lets USB 2 cameras deliver 640x480 at 30 fps; one buffer = newest frame
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            if got != (self.width, self.height):
                logger.warning("camera %s gives %dx%d, not the configured %dx%d", self.source, *got,
                               self.width, self.height)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        if not ok and self.kind == "file" and self.loop:
            import cv2

            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok:
            return None
        # devices were asked for the size; streams and files come as they are
        return image if self.kind == "device" else fit_within(image, self.width, self.height)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderReader(FrameReader):
    """Images of a folder in name order, looping: replays, demos, tests."""

    paced = True

    def __init__(self, folder: str | pathlib.Path, loop: bool = True, width: int = 640, height: int = 480):
        self.folder, self.loop = pathlib.Path(folder), loop
        self.width, self.height = width, height
        self._files: list[pathlib.Path] = []
        self._index = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraUnavailable(f"no such folder: {self.folder}")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise CameraUnavailable(f"no images in {self.folder}")

    def read(self) -> np.ndarray | None:
        import cv2

        for _ in range(len(self._files)):
            if self._index >= len(self._files):
                if not self.loop:
                    return None
                self._index = 0
            path = self._files[self._index]
            self._index += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return fit_within(image, self.width, self.height)
            if not path.exists():
                return None  # the folder went away: the source is gone, not one bad file
            logger.warning("camera folder: skipping unreadable image %s", path.name)
        return None
