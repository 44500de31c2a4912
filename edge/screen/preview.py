"""Low-rate, low-resolution JPEG preview of the camera, so people can see where to hold their code.

Each camera frame is encoded at most once whatever the number of pages watching, and no
more often than `fps`; a page asking faster gets the last JPEG again.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)


class PreviewEncoder:
    def __init__(self, camera_getter, width: int = 320, fps: float = 3.0, quality: int = 60):
        self._camera = camera_getter  # a callable, because the daemon opens the camera at start
        self.width = width
        self.min_interval = 1.0 / fps if fps > 0 else float("inf")
        self.quality = quality
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._seq = None
        self._encoded_at = 0.0

    def latest_jpeg(self) -> bytes | None:
        """The newest preview JPEG, or None when there is no camera or no frame yet."""
        with self._lock:
            camera = self._camera()
            if camera is None:
                self._jpeg = None
                return None
            now = time.monotonic()
            if self._jpeg is not None and now - self._encoded_at < self.min_interval:
                return self._jpeg
            try:
                frame = camera.latest(0.05)
            except Exception as err:
                logger.warning("camera preview: %s", err)
                return self._jpeg
            if frame is None:
                return self._jpeg
            seq = getattr(frame, "seq", None)
            if seq is not None and seq == self._seq and self._jpeg is not None:
                return self._jpeg
            jpeg = self._encode(frame.image)
            if jpeg is not None:
                self._jpeg, self._seq, self._encoded_at = jpeg, seq, now
            return self._jpeg

    def _encode(self, image) -> bytes | None:
        import cv2

        try:
            h, w = image.shape[:2]
            if w > self.width:
                image = cv2.resize(image, (self.width, max(1, round(h * self.width / w))),
                                   interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        except (cv2.error, AttributeError, ValueError) as err:
            logger.warning("camera preview: cannot encode frame: %s", err)
            return None
        return buf.tobytes() if ok else None
