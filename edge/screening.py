"""The screening flow: one visitor at a time, code and temperature in either order.

A state machine with no I/O and no clock of its own: the daemon feeds it verified
credentials, temperature results and ticks with `now` (monotonic seconds), and it
answers with a `Step` saying what to do (decide, prompt, close). The decision itself
comes from the pure policy through the `decide` callable the daemon provides.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from checkgate.config import StrictModel
from edge.types import TemperatureResult, VerifiedCredential

logger = logging.getLogger(__name__)


class FlowConfig(StrictModel):
    window_s: float = 10.0  # code and temperature must both arrive within this
    codes_required: int = 1  # 2 for "code green + second code green"
    temperature_required: bool = True
    retry_limit: int = 2  # re-measures offered before the retry outcome stands


@dataclasses.dataclass
class Step:
    prompt: str | None = None  # a voice / screen prompt id
    decision: object | None = None  # edge.policy.Decision when one was taken
    credentials: tuple[VerifiedCredential, ...] = ()
    temperature: TemperatureResult | None = None
    closed: bool = False  # the visitor's session is over
    final: bool = False  # the decision is the last one for this visitor


DecideFn = Callable[[tuple[VerifiedCredential, ...], TemperatureResult | None], object]

WAITING_STATUSES = {"too_low", "no_reading", "warming_up"}


@dataclasses.dataclass
class _Session:
    started: float
    credentials: list[VerifiedCredential] = dataclasses.field(default_factory=list)
    temperature: TemperatureResult | None = None
    retries: int = 0
    prompted: str | None = None


class ScreeningFlow:
    def __init__(self, config: FlowConfig, decide: DecideFn):
        self.config = config
        self._decide = decide
        self._session: _Session | None = None

    @property
    def state(self) -> str:
        s = self._session
        if s is None:
            return "idle"
        if len(s.credentials) < self.config.codes_required:
            return "waiting_code"
        return "waiting_temperature"

    def on_credential(self, cred: VerifiedCredential, now: float) -> Step | None:
        s = self._ensure_session(now)
        if any(c.subject == cred.subject and c.kind == cred.kind and c.subject for c in s.credentials):
            return None  # the same code again within the visit
        s.credentials.append(cred)
        if not cred.valid:
            return self._run_decision(final=True)  # forged / expired: answer at once
        return self._advance()

    def on_temperature(self, result: TemperatureResult, now: float) -> Step | None:
        if result.status == "no_reading":
            return None
        if self._session is None and result.status in WAITING_STATUSES:
            return None  # nobody is being screened; nothing to say yet
        s = self._ensure_session(now)
        s.temperature = result
        if result.status in WAITING_STATUSES:
            return self._prompt_once("come_closer")
        return self._advance()

    def on_person_left(self, now: float) -> Step | None:
        """The thermometer no longer sees anyone: a measurement without a code belongs to
        someone who walked away, and must not be paired with the next person's code."""
        s = self._session
        if s is None or s.credentials:
            return None
        self._session = None
        return Step(closed=True)

    def on_fault(self, now: float) -> Step | None:
        """A device fault while a visitor is waiting: decide now with what is known."""
        if self._session is None or not self._session.credentials:
            return None
        return self._run_decision(final=True)

    def tick(self, now: float) -> Step | None:
        s = self._session
        if s is None or now - s.started < self.config.window_s:
            return None
        if not s.credentials and (s.temperature is None or s.temperature.status in WAITING_STATUSES):
            self._session = None  # someone passed the sensor without stopping: nothing to decide
            return Step(closed=True)
        return self._run_decision(final=True)

    def reset(self) -> None:
        self._session = None

    # -- internals -------------------------------------------------------------------

    def _ensure_session(self, now: float) -> _Session:
        if self._session is None:
            self._session = _Session(started=now)
        return self._session

    def _advance(self) -> Step | None:
        s = self._session
        assert s is not None
        have_codes = len(s.credentials) >= self.config.codes_required
        temp_ready = s.temperature is not None and s.temperature.status not in WAITING_STATUSES
        if have_codes and (temp_ready or not self.config.temperature_required):
            return self._run_decision(final=False)
        if not have_codes:
            return self._prompt_once("scan_code")
        return self._prompt_once("come_closer")

    def _prompt_once(self, prompt: str) -> Step | None:
        s = self._session
        if s is None or s.prompted == prompt:
            return None
        s.prompted = prompt
        return Step(prompt=prompt)

    def _run_decision(self, final: bool) -> Step:
        s = self._session
        assert s is not None
        creds, temp = tuple(s.credentials), s.temperature
        decision = self._decide(creds, temp)
        outcome = getattr(decision, "outcome", None)
        if outcome == "retry" and not final and s.retries < self.config.retry_limit:
            s.retries += 1
            s.temperature = None
            s.prompted = "remeasure"
            return Step(prompt="remeasure", decision=decision, credentials=creds, temperature=temp)
        self._session = None
        prompt = {"pass": "pass", "deny": "deny", "manual": "manual", "retry": "remeasure"}.get(outcome or "", None)
        reasons = getattr(decision, "reasons", ())
        if outcome == "deny" and any("fever" in r for r in reasons):
            prompt = "fever"
        elif outcome == "deny" and creds and not all(c.valid for c in creds):
            prompt = "invalid_code"
        return Step(prompt=prompt, decision=decision, credentials=creds, temperature=temp, closed=True, final=True)
