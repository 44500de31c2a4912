"""The MQTT contract: topic names and the event schema.

This is the only module that spells MQTT topics; edge and server import from here
so the two sides cannot drift apart. See docs/protocol.md.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PREFIX = "checkgate/v1"
EVENT_SCHEMA = "checkgate.event/1"
GATE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def valid_gate_id(gate_id: str) -> bool:
    return bool(GATE_ID_RE.match(gate_id))


def events_topic(gate_id: str) -> str:
    return f"{PREFIX}/gates/{gate_id}/events"


def state_topic(gate_id: str) -> str:
    return f"{PREFIX}/gates/{gate_id}/state"


def config_topic(gate_id: str) -> str:
    return f"{PREFIX}/control/{gate_id}/config"


def resend_topic(gate_id: str) -> str:
    """The centre asks a gate to send a seq range again (never retained; see docs/protocol.md)."""
    return f"{PREFIX}/control/{gate_id}/resend"


def parse_resend(payload: bytes) -> tuple[int, int] | None:
    """(from_seq, to_seq) of a resend request, or None when it is malformed."""
    import json

    try:
        body = json.loads(payload)
        first, last = body["from_seq"], body["to_seq"]
    except (ValueError, TypeError, KeyError):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (first, last)):
        return None
    if first < 1 or last < first or last - first > 1_000_000:
        return None
    return first, last


TRUST_TOPIC = f"{PREFIX}/control/all/trust"
STATUS_TOPIC = f"{PREFIX}/control/all/status"
ALL_EVENTS_FILTER = f"{PREFIX}/gates/+/events"
ALL_STATES_FILTER = f"{PREFIX}/gates/+/state"


def gate_from_topic(topic: str) -> str | None:
    """The gate id in a `checkgate/v1/gates/{gate}/...` topic, or None."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == "checkgate" and parts[1] == "v1" and parts[2] == "gates":
        return parts[3]
    return None


# --- event ids -------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_event_id(now_ms: int | None = None) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, sortable."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def utc_iso(ts: dt.datetime | None = None) -> str:
    ts = ts or dt.datetime.now(dt.UTC)
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the event schema -------------------------------------------------------

Outcome = Literal["pass", "deny", "retry", "manual"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Temperature(_Strict):
    value_c: float | None = None
    raw_c: float | None = None
    ambient_c: float | None = None
    sensor: str | None = None
    site: str | None = None


class Credential(_Strict):
    kind: str
    subject: str | None = None
    status: str | None = None
    issuer: str | None = None
    pass_kind: str | None = None
    household: str | None = None  # pseudonymous household id (quota rules)


class Event(BaseModel):
    """One event as published on `.../events`. Unknown top-level keys are kept
    (forward compatibility), but the required fields are checked strictly."""

    model_config = ConfigDict(extra="allow")

    schema_: Literal["checkgate.event/1"] = Field(EVENT_SCHEMA, alias="schema")
    event_id: str = Field(min_length=10, max_length=64)
    gate_id: str
    seq: int = Field(ge=1)
    ts: dt.datetime
    type: str = Field(min_length=1, max_length=32)
    outcome: Outcome | None = None
    reasons: list[str] = Field(default_factory=list)
    temperature: Temperature | None = None
    credential: Credential | None = None
    operator: str | None = None
    timings_ms: dict[str, float] | None = None

    @field_validator("gate_id")
    @classmethod
    def _gate_id_ok(cls, v: str) -> str:
        if not valid_gate_id(v):
            raise ValueError("gate_id must be lowercase letters, digits, '-' or '_'")
        return v

    @field_validator("ts")
    @classmethod
    def _ts_aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("ts must carry a timezone (use Z)")
        return v
