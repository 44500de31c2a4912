"""Allow-list ids: existing badges (plain ids in a barcode/QR) imported from CSV.

A badge id proves nothing by itself (it can be copied), so these are meant for
attended gates or paired with another clause in the policy. Each badge maps to a
pseudonymous subject: the one given in the CSV, or a hash of the badge id, so events
never carry the badge number.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
import logging
import os
import pathlib
import re

logger = logging.getLogger(__name__)

BADGE_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
SUBJECT_RE = re.compile(r"^[A-Za-z0-9._:-]{1,40}$")
KINDS = ("resident", "worker", "visitor", "vehicle")


class AllowListError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class AllowEntry:
    subject: str
    kind: str
    zones: tuple[str, ...] = ()


def pseudonym(badge_id: str, key: bytes | None = None) -> str:
    """A stable subject id for a badge. Badge numbers can be short or even ID-card numbers,
    which a plain hash does not hide (they can be enumerated): give a site `key` to make
    it a keyed hash (HMAC-SHA-256) that only the holder of the key can recompute."""
    if key:
        return "b_" + hmac.new(key, badge_id.encode(), hashlib.sha256).hexdigest()[:16]
    return "b_" + hashlib.sha256(badge_id.encode()).hexdigest()[:12]


class AllowList:
    def __init__(self, entries: dict[str, AllowEntry] | None = None):
        self.entries = dict(entries or {})
        self.rejected_rows: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, badge_id: str) -> AllowEntry | None:
        return self.entries.get(badge_id)

    @staticmethod
    def looks_like_badge(payload: str) -> bool:
        return bool(BADGE_RE.match(payload))

    @classmethod
    def from_csv_text(cls, text: str, source: str = "csv", key: bytes | None = None) -> AllowList:
        """Columns: badge_id[, subject][, kind][, zones (';'-separated)]; a header row is optional."""
        out = cls()
        # Line by line, so one broken line (a stray quote, a bare CR) costs that row, not the file.
        for lineno, line in enumerate(text.splitlines(), start=1):
            try:
                row = [c.strip() for c in next(csv.reader([line]), [])]
            except csv.Error as err:
                logger.warning("%s line %d rejected: %s", source, lineno, err)
                out.rejected_rows.append((lineno, f"not CSV: {err}"))
                continue
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if lineno == 1 and row[0].lower() in ("badge_id", "badge", "id"):
                continue
            badge = row[0]
            subject = row[1] if len(row) > 1 and row[1] else pseudonym(badge, key)
            kind = row[2] if len(row) > 2 and row[2] else "resident"
            zones = tuple(z for z in (row[3].split(";") if len(row) > 3 else []) if z)
            problem = None
            if not BADGE_RE.match(badge):
                problem = "badge id must be 4-64 characters [A-Za-z0-9_-]"
            elif not SUBJECT_RE.match(subject):
                problem = "bad subject id"
            elif kind not in KINDS:
                problem = f"kind must be one of {', '.join(KINDS)}"
            elif badge in out.entries:
                problem = "duplicate badge id"
            if problem:
                logger.warning("%s line %d rejected: %s", source, lineno, problem)
                out.rejected_rows.append((lineno, problem))
                continue
            out.entries[badge] = AllowEntry(subject=subject, kind=kind, zones=zones)
        logger.info("allow-list %s: %d badges, %d rows rejected", source, len(out.entries), len(out.rejected_rows))
        return out

    @classmethod
    def from_csv(cls, path: str | os.PathLike, key: bytes | None = None) -> AllowList:
        path = pathlib.Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise AllowListError(f"{path}: cannot read allow-list: {err}") from None
        return cls.from_csv_text(text, source=str(path.name), key=key)
