"""The screening flow: code and temperature in either order, prompts, retries, timeouts."""

from __future__ import annotations

import dataclasses

from edge.screening import FlowConfig, ScreeningFlow
from edge.types import TemperatureResult, VerifiedCredential


@dataclasses.dataclass
class D:
    outcome: str
    reasons: tuple = ()


def policy_like(creds, temp):
    """A stand-in with the policy's shape for flow-only tests (the real policy has its own)."""
    if not creds or not all(c.valid for c in creds):
        return D("deny", ("credential_invalid",))
    if temp is None:
        return D("retry", ("no_temperature",))
    return {"normal": D("pass"), "fever": D("deny", ("fever",)), "recheck": D("retry", ("temperature_recheck",))}.get(
        temp.status, D("manual", (temp.status,)))


GOOD = VerifiedCredential(valid=True, kind="pass", subject="p_1", health="green")
FORGED = VerifiedCredential(valid=False, kind="pass", reasons=("signature_invalid",))
NORMAL = TemperatureResult(status="normal", body_c=36.6, raw_c=34.4)


def make(**kw):
    calls = []

    def decide(creds, temp):
        calls.append((creds, temp))
        return policy_like(creds, temp)

    return ScreeningFlow(FlowConfig(**kw), decide), calls


def test_code_then_temperature_passes():
    flow, calls = make()
    step = flow.on_credential(GOOD, 0.0)
    assert step.prompt == "come_closer" and step.decision is None
    step = flow.on_temperature(NORMAL, 1.0)
    assert step.decision.outcome == "pass" and step.final and step.prompt == "pass"
    assert flow.state == "idle" and len(calls) == 1


def test_temperature_then_code_passes():
    flow, _ = make()
    assert flow.on_temperature(NORMAL, 0.0).prompt == "scan_code"
    assert flow.on_credential(GOOD, 2.0).decision.outcome == "pass"


def test_forged_code_is_denied_at_once():
    flow, _ = make()
    step = flow.on_credential(FORGED, 0.0)
    assert step.decision.outcome == "deny" and step.prompt == "invalid_code" and step.final


def test_fever_prompt():
    flow, _ = make()
    flow.on_credential(GOOD, 0.0)
    step = flow.on_temperature(TemperatureResult(status="fever", body_c=38.1), 1.0)
    assert step.decision.outcome == "deny" and step.prompt == "fever"


def test_recheck_band_asks_to_measure_again_then_stands():
    flow, calls = make(retry_limit=1)
    flow.on_credential(GOOD, 0.0)
    recheck = TemperatureResult(status="recheck", body_c=37.2)
    step = flow.on_temperature(recheck, 1.0)
    assert step.prompt == "remeasure" and not step.final and step.decision.outcome == "retry"
    step = flow.on_temperature(recheck, 3.0)
    assert step.final and step.decision.outcome == "retry"
    step = flow.on_credential(GOOD, 4.0)  # a new visit starts clean
    assert step.prompt == "come_closer"


def test_too_far_prompts_come_closer_without_deciding():
    flow, calls = make()
    flow.on_credential(GOOD, 0.0)
    flow.on_temperature(TemperatureResult(status="too_low", raw_c=29.0), 0.5)
    assert calls == []
    assert flow.on_temperature(NORMAL, 1.0).decision.outcome == "pass"


def test_timeout_decides_with_what_is_known():
    flow, _ = make(window_s=5)
    flow.on_credential(GOOD, 0.0)
    assert flow.tick(4.0) is None
    step = flow.tick(5.5)
    assert step.final and step.decision.outcome == "retry"  # no temperature: never a pass


def test_passer_by_without_code_leaves_no_decision():
    flow, calls = make(window_s=5)
    assert flow.on_temperature(TemperatureResult(status="too_low"), 0.0) is None
    assert flow.tick(10.0) is None and calls == []


def test_two_codes_required():
    flow, _ = make(codes_required=2)
    assert flow.on_credential(GOOD, 0.0).prompt == "scan_code"  # the second code is still missing
    assert flow.on_temperature(NORMAL, 0.5) is None  # same prompt is not repeated
    second = VerifiedCredential(valid=True, kind="dcc", subject="d_9", health="green")
    assert flow.on_credential(second, 1.0).decision.outcome == "pass"


def test_fault_while_waiting_decides_now():
    flow, calls = make()
    flow.on_credential(GOOD, 0.0)
    step = flow.on_fault(0.5)
    assert step.final and step.decision.outcome != "pass"


def test_measurement_of_someone_who_left_is_not_paired_with_the_next_code():
    flow, calls = make()
    assert flow.on_temperature(NORMAL, 0.0).prompt == "scan_code"
    assert flow.on_person_left(1.0).closed
    assert flow.on_credential(GOOD, 2.0).prompt == "come_closer"  # the new person is measured afresh
    assert calls == []
    flow.on_temperature(NORMAL, 3.0)
    assert flow.on_person_left(4.0) is None  # with a code, the visit stays open for a re-measure
