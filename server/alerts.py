"""Live alerts: one reader of newly stored alert events per server process.

Every open dashboard used to poll the database on its own; with many volunteers'
and administrators' screens open that was many identical queries a second. The
feed reads new alerts once for all of them: when this process's ingest stored a
batch holding an alert (woken at once), and every `interval_s` in any case, for
the events the other instances on the shared subscription stored.

Event ids are handed out when a row is inserted but become visible when its
transaction commits, so with several writers a smaller id can appear after a
larger one. The feed therefore re-reads a margin of ids below the newest it has
seen and keeps the ids it has already delivered, instead of trusting id order.
"""

from __future__ import annotations

import collections
import logging
import threading

logger = logging.getLogger(__name__)

# ids below the newest seen that are read again: more than one ingest batch (at most
# 20,000 rows), so a batch committed out of id order is still found
REORDER_MARGIN = 20_000


class AlertFeed:
    """New alert rows in the order this process saw them, for any number of live streams."""

    def __init__(self, store, interval_s: float = 0.5, keep: int = 2000):
        self.store = store
        self.interval_s = interval_s
        self._rows: collections.deque = collections.deque(maxlen=keep)  # (position, row)
        self._delivered: set[int] = set()
        self._position = 0  # how many alerts this feed has seen so far
        self._newest_id: int | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.reads = 0  # database reads so far (tests and diagnostics)

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Start reading (idempotent; the first stream starts it if the app did not)."""
        with self._start_lock:
            if self._thread is not None:
                return
            self._newest_id = self.store.last_event_id()
            # what is already stored is history (the page shows it), not news
            self._delivered = {r.id for r in self._read_window(max(0, self._newest_id - REORDER_MARGIN))}
            self._thread = threading.Thread(target=self._run, name="alert-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def notify(self) -> None:
        """Something worth reading was stored (called by the ingest writer)."""
        self._wake.set()

    # --- for streams -------------------------------------------------------------

    @property
    def position(self) -> int:
        """Where a stream that wants only alerts from now on starts."""
        return self._position

    def rows_after(self, position: int) -> tuple[list, int]:
        """Rows seen after `position` (never blocks); returns (rows, new position)."""
        with self._lock:
            if self._position == position:
                return [], position
            return [row for pos, row in self._rows if pos > position], self._position

    # --- the reader -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.read_once()
            except Exception:
                logger.exception("reading new alerts failed; will try again")

    def _read_window(self, after: int) -> list:
        """Every alert row with an id above `after`, in id order."""
        out = []
        while True:
            self.reads += 1
            rows = self.store.alerts_after(after, limit=REORDER_MARGIN)
            out += rows
            if len(rows) < REORDER_MARGIN:
                return out
            after = rows[-1].id

    def read_once(self) -> int:
        """Read alerts stored since the last read; returns how many were new."""
        newest = self._newest_id or 0
        fresh = [r for r in self._read_window(max(0, newest - REORDER_MARGIN)) if r.id not in self._delivered]
        if not fresh:
            return 0
        with self._lock:
            for row in fresh:
                self._position += 1
                self._rows.append((self._position, row))
                self._delivered.add(row.id)
            newest = max(newest, max(r.id for r in fresh))
            self._newest_id = newest
            # ids this far below the newest are not read again
            self._delivered = {i for i in self._delivered if i > newest - REORDER_MARGIN}
        return len(fresh)
