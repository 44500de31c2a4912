"""Camera capture: V4L2 devices, stream URLs, video files, image folders and a simulator.

`open_camera(source, width, height, fps)` returns a `FrameSource`: start(), stop(),
latest(timeout) -> Frame | None (newest only), health() -> {"state": "starting" | "ok" |
"stalled" | "disconnected", "detail", "fps", ...}. Capture runs in its own threads with
a watchdog (drivers/camera/capture.py); `drivers.camera.simulated.SimulatedCamera` has
the same interface and draws a pass held up to the camera.
"""

from __future__ import annotations

import pathlib

from drivers.camera.capture import (
    DISCONNECTED,
    OK,
    STALLED,
    STARTING,
    CameraUnavailable,
    Frame,
    FrameReader,
    FrameSource,
)
from drivers.camera.readers import IMAGE_SUFFIXES, FolderReader, OpenCvReader, source_kind


class OpenCvSource(FrameSource):
    """A V4L2 device (index or /dev/videoN), an RTSP/HTTP URL or a video file (looped)."""

    def __init__(self, source: int | str, width: int = 640, height: int = 480, fps: float = 15.0,
                 loop: bool = True, **kw):
        super().__init__(fps=fps, **kw)
        self.source, self.width, self.height, self.loop = source, width, height, loop

    def _make_reader(self) -> FrameReader:
        return OpenCvReader(self.source, self.width, self.height, self.fps, self.loop)

    def describe(self) -> str:
        return f"{source_kind(self.source)} {self.source}"


class FolderSource(FrameSource):
    """The images of a folder in name order, looped, at `fps`, fitted into width x height."""

    def __init__(self, folder: str | pathlib.Path, fps: float = 5.0, loop: bool = True, width: int = 640,
                 height: int = 480, **kw):
        super().__init__(fps=fps, **kw)
        self.folder, self.loop = pathlib.Path(folder), loop
        self.width, self.height = width, height

    def _make_reader(self) -> FrameReader:
        return FolderReader(self.folder, self.loop, self.width, self.height)

    def describe(self) -> str:
        return f"folder {self.folder.name}"


def open_camera(source: int | str, width: int = 640, height: int = 480, fps: float = 15.0,
                **kw) -> FrameSource:
    """A frame source for a device index or path, a stream URL, a video file, an image folder,
    or "sim" (the simulated camera). Extra keywords: stalled_after_s, retry_min_s, retry_max_s."""
    if source == "sim":
        from drivers.camera.simulated import SimulatedCamera

        return SimulatedCamera(width=width, height=height, fps=fps, **kw)
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if source_kind(source) == "folder":
        return FolderSource(source, fps=fps, width=width, height=height, **kw)
    return OpenCvSource(source, width, height, fps, **kw)


__all__ = ["DISCONNECTED", "IMAGE_SUFFIXES", "OK", "STALLED", "STARTING", "CameraUnavailable", "FolderSource",
           "Frame", "FrameReader", "FrameSource", "OpenCvSource", "open_camera"]
