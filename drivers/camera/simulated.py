"""A simulated camera: a gate scene, and a pass held up to it on a phone or on paper.

`show_code(text)` renders the QR code once (segno), puts it on a phone screen (dark
bezel, status bar, slightly blue and dimmer than white) or a paper card, and picks this
"person's" pose: perspective tilt, distance, glare spot, focus blur. Every frame then
only warps that pre-rendered card into the pre-rendered background with a little hand
shake and adds sensor noise from pre-computed planes, so several simulated gates run
at 10-30 fps beside their decoders. `set_stalled(True)` makes reads hang the way a
vanished USB camera does, to exercise the watchdog; frames carry `meta["code"]` (what
the frame shows) and `meta["scene_frame"]` (0 for the first frame showing that code) so
tests and benchmarks can check decodes and latency.
"""

from __future__ import annotations

import random
import threading

import numpy as np

from drivers.camera.capture import FrameReader, FrameSource

STYLES = ("phone", "paper")


def render_qr(text: str, module_px: int = 4, border: int = 4, error: str = "m") -> np.ndarray:
    """The code as a gray uint8 image: black modules on white, with a quiet zone."""
    import segno

    qr = segno.make_qr(text, error=error)
    matrix = np.array(qr.matrix, dtype=np.uint8)  # 1 = dark module
    image = np.where(matrix > 0, 0, 255).astype(np.uint8)
    image = np.pad(image, border, constant_values=255)
    return np.kron(image, np.ones((module_px, module_px), dtype=np.uint8))


