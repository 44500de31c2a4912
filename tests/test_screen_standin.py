"""The screen's HTTP API against a stand-in daemon (same attributes as edge.daemon.EdgeDaemon).

The stand-in is only for page-level tests: it lets a test push a decision, a fault or a
prompt exactly when it wants. The end-to-end tests (test_screen_e2e.py) use the real
daemon with simulated devices, the real broker and the real server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import re
import threading

import numpy as np
import pytest

from checkgate import protocol
from edge.config import EdgeConfig

PIN = "2468"


def pin_hash(pin: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(pin)


class StandInFrame:
    def __init__(self, seq: int):
        self.seq = seq
        self.image = np.full((480, 640, 3), (40, 90, 160), dtype=np.uint8)
        self.image[200:280, 280:360] = 255


class StandInCamera:
    def __init__(self):
        self._seq = itertools.count(1)

    def latest(self, timeout: float = 0.0):
        return StandInFrame(next(self._seq))


class StandInDaemon:
    """What the screen uses of the daemon: config, listeners, events, health, operator actions."""

    def __init__(self, data_dir, port: int = 0, **screen):
        screen = {"port": port, "volunteers": {"v01": pin_hash(PIN), "v02": pin_hash("1357")}, **screen}
        self.config = EdgeConfig(gate_id="north-1", screen=screen)
        self.data_dir = data_dir
        self.camera = StandInCamera()
        self.actions: list[dict] = []
        self._listeners = []
        self._recent: list[dict] = []
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.faults: list[str] = []

    def add_listener(self, func):
        self._listeners.append(func)

    def remove_listener(self, func):
        if func in self._listeners:
            self._listeners.remove(func)

    def _notify(self, message: dict) -> None:
        for func in list(self._listeners):
            func(message)

    def recent_events(self):
        return list(self._recent)

    def health(self):
        bad = {"thermometer_silent": "silent", "thermometer_disconnected": "disconnected"}
        thermo_state = next((bad[f] for f in self.faults if f in bad), "ok")
        return {"thermometer": {"state": thermo_state, "protocol": "gy-mcu90614", "calibration_age_s": 5400},
                "camera": {"state": "stalled" if "camera_stalled" in self.faults else "ok"},
                "uplink": {"connected": True, "pending": 3},
                "queue": {"pending": 3, "last_seq": 41},
                "lists": {"trust": {"version": 3, "age_s": 600}, "status": {"version": 12, "age_s": 780}},
                "faults": sorted(self.faults), "fault_messages": [], "gate_open": False}

    def stats(self):
        return {"counters": {}}

    def emit(self, outcome="pass", reasons=(), temperature=36.6, status="green", kind="pass", type="screening",
             operator=None, note=None):
        with self._lock:
            seq = next(self._seq)
        event = {"schema": protocol.EVENT_SCHEMA, "event_id": protocol.new_event_id(), "gate_id": "north-1",
                 "seq": seq, "ts": protocol.utc_iso(dt.datetime.now(dt.UTC)), "type": type, "outcome": outcome,
                 "reasons": list(reasons),
                 "temperature": None if temperature is None else
                 {"value_c": temperature, "raw_c": round(temperature - 2.2, 2), "ambient_c": 22.5,
                  "sensor": "gy-mcu90614"},
                 "credential": None if kind is None else {"kind": kind, "subject": "p_7f3a9c", "status": status,
                                                          "issuer": "k1"},
                 "operator": operator, "note": note}
        self._recent.append(event)
        self._notify({"type": "event", "event": event})
        return event

    def set_faults(self, *faults: str) -> None:
        self.faults = list(faults)
        self._notify({"type": "health", "health": self.health()})

    def prompt(self, name: str) -> None:
        self._notify({"type": "prompt", "prompt": name})

    def submit_operator_action(self, action: dict) -> None:
        self.actions.append(action)
        self.emit(type=action["type"], outcome=action.get("outcome"), reasons=action.get("reasons", []),
                  temperature=None, kind=None, operator=action.get("operator"), note=action.get("note"))


@contextlib.contextmanager
def client_for(daemon, client_host: str = "127.0.0.1"):
    """An HTTP client for the screen app; `client_host` is the address the app sees the request from."""
    from fastapi.testclient import TestClient

    from edge.screen.app import create_app

    with TestClient(create_app(daemon), base_url="http://127.0.0.1", client=(client_host, 50000)) as client:
        yield client


@pytest.fixture
def daemon(tmp_path):
    return StandInDaemon(tmp_path)


def sign_in(client, operator="v01", pin=PIN):
    return client.post("/api/session", json={"operator": operator, "pin": pin})


def test_page_renders_in_the_configured_language(daemon):
    with client_for(daemon) as client:
        page = client.get("/")
        assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
        assert "签到上岗" in page.text  # the sign-in button, server-rendered
        assert "Content-Security-Policy" in page.headers
        english = client.get("/?lang=en")
        assert '<html lang="en">' in english.text and "Sign in" in english.text
        assert client.get("/").text.count('<html lang="en">') == 1  # the choice is remembered (cookie)


def test_assets_are_local(daemon):
    with client_for(daemon) as client:
        page = client.get("/").text
        links = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert links and all(link.startswith(("/", "#")) for link in links), links  # no CDN, no internet
        for asset in ("screen.js", "screen.css", "alarm-fever.wav", "alarm-code.wav", "alarm-fault.wav",
                      "no-camera.svg", "icon.svg"):
            assert client.get(f"/static/{asset}").status_code == 200, asset
        for asset in ("screen.js", "screen.css"):
            text = client.get(f"/static/{asset}").text
            assert not re.search(r"https?://|@import|url\(", text), asset  # nothing fetched from elsewhere


def test_sign_in_override_and_sign_out_become_operator_actions(daemon):
    with client_for(daemon) as client:
        assert client.post("/api/override", json={"outcome": "pass", "reason": "paper_pass_checked"}).status_code == 401
        assert daemon.actions == []
        res = sign_in(client)
        assert res.status_code == 200 and res.json() == {"operator": "v01"}
        assert client.get("/api/state").json()["operator"] == "v01"
        res = client.post("/api/override", json={"outcome": "pass", "reason": "paper_pass_checked",
                                                 "note": "card  seen\nat gate"})
        assert res.status_code == 202
        res = client.delete("/api/session")
        assert res.status_code == 200
        assert client.get("/api/state").json()["operator"] is None
    assert [a["type"] for a in daemon.actions] == ["shift", "override", "shift"]
    override = daemon.actions[1]
    assert override == {"type": "override", "outcome": "pass", "reasons": ["paper_pass_checked"],
                        "operator": "v01", "note": "card seen at gate"}
    assert daemon.actions[0]["reasons"] == ["sign_in"] and daemon.actions[2]["reasons"] == ["sign_out"]


def test_an_override_posted_by_another_site_is_refused(daemon):
    with client_for(daemon) as client:
        sign_in(client)
        for headers in ({"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
                        {"Origin": "http://evil.example"}):
            res = client.post("/api/override", json={"outcome": "pass", "reason": "staff_on_duty"}, headers=headers)
            assert res.status_code == 403
    assert [a["type"] for a in daemon.actions] == ["shift"]  # the sign-in only: the gate did not open


def test_wrong_pins_lock_the_operator_out(tmp_path):
    daemon = StandInDaemon(tmp_path, pin_max_attempts=3, pin_lockout_s=600)
    with client_for(daemon) as client:
        first = sign_in(client, pin="0000")
        assert first.status_code == 401 and first.json()["error"] == "wrong_pin" and first.json()["attempts_left"] == 2
        assert sign_in(client, pin="1111").status_code == 401
        locked = sign_in(client, pin="2222")
        assert locked.status_code == 429 and locked.json()["error"] == "locked"
        assert int(locked.headers["Retry-After"]) > 0
        assert sign_in(client).status_code == 429  # even the right PIN waits out the lock
        assert client.post("/api/override", json={"outcome": "deny", "reason": "no_mask"}).status_code == 401
    assert daemon.actions == []


def test_unknown_operator_is_refused_like_a_wrong_pin(daemon):
    with client_for(daemon) as client:
        res = sign_in(client, operator="nobody")
        assert res.status_code == 401 and res.json()["error"] == "unknown_operator"


@pytest.mark.parametrize("body", [
    {"outcome": "open", "reason": "paper_pass_checked"},
    {"outcome": "pass", "reason": "no_mask"},  # a deny reason for a pass
    {"outcome": "pass"},
    {"outcome": "pass", "reason": "paper_pass_checked", "note": "x" * 201},
    {"outcome": "pass", "reason": "paper_pass_checked", "operator": "v02"},  # no choosing someone else's id
    {"outcome": "deny", "reason": "no_mask", "note": "ID 330102199001011234"},  # no ID numbers in events
    {"outcome": "deny", "reason": "no_mask", "note": "phone 13800138000"},
])
def test_bad_override_requests_are_rejected_with_a_reason(daemon, body):
    with client_for(daemon) as client:
        sign_in(client)
        res = client.post("/api/override", json=body)
        assert res.status_code == 422 and res.json()["error"] in ("bad_request", "unknown_reason")
    assert [a["type"] for a in daemon.actions] == ["shift"]


def test_garbage_bodies_and_forged_sessions_are_rejected(daemon):
    with client_for(daemon) as client:
        assert client.post("/api/session", content=b"\xff\xfe{{", headers={"Content-Type": "application/json"}
                           ).status_code == 422
        client.cookies.set("checkgate_screen_session", "v1.eyJvcCI6InYwMSJ9.forged")
        assert client.post("/api/override", json={"outcome": "pass", "reason": "staff_on_duty"}).status_code == 401
        assert client.get("/api/locales/fr").status_code == 404
    assert daemon.actions == []


def test_a_session_survives_a_restart_of_the_screen(daemon):
    with client_for(daemon) as client:
        sign_in(client)
        token = client.cookies.get("checkgate_screen_session")
    with client_for(daemon) as client:  # a new app: same data folder, same signing key
        client.cookies.set("checkgate_screen_session", token)
        assert client.get("/api/state").json()["operator"] == "v01"


def test_recheck_timer_is_listed_and_recorded(daemon):
    with client_for(daemon) as client:
        sign_in(client)
        res = client.post("/api/recheck", json={"label": "blue coat", "minutes": 10})
        assert res.status_code == 201
        timer = res.json()
        assert client.get("/api/state").json()["timers"][0]["label"] == "blue coat"
        assert client.delete(f"/api/recheck/{timer['id']}").status_code == 204
        assert client.delete(f"/api/recheck/{timer['id']}").status_code == 404
        assert client.get("/api/state").json()["timers"] == []
    assert daemon.actions[-1]["type"] == "recheck" and daemon.actions[-1]["operator"] == "v01"


def test_preview_is_a_small_jpeg(daemon):
    import cv2

    with client_for(daemon) as client:
        res = client.get("/api/preview.jpg")
        assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(res.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[1] == 320 and image.shape[0] == 240
        daemon.camera = None
        res = client.get("/api/preview.jpg")
        assert res.status_code == 200 and res.headers["content-type"].startswith("image/svg")


def test_state_counts_today_and_the_stream_starts_with_a_snapshot(daemon):
    daemon.emit("pass")
    with client_for(daemon) as client:
        daemon.emit("deny", ["fever"], temperature=38.2)
        daemon.emit("deny", ["revoked"])
        state = client.get("/api/state").json()
        assert state["events"][-1]["reasons"] == ["revoked"]
        counters = state["counters"]
        assert counters["denied"] == 2 and counters["fevers"] == 1
        assert counters["deny_reasons"] == {"fever": 1, "revoked": 1}
        assert state["health"]["thermometer"]["state"] == "ok"
        with client.stream("GET", "/api/stream") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            data = next(line for line in lines if line.startswith("data:"))
            assert json.loads(data[5:])["type"] == "snapshot"


def test_volunteers_pushed_by_the_centre_can_sign_in_and_removed_ones_cannot(daemon):
    import types

    with client_for(daemon) as client:
        assert client.get("/api/operators").json() == {"operators": ["v01", "v02"]}
        assert sign_in(client, operator="v09", pin="8642").status_code == 401
        # the daemon has verified and applied a signed config document from the centre
        daemon.credentials = types.SimpleNamespace(config_doc=types.SimpleNamespace(
            body={"volunteers": {"v09": pin_hash("8642"), "v01": None, "bad": "plaintext-pin"}}))
        assert client.get("/api/operators").json() == {"operators": ["v02", "v09"]}
        assert sign_in(client, operator="v09", pin="8642").status_code == 200
        assert sign_in(client, operator="v01").status_code == 401
        assert sign_in(client, operator="bad", pin="plaintext-pin").status_code == 401


def test_session_cookie_is_http_only_and_same_site_and_pins_are_never_echoed(daemon, caplog):
    with client_for(daemon) as client:
        res = sign_in(client)
        cookie = res.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert PIN not in res.text
        sign_in(client, pin="97531")
        assert all("97531" not in r.getMessage() and PIN not in r.getMessage() for r in caplog.records)
        assert "frame-ancestors 'none'" in client.get("/").headers["content-security-policy"]


def test_recheck_timers_survive_a_restart_and_a_broken_file_is_ignored(daemon, caplog):
    with client_for(daemon) as client:
        sign_in(client)
        client.post("/api/recheck", json={"label": "red scarf", "minutes": 20})
    with client_for(daemon) as client:
        timers = client.get("/api/state").json()["timers"]
        assert [t["label"] for t in timers] == ["red scarf"]
    (daemon.data_dir / "screen-timers.json").write_text('[{"id": "x"')
    with client_for(daemon) as client:
        assert client.get("/api/state").json()["timers"] == []
    assert any("timers file unreadable" in r.getMessage() for r in caplog.records)


def test_camera_preview_goes_to_other_devices_only_after_sign_in(daemon):
    with client_for(daemon, client_host="192.168.1.23") as phone:
        assert phone.get("/api/preview.jpg").headers["content-type"].startswith("image/svg")  # faces stay private
        sign_in(phone)
        assert phone.get("/api/preview.jpg").headers["content-type"] == "image/jpeg"


def test_live_streams_are_capped(daemon, monkeypatch):
    import edge.screen.app as screen_app

    monkeypatch.setattr(screen_app, "MAX_STREAMS", 0)
    with client_for(daemon) as client:
        res = client.get("/api/stream")
        assert res.status_code == 503 and res.json()["error"] == "too_many_screens"


def test_a_taken_port_is_logged_and_does_not_stop_the_gate(tmp_path, caplog):
    import socket

    from edge.screen.app import start_screen_server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon = StandInDaemon(tmp_path, port=taken.getsockname()[1])
        server = start_screen_server(daemon, ready_timeout=5)
        server.thread.join(5)
    assert not server.started and not server.thread.is_alive()
    assert any("could not listen" in r.getMessage() for r in caplog.records)
    assert daemon._listeners == []  # nothing left hooked into the daemon


def test_arbitrary_request_bodies_never_crash_the_screen(daemon):
    """Random JSON (and non-JSON) at every write route: a clear 4xx, never a server error."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                               max_leaves=12)
    bodies = json_values | st.fixed_dictionaries({}, optional={
        "operator": st.text(max_size=80), "pin": st.text(max_size=80), "outcome": st.sampled_from(["pass", "deny", "x"]),
        "reason": st.text(max_size=70), "note": st.text(max_size=220), "label": st.text(max_size=50),
        "minutes": st.floats(allow_nan=False) | st.integers()})

    with client_for(daemon) as client:
        sign_in(client)
        before = len(daemon.actions)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(route=st.sampled_from(["/api/session", "/api/override", "/api/recheck"]), body=bodies,
               raw=st.booleans())
        def check(route, body, raw):
            if raw:
                res = client.post(route, content=json.dumps(body).encode()[::-1] or b"{",
                                  headers={"Content-Type": "application/json"})
            else:
                res = client.post(route, json=body)
            assert res.status_code < 500, (route, body, res.text)
            if res.status_code >= 400:
                assert res.json().get("error"), res.text  # always a named reason

        check()
        accepted = daemon.actions[before:]
        assert all(a["operator"] == "v01" for a in accepted)  # nothing recorded under another id
