"""What the screen shows, kept in one place and pushed to every open page.

The daemon calls `ScreenHub.on_daemon_message` from its own threads; the hub only hands
the message over to the asyncio loop (never blocks the daemon), where it updates the
day's counters, works out alarms and fans the message out to each page's bounded queue.
A slow page loses old messages, never the daemon time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import logging
import pathlib
import time
from collections.abc import Iterable

logger = logging.getLogger(__name__)

FORGED_REASONS = frozenset({
    "bad_signature", "signature_invalid", "unknown_key", "revoked", "malformed", "pass_forged",
    "dcc_signature", "dcc_kid", "suspected_forgery"})
SUBSCRIBER_QUEUE = 64


def alarm_for_event(event: dict) -> str | None:
    """Which alarm sound an event calls for: "fever", "code" (forged/revoked) or None."""
    if event.get("type", "screening") != "screening" or event.get("outcome") == "pass":
        return None
    reasons = [str(r) for r in event.get("reasons") or []]
    if any("fever" in r for r in reasons):
        return "fever"
    if any(r in FORGED_REASONS for r in reasons):
        return "code"
    return None


def new_faults(before: Iterable[str], after: Iterable[str]) -> list[str]:
    """Faults that appeared since the last health report (each one sounds the fault alarm once)."""
    return sorted(set(after) - set(before))


def local_midnight(now: dt.datetime | None = None) -> dt.datetime:
    now = (now or dt.datetime.now()).astimezone()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclasses.dataclass
class DayCounters:
    """Today's tally for the volunteer: passed, denied by reason, fevers, overrides."""

    day: str
    passed: int = 0
    denied: int = 0
    retry: int = 0
    manual: int = 0
    fevers: int = 0
    overrides: int = 0
    deny_reasons: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, event: dict) -> None:
        kind, outcome = event.get("type", "screening"), event.get("outcome")
        if kind == "override":
            self.overrides += 1
        if kind not in ("screening", "override"):
            return
        if outcome == "pass":
            self.passed += 1
        elif outcome == "deny":
            self.denied += 1
            for r in event.get("reasons") or []:
                self.deny_reasons[str(r)] = self.deny_reasons.get(str(r), 0) + 1
        elif outcome == "retry":
            self.retry += 1
        elif outcome == "manual":
            self.manual += 1
        if kind == "screening" and any("fever" in str(r) for r in event.get("reasons") or []):
            self.fevers += 1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def count_day(events: Iterable[dict], day: str) -> DayCounters:
    """Counters for one local day (YYYY-MM-DD) from stored events (used to survive restarts)."""
    counters = DayCounters(day)
    for ev in events:
        ts = ev.get("ts")
        try:
            local = dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")).astimezone()
        except ValueError:
            continue
        if local.date().isoformat() == day:
            counters.add(ev)
    return counters


