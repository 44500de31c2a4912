"""The volunteer screen end to end: the real gate daemon (simulated thermometer over a pty,
simulated camera), a real Mosquitto, the real server ingest into SQLite, Debian's chromium.

A visitor decided by the daemon shows on the page within 1 s; a fever sounds the alarm;
an override signed with a PIN reaches the server's database with the operator id; the
banner follows the thermometer going silent and coming back; the page rides out a
restart of the daemon, showing its last state and a reconnecting marker meanwhile.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import time

import pytest

from checkgate.broker import free_port
from tests.conftest import ARTIFACTS, wait_until
from tests.test_screen_browser import KIOSK
from tests.test_screen_standin import PIN, pin_hash

NORMAL_SKIN = 34.6
FEVER_SKIN = 36.9

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def issuer(tmp_path):
    from edge.credentials import keys

    priv, pub = keys.generate_keypair(tmp_path / "keys", kid="t1")
    return {"key": keys.load_private_key(priv), "kid": "t1", "pub": pub}


def make_pass(issuer, subject):
    from edge.credentials.passes import issue_pass

    return issue_pass(issuer["key"], issuer["kid"], subject, "resident",
                      expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))


def gate_config(tmp_path, mqtt_port, screen_port, issuer):
    from edge.config import EdgeConfig

    return EdgeConfig.model_validate({
        "gate_id": "north-1",
        "data_dir": str(tmp_path / "gate"),
        "mqtt": {"port": mqtt_port, "reconnect_max_s": 1.0},
        "thermometer": {"protocol": "gy-mcu90614", "port": "sim", "silent_after_s": 1.0,
                        "measurement": {"warmup_s": 0}},
        "camera": {"source": "sim", "fps": 15, "dedupe_window_s": 1.0},
        "credentials": {"trust_keys": [str(issuer["pub"])]},
        "policy": {"status_required_for": []},
        "flow": {"window_s": 6.0},
        "gate": {"open_s": 0.5, "signal_s": 0.2},
        "screen": {"port": screen_port, "language": "en", "volunteers": {"v01": pin_hash(PIN)}},
    })


class Gate:
    """The daemon plus its screen server, started and stopped the way `checkgate edge run` does."""

    def __init__(self, config, base_dir):
        self.config, self.base_dir = config, base_dir
        self.daemon = self.server = None

    def start(self) -> Gate:
        from edge.daemon import EdgeDaemon
        from edge.screen.app import start_screen_server

        self.daemon = EdgeDaemon(self.config, self.base_dir)
        self.daemon.start()
        self.server = start_screen_server(self.daemon)
        assert self.server.started
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.server.thread.join(10)
            self.server = None
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.screen.port}"


def decided(daemon, after_seq: int, timeout: float = 10.0) -> dict:
    """Wait for the daemon's next screening decision; returns it."""
    def find():
        events = [e for e in daemon.recent_events() if e["seq"] > after_seq and e["type"] == "screening"]
        return events[-1] if events else None
    return wait_until(find, timeout, interval=0.005, message="a screening decision")


def visitor(daemon, code, skin) -> None:
    daemon.thermo_sim.set_person(skin)
    daemon.camera.show_code(code)


def leave(daemon) -> None:
    """The visitor walks on; returns once the thermometer no longer sees anyone."""
    daemon.camera.show_nothing()
    daemon.thermo_sim.set_person(None)
    wait_until(lambda: not daemon.measurer.presence(time.monotonic()), 5, message="the visitor gone")



def new_page(browser, url):
    page = browser.new_page(viewport=KIOSK)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(url)
    page.wait_for_selector('body[data-connected="true"]', timeout=5000)
    return page, errors


