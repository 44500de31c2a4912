"""Signed control documents (status list, trust list, per-gate config), passes, registry.

Signing uses the credentials area (edge.credentials); documents are published
retained with QoS 1 so a gate that connects later still gets the newest one.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import logging
import secrets
import time
from collections.abc import Callable

import sqlalchemy as sa

from checkgate import protocol
from server import models as m
from server.store import Store, utcnow

logger = logging.getLogger(__name__)

HEALTH_STATUSES = ("green", "yellow", "red")
PASS_KINDS = ("resident", "worker", "visitor", "vehicle")
Publish = Callable[[str, bytes], bool]



def read_csv(text: str, max_rows: int) -> tuple[list[str] | None, list[dict]]:
    """Header and rows of an uploaded CSV; a malformed file is a ControlError (a 400), never a 500."""
    # newline="" lets the csv module see lone CR / CRLF itself, as its documentation asks
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = []
        for row in reader:
            rows.append(row)
            if len(rows) >= max_rows:
                break
        return reader.fieldnames, rows
    except csv.Error as err:
        raise ControlError(f"not a readable CSV file (line {reader.line_num}): {err}") from None

class ControlError(ValueError):
    """A request that cannot be carried out; the message says why."""


class NoSigningKey(ControlError):
    pass


@dataclasses.dataclass
class Signer:
    private_key: object
    kid: str

    @classmethod
    def from_file(cls, path, kid: str | None) -> Signer:
        from edge.credentials.keys import kid_of_file, load_private_key

        key = load_private_key(path)
        try:
            file_kid = kid_of_file(path)
        except Exception:  # the key file may not carry a kid; then the configured one is used
            file_kid = None
        return cls(key, file_kid or kid or "k1")

    def public_key(self):
        return self.private_key.public_key()


def new_subject() -> str:
    return "p_" + secrets.token_hex(5)


def _parse_day(text: str | None, field: str) -> dt.datetime | None:
    if text is None or text == "":
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ControlError(f"{field}: not a date (YYYY-MM-DD or ISO 8601)") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if not dt.datetime(2000, 1, 1) <= value <= dt.datetime(2200, 1, 1):
        raise ControlError(f"{field}: out of range")
    return value


class ControlService:
    def __init__(self, store: Store, signer: Signer | None, publish: Publish | None):
        self.store = store
        self.signer = signer
        self.publish = publish

    def _need_signer(self) -> Signer:
        if self.signer is None:
            raise NoSigningKey("no signing_key configured on the server")
        return self.signer

    # --- passes and the registry ------------------------------------------------

    def issue_pass(self, actor: str, *, kind: str, subject: str | None = None, name: str | None = None,
                   id_number: str | None = None, phone: str | None = None, household: str | None = None,
                   zones: list[str] | None = None, not_before: str | None = None,
                   expires: str | None = None) -> dict:
        from edge.credentials.passes import issue_pass

        signer = self._need_signer()
        if kind not in PASS_KINDS:
            raise ControlError(f"kind must be one of {', '.join(PASS_KINDS)}")
        subject = subject or new_subject()
        nb, exp = _parse_day(not_before, "not_before"), _parse_day(expires, "expires")
        if nb and exp and exp <= nb:
            raise ControlError("expires must be after not_before")
        now = utcnow()
        try:
            payload = issue_pass(signer.private_key, signer.kid, subject, kind, zones=zones or (),
                                 not_before=nb.replace(tzinfo=dt.UTC) if nb else None,
                                 expires=exp.replace(tzinfo=dt.UTC) if exp else None,
                                 household=household or None, issued_at=now.replace(tzinfo=dt.UTC))
        except ValueError as err:
            raise ControlError(str(err)) from None
        pass_id = "ps_" + secrets.token_hex(8)
        with self.store.writing() as conn:
            exists = conn.execute(sa.select(m.subjects.c.subject).where(m.subjects.c.subject == subject)).first()
            person = {"name": name, "id_number": id_number, "phone": phone, "household": household}
            if exists is None:
                conn.execute(sa.insert(m.subjects).values(subject=subject, created_at=now, **person))
            elif any(v is not None for v in person.values()):
                conn.execute(m.subjects.update().where(m.subjects.c.subject == subject)
                             .values(**{k: v for k, v in person.items() if v is not None}))
            conn.execute(sa.insert(m.passes).values(
                pass_id=pass_id, subject=subject, kind=kind, zones=",".join(zones or []), not_before=nb,
                expires=exp, issued_at=now, issued_by=actor, kid=signer.kid, payload=payload))
        self.store.audit(actor, "pass_issued", pass_id, {"subject": subject, "kind": kind})
        return self.get_pass(pass_id)

    def get_pass(self, pass_id: str) -> dict | None:
        p, s = m.passes.c, m.subjects.c
        row = self.store.execute_read(
            sa.select(m.passes, s.name, s.id_number, s.phone, s.household)
            .join_from(m.passes, m.subjects, p.subject == s.subject, isouter=True).where(p.pass_id == pass_id))
        return _pass_dict(row[0]) if row else None

    def list_passes(self, limit: int = 500, subject: str | None = None) -> list[dict]:
        p, s = m.passes.c, m.subjects.c
        q = (sa.select(m.passes, s.name, s.id_number, s.phone, s.household)
             .join_from(m.passes, m.subjects, p.subject == s.subject, isouter=True)
             .order_by(p.issued_at.desc()).limit(limit))
        if subject:
            q = q.where(p.subject == subject)
        return [_pass_dict(r) for r in self.store.execute_read(q)]

    def revoke_pass(self, actor: str, pass_id: str, reason: str) -> dict:
        with self.store.writing() as conn:
            n = conn.execute(m.passes.update().where(m.passes.c.pass_id == pass_id, m.passes.c.revoked_at.is_(None))
                             .values(revoked_at=utcnow(), revoke_reason=reason[:255])).rowcount
        current = self.get_pass(pass_id)
        if current is None:
            raise KeyError(pass_id)
        if n:
            self.store.audit(actor, "pass_revoked", pass_id, {"reason": reason[:255]})
        return current

    def import_passes_csv(self, actor: str, text: str, max_rows: int = 20000) -> dict:
        """Columns: subject,name,id_number,phone,household,kind,zones,expires (header row; subject may be empty)."""
        fieldnames, rows = read_csv(text, max_rows + 1)
        if not fieldnames or "kind" not in fieldnames:
            raise ControlError("CSV needs a header row with at least a 'kind' column")
        issued, errors = [], []
        for line, row in enumerate(rows, start=2):
            if line - 1 > max_rows:
                errors.append({"line": line, "error": f"more than {max_rows} rows"})
                break
            try:
                zones = [z for z in (row.get("zones") or "").replace(";", ",").split(",") if z.strip()]
                issued.append(self.issue_pass(
                    actor, kind=(row.get("kind") or "").strip(), subject=(row.get("subject") or "").strip() or None,
                    name=(row.get("name") or "").strip() or None, id_number=(row.get("id_number") or "").strip() or None,
                    phone=(row.get("phone") or "").strip() or None,
                    household=(row.get("household") or "").strip() or None,
                    zones=[z.strip() for z in zones], expires=(row.get("expires") or "").strip() or None)["pass_id"])
            except ControlError as err:
                errors.append({"line": line, "error": str(err)})
        return {"issued": len(issued), "pass_ids": issued, "errors": errors}

    # --- the status list ------------------------------------------------------

    def set_status(self, actor: str, entries: dict[str, str], source: str) -> int:
        bad = {s: v for s, v in entries.items() if v not in HEALTH_STATUSES or not protocol_subject_ok(s)}
        if bad:
            subject, status = next(iter(bad.items()))
            raise ControlError(f"invalid entry {subject[:40]!r}: {status[:20]!r} "
                               f"(subject [A-Za-z0-9._:-]{{1,40}}, status green/yellow/red)")
        now = utcnow()
        rows = [{"subject": s, "status": v, "updated_at": now, "source": source[:64]} for s, v in sorted(entries.items())]
        if rows:
            stmt = self.store._insert(m.status_entries)
            stmt = stmt.on_conflict_do_update(index_elements=["subject"], set_={
                "status": stmt.excluded.status, "updated_at": stmt.excluded.updated_at,
                "source": stmt.excluded.source})
            with self.store.writing() as conn:
                conn.execute(stmt, rows)
        self.store.audit(actor, "status_changed", source[:64], {"entries": len(rows)})
        return len(rows)

    def import_status_csv(self, actor: str, text: str, max_rows: int = 200000) -> int:
        fieldnames, rows = read_csv(text, max_rows)
        if not fieldnames or not {"subject", "status"} <= set(fieldnames):
            raise ControlError("CSV needs a header row with 'subject' and 'status' columns")
        entries = {}
        for line, row in enumerate(rows, start=2):
            subject, status = (row.get("subject") or "").strip(), (row.get("status") or "").strip().lower()
            if not subject:
                raise ControlError(f"line {line}: empty subject")
            entries[subject] = status
        return self.set_status(actor, entries, "csv")

    def status_entries(self) -> list:
        s = m.status_entries.c
        return self.store.execute_read(sa.select(m.status_entries).order_by(s.subject))

    def status_document_body(self) -> dict:
        """{"subjects": {...}}: yellow/red from the list, "revoked" for subjects whose passes are all revoked."""
        subjects = {r.subject: r.status for r in self.status_entries() if r.status != "green"}
        p = m.passes.c
        rows = self.store.execute_read(
            sa.select(p.subject, sa.func.count().label("n"),
                      sa.func.count(p.revoked_at).label("revoked")).group_by(p.subject))
        for r in rows:
            if r.revoked and r.revoked == r.n:
                subjects[r.subject] = "revoked"
        return {"subjects": dict(sorted(subjects.items()))}

    # --- signed documents -------------------------------------------------------

    def _next_version(self, doc_type: str, target: str) -> int:
        c = m.control_documents.c
        last = self.store.execute_read(sa.select(sa.func.max(c.version))
                                       .where(c.doc_type == doc_type, c.target == target))[0][0]
        # time-based, so a server with a fresh database still outranks what the gates hold
        return max((last or 0) + 1, int(time.time()))

    def publish_document(self, actor: str, doc_type: str, target: str, body: dict) -> dict:
        from edge.credentials.signed import sign_document

        signer = self._need_signer()
        if self.publish is None:
            raise ControlError("MQTT publishing is not available on this server")
        topic = {"status": protocol.STATUS_TOPIC, "trust": protocol.TRUST_TOPIC}.get(doc_type)
        if doc_type == "config":
            if not protocol.valid_gate_id(target):
                raise ControlError("invalid gate id")
            topic = protocol.config_topic(target)
        if topic is None:
            raise ControlError(f"unknown document type {doc_type!r}")
        version = self._next_version(doc_type, target)
        signed = sign_document(doc_type, version, body, signer.private_key, signer.kid)
        if not self.publish(topic, signed):
            raise ControlError("the broker did not acknowledge the document; try again")
        now = utcnow()
        with self.store.writing() as conn:
            conn.execute(sa.insert(m.control_documents).values(
                doc_type=doc_type, target=target, version=version, body=json.dumps(body, ensure_ascii=False),
                signed=signed, published_at=now, published_by=actor))
        self.store.audit(actor, f"{doc_type}_published", target, {"version": version})
        logger.info("published %s document v%d for %s", doc_type, version, target)
        return {"doc_type": doc_type, "target": target, "version": version, "topic": topic, "bytes": len(signed)}

    def publish_status(self, actor: str) -> dict:
        return self.publish_document(actor, "status", "all", self.status_document_body())

    def publish_trust(self, actor: str, extra_keys: dict[str, str] | None = None,
                      dcc_certs: list[str] | None = None) -> dict:
        import base64

        from edge.credentials.keys import public_from_raw
        from edge.credentials.trust import trust_body

        signer = self._need_signer()
        keys = {signer.kid: signer.public_key()}
        for kid, b64 in (extra_keys or {}).items():
            try:
                keys[kid] = public_from_raw(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))
            except (ValueError, TypeError):
                raise ControlError(f"key {kid[:32]!r}: not a base64url Ed25519 public key") from None
        try:
            certs = [base64.b64decode(c, validate=True) for c in (dcc_certs or [])]
        except ValueError:
            raise ControlError("dcc_certs: not base64 DER") from None
        return self.publish_document(actor, "trust", "all", trust_body(keys, certs))

    def documents(self, limit: int = 100) -> list:
        c = m.control_documents.c
        return self.store.execute_read(
            sa.select(c.id, c.doc_type, c.target, c.version, c.published_at, c.published_by)
            .order_by(c.id.desc()).limit(limit))


def protocol_subject_ok(subject: str) -> bool:
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9._:-]{1,40}", subject or ""))


def _pass_dict(row) -> dict:
    def iso(v):
        return v.isoformat(timespec="seconds") + "Z" if v else None

    return {
        "pass_id": row.pass_id, "subject": row.subject, "kind": row.kind,
        "zones": [z for z in (row.zones or "").split(",") if z], "not_before": iso(row.not_before),
        "expires": iso(row.expires), "issued_at": iso(row.issued_at), "issued_by": row.issued_by, "kid": row.kid,
        "payload": row.payload, "revoked": row.revoked_at is not None, "revoked_at": iso(row.revoked_at),
        "revoke_reason": row.revoke_reason, "name": row.name, "id_number": row.id_number, "phone": row.phone,
        "household": row.household,
    }