@dataclasses.dataclass
class RecheckTimer:
    id: int
    due: float  # unix time
    label: str
    operator: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class ScreenHub:
    def __init__(self, daemon, timers_path: pathlib.Path | None = None):
        self.daemon = daemon
        self.timers_path = timers_path  # recheck timers are kept here, so a restart does not lose them
        self.loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue] = set()
        self._faults: list[str] = []
        self.health: dict = {}
        self.last_prompt: dict | None = None
        self.last_calibration: dict | None = None  # {"ts", "operator"} of the last calibration event seen
        self.timers: dict[int, RecheckTimer] = {}
        self._timer_ids = itertools.count(1)
        self.counters = DayCounters(local_midnight().date().isoformat())
        self.closing = False
        self.health_notices = 0  # health reports pushed by the daemon (a poll older than one is dropped)

    # -- start / stop (on the asyncio loop) ------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.counters = self._counters_from_outbox()
        self.health = self._safe(self.daemon.health, {})
        self._faults = list(self.health.get("faults") or [])
        self._load_timers()
        self.daemon.add_listener(self.on_daemon_message)

    def detach(self) -> None:
        self.closing = True
        self.daemon.remove_listener(self.on_daemon_message)
        for q in list(self._subscribers):
            self._offer(q, None)  # wakes each stream so it ends

    def _counters_from_outbox(self) -> DayCounters:
        day = local_midnight()
        outbox = getattr(self.daemon, "outbox", None)
        events = []
        if outbox is not None and hasattr(outbox, "recent_payloads"):
            try:
                for _, payload in outbox.recent_payloads(since=day.timestamp()):
                    try:
                        events.append(json.loads(payload))
                    except ValueError:
                        logger.warning("unreadable event in the outbox skipped in today's counters")
            except Exception as err:  # the counters are a convenience; the page must still come up
                logger.warning("cannot read today's events for the counters: %s", err)
        else:
            events = self._safe(self.daemon.recent_events, [])
        calibrations = [e for e in events if e.get("type") == "calibration"]
        if calibrations:
            self.last_calibration = {"ts": calibrations[-1].get("ts"), "operator": calibrations[-1].get("operator")}
        return count_day(events, day.date().isoformat())

    @staticmethod
    def _safe(func, default):
        try:
            return func()
        except Exception as err:
            logger.warning("screen could not read %s: %s", getattr(func, "__name__", func), err)
            return default

    # -- daemon side (any thread) ------------------------------------------------------------

    def on_daemon_message(self, message: dict) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, message)
        except RuntimeError:  # the loop closed between the check and the call
            pass

    # -- loop side ---------------------------------------------------------------------------

    def _dispatch(self, message: dict) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "event" and isinstance(message.get("event"), dict):
            event = message["event"]
            if event.get("type") == "calibration":
                self.last_calibration = {"ts": event.get("ts"), "operator": event.get("operator")}
                self.update_health(self.health)
            self._roll_day()
            self.counters.add(event)
            self.publish({"type": "event", "event": event, "alarm": alarm_for_event(event),
                          "counters": self.counters.as_dict()})
        elif kind == "health" and isinstance(message.get("health"), dict):
            self.health_notices += 1
            self.update_health(message["health"])
        elif kind == "prompt" and isinstance(message.get("prompt"), str):
            self.last_prompt = {"prompt": message["prompt"], "at": time.time()}
            self.publish({"type": "prompt", **self.last_prompt})
        else:
            logger.warning("screen ignored a daemon message it does not understand: %.200r", message)

    def polled_health(self, health: dict, notices_before: int) -> None:
        """A health snapshot read by polling; dropped if the daemon pushed a newer one meanwhile."""
        if notices_before == self.health_notices:
            self.update_health(health)

    def update_health(self, health: dict) -> None:
        if self.last_calibration and not health.get("calibration"):
            health = {**health, "calibration": self.last_calibration}
        appeared = new_faults(self._faults, health.get("faults") or [])
        self._faults = list(health.get("faults") or [])
        self.health = health
        self.publish({"type": "health", "health": health, "alarm": "fault" if appeared else None,
                      "new_faults": appeared})

    def _roll_day(self) -> None:
        today = local_midnight().date().isoformat()
        if self.counters.day != today:
            self.counters = DayCounters(today)

    def publish(self, message: dict) -> None:
        for q in list(self._subscribers):
            self._offer(q, message)

    @staticmethod
    def _offer(q: asyncio.Queue, message: dict | None) -> None:
        while True:
            try:
                q.put_nowait(message)
                return
            except asyncio.QueueFull:
                try:
                    q.get_nowait()  # a stalled page loses the oldest message
                except asyncio.QueueEmpty:
                    pass

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.add(q)
        return q

    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    # -- recheck timers --------------------------------------------------------------------------

    def add_timer(self, minutes: float, label: str, operator: str) -> RecheckTimer:
        timer = RecheckTimer(next(self._timer_ids), time.time() + minutes * 60, label, operator)
        self.timers[timer.id] = timer
        self._save_timers()
        self.publish({"type": "timers", "timers": self.timer_list()})
        return timer

    def remove_timer(self, timer_id: int) -> bool:
        found = self.timers.pop(timer_id, None) is not None
        if found:
            self._save_timers()
            self.publish({"type": "timers", "timers": self.timer_list()})
        return found

    def _save_timers(self) -> None:
        if self.timers_path is None:
            return
        try:
            tmp = self.timers_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.timer_list()))
            tmp.replace(self.timers_path)
        except OSError as err:
            logger.warning("cannot keep the recheck timers: %s", err)

    def _load_timers(self) -> None:
        if self.timers_path is None or not self.timers_path.exists():
            return
        try:
            items = json.loads(self.timers_path.read_text())
            timers = [RecheckTimer(int(t["id"]), float(t["due"]), str(t["label"])[:40], str(t["operator"])[:64])
                      for t in items]
        except (OSError, ValueError, TypeError, KeyError) as err:
            logger.warning("recheck timers file unreadable, starting without timers: %s", err)
            return
        self.timers = {t.id: t for t in timers}
        self._timer_ids = itertools.count(max(self.timers, default=0) + 1)

    def timer_list(self) -> list[dict]:
        return [t.as_dict() for t in sorted(self.timers.values(), key=lambda t: t.due)]

    def snapshot(self) -> dict:
        self._roll_day()
        events = self._safe(self.daemon.recent_events, [])
        return {"type": "snapshot", "events": events[-20:], "health": self.health,
                "counters": self.counters.as_dict(), "timers": self.timer_list(),
                "prompt": self.last_prompt, "server_time": time.time()}
