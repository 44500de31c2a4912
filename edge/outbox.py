"""The durable outbox: every event is written here before the gate acts on it.

One SQLite file in WAL mode with `synchronous=FULL`, so a committed event survives a
power cut. All writes go through one connection guarded by one lock (one writer).
`seq` is allocated inside the same transaction that stores the event, from a counter
row that is never rewound, so the per-gate sequence is gap-free across restarts and
pruning. Rows are marked delivered only when the broker acknowledged them; delivered
rows are pruned after a while (they hold health data), undelivered rows never are.
"""

from __future__ import annotations

import json
import logging
import pathlib
import sqlite3
import threading
import time

from checkgate.protocol import EVENT_SCHEMA, new_event_id, utc_iso

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created REAL NOT NULL,
    payload TEXT NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(Exception):
    """The event could not be recorded; the gate must not act on the decision."""


class OutboxFull(OutboxError):
    pass


class Outbox:
    def __init__(self, path: str | pathlib.Path, gate_id: str, max_pending: int = 100_000,
                 warn_fraction: float = 0.8, keep_delivered_s: float = 24 * 3600):
        self.path = pathlib.Path(path)
        self.gate_id = gate_id
        self.max_pending = max_pending
        self.warn_fraction = warn_fraction
        self.keep_delivered_s = keep_delivered_s
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._pending = self._count_pending()
        self._last_seq = self._read_last_seq()
        self.new_event = threading.Event()  # set on every append, for the publisher

    # -- writing ----------------------------------------------------------------

    def append(self, event: dict) -> dict:
        """Give the event its id, seq and timestamp, store it durably, return it.

        Raises OutboxError (OutboxFull when the pending limit is reached) so the caller
        can fail safe instead of acting on an unrecorded decision.
        """
        with self._lock:
            if self._pending >= self.max_pending:
                raise OutboxFull(f"outbox holds {self._pending} undelivered events (limit {self.max_pending})")
            full = {"schema": EVENT_SCHEMA, "event_id": event.get("event_id") or new_event_id(),
                    "gate_id": self.gate_id, "seq": 0, "ts": event.get("ts") or utc_iso()}
            full.update({k: v for k, v in event.items() if k not in full})
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq = self._last_seq + 1
                full["seq"] = seq
                self._db.execute(
                    "INSERT INTO outbox (seq, event_id, type, created, payload) VALUES (?, ?, ?, ?, ?)",
                    (seq, full["event_id"], full.get("type", "unknown"), time.time(),
                     json.dumps(full, ensure_ascii=False, separators=(",", ":"))))
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),))
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise OutboxError(f"cannot record event: {err}") from err
            self._last_seq = seq
            self._pending += 1
        self.new_event.set()
        return full

    def mark_delivered(self, seqs: list[int]) -> int:
        if not seqs:
            return 0
        now = time.time()
        with self._lock:
            try:
                # a delivered mark lost to a power cut only means one harmless resend (the server
                # dedups by event_id), so these commits skip the fsync that events get
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                changed = 0
                for start in range(0, len(seqs), 500):
                    chunk = seqs[start:start + 500]
                    cur = self._db.execute(
                        f"UPDATE outbox SET delivered_at = ? WHERE delivered_at IS NULL AND seq IN "
                        f"({','.join('?' * len(chunk))})", (now, *chunk))
                    changed += cur.rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                logger.error("cannot mark %d events delivered (they will be sent again): %s", len(seqs), err)
                return 0
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self._pending -= changed
            return changed

    def mark_undelivered(self, first_seq: int, last_seq: int) -> int:
        """Queue a seq range again (the centre asked for it); returns how many rows were still kept."""
        with self._lock:
            try:
                cur = self._db.execute("UPDATE outbox SET delivered_at = NULL WHERE delivered_at IS NOT NULL "
                                       "AND seq BETWEEN ? AND ?", (first_seq, last_seq))
            except sqlite3.Error as err:
                logger.error("cannot queue seq %d-%d again: %s", first_seq, last_seq, err)
                return 0
            self._pending += cur.rowcount
        self.new_event.set()
        return cur.rowcount

    def prune(self, now: float | None = None) -> int:
        """Delete delivered rows older than `keep_delivered_s`; never undelivered ones."""
        cutoff = (now or time.time()) - self.keep_delivered_s
        with self._lock:
            try:
                cur = self._db.execute("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                                       (cutoff,))
                return cur.rowcount
            except sqlite3.Error as err:
                logger.warning("prune failed: %s", err)
                return 0

    # -- reading ----------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[tuple[int, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT seq, payload FROM outbox WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit)).fetchall()

    def recent_payloads(self, since: float) -> list[tuple[int, str]]:
        with self._lock:
            return self._db.execute("SELECT seq, payload FROM outbox WHERE created >= ? ORDER BY seq",
                                    (since,)).fetchall()

    def event_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT event_id FROM outbox ORDER BY seq")]

    def stats(self) -> dict:
        with self._lock:
            delivered = self._db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL").fetchone()[0]
            oldest = self._db.execute("SELECT MIN(created) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
        return {
            "decided": self._last_seq,
            "delivered_kept": delivered,
            "pending": self._pending,
            "last_seq": self._last_seq,
            "max_pending": self.max_pending,
            "oldest_pending_age_s": None if oldest is None else round(time.time() - oldest, 1),
            "nearly_full": self.nearly_full,
        }

    @property
    def nearly_full(self) -> bool:
        """Past the warning fraction of the pending limit (an alarm before it fills)."""
        return self._pending >= self.warn_fraction * self.max_pending

    @property
    def pending_count(self) -> int:
        return self._pending

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals --------------------------------------------------------------

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _count_pending(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]

    def _read_last_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        stored = int(row[0]) if row else 0
        highest = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
        return max(stored, highest)


def read_outbox_event_ids(path: str | pathlib.Path) -> list[str]:
    """All event ids recorded in an outbox file, read-only (for independent counting)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT event_id FROM outbox ORDER BY seq")]
    finally:
        db.close()