def _phone_card(code: np.ndarray, rng: random.Random) -> np.ndarray:
    """A lit phone screen showing the code: bezel, status bar, a little text below."""
    import cv2

    screen_white = rng.randint(205, 235)  # screens are dimmer than paper under daylight
    ink = rng.randint(15, 45)
    lit = np.where(code > 127, screen_white, ink).astype(np.uint8)
    h, w = lit.shape
    pad = w // 8
    screen = np.full((h + 5 * pad, w + 2 * pad), screen_white, np.uint8)
    screen[: pad // 2] = rng.randint(60, 110)  # status bar
    screen[2 * pad: 2 * pad + h, pad: pad + w] = lit
    for i in range(2):  # lines of text under the code ("green code", a date)
        y = 2 * pad + h + pad // 2 + i * pad
        cv2.rectangle(screen, (pad + i * pad, y), (w - i * pad, y + pad // 3), ink + 60, -1)
    bezel = max(4, w // 30)
    return cv2.copyMakeBorder(screen, 3 * bezel, 3 * bezel, bezel, bezel, cv2.BORDER_CONSTANT, value=18)


def _paper_card(code: np.ndarray, rng: random.Random) -> np.ndarray:
    """A printed pass card: off-white paper, grey toner, a fold shading one half."""
    paper, toner = rng.randint(190, 235), rng.randint(30, 70)
    card = np.where(code > 127, paper, toner).astype(np.uint8)
    h, w = card.shape
    margin = w // 10
    card = np.pad(card, margin, constant_values=paper)
    fold = rng.randint(h // 3, 2 * h // 3) + margin
    card[fold:] = (card[fold:].astype(np.int16) - rng.randint(10, 35)).clip(0, 255).astype(np.uint8)
    return card


class _Scene:
    """What one simulated person holds up: the card and its pose, computed once."""

    def __init__(self, text: str, style: str, width: int, height: int, rng: random.Random):
        import cv2

        self.text, self.style = text, style
        self.frames_shown = 0  # 0 in meta["scene_frame"] marks the first frame showing this code
        code = render_qr(text)
        self.card = _phone_card(code, rng) if style == "phone" else _paper_card(code, rng)
        ch, cw = self.card.shape
        # the code's own side on the image: 35-60 % of the frame height (0.3-0.6 m from the lens)
        code_side = rng.uniform(0.35, 0.6) * min(width, height)
        scale = code_side / code.shape[1]
        hw, hh = cw * scale / 2, ch * scale / 2
        cx = rng.uniform(0.42, 0.58) * width
        cy = rng.uniform(0.45, 0.55) * height
        tilt = rng.uniform(-0.12, 0.12) * code_side  # the hand is never square to the lens
        lean = rng.uniform(-0.08, 0.08) * code_side
        dst = np.float32([[cx - hw + tilt, cy - hh + lean], [cx + hw - tilt, cy - hh - lean],
                          [cx + hw + tilt / 2, cy + hh], [cx - hw - tilt / 2, cy + hh]])
        src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
        self.matrix = cv2.getPerspectiveTransform(src, dst)
        self.blur = rng.choice((0, 0, 3, 3, 5)) if style == "phone" else rng.choice((0, 3))
        self.glare = None
        if rng.random() < 0.6:  # a lamp or the sky reflected in the screen or laminate
            gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
            x0, y0 = cx + rng.uniform(-0.4, 0.4) * hw, cy + rng.uniform(-0.4, 0.4) * hh
            radius = code_side * rng.uniform(0.08, 0.2)
            strength = rng.uniform(40, 90)
            self.glare = (strength * np.exp(-((gx - x0) ** 2 + (gy - y0) ** 2) / (2 * radius ** 2))).astype(np.uint8)


class SimulatedCamera(FrameSource):
    """A frame source with show_code(text), show_nothing() and set_stalled(bool) controls."""

    name = "simcam"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0, seed: int | None = None, **kw):
        import cv2

        super().__init__(fps=fps, **kw)
        self.width, self.height = width, height
        self._rng = random.Random(seed)
        np_rng = np.random.default_rng(seed)
        self._scene: _Scene | None = None
        self._scene_lock = threading.Lock()
        self._flowing = threading.Event()  # cleared while stalled
        self._flowing.set()
        self.background = self._render_background(np_rng)
        # sensor noise: a few pre-computed planes split into + and - parts for saturating adds
        noise = [np_rng.normal(0, 5, (height, width)) for _ in range(3)]
        self._noise = [(n.clip(0, 255).astype(np.uint8), (-n).clip(0, 255).astype(np.uint8)) for n in noise]
        self._tick = 0
        self._cv2 = cv2

    def _render_background(self, np_rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = self.height, self.width
        ramp = np.linspace(70, 150, h, dtype=np.float32)[:, None]  # sky/lamp above, ground below
        base = np.repeat(ramp, w, axis=1)
        base += cv2.GaussianBlur(np_rng.normal(0, 20, (h, w)).astype(np.float32), (0, 0), 9)
        image = base.clip(0, 255).astype(np.uint8)
        for x in range(w // 12, w, w // 6):  # the gate's bars and a barrier
            cv2.rectangle(image, (x, 0), (x + w // 60, h), 55, -1)
        cv2.rectangle(image, (0, int(h * 0.72)), (w, int(h * 0.75)), 190, -1)
        return image

    # -- controls ------------------------------------------------------------------------
    def show_code(self, text: str, style: str | None = None) -> None:
        """From now on frames show `text` as a QR code on a phone or paper, posed at random."""
        if style is not None and style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}")
        scene = _Scene(text, style or self._rng.choice(("phone", "phone", "paper")), self.width, self.height,
                       self._rng)
        with self._scene_lock:
            self._scene = scene

    def show_nothing(self) -> None:
        with self._scene_lock:
            self._scene = None

    def set_stalled(self, stalled: bool) -> None:
        """True: reads hang (like an unplugged USB camera) until set back to False."""
        if stalled:
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def showing(self) -> str | None:
        scene = self._scene
        return None if scene is None else scene.text

    def describe(self) -> str:
        return f"simulated {self.width}x{self.height}@{self.fps:g}"

    # -- rendering -------------------------------------------------------------------------
    def snapshot(self) -> np.ndarray:
        """A frame of what is shown now, rendered on the caller's thread (tests, benchmarks)."""
        with self._scene_lock:
            scene = self._scene
        return self.render(scene)

    def render(self, scene: _Scene | None) -> np.ndarray:
        """One BGR frame of `scene` (None: the empty gate)."""
        cv2 = self._cv2
        self._tick += 1
        frame = self.background.copy()
        if scene is not None:
            shake = np.float32([[1, 0, self._rng.uniform(-2, 2)], [0, 1, self._rng.uniform(-2, 2)], [0, 0, 1]])
            cv2.warpPerspective(scene.card, shake @ scene.matrix, (self.width, self.height), dst=frame,
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
            if scene.blur:
                cv2.GaussianBlur(frame, (scene.blur, scene.blur), 0, dst=frame)
            if scene.glare is not None:
                cv2.add(frame, scene.glare, dst=frame)
        plus, minus = self._noise[self._tick % len(self._noise)]
        cv2.add(frame, plus, dst=frame)
        cv2.subtract(frame, minus, dst=frame)
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)

    def _make_reader(self) -> FrameReader:
        return _SimReader(self)


class _SimReader(FrameReader):
    paced = True

    def __init__(self, camera: SimulatedCamera):
        self.camera = camera
        self._meta: dict | None = None

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        cam = self.camera
        while not cam._flowing.wait(0.2):  # a hung read: nothing comes back while stalled
            if cam._stop.is_set():
                return None
        with cam._scene_lock:
            scene = cam._scene
        if scene is None:
            self._meta = {"code": None}
        else:
            self._meta = {"code": scene.text, "scene_frame": scene.frames_shown}
            scene.frames_shown += 1
        return cam.render(scene)

    def read_meta(self) -> dict | None:
        return self._meta
