"""The status list: subjects whose health status is yellow or red, or who are revoked.

Signed and versioned by the server (document type "status"); a subject not listed is
green. The gate keeps the issue time so the policy can treat an old list as stale.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.credentials.signed import SignedDocument, verify_document

logger = logging.getLogger(__name__)

DOC_TYPE = "status"
STATUSES = ("yellow", "red", "revoked")


class StatusListError(ValueError):
    pass


class StatusList:
    def __init__(self, entries: Mapping[str, str] | None = None, version: int = 0,
                 issued_at: dt.datetime | None = None, kid: str | None = None):
        entries = dict(entries or {})
        bad = {s: v for s, v in entries.items() if v not in STATUSES or not isinstance(s, str)}
        if bad:
            raise StatusListError(f"status list: unknown status for {len(bad)} subject(s), e.g. {next(iter(bad.items()))}")
        self.entries = entries
        self.version = version
        self.issued_at = issued_at or dt.datetime.now(dt.UTC)
        self.kid = kid

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, subject: str) -> tuple[str, bool]:
        """(health colour, revoked) for a subject; unlisted subjects are green."""
        status = self.entries.get(subject)
        if status == "revoked":
            return "green", True
        return (status or "green"), False

    def age_s(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (now - self.issued_at).total_seconds()

    @classmethod
    def from_signed(cls, doc: SignedDocument) -> StatusList:
        subjects = doc.body.get("subjects", {})
        if not isinstance(subjects, dict):
            raise StatusListError("status list body: 'subjects' must be a map")
        return cls(subjects, version=doc.version, issued_at=doc.issued_at, kid=doc.kid)

    @classmethod
    def from_document(cls, data: bytes, signer_keys: Mapping[str, ed25519.Ed25519PublicKey],
                      min_version: int | None = None) -> StatusList:
        return cls.from_signed(verify_document(data, signer_keys, DOC_TYPE, min_version))

    @classmethod
    def from_file(cls, path: str | os.PathLike, signer_keys: Mapping[str, ed25519.Ed25519PublicKey],
                  min_version: int | None = None) -> StatusList:
        return cls.from_document(pathlib.Path(path).read_bytes(), signer_keys, min_version)


def status_body(entries: Mapping[str, str]) -> dict:
    """The body of a status document for `sign_document("status", ...)`."""
    return {"subjects": dict(entries)}
