"""The scan loop: newest camera frame -> decoding chain -> de-duplication -> a callback.

One thread per camera. It always takes the newest frame (never a backlog), so a code
that becomes readable in frame N leaves the loop while frame N+1 is being captured,
provided decoding stays under one frame interval (see bench/bench_qr.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from drivers.qr.chain import DecodedCode, QrDecoder
from drivers.qr.dedupe import CodeDeduper

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ScanResult:
    codes: list[DecodedCode]  # fresh codes only (the deduper has already run)
    frame_seq: int
    frame_ts: float  # monotonic capture time of the frame they were found in
    decoded_at: float  # monotonic time the decode finished
    decode_ms: float
    frame_meta: dict | None = None


class ScanLoop:
    """Runs `decoder` on the newest frame of `source`; calls `on_result` for fresh codes."""

    def __init__(self, source, on_result: Callable[[ScanResult], None], decoder: QrDecoder | None = None,
                 deduper: CodeDeduper | None = None, stop_event: threading.Event | None = None):
        self.source = source
        self.on_result = on_result
        self.decoder = decoder or QrDecoder()
        self.deduper = deduper or CodeDeduper()
        self.stop_event = stop_event or threading.Event()
        self.frames = 0
        self.busy_s = 0.0  # wall time spent decoding
        self.cpu_s = 0.0  # CPU time of this thread spent decoding: its share of one core
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="qr-scan", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        last_seq = None
        while not self.stop_event.is_set():
            frame = self.source.latest(timeout=0.2)
            if frame is None or frame.seq == last_seq:
                continue
            last_seq = frame.seq
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                codes = self.decoder.decode(frame.image)
            except ValueError as err:  # a malformed frame from a driver: skip it, say why
                logger.warning("scan: skipped frame %d: %s", frame.seq, err)
                continue
            elapsed = time.perf_counter() - t0
            self.frames += 1
            self.busy_s += elapsed
            self.cpu_s += time.thread_time() - c0
            fresh = self.deduper.fresh(codes, frame.ts)
            if fresh:
                result = ScanResult(fresh, frame.seq, frame.ts, time.monotonic(), elapsed * 1000, frame.meta)
                try:
                    self.on_result(result)
                except Exception:
                    logger.exception("scan: result handler failed")
