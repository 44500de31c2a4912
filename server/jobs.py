"""Background jobs of the server: one thread each, run every interval until stopped."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class PeriodicJob:
    """Calls `run_once()` every `interval_s` on its own thread; a failed round is logged and retried."""

    name = "job"
    run_at_start = False  # a first round as soon as the job starts, or only after one interval

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def run_once(self) -> object:
        raise NotImplementedError

    def _run(self) -> None:
        if self.run_at_start:
            self._round()
        while not self._stop.wait(self.interval_s):
            self._round()

    def _round(self) -> None:
        try:
            self.run_once()
        except Exception:
            logger.exception("%s round failed; will try again", self.name)