def test_visitors_alarms_override_and_faults_on_the_real_gate(tmp_path, mosquitto, sqlite_url, issuer, browser):
    from server.testing import running_ingest, server_config

    gate = Gate(gate_config(tmp_path, mosquitto.port, free_port(), issuer), tmp_path).start()
    try:
        with running_ingest(server_config(sqlite_url, mosquitto.port)) as (store, _ingest):
            d = gate.daemon
            page, errors = new_page(browser, gate.url)

            # a normal visitor: the decision is on the page within 1 s of the daemon deciding it
            seq = d.outbox.last_seq
            visitor(d, make_pass(issuer, "p_alice"), NORMAL_SKIN)
            ev = decided(d, seq)
            page.wait_for_selector(f'#card[data-outcome="{ev["outcome"]}"]', timeout=1000)
            leave(d)
            assert ev["outcome"] == "pass" and page.inner_text("#outcome-word") == "PASS", (ev["reasons"], ev["temperature"])
            assert f'{ev["temperature"]["value_c"]:.1f} °C' in page.inner_text("#temp-value")
            wait_until(lambda: page.evaluate("document.getElementById('preview').naturalWidth") == 320, 5,
                       message="camera preview")

            # a fever: deny, the fever state and the alarm
            seq = d.outbox.last_seq
            visitor(d, make_pass(issuer, "p_bob"), FEVER_SKIN)
            ev = decided(d, seq)
            assert ev["outcome"] == "deny" and "fever" in ev["reasons"], (ev["reasons"], ev["temperature"])
            page.wait_for_selector('body[data-alarm="fever"]', timeout=1000)
            leave(d)
            assert page.inner_text("#outcome-word") == "STOP" and page.inner_text("#c-fevers") == "1"
            page.screenshot(path=str(_artifact("screen-e2e-fever-800x480")))

            # an override with PIN and reason reaches the server with the operator id
            page.click("#btn-pass")
            page.click('#signin-operators button[data-value="v01"]')
            page.fill("#pin", PIN)
            page.click("#signin-submit")
            page.click('#override-reasons button[data-value="paper_pass_checked"]')
            page.click("#override-submit")
            page.wait_for_selector("#reason:has-text('Override by v01')", timeout=2000)

            def override_stored():
                rows, _ = store.search_events(gate="north-1")
                return [r for r in rows if r.type == "override"]
            stored = wait_until(override_stored, 10, message="the override stored by the server")
            assert stored[0].operator == "v01" and stored[0].outcome == "pass"
            # everything the gate recorded (visits, the shift sign-in, the override) is on the server
            wait_until(lambda: store.event_count() == d.outbox.last_seq, 10, message="all gate events stored")
            rows, _ = store.search_events(gate="north-1")
            assert {r.type for r in rows} == {"screening", "shift", "override"}
            assert d.gate.open_count >= 2  # the visitor's pass and the override

            # the thermometer goes silent: banner with the fix; it comes back: banner gone
            d.thermo_sim.set_silent(True)
            page.wait_for_selector("#banner", state="visible", timeout=8000)
            assert "Thermometer silent" in page.inner_text("#banner")
            assert page.get_attribute("#h-thermometer", "data-state") == "bad"
            page.screenshot(path=str(_artifact("screen-e2e-silent-800x480")))
            d.thermo_sim.set_silent(False)
            page.wait_for_selector("#banner", state="hidden", timeout=8000)
            assert errors == []
    finally:
        gate.stop()


def test_page_rides_out_a_daemon_restart(tmp_path, mosquitto, issuer, browser):
    config = gate_config(tmp_path, mosquitto.port, free_port(), issuer)
    gate = Gate(config, tmp_path).start()
    try:
        d = gate.daemon
        page, errors = new_page(browser, gate.url)
        seq = d.outbox.last_seq
        visitor(d, make_pass(issuer, "p_carol"), NORMAL_SKIN)
        decided(d, seq)
        leave(d)
        page.wait_for_selector('#card[data-outcome="pass"]', timeout=1000)
        t0 = time.monotonic()
        gate.stop()
        page.wait_for_selector("#reconnecting", state="visible", timeout=5000)
        assert page.inner_text("#outcome-word") == "PASS"  # the last state stays
        gate.start()
        page.wait_for_selector('body[data-connected="true"]', timeout=10000)
        assert page.is_hidden("#reconnecting")
        assert page.inner_text("#outcome-word") == "PASS"
        assert page.inner_text("#c-passed") == "1"  # today's counters rebuilt from the outbox
        assert time.monotonic() - t0 < 20
        assert [e for e in errors if "ERR_CONNECTION_REFUSED" not in e] == []
    finally:
        gate.stop()


def _artifact(name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def test_volunteer_pushed_by_the_centre_can_sign_in(tmp_path, mosquitto, issuer):
    """A signed config document on the gate's control topic adds a volunteer; a forged one does not."""
    import httpx
    import paho.mqtt.client as mqtt

    from checkgate import protocol
    from edge.credentials import keys
    from edge.credentials.signed import sign_document

    gate = Gate(gate_config(tmp_path, mosquitto.port, free_port(), issuer), tmp_path).start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    try:
        d = gate.daemon
        assert d.uplink.wait_connected(10)
        forger_priv, _ = keys.generate_keypair(tmp_path / "forger", kid="t1")
        policy = {"status_required_for": []}
        forged = sign_document("config", 5, {"policy": policy, "volunteers": {"mallory": pin_hash("1111")}},
                               keys.load_private_key(forger_priv), "t1")
        genuine = sign_document("config", 6, {"policy": policy, "volunteers": {"v07": pin_hash("7531")}},
                                issuer["key"], "t1")
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        topic = protocol.config_topic("north-1")
        pub.publish(topic, forged, qos=1).wait_for_publish(5)
        wait_until(lambda: len(d.control_log) >= 1, 10, message="the forged document handled")
        with httpx.Client(base_url=gate.url) as client:
            assert client.post("/api/session", json={"operator": "mallory", "pin": "1111"}).status_code == 401
            pub.publish(topic, genuine, qos=1).wait_for_publish(5)
            wait_until(lambda: d.credentials.config_doc is not None, 10, message="the signed document applied")
            assert "v07" in client.get("/api/operators").json()["operators"]
            res = client.post("/api/session", json={"operator": "v07", "pin": "7531"})
            assert res.status_code == 200 and res.json() == {"operator": "v07"}
    finally:
        pub.loop_stop()
        gate.stop()
