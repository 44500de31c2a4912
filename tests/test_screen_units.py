"""Pure parts of the screen: alarms, day counters, catalogues, PIN sessions, the hub's fan-out."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import pytest

from edge.screen.auth import VolunteerAuth
from edge.screen.hub import ScreenHub, alarm_for_event, count_day, new_faults
from edge.screen.i18n import LANGUAGES, LOCALES_DIR, catalogue, normalise_language
from tests.test_screen_standin import PIN, StandInDaemon, pin_hash


@pytest.mark.parametrize(("event", "alarm"), [
    ({"type": "screening", "outcome": "deny", "reasons": ["fever"]}, "fever"),
    ({"type": "screening", "outcome": "retry", "reasons": ["fever_recheck"]}, "fever"),
    ({"type": "screening", "outcome": "deny", "reasons": ["revoked"]}, "code"),
    ({"type": "screening", "outcome": "deny", "reasons": ["bad_signature", "status_red"]}, "code"),
    ({"type": "screening", "outcome": "deny", "reasons": ["status_yellow"]}, None),
    ({"type": "screening", "outcome": "pass", "reasons": []}, None),
    ({"type": "override", "outcome": "deny", "reasons": ["suspected_forgery"]}, None),  # the volunteer knows
    ({}, None),
])
def test_alarm_for_event(event, alarm):
    assert alarm_for_event(event) == alarm


def test_new_faults_sound_once():
    assert new_faults([], ["thermometer_silent"]) == ["thermometer_silent"]
    assert new_faults(["thermometer_silent"], ["thermometer_silent"]) == []
    assert new_faults(["thermometer_silent"], []) == []


def test_day_counters_only_count_today_and_survive_odd_events():
    today = dt.datetime.now().astimezone()
    yesterday = today - dt.timedelta(days=1)
    iso = lambda d: d.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")  # noqa: E731
    events = [
        {"ts": iso(today), "type": "screening", "outcome": "pass", "reasons": []},
        {"ts": iso(today), "type": "screening", "outcome": "deny", "reasons": ["fever"]},
        {"ts": iso(today), "type": "screening", "outcome": "deny", "reasons": ["revoked"]},
        {"ts": iso(today), "type": "override", "outcome": "pass", "reasons": ["paper_pass_checked"]},
        {"ts": iso(today), "type": "shift", "outcome": None, "reasons": ["sign_in"]},
        {"ts": iso(yesterday), "type": "screening", "outcome": "pass", "reasons": []},
        {"ts": "not a time", "type": "screening", "outcome": "pass"},
    ]
    c = count_day(events, today.date().isoformat())
    assert (c.passed, c.denied, c.fevers, c.overrides) == (2, 2, 1, 1)
    assert c.deny_reasons == {"fever": 1, "revoked": 1}


def test_catalogues_have_the_same_keys_and_cover_faults_prompts_and_reasons():
    from edge import reasons
    from edge.audio import PROMPTS
    from edge.daemon import FAULT_MESSAGES

    raw = {lang: json.loads((LOCALES_DIR / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES}
    assert set(raw["zh-CN"]) == set(raw["en"])
    for lang in LANGUAGES:
        strings = catalogue(lang)
        for fault in FAULT_MESSAGES:
            assert f"fault.{fault}" in strings, (lang, fault)
        for prompt in PROMPTS:
            assert f"prompt.{prompt}" in strings, (lang, prompt)
        for code in reasons.MESSAGES:
            assert strings[f"reason.{code}"] == reasons.message(code, lang)
        for outcome in ("pass", "deny", "retry", "manual", "idle"):
            assert f"outcome.{outcome}" in strings
    from edge.config import ScreenSection

    for codes in ScreenSection().override_reasons.values():
        for code in codes:
            assert all(f"override_reason.{code}" in raw[lang] for lang in LANGUAGES), code


@pytest.mark.parametrize(("given", "lang"), [("en-GB", "en"), ("zh", "zh-CN"), ("ZH-cn", "zh-CN"), ("fr", "zh-CN"),
                                             (None, "zh-CN"), ("", "zh-CN")])
def test_language_choice(given, lang):
    assert normalise_language(given) == lang


def test_sessions_expire_with_the_shift_and_end_at_sign_out():
    now = [1000.0]
    auth = VolunteerAuth({"v01": pin_hash(PIN)}, b"k" * 32, shift_s=3600, clock=lambda: now[0])
    token = auth.sign_in("v01", PIN).token
    assert auth.operator_for(token) == "v01"
    assert auth.operator_for(token[:-2] + "xx") is None
    other_key = VolunteerAuth({"v01": pin_hash(PIN)}, b"j" * 32, clock=lambda: now[0])
    assert other_key.operator_for(token) is None
    now[0] += 3601
    assert auth.operator_for(token) is None  # the shift is over
    token = auth.sign_in("v01", PIN).token
    now[0] += 1
    auth.sign_out("v01")
    assert auth.operator_for(token) is None
    now[0] += 1
    assert auth.operator_for(auth.sign_in("v01", PIN).token) == "v01"


def test_lockout_ends_after_its_time():
    now = [0.0]
    auth = VolunteerAuth({"v01": pin_hash(PIN)}, b"k" * 32, max_attempts=2, lockout_s=60, clock=lambda: now[0])
    assert auth.sign_in("v01", "0").reason == "wrong_pin"
    assert auth.sign_in("v01", "0").reason == "locked"
    assert auth.sign_in("v01", PIN).reason == "locked"
    now[0] += 61
    assert auth.sign_in("v01", PIN).ok


def test_hub_ignores_garbled_messages_and_keeps_serving(tmp_path, caplog):
    daemon = StandInDaemon(tmp_path)

    async def run():
        hub = ScreenHub(daemon)
        hub.attach(asyncio.get_running_loop())
        q = hub.subscribe()
        for bad in ({"type": "event", "event": "not a dict"}, {"type": "nonsense"}, {"prompt": 3}, ["x"]):
            hub.on_daemon_message(bad)
        daemon.emit("deny", ["fever"], temperature=38.0)
        message = await asyncio.wait_for(q.get(), 2)
        hub.detach()
        return message

    with caplog.at_level(logging.WARNING):
        message = asyncio.run(run())
    assert message["type"] == "event" and message["alarm"] == "fever" and message["counters"]["fevers"] == 1
    assert sum("does not understand" in r.message for r in caplog.records) == 4


def test_a_stalled_page_loses_old_messages_not_the_daemon(tmp_path):
    daemon = StandInDaemon(tmp_path)

    async def run():
        hub = ScreenHub(daemon)
        hub.attach(asyncio.get_running_loop())
        q = hub.subscribe()
        for _ in range(200):
            hub.publish({"type": "prompt", "prompt": "scan_code"})
        hub.publish({"type": "prompt", "prompt": "pass"})
        items = [q.get_nowait() for _ in range(q.qsize())]
        hub.detach()
        return items

    items = asyncio.run(run())
    assert len(items) == 64 and items[-1]["prompt"] == "pass"


def test_a_slow_health_poll_never_overwrites_a_newer_fault_report(tmp_path):
    daemon = StandInDaemon(tmp_path)

    async def run():
        hub = ScreenHub(daemon)
        hub.attach(asyncio.get_running_loop())
        notices = hub.health_notices
        stale = daemon.health()  # read by the poller just before the thermometer went silent
        daemon.set_faults("thermometer_silent")
        await asyncio.sleep(0)  # let the pushed report through
        hub.polled_health(stale, notices)
        faults = hub.health["faults"]
        hub.detach()
        return faults

    assert asyncio.run(run()) == ["thermometer_silent"]
