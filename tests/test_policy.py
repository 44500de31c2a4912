"""The pure decision: every failed clause gives its own reason; faults never pass."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkgate.config import ConfigError, load_config, parse_config
from edge import reasons
from edge.credentials import keys, passes
from edge.credentials.status import StatusList
from edge.credentials.trust import TrustList
from edge.credentials.verifier import Verifier
from edge.policy import Decision, DecisionInputs, PastPass, Policy, decide
from edge.types import TemperatureResult, VerifiedCredential

TZ8 = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=TZ8)  # 10:00 in Zhejiang
NORMAL = TemperatureResult("normal", body_c=36.5)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    priv, pub = keys.generate_keypair(tmp_path_factory.mktemp("k"), kid="k1")
    return keys.load_private_key(priv), keys.load_public_key(pub)


@pytest.fixture
def verifier(issuer):
    status = StatusList({"p_yellow": "yellow", "p_red": "red", "p_gone": "revoked"}, version=7,
                        issued_at=NOW - dt.timedelta(hours=1))
    return Verifier(TrustList({"k1": issuer[1]}), status)


def issue(issuer, subject="p_ok", kid="k1", key=None, **kw):
    args = dict(kind="resident", zones=["north"], not_before=NOW - dt.timedelta(days=1),
                expires=NOW + dt.timedelta(days=10), household="h_1")
    args.update(kw)
    return passes.issue_pass(key or issuer[0], kid, subject, **args)


def gate(verifier, payload, policy=None, **kw):
    inputs = dict(credentials=(verifier.verify(payload, now=NOW),), temperature=NORMAL, zone="north")
    inputs.update(kw)
    return decide(DecisionInputs(**inputs), policy or Policy(), NOW)


def test_valid_pass_and_normal_temperature_pass(issuer, verifier):
    decision = gate(verifier, issue(issuer))
    assert decision == Decision("pass", (), decision.credential) and decision.credential.subject == "p_ok"


def flipped(payload: str) -> str:
    import base45

    raw = bytearray(base45.b45decode(payload[4:]))
    raw[len(raw) // 2] ^= 0x10
    return "CG1:" + base45.b45encode(bytes(raw)).decode()


def test_each_bad_pass_is_denied_with_its_own_reason(issuer, verifier, tmp_path):
    other_key = keys.load_private_key(keys.generate_keypair(tmp_path)[0])
    hist_in = (PastPass("p_ok", NOW - dt.timedelta(seconds=30), "in"),)
    hist_out = (PastPass("p_sibling", NOW - dt.timedelta(hours=20), "out", household="h_1"),)
    windowed = issue(issuer, window=("06:00", "09:00"))
    quota = Policy(household_quota={"max_outings": 1, "period_h": 48})
    cases = {
        "bad_signature": gate(verifier, issue(issuer, key=other_key)),
        "malformed_or_signature": gate(verifier, flipped(issue(issuer))),
        "unknown_key": gate(verifier, issue(issuer, kid="k7")),
        "expired": gate(verifier, issue(issuer, expires=NOW - dt.timedelta(hours=1))),
        "not_yet_valid": gate(verifier, issue(issuer, not_before=NOW + dt.timedelta(hours=1))),
        "wrong_zone": gate(verifier, issue(issuer, zones=["south"])),
        "outside_window": gate(verifier, windowed),
        "revoked": gate(verifier, issue(issuer, subject="p_gone")),
        "status_yellow": gate(verifier, issue(issuer, subject="p_yellow")),
        "status_red": gate(verifier, issue(issuer, subject="p_red")),
        "anti_passback": gate(verifier, issue(issuer), Policy(anti_passback_s=120), recent_passes=hist_in),
        "household_quota": gate(verifier, issue(issuer), quota, direction="out", recent_passes=hist_out),
    }
    for expected, decision in cases.items():
        assert decision.outcome == "deny", (expected, decision)
        if expected == "malformed_or_signature":
            assert decision.reasons[0] in {"malformed", "bad_signature"}
        else:
            assert decision.reasons == (expected,), (expected, decision)
    # Each of them carries a message for the screen and the voice prompt in both languages.
    for code in cases:
        if code in reasons.MESSAGES:
            assert reasons.message(code, "zh-CN") != reasons.message(code, "en")


def test_anti_passback_is_per_direction_and_expires(issuer, verifier):
    policy = Policy(anti_passback_s=120)
    earlier_in = (PastPass("p_ok", NOW - dt.timedelta(seconds=30), "in"),)
    assert gate(verifier, issue(issuer), policy, recent_passes=earlier_in, direction="out").outcome == "pass"
    old = (PastPass("p_ok", NOW - dt.timedelta(seconds=300), "in"),)
    assert gate(verifier, issue(issuer), policy, recent_passes=old).outcome == "pass"


def test_household_quota_counts_the_household_in_its_period_and_flags_late_return(issuer, verifier):
    policy = Policy(household_quota={"max_outings": 1, "period_h": 48, "max_out_h": 2})
    long_ago = (PastPass("p_sibling", NOW - dt.timedelta(hours=50), "out", household="h_1"),)
    other_household = (PastPass("p_x", NOW - dt.timedelta(hours=1), "out", household="h_2"),)
    for history in (long_ago, other_household):
        assert gate(verifier, issue(issuer), policy, direction="out", recent_passes=history).outcome == "pass"
    went_out = (PastPass("p_ok", NOW - dt.timedelta(hours=3), "out", household="h_1"),)
    late = gate(verifier, issue(issuer), policy, direction="in", recent_passes=went_out)
    assert late.outcome == "manual" and late.reasons == ("outing_overdue",)
    back_in_time = (PastPass("p_ok", NOW - dt.timedelta(hours=1), "out", household="h_1"),)
    assert gate(verifier, issue(issuer), policy, direction="in", recent_passes=back_in_time).outcome == "pass"
    workers_exempt = gate(verifier, issue(issuer, kind="worker"), policy, direction="out",
                          recent_passes=(PastPass("p_ok", NOW - dt.timedelta(hours=1), "out", household="h_1"),))
    assert workers_exempt.outcome == "pass"


def test_stale_or_missing_lists_go_to_manual_never_pass(issuer):
    payload = issue(issuer)
    stale = StatusList({}, version=1, issued_at=NOW - dt.timedelta(days=3))
    for status, reason in ((stale, "status_list_stale"), (None, "status_list_missing")):
        verifier = Verifier(TrustList({"k1": issuer[1]}), status)
        decision = gate(verifier, payload)
        assert decision.outcome == "manual" and decision.reasons == (reason,)
        assert gate(verifier, payload, Policy(stale_outcome="deny")).outcome == "deny"


def test_stale_trust_list_goes_to_manual(issuer, verifier):
    cred = dataclasses.replace(verifier.verify(issue(issuer), now=NOW), trust_age_s=30 * 24 * 3600)
    decision = decide(DecisionInputs(credentials=(cred,), temperature=NORMAL, zone="north"), Policy(), NOW)
    assert decision.outcome == "manual" and decision.reasons == ("trust_list_stale",)


@pytest.mark.parametrize("status, outcome, reason", [
    ("fever", "deny", "fever"), ("recheck", "retry", "temperature_recheck"),
    ("too_low", "retry", "temperature_too_low"), ("invalid", "retry", "temperature_invalid"),
    ("warming_up", "retry", "thermometer_warming_up"), ("no_reading", "retry", "no_temperature"),
    ("silent", "manual", "thermometer_silent")])
def test_temperature_statuses_map_to_outcomes(issuer, verifier, status, outcome, reason):
    decision = gate(verifier, issue(issuer), temperature=TemperatureResult(status))
    assert (decision.outcome, decision.reasons) == (outcome, (reason,))


def test_fever_denies_even_when_temperature_is_not_required(issuer, verifier):
    policy = Policy(require=[["pass"]])
    assert gate(verifier, issue(issuer), policy, temperature=None).outcome == "pass"
    assert gate(verifier, issue(issuer), policy, temperature=TemperatureResult("fever", 38.2)).outcome == "deny"


def test_faults_follow_policy_and_never_pass(issuer, verifier):
    payload = issue(issuer)
    manual = gate(verifier, payload, faults=frozenset({"camera_stalled"}))
    assert manual.outcome == "manual" and manual.reasons == ("camera_stalled",)
    deny = gate(verifier, payload, Policy(fault_outcomes={"thermometer_silent": "deny"}),
                faults=frozenset({"thermometer_silent"}), temperature=None)
    assert deny.outcome == "deny" and "thermometer_silent" in deny.reasons
    with pytest.raises(ConfigError):
        parse_config(Policy, {"fault_outcomes": {"camera_stalled": "pass"}})
    with pytest.raises(ConfigError):
        parse_config(Policy, {"temperature_outcomes": {"fever": "pass"}})
    with pytest.raises(ConfigError):
        parse_config(Policy, {"stale_outcome": "pass"})


def test_forged_code_beside_a_valid_one_still_denies(issuer, verifier):
    creds = (verifier.verify(issue(issuer), now=NOW), verifier.verify(flipped(issue(issuer)), now=NOW))
    decision = decide(DecisionInputs(credentials=creds, temperature=NORMAL, zone="north"), Policy(), NOW)
    assert decision.outcome == "deny"


def test_composite_requirements(issuer, verifier):
    dcc = VerifiedCredential(valid=True, kind="dcc", subject="dcc_1", dcc_type="v")
    pass_cred = verifier.verify(issue(issuer), now=NOW)
    vehicle = verifier.verify(issue(issuer, subject="v_car", kind="vehicle"), now=NOW)
    either = Policy(require=[["pass", "temperature"], ["dcc", "temperature"]])
    for creds in ((dcc,), (pass_cred,)):
        assert decide(DecisionInputs(credentials=creds, temperature=NORMAL, zone="north"), either, NOW).outcome == "pass"
    two_codes = Policy(require=[["code", "code", "temperature"]])
    one = decide(DecisionInputs(credentials=(pass_cred,), temperature=NORMAL, zone="north"), two_codes, NOW)
    assert (one.outcome, one.reasons) == ("retry", ("credential_missing",))
    same_twice = decide(DecisionInputs(credentials=(pass_cred, pass_cred), temperature=NORMAL), two_codes, NOW)
    assert same_twice.outcome == "retry"
    both = decide(DecisionInputs(credentials=(pass_cred, vehicle), temperature=NORMAL, zone="north"), two_codes, NOW)
    assert both.outcome == "pass"
    nothing = decide(DecisionInputs(temperature=NORMAL), Policy(), NOW)
    assert (nothing.outcome, nothing.reasons) == ("retry", ("no_credential",))
    only_dcc = decide(DecisionInputs(credentials=(dcc,), temperature=NORMAL), Policy(require=[["pass"]]), NOW)
    assert only_dcc.outcome == "retry"


def test_kinds_and_kind_windows(issuer, verifier):
    visitor = issue(issuer, subject="v_1", kind="visitor")
    assert gate(verifier, visitor, Policy(accepted_kinds=["resident"])).reasons == ("kind_not_allowed",)
    assert gate(verifier, visitor, Policy(kind_windows={"visitor": ("08:00", "18:00")})).outcome == "pass"
    assert gate(verifier, visitor, Policy(kind_windows={"visitor": ("14:00", "18:00")})).reasons == ("outside_window",)
    overnight = Policy(kind_windows={"visitor": ("22:00", "11:00")})  # across midnight, 10:00 is inside
    assert gate(verifier, visitor, overnight).outcome == "pass"
    assert gate(verifier, issue(issuer, subject="p_yellow"), Policy(accepted_statuses=["green", "yellow"])).outcome == "pass"


def test_mask_clause_needs_an_attended_gate():
    with pytest.raises(ConfigError, match="unattended"):
        parse_config(Policy, {"require": [["pass", "mask"]], "attended": False})
    policy = parse_config(Policy, {"require": [["pass", "temperature", "mask"]], "attended": True})
    assert policy.attended


def test_mask_confirmation(issuer, verifier):
    policy = Policy(require=[["pass", "temperature", "mask"]], attended=True)
    payload = issue(issuer)
    assert gate(verifier, payload, policy, attended=True, mask_confirmed=True).outcome == "pass"
    assert gate(verifier, payload, policy, attended=True, mask_confirmed=False).reasons == ("no_mask",)
    unconfirmed = gate(verifier, payload, policy, attended=True, mask_confirmed=None)
    assert (unconfirmed.outcome, unconfirmed.reasons) == ("manual", ("mask_unconfirmed",))
    volunteer_away = gate(verifier, payload, policy, attended=False, mask_confirmed=True)
    assert volunteer_away.outcome == "manual"


def test_policy_file_rejects_unknown_keys(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("require: [[pass, temperature]]\nanti_passback_s: 60\nmax_statu_age_s: 10\n")
    with pytest.raises(ConfigError, match="max_statu_age_s"):
        load_config(Policy, path)
    path.write_text("require: [[temperature]]\n")
    with pytest.raises(ConfigError, match="needs a code"):
        load_config(Policy, path)
    path.write_text("timezone: Mars/Olympus\n")
    with pytest.raises(ConfigError, match="time zone"):
        load_config(Policy, path)


def test_every_reason_the_policy_can_emit_has_messages():
    from edge import policy as policy_module

    emitted = set(policy_module.TEMPERATURE_REASON.values()) | {
        "no_credential", "credential_missing", "kind_not_allowed", "wrong_zone", "outside_window",
        "status_list_missing", "status_list_stale", "trust_list_stale", "status_yellow", "status_red",
        "anti_passback", "household_quota", "outing_overdue", "mask_unconfirmed", "no_mask",
        "camera_stalled", "thermometer_silent"}
    for code in emitted:
        assert reasons.is_known(code), code
        assert reasons.message(code, "zh-CN") and reasons.message(code, "en")
    assert "manual" in reasons.message("unheard_of_code", "en").lower()


# --- property: nothing bad ever passes --------------------------------------------------

CRED = st.builds(
    VerifiedCredential, valid=st.booleans(), kind=st.sampled_from(["pass", "dcc", "allowlist", "unknown"]),
    subject=st.sampled_from([None, "p_1", "p_2"]), pass_kind=st.sampled_from([None, "resident", "visitor"]),
    health=st.sampled_from([None, "green", "yellow", "red"]), revoked=st.booleans(),
    zones=st.sampled_from([(), ("north",), ("south",)]), reasons=st.sampled_from([(), ("bad_signature",)]),
    list_stale=st.booleans(), status_age_s=st.sampled_from([None, 10.0, 10**6]))
TEMP = st.one_of(st.none(), st.builds(TemperatureResult, status=st.sampled_from(
    ["normal", "recheck", "fever", "too_low", "invalid", "warming_up", "no_reading", "silent"])))


@settings(max_examples=400, deadline=None)
@given(creds=st.lists(CRED, max_size=3), temp=TEMP,
       faults=st.frozensets(st.sampled_from(["thermometer_silent", "camera_stalled", "uplink_down"]), max_size=2),
       attended=st.booleans(), mask=st.sampled_from([None, True, False]))
def test_property_no_fault_no_fever_no_invalid_code_ever_passes(creds, temp, faults, attended, mask):
    inputs = DecisionInputs(credentials=tuple(creds), temperature=temp, faults=faults, attended=attended,
                            mask_confirmed=mask, zone="north")
    decision = decide(inputs, Policy(), NOW)
    assert decision.outcome in ("pass", "deny", "retry", "manual")
    if decision.outcome == "pass":
        assert not faults and temp is not None and temp.status == "normal"
        assert creds and all(c.valid for c in creds)
        assert all(c.health in (None, "green") and not c.list_stale for c in creds)
        assert decision.reasons == ()
    else:
        assert decision.reasons and all(reasons.is_known(r) for r in decision.reasons if r != "uplink_down")


def test_an_unset_clock_is_a_fault_not_a_time(issuer, verifier):
    boot_time = dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC)
    cred = verifier.verify(issue(issuer), now=NOW)
    decision = decide(DecisionInputs(credentials=(cred,), temperature=NORMAL, zone="north"), Policy(), boot_time)
    assert (decision.outcome, decision.reasons) == ("manual", ("clock_unset",))


SEV = {"pass": 0, "retry": 1, "manual": 2, "deny": 3}
WORSE_TEMP = {"normal": ["recheck", "fever", "silent"], "recheck": ["fever"], "too_low": ["fever"]}


@settings(max_examples=300, deadline=None)
@given(creds=st.lists(CRED, max_size=2), temp=TEMP,
       faults=st.frozensets(st.sampled_from(["thermometer_silent", "camera_stalled"]), max_size=1),
       extra_fault=st.sampled_from(["thermometer_silent", "camera_stalled", "uplink_down"]),
       forged=st.builds(VerifiedCredential, valid=st.just(False), kind=st.sampled_from(["pass", "dcc", "unknown"]),
                        reasons=st.sampled_from([("bad_signature",), ("malformed",), ("revoked",)])))
def test_property_more_trouble_never_improves_the_outcome(creds, temp, faults, extra_fault, forged):
    base = DecisionInputs(credentials=tuple(creds), temperature=temp, faults=faults, zone="north")
    before = SEV[decide(base, Policy(), NOW).outcome]
    worse = [dataclasses.replace(base, faults=faults | {extra_fault}),
             dataclasses.replace(base, credentials=(*creds, forged))]
    if temp is not None:
        worse += [dataclasses.replace(base, temperature=TemperatureResult(s)) for s in WORSE_TEMP.get(temp.status, [])]
    for inputs in worse:
        assert SEV[decide(inputs, Policy(), NOW).outcome] >= before
    # A forged code always denies, whatever else is presented.
    assert decide(worse[1], Policy(), NOW).outcome == "deny"
