"""The dashboard in Debian's chromium (Playwright): login, live fever alert, log filters, CSV download."""

from __future__ import annotations

import csv
import io
import pathlib
import time

import pytest

from server.auth import create_user
from server.testing import LiveServer, make_event, publish_events, server_config
from tests.conftest import ARTIFACTS, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture
def live(mosquitto, sqlite_url):
    server = LiveServer(server_config(sqlite_url, mosquitto.port)).start()
    create_user(server.store, "alice", "alice-password", "admin")
    create_user(server.store, "sam", "steward-password", "steward")
    yield server
    server.stop()


def login(page, live, user="alice", password="alice-password"):
    page.goto(f"{live.url}/?lang=en")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#alerts", state="attached")


def test_dashboard_shows_a_fever_alert_live_filters_the_log_and_downloads_csv(browser, live, mosquitto):
    ARTIFACTS.mkdir(exist_ok=True)
    events = [make_event("north-1", s, subject=f"p_{s:04d}") for s in range(1, 6)]
    events += [make_event("east-2", s, outcome="deny", reasons=["status_red"], subject=f"p_e{s}") for s in range(1, 4)]
    publish_events(mosquitto.port, events)
    wait_until(lambda: live.ingest.stored_total == 8, message="seed events stored")

    page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
    login(page, live)
    assert page.inner_text("#total-today") == "8"
    page.wait_for_selector("#live-state.online", timeout=5000)  # the alert stream is connected

    fever = make_event("north-1", 6, outcome="deny", reasons=["fever"], temperature=38.4, subject="p_hot1")
    t0 = time.monotonic()
    publish_events(mosquitto.port, [fever])
    page.wait_for_selector(f"li[data-event-id='{fever['event_id']}']", timeout=2000)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"alert took {elapsed:.2f}s"
    alert_text = page.inner_text(f"li[data-event-id='{fever['event_id']}']")
    assert "north-1" in alert_text and "38.4" in alert_text
    page.screenshot(path=str(ARTIFACTS / "server-overview.png"), full_page=True)

    page.click("a[href='/events']")
    page.select_option("#f-gate", "east-2")
    page.select_option("#f-outcome", "deny")
    page.click("#f-apply")
    page.wait_for_url("**/events?*gate=east-2*")
    rows = page.query_selector_all("#events-table tbody tr")
    assert len(rows) == 3
    assert all("east-2" in r.inner_text() for r in rows)
    page.screenshot(path=str(ARTIFACTS / "server-events.png"), full_page=True)

    with page.expect_download() as info:
        page.click("#export-csv")
    path = info.value.path()
    table = list(csv.DictReader(io.StringIO(pathlib.Path(path).read_text(encoding="utf-8-sig"))))
    assert sorted(r["seq"] for r in table) == ["1", "2", "3"]
    assert {r["gate_id"] for r in table} == {"east-2"} and table[0]["subject"].startswith("p_e")

    page.goto(f"{live.url}/gates")
    assert page.inner_text("#gates").count("north-1") == 1
    page.goto(f"{live.url}/report")
    assert "9" in page.inner_text("#report")
    page.screenshot(path=str(ARTIFACTS / "server-report.png"), full_page=True)


def test_steward_dashboard_hides_personal_fields_and_admin_pages(browser, live, mosquitto):
    publish_events(mosquitto.port, [make_event("north-1", 1, outcome="deny", reasons=["fever"], temperature=38.2,
                                               subject="p_secret")])
    wait_until(lambda: live.ingest.stored_total == 1)
    page = browser.new_page()
    login(page, live, "sam", "steward-password")
    assert "p_secret" not in page.content() and "38.2" not in page.content()
    page.goto(f"{live.url}/events")
    assert "p_secret" not in page.content()
    response = page.goto(f"{live.url}/passes")
    assert response.status == 403
    page.goto(f"{live.url}/?lang=zh-CN")
    assert "总览" in page.content()
    page.screenshot(path=str(ARTIFACTS / "server-steward-zh.png"), full_page=True)
