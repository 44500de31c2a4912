"""A simulated camera: frames of a gate scene with a code held up, or nothing.

`show_code(text)` renders the QR once (segno), picks a perspective, a phone-screen or
paper look, glare and blur for this "person", and every frame then only warps it into
a noisy background with a little hand shake, so several simulated gates can run at
10-30 fps while the daemon decodes them. `set_stalled(True)` makes `read` hang like a
vanished USB camera does, to exercise the watchdog.
"""

from __future__ import annotations

import random
import threading

import numpy as np

from drivers.camera import FrameSource


def render_qr(text: str, module_px: int = 6, border: int = 4) -> np.ndarray:
    import segno

    qr = segno.make_qr(text, error="m")
    matrix = np.array([[0 if dark else 255 for dark in row] for row in qr.matrix], dtype=np.uint8)
    matrix = np.pad(matrix, border, constant_values=255)
    return np.kron(matrix, np.ones((module_px, module_px), dtype=np.uint8))


class SimulatedCamera(FrameSource):
    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0, seed: int | None = None, **kw):
        super().__init__(fps=fps, **kw)
        self.width, self.height = width, height
        self._rng = random.Random(seed)
        self._np_rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._scene: dict | None = None
        self._unstall = threading.Event()
        self._unstall.set()
        self._stalled = False
        base = self._np_rng.normal(110, 25, (height, width)).clip(0, 255).astype(np.uint8)
        import cv2

        self._background = cv2.GaussianBlur(base, (0, 0), 6)
        self._noise = [self._np_rng.normal(0, 6, (height, width)).astype(np.int16) for _ in range(4)]
        self._tick = 0

    # -- controls ----------------------------------------------------------------------
    def show_code(self, text: str, style: str | None = None) -> None:
        import cv2

        code = render_qr(text)
        style = style or self._rng.choice(["phone", "paper", "phone"])
        if style == "phone":  # a lit screen: a dark bezel, the code slightly bluish-grey
            code = (code.astype(np.float32) * 0.85 + 25).astype(np.uint8)
            code = cv2.copyMakeBorder(code, 30, 60, 12, 12, cv2.BORDER_CONSTANT, value=20)
        else:  # paper: less contrast, a fold shadow
            code = (code.astype(np.float32) * 0.8 + 35).astype(np.uint8)
        h, w = code.shape
        size = self._rng.uniform(0.42, 0.62) * min(self.width, self.height)
        cx = self._rng.uniform(0.4, 0.6) * self.width
        cy = self._rng.uniform(0.4, 0.6) * self.height
        tilt = size * self._rng.uniform(0.0, 0.12)
        dst = np.float32([[cx - size / 2 + tilt, cy - size / 2], [cx + size / 2 - tilt, cy - size / 2 + tilt / 2],
                          [cx + size / 2, cy + size / 2], [cx - size / 2, cy + size / 2 - tilt / 2]])
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        matrix = cv2.getPerspectiveTransform(src, dst)
        glare = None
        if self._rng.random() < 0.5:
            gy, gx = np.mgrid[0:self.height, 0:self.width]
            gx0, gy0 = cx + self._rng.uniform(-size / 3, size / 3), cy + self._rng.uniform(-size / 3, size / 3)
            glare = (60 * np.exp(-((gx - gx0) ** 2 + (gy - gy0) ** 2) / (2 * (size / 5) ** 2))).astype(np.int16)
        with self._lock:
            self._scene = {"code": code, "matrix": matrix, "glare": glare, "blur": self._rng.choice([0, 0, 3]),
                           "text": text}

    def show_nothing(self) -> None:
        with self._lock:
            self._scene = None

    def set_stalled(self, stalled: bool) -> None:
        self._stalled = stalled
        if stalled:
            self._unstall.clear()
        else:
            self._unstall.set()

    @property
    def showing(self) -> str | None:
        scene = self._scene
        return None if scene is None else scene["text"]

    # -- FrameSource ---------------------------------------------------------------------
    def _grab(self) -> np.ndarray | None:
        import cv2

        while self._stalled and not self._stop.is_set():
            self._unstall.wait(0.2)  # a hung read: nothing comes back
        self._tick += 1
        with self._lock:
            scene = self._scene
        frame = self._background.copy()
        if scene is not None:
            shake = np.float32([[1, 0, self._rng.uniform(-1.5, 1.5)], [0, 1, self._rng.uniform(-1.5, 1.5)],
                                [0, 0, 1]])
            matrix = shake @ scene["matrix"]
            mask = cv2.warpPerspective(np.full(scene["code"].shape, 255, np.uint8), matrix,
                                       (self.width, self.height), flags=cv2.INTER_NEAREST)
            warped = cv2.warpPerspective(scene["code"], matrix, (self.width, self.height), flags=cv2.INTER_LINEAR)
            np.copyto(frame, warped, where=mask > 0)
            if scene["blur"]:
                frame = cv2.GaussianBlur(frame, (scene["blur"], scene["blur"]), 0)
        noisy = frame.astype(np.int16) + self._noise[self._tick % len(self._noise)]
        if scene is not None and scene["glare"] is not None:
            noisy += scene["glare"]
        return cv2.cvtColor(noisy.clip(0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
