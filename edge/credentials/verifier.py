"""One entry point for every code a gate reads: dispatch on the payload, verify offline.

`Verifier.verify()` never raises on bad input: whatever the camera hands over, the
result is a `VerifiedCredential`, with `valid=False` and stable reason codes when the
code must not be honoured. The decision itself (zones, windows, statuses, staleness)
is the policy's job, from the fields filled in here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from edge.credentials import passes
from edge.credentials.allowlist import AllowList
from edge.credentials.status import StatusList
from edge.credentials.trust import TrustList
from edge.types import VerifiedCredential

logger = logging.getLogger(__name__)

DCC_PREFIX = "HC1:"
MAX_PAYLOAD_CHARS = 8192


def _invalid(kind: str, reason: str, **fields) -> VerifiedCredential:
    return VerifiedCredential(valid=False, kind=kind, reasons=(reason,), **fields)


class Verifier:
    def __init__(self, trust: TrustList, status: StatusList | None = None, allowlist: AllowList | None = None,
                 dcc_trust=None, clock: Callable[[], dt.datetime] | None = None,
                 max_status_age_s: float | None = None, skew_s: int = 120):
        self.trust = trust
        self.status = status
        self.allowlist = allowlist
        self.dcc_trust = dcc_trust  # edge.credentials.dcc.DccTrustStore
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.max_status_age_s = max_status_age_s
        self.skew_s = skew_s  # gate clocks drift: tolerance on not-before/expiry

    # Lists are swapped whole when a newer signed version arrives (assignment is atomic).
    def set_trust(self, trust: TrustList) -> None:
        """Swap in a verified trust list. EU DCC signer certificates it carries replace the
        current DCC signers (a DSC is revoked by leaving it out); a list without any keeps them."""
        if trust.dcc_certs:
            from edge.credentials.dcc import DccTrustStore

            self.dcc_trust = DccTrustStore.with_certs(trust.dcc_certs, like=self.dcc_trust, issued_at=trust.issued_at)
        self.trust = trust

    def set_status(self, status: StatusList) -> None:
        self.status = status

    def verify(self, payload: str, now: dt.datetime | None = None) -> VerifiedCredential:
        now = now or self.clock()
        if now.tzinfo is None:  # a naive time is taken as UTC rather than the host's zone
            now = now.replace(tzinfo=dt.UTC)
        try:
            if isinstance(payload, bytes):
                payload = payload.decode("utf-8")
            if not isinstance(payload, str) or not payload:
                return _invalid("unknown", "unknown_format")
            if len(payload) > MAX_PAYLOAD_CHARS:
                return _invalid("unknown", "malformed")
            if payload.startswith(passes.PREFIX):
                result = self._verify_pass(payload, now)
            elif payload.startswith(DCC_PREFIX):
                result = self._verify_dcc(payload, now)
            elif self.allowlist is not None and AllowList.looks_like_badge(payload.strip()):
                result = self._verify_badge(payload.strip(), now)
            else:
                result = _invalid("unknown", "unknown_format")
        except Exception:  # fail closed: a parser bug must never become a pass or a crash
            logger.exception("verifier error on a %d-character payload", len(payload) if isinstance(payload, str) else -1)
            result = _invalid("unknown", "malformed")
        if not result.valid:
            logger.info("code rejected: kind=%s reasons=%s", result.kind, ",".join(result.reasons))
        return result

    # --- signed passes ---------------------------------------------------------

    def _verify_pass(self, payload: str, now: dt.datetime) -> VerifiedCredential:
        trust = self.trust  # one read, as for the status list
        try:
            parsed = passes.parse_pass(payload)
            key = trust.get(parsed.kid) if trust is not None else None
            if key is None:
                return _invalid("pass", "unknown_key", issuer=parsed.kid)
            passes.verify_signature(parsed, key)
            claims = passes.parse_claims(parsed.claims_bytes)
        except passes.PassRejected as rej:
            logger.debug("pass rejected: %s", rej)
            return _invalid("pass", rej.reason)
        trust_age = trust.age_s(now)
        common = dict(kind="pass", subject=claims.subject, issuer=parsed.kid, pass_kind=claims.kind,
                      zones=claims.zones, household=claims.household, not_before=claims.not_before,
                      expires=claims.expires, window=claims.window, trust_age_s=trust_age)
        try:
            passes.check_times(claims, now, self.skew_s)
        except passes.PassRejected as rej:
            return VerifiedCredential(valid=False, reasons=(rej.reason,), **common)
        return self._with_status(common, claims.subject, now)

    def _with_status(self, common: dict, subject: str, now: dt.datetime) -> VerifiedCredential:
        status = self.status  # one read: another thread may swap in a new list meanwhile
        if status is None:
            return VerifiedCredential(valid=True, health=None, **common)
        health, revoked = status.lookup(subject)
        age = status.age_s(now)
        stale = self.max_status_age_s is not None and age > self.max_status_age_s
        extra = dict(health=health, status_age_s=age, status_version=status.version, list_stale=stale)
        if revoked:
            return VerifiedCredential(valid=False, revoked=True, reasons=("revoked",), **common, **extra)
        return VerifiedCredential(valid=True, **common, **extra)

    # --- allow-list badges -------------------------------------------------------

    def _verify_badge(self, badge: str, now: dt.datetime) -> VerifiedCredential:
        entry = self.allowlist.get(badge)
        if entry is None:
            return _invalid("allowlist", "not_in_allowlist")
        common = dict(kind="allowlist", subject=entry.subject, issuer="allowlist", pass_kind=entry.kind,
                      zones=entry.zones)
        return self._with_status(common, entry.subject, now)

    # --- EU DCC ------------------------------------------------------------------

    def _verify_dcc(self, payload: str, now: dt.datetime) -> VerifiedCredential:
        store = self.dcc_trust  # one read, as for the other lists
        if store is None:
            return _invalid("dcc", "dcc_kid")
        from edge.credentials import dcc

        result = dcc.verify_hc1(payload, store, now, skew_s=self.skew_s)
        if not result.ok:
            return _invalid("dcc", result.reason, issuer=result.issuer)
        return VerifiedCredential(valid=True, kind="dcc", subject=result.subject, issuer=result.issuer,
                                  dcc_type=result.dcc_type, expires=result.expires, not_before=result.issued_at,
                                  trust_age_s=store.age_s(now))
