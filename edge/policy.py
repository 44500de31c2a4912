"""The gate's decision: a pure function from what was measured and read to an outcome.

`decide(inputs, policy, now)` does no I/O and keeps no state, so every decision can be
replayed from its inputs and tested exhaustively. Every clause that fails adds a stable
reason code (edge.reasons); the outcome is the most severe one, and the reasons
returned are those of that severity:

    deny  >  manual (volunteer review)  >  retry (measure / scan again)  >  pass

Faults (a silent thermometer, a stalled camera, stale lists) map to `manual` or `deny`,
never to `pass`: the config model refuses a policy that would let them through.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import zoneinfo
from collections import Counter
from typing import Literal

from pydantic import Field, field_validator, model_validator

from checkgate.config import StrictModel, known_timezone
from edge.types import TemperatureResult, VerifiedCredential

logger = logging.getLogger(__name__)

Outcome = Literal["pass", "deny", "retry", "manual"]
NonPassOutcome = Literal["deny", "retry", "manual"]
SEVERITY = {"pass": 0, "retry": 1, "manual": 2, "deny": 3}
PASS_KINDS = ("resident", "worker", "visitor", "vehicle")
HEALTH = ("green", "yellow", "red")
# What a policy can require: one credential of a given type ("code" = any valid code),
# a normal temperature, a mask confirmed by the volunteer.
Requirement = Literal["pass", "dcc", "allowlist", "code", "temperature", "mask"]
CODE_ITEMS = ("pass", "dcc", "allowlist", "code")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

TEMPERATURE_REASON = {
    "fever": "fever",
    "recheck": "temperature_recheck",
    "too_low": "temperature_too_low",
    "invalid": "temperature_invalid",
    "warming_up": "thermometer_warming_up",
    "no_reading": "no_temperature",
    "silent": "thermometer_silent",
}


# --- inputs and output -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PastPass:
    """One earlier `pass` at this gate (or site), for anti-passback and household quotas."""

    subject: str
    at: dt.datetime
    direction: Literal["in", "out"]
    household: str | None = None


@dataclasses.dataclass(frozen=True)
class DecisionInputs:
    credentials: tuple[VerifiedCredential, ...] = ()
    temperature: TemperatureResult | None = None
    faults: frozenset[str] = frozenset()  # e.g. "thermometer_silent", "camera_stalled"
    recent_passes: tuple[PastPass, ...] = ()
    attended: bool = False
    mask_confirmed: bool | None = None  # the volunteer's confirmation; None: not asked
    direction: Literal["in", "out"] = "in"
    zone: str | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[str, ...]
    credential: VerifiedCredential | None = None  # the credential the decision rests on, if any


# --- the policy (config) ---------------------------------------------------------

class HouseholdQuota(StrictModel):
    """E.g. one outing per household per 2 days, at most 2 hours out."""

    max_outings: int = Field(1, ge=1)
    period_h: float = Field(48, gt=0)
    max_out_h: float | None = Field(2, gt=0)
    overdue_outcome: Literal["pass", "manual"] = "manual"  # late return: let in, or call the volunteer
    kinds: list[Literal["resident", "worker", "visitor", "vehicle"]] = ["resident"]


class Policy(StrictModel):
    # Alternatives (OR) of clauses (AND): [["pass", "temperature"], ["dcc", "temperature"]].
    require: list[list[Requirement]] = Field(default_factory=lambda: [["code", "temperature"]], min_length=1)
    accepted_kinds: list[Literal["resident", "worker", "visitor", "vehicle"]] = list(PASS_KINDS)
    accepted_statuses: list[Literal["green", "yellow", "red"]] = ["green"]
    # Credential types whose health comes from the status list; without a fresh list they go to review.
    status_required_for: list[Literal["pass", "allowlist"]] = ["pass", "allowlist"]
    max_status_age_s: float = Field(24 * 3600, gt=0)
    max_trust_age_s: float = Field(7 * 24 * 3600, gt=0)
    stale_outcome: Literal["manual", "deny"] = "manual"
    kind_windows: dict[Literal["resident", "worker", "visitor", "vehicle"], tuple[str, str]] = {}
    timezone: str = "Asia/Shanghai"
    anti_passback_s: float = Field(0, ge=0)  # 0: off; per subject and direction
    household_quota: HouseholdQuota | None = None
    attended: bool = False  # a volunteer is on duty at this gate
    temperature_outcomes: dict[str, NonPassOutcome] = Field(default_factory=lambda: {
        "fever": "deny", "recheck": "retry", "too_low": "retry", "invalid": "retry",
        "warming_up": "retry", "no_reading": "retry", "silent": "manual"})
    fault_outcomes: dict[str, Literal["manual", "deny", "ignore"]] = {}
    default_fault_outcome: Literal["manual", "deny"] = "manual"
    missing_credential_outcome: NonPassOutcome = "retry"
    # A board without a battery-backed clock boots in the past; expiry checks would then
    # let expired passes through, so a clock before this date is a fault, not a time.
    clock_floor: dt.date = dt.date(2025, 1, 1)

    @field_validator("require")
    @classmethod
    def _alternatives_not_empty(cls, value: list[list[str]]) -> list[list[str]]:
        if any(not alt for alt in value):
            raise ValueError("each alternative in 'require' needs at least one clause")
        if any(not any(item in CODE_ITEMS for item in alt) for alt in value):
            raise ValueError("each alternative in 'require' needs a code (pass, dcc, allowlist or code)")
        return value

    @field_validator("kind_windows")
    @classmethod
    def _windows_are_hhmm(cls, value: dict) -> dict:
        for kind, window in value.items():
            if not all(HHMM.match(t) for t in window):
                raise ValueError(f"time window for {kind} must be two 'HH:MM' strings, got {list(window)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return known_timezone(value)

    @field_validator("temperature_outcomes")
    @classmethod
    def _known_statuses(cls, value: dict) -> dict:
        unknown = set(value) - set(TEMPERATURE_REASON)
        if unknown:
            raise ValueError(f"unknown temperature status(es): {', '.join(sorted(unknown))}")
        return value

    @model_validator(mode="after")
    def _mask_needs_a_volunteer(self) -> Policy:
        if not self.attended and any("mask" in alt for alt in self.require):
            raise ValueError("the policy requires a mask check, but the gate is unattended (attended: false); "
                             "only a volunteer can confirm a mask: set attended: true or drop 'mask'")
        return self


# --- the decision ------------------------------------------------------------------

class _Findings:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (outcome, reason)

    def add(self, outcome: str, reason: str) -> None:
        if outcome in ("ignore", "pass"):
            return
        self.items.append((outcome, reason))

    def outcome(self) -> str:
        return max((o for o, _ in self.items), key=SEVERITY.__getitem__, default="pass")


def _local_minutes(now: dt.datetime, tz: str) -> int:
    local = now.astimezone(zoneinfo.ZoneInfo(tz))
    return local.hour * 60 + local.minute


def _in_window(minute: int, window: tuple[str, str]) -> bool:
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in window)
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # window across midnight


def _aware(now: dt.datetime) -> dt.datetime:
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def _check_credential(cred: VerifiedCredential, inputs: DecisionInputs, policy: Policy, now: dt.datetime,
                      found: _Findings) -> bool:
    """Clauses on one authentic credential; True when it can be used."""
    before = len(found.items)
    if cred.kind in ("pass", "allowlist"):
        if cred.pass_kind not in policy.accepted_kinds:
            found.add("deny", "kind_not_allowed")
        if inputs.zone and cred.zones and inputs.zone not in cred.zones:
            found.add("deny", "wrong_zone")
        minute = _local_minutes(now, policy.timezone)
        for window in (cred.window, policy.kind_windows.get(cred.pass_kind)):
            if window and not _in_window(minute, window):
                found.add("deny", "outside_window")
                break
    if cred.kind in policy.status_required_for and cred.status_age_s is None:
        found.add(policy.stale_outcome, "status_list_missing")
    elif cred.list_stale or (cred.status_age_s is not None and cred.status_age_s > policy.max_status_age_s):
        found.add(policy.stale_outcome, "status_list_stale")
    # A colour is honoured whatever credential carried it (a red subject is red with any code).
    if cred.health is not None and cred.health not in policy.accepted_statuses:
        found.add("deny", f"status_{cred.health}" if cred.health in HEALTH else "status_unknown")
    if cred.trust_age_s is not None and cred.trust_age_s > policy.max_trust_age_s:
        found.add(policy.stale_outcome, "trust_list_stale")
    if cred.subject:
        _check_history(cred, inputs, policy, now, found)
    return len(found.items) == before


def _check_history(cred: VerifiedCredential, inputs: DecisionInputs, policy: Policy, now: dt.datetime,
                   found: _Findings) -> None:
    subject = cred.subject
    if policy.anti_passback_s > 0:
        window = dt.timedelta(seconds=policy.anti_passback_s)
        if any(p.subject == subject and p.direction == inputs.direction and dt.timedelta(0) <= now - _aware(p.at) < window
               for p in inputs.recent_passes):
            found.add("deny", "anti_passback")
    quota = policy.household_quota
    if quota is None or cred.pass_kind not in quota.kinds:
        return
    household = cred.household or subject
    if inputs.direction == "out":
        period = dt.timedelta(hours=quota.period_h)
        outings = sum(1 for p in inputs.recent_passes if p.direction == "out"
                      and (p.household or p.subject) == household and dt.timedelta(0) <= now - _aware(p.at) < period)
        if outings >= quota.max_outings:
            found.add("deny", "household_quota")
    elif quota.max_out_h is not None:
        mine = sorted((p for p in inputs.recent_passes if p.subject == subject), key=lambda p: _aware(p.at))
        if mine and mine[-1].direction == "out" and now - _aware(mine[-1].at) > dt.timedelta(hours=quota.max_out_h):
            found.add(quota.overdue_outcome, "outing_overdue")


def _temperature_finding(temp: TemperatureResult | None, policy: Policy) -> tuple[str, str] | None:
    if temp is None:
        return ("retry", "no_temperature")
    if temp.status == "normal":
        return None
    outcome = policy.temperature_outcomes.get(temp.status, "manual")
    return (outcome, TEMPERATURE_REASON.get(temp.status, "temperature_invalid"))


def _evaluate_alternative(alt: list[str], usable: list[VerifiedCredential], any_presented: bool,
                          inputs: DecisionInputs, policy: Policy) -> _Findings:
    found = _Findings()
    need = Counter(alt)
    pool = Counter(c.kind for c in usable)
    missing = 0
    for item in ("pass", "dcc", "allowlist"):
        take = min(need[item], pool[item])
        pool[item] -= take
        missing += need[item] - take
    missing += max(0, need["code"] - sum(pool.values()))
    if missing:
        found.add(policy.missing_credential_outcome, "credential_missing" if any_presented else "no_credential")
    if need["temperature"]:
        finding = _temperature_finding(inputs.temperature, policy)
        if finding:
            found.add(*finding)
    if need["mask"]:
        if not inputs.attended or inputs.mask_confirmed is None:
            found.add("manual", "mask_unconfirmed")
        elif inputs.mask_confirmed is False:
            found.add("deny", "no_mask")
    return found


def decide(inputs: DecisionInputs, policy: Policy, now: dt.datetime) -> Decision:
    """The outcome and every reason for it; pure (no I/O, no clock, no state)."""
    now = _aware(now)
    found = _Findings()
    if now.date() < policy.clock_floor:
        found.add("manual", "clock_unset")
    for fault in sorted(inputs.faults):
        found.add(policy.fault_outcomes.get(fault, policy.default_fault_outcome), fault)
    # A fever denies whatever else is shown, even where temperature is not a required clause.
    temp = inputs.temperature
    if temp is not None and temp.status == "fever":
        found.add(policy.temperature_outcomes.get("fever", "deny"), "fever")
    usable: list[VerifiedCredential] = []
    seen: set[tuple[str, str | None]] = set()
    for cred in inputs.credentials:
        if not cred.valid:  # forged, edited, expired, revoked, unknown: never ignored
            for reason in cred.reasons or ("malformed",):
                found.add("deny", reason)
            continue
        key = (cred.kind, cred.subject)
        if _check_credential(cred, inputs, policy, now, found) and key not in seen:
            usable.append(cred)  # the same code read twice counts as one credential
        seen.add(key)
    alternatives = [_evaluate_alternative(alt, usable, bool(inputs.credentials), inputs, policy)
                    for alt in policy.require]
    best = min(alternatives, key=lambda f: (SEVERITY[f.outcome()], len(f.items)))
    found.items.extend(best.items)
    outcome = found.outcome()
    primary = usable[0] if usable else (inputs.credentials[0] if inputs.credentials else None)
    if outcome == "pass":
        return Decision("pass", (), primary)
    # Only the decisive reasons: a forged code also leaves its clause unmet, but
    # "credential_missing" would only blur what the screen has to say.
    reasons = tuple(dict.fromkeys(reason for o, reason in found.items if o == outcome))
    return Decision(outcome, reasons, primary)  # type: ignore[arg-type]
