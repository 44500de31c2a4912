"""What the gate trusts, and how new signed lists replace it.

Holds the issuer keys, the status list and the allow-list behind one `Verifier`, and
applies signed control documents arriving on the retained control topics: each one is
verified against the control keys, must be newer than what the gate has, and replaces
the old list in one assignment. Anything else is rejected, logged and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import threading

from checkgate import protocol

logger = logging.getLogger(__name__)


class CredentialStore:
    def __init__(self, section, base_dir: pathlib.Path, max_status_age_s: float | None = None,
                 state_dir: pathlib.Path | None = None):
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
        self._held: dict[str, bytes] = {}  # the accepted document bytes, per kind
        self.state_dir = state_dir
        self._restore()

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
        if topic == protocol.STATUS_TOPIC:
            kind = "status"
        elif topic == protocol.TRUST_TOPIC:
            kind = "trust"
        elif topic.startswith(f"{protocol.PREFIX}/control/") and topic.endswith("/config"):
            kind = "config"
        else:
            return "ignored: not a control topic"
        if not payload:
            return "empty (retained message cleared); kept current list"
        with self._lock:
            if self._held.get(kind) == payload:
                return f"unchanged: {kind} v{self._held_version(kind)} already applied"
            return self._apply(kind, payload, persist=True)

    def _held_version(self, kind: str):
        doc = {"status": self.status, "trust": self.trust, "config": self.config_doc}[kind]
        return getattr(doc, "version", None)

    def _apply(self, kind: str, payload: bytes, persist: bool) -> str:
        from edge.credentials.signed import DocumentRejected, verify_document
        from edge.credentials.status import StatusList
        from edge.credentials.trust import TrustList

        try:
            if kind == "status":
                current = self.status.version + 1 if self.status is not None else None
                new = StatusList.from_document(payload, self.control_keys, min_version=current)
                self.status = new
                self.verifier.set_status(new)
                result = f"status list v{new.version} applied ({len(new)} entries)"
            elif kind == "trust":
                current = self.trust.version + 1 if self.trust.version is not None else None
                new = TrustList.from_document(payload, self.control_keys, min_version=current)
                if len(new) == 0:
                    raise DocumentRejected("trust list with no keys")
                self.trust = new
                self.verifier.set_trust(new)
                result = f"trust list v{new.version} applied ({len(new)} keys)"
            else:
                current = self.config_doc.version + 1 if self.config_doc else None
                self.config_doc = verify_document(payload, self.control_keys, "config", current)
                result = f"config v{self.config_doc.version} accepted"
        except (DocumentRejected, ValueError) as err:
            reason = getattr(err, "reason", None) or str(err)
            self.rejected[reason[:60]] = self.rejected.get(reason[:60], 0) + 1
            logger.warning("control document (%s) rejected: %s", kind, reason)
            return f"rejected: {reason}"
        self._held[kind] = payload
        if persist:
            self._save(kind, payload)
        return result

    # -- the newest accepted documents survive a restart ---------------------------------
    # Without this, a restarted gate would accept any validly signed list first, including
    # an older one put back as the retained message (un-revoking passes).

    def _save(self, kind: str, payload: bytes) -> None:
        if self.state_dir is None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / f"{kind}.signed.tmp"
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.state_dir / f"{kind}.signed")
        except OSError as err:
            logger.error("cannot keep the %s document on disk: %s", kind, err)

    def _restore(self) -> None:
        if self.state_dir is None:
            return
        for kind in ("trust", "status", "config"):
            path = self.state_dir / f"{kind}.signed"
            if not path.exists():
                continue
            try:
                payload = path.read_bytes()
            except OSError as err:
                logger.error("cannot read the kept %s document: %s", kind, err)
                continue
            logger.info("restored %s document: %s", kind, self._apply(kind, payload, persist=False))
