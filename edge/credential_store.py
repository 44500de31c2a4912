"""What the gate trusts, and how new signed lists replace it.

Holds the issuer keys, the status list and the allow-list behind one `Verifier`, and
applies signed control documents arriving on the retained control topics: each one is
verified against the control keys, must be newer than what the gate has, and replaces
the old list in one assignment. Anything else is rejected, logged and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import pathlib
import threading

from checkgate import protocol

logger = logging.getLogger(__name__)


class CredentialStore:
    def __init__(self, section, base_dir: pathlib.Path, max_status_age_s: float | None = None):
        from edge.credentials import keys as keyfiles
        from edge.credentials.allowlist import AllowList
        from edge.credentials.status import StatusList
        from edge.credentials.trust import TrustList
        from edge.credentials.verifier import Verifier

        resolve = lambda p: p if pathlib.Path(p).is_absolute() else str(base_dir / p)  # noqa: E731
        self.trust = TrustList.from_key_files([resolve(p) for p in section.trust_keys])
        control_files = section.control_keys or section.trust_keys
        self.control_keys = {keyfiles.kid_of_file(resolve(p)): keyfiles.load_public_key(resolve(p))
                             for p in control_files}
        self.status = None
        if section.status_list:
            self.status = StatusList.from_file(resolve(section.status_list), self.control_keys)
        allow = AllowList.from_csv(resolve(section.allowlist_csv)) if section.allowlist_csv else None
        dcc_trust = None
        if section.dcc_trust:
            from edge.credentials.dcc import DccTrustStore

            dcc_trust = DccTrustStore.from_file(resolve(section.dcc_trust))
        self.verifier = Verifier(self.trust, self.status, allow, dcc_trust, max_status_age_s=max_status_age_s)
        self.config_doc = None
        self.rejected: dict[str, int] = {}
        self._lock = threading.Lock()

    def verify(self, payload: str, now: dt.datetime):
        return self.verifier.verify(payload, now)

    def list_status(self, now: dt.datetime) -> dict:
        def info(lst):
            if lst is None:
                return None
            age = lst.age_s(now)
            return {"version": lst.version, "age_s": None if age is None else round(age)}

        return {"trust": info(self.trust), "status": info(self.status), "rejected": dict(self.rejected)}

    def apply_control(self, topic: str, payload: bytes) -> str:
        """Verify and apply one control document; returns what happened (for logs/health)."""
        from edge.credentials.signed import DocumentRejected, verify_document
        from edge.credentials.status import StatusList
        from edge.credentials.trust import TrustList

        if not payload:
            return "empty (retained message cleared); kept current list"
        with self._lock:
            try:
                if topic == protocol.STATUS_TOPIC:
                    current = self.status.version + 1 if self.status is not None else None
                    new = StatusList.from_document(payload, self.control_keys, min_version=current)
                    self.status = new
                    self.verifier.set_status(new)
                    return f"status list v{new.version} applied ({len(new)} entries)"
                if topic == protocol.TRUST_TOPIC:
                    current = self.trust.version + 1 if self.trust.version is not None else None
                    new = TrustList.from_document(payload, self.control_keys, min_version=current)
                    if len(new) == 0:
                        raise DocumentRejected("trust list with no keys")
                    self.trust = new
                    self.verifier.set_trust(new)
                    return f"trust list v{new.version} applied ({len(new)} keys)"
                if topic.endswith("/config"):
                    current = self.config_doc.version + 1 if self.config_doc else None
                    self.config_doc = verify_document(payload, self.control_keys, "config", current)
                    return f"config v{self.config_doc.version} accepted"
                return "ignored: not a control topic"
            except (DocumentRejected, ValueError) as err:
                reason = getattr(err, "reason", None) or str(err)
                self.rejected[reason[:60]] = self.rejected.get(reason[:60], 0) + 1
                logger.warning("control document on %s rejected: %s", topic, reason)
                return f"rejected: {reason}"
