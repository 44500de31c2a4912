"""Turn one MQTT message into a row for the events table, or a rejection reason.

Pure functions (no I/O), so every kind of bad message can be tested directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from pydantic import ValidationError

from checkgate.protocol import Event, gate_from_topic

# Reasons that raise a live alert on the dashboard: fever and codes that are
# forged or tampered with (the gate's stable reason codes).
# Codes from edge/reasons.py.
ALERT_REASONS = frozenset({"fever", "bad_signature", "malformed", "unknown_key", "dcc_signature", "forged"})
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_REASON_LEN = 64


@dataclasses.dataclass(frozen=True)
class Rejected:
    reason: str


def utc_naive(ts: dt.datetime) -> dt.datetime:
    """Aware datetime -> naive UTC (how every time is stored)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    return ts


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "(event)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"invalid event: {where}: {first.get('msg')}{more}"


def event_row(topic: str, payload: bytes, received_at: dt.datetime,
              late_after_s: float = 120.0) -> dict | Rejected:
    """Validate one message from `checkgate/v1/gates/{gate}/events`.

    Returns the row to insert, or Rejected(reason) for the dead-letter table.
    `received_at` is naive UTC.
    """
    topic_gate = gate_from_topic(topic)
    if topic_gate is None:
        return Rejected(f"unexpected topic {topic[:120]!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejected(f"payload too large ({len(payload)} bytes)")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("payload is not UTF-8")
    try:
        event = Event.model_validate_json(text)
    except ValidationError as err:
        if any(e.get("type") == "json_invalid" for e in err.errors()):
            return Rejected("payload is not JSON")
        return Rejected(_describe(err))
    if event.gate_id != topic_gate:
        return Rejected(f"gate_id {event.gate_id!r} does not match topic gate {topic_gate!r}")
    bad = [r for r in event.reasons if not r or len(r) > MAX_REASON_LEN or "," in r]
    if bad:
        return Rejected(f"invalid reason code {bad[0][:80]!r}")
    ts = utc_naive(event.ts)
    credential = event.credential
    temperature = event.temperature
    reasons = ",".join(dict.fromkeys(event.reasons))
    if len(reasons) > 500:
        return Rejected("too many reasons")
    return {
        "event_id": event.event_id,
        "gate_id": event.gate_id,
        "seq": event.seq,
        "type": event.type,
        "outcome": event.outcome,
        "reasons": f",{reasons}," if reasons else "",
        "alert": any(r in ALERT_REASONS for r in event.reasons),
        "ts": ts,
        "received_at": received_at,
        "late": (received_at - ts).total_seconds() > late_after_s,
        "credential_kind": credential.kind[:32] if credential else None,
        "subject": credential.subject[:64] if credential and credential.subject else None,
        "temperature_c": temperature.value_c if temperature else None,
        "credential_status": (credential.status or "")[:16] or None if credential else None,
        "operator": event.operator[:64] if event.operator else None,
        "payload": text,
    }


def split_reasons(stored: str) -> list[str]:
    return [r for r in stored.split(",") if r]


def event_public(row, personal: bool) -> dict:
    """An events-table row as the API shows it; without personal fields for stewards."""
    out = {
        "event_id": row.event_id,
        "gate_id": row.gate_id,
        "seq": row.seq,
        "ts": row.ts.isoformat(timespec="milliseconds") + "Z",
        "received_at": row.received_at.isoformat(timespec="milliseconds") + "Z",
        "late": bool(row.late),
        "type": row.type,
        "outcome": row.outcome,
        "reasons": split_reasons(row.reasons),
        "alert": bool(row.alert),
        "credential_kind": row.credential_kind,
    }
    if personal:
        out.update({
            "subject": row.subject,
            "temperature_c": row.temperature_c,
            "credential_status": row.credential_status,
            "operator": row.operator,
            "purged": bool(row.purged),
        })
    return out


def parse_payload_json(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
