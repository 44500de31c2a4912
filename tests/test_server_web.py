"""Dashboard pages over HTTP (no browser): login, roles, bad filters, forms."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient

from edge.credentials.keys import generate_keypair
from server.app import create_app
from server.auth import create_user
from server.store import Store, migrate
from server.testing import server_config

PAGES = ["/", "/gates", "/events", "/report", "/passes", "/status"]


@pytest.fixture
def client(sqlite_url, tmp_path):
    key, _ = generate_keypair(tmp_path / "keys", kid="w1")
    config = server_config(sqlite_url, 1, signing_key=str(key), ingest_enabled=False)
    migrate(sqlite_url)
    store = Store(sqlite_url)
    create_user(store, "alice", "alice-password", "admin")
    create_user(store, "sam", "steward-password", "steward")
    with TestClient(create_app(config, store, None, run_jobs=False), follow_redirects=False) as c:
        yield c
    store.close()


def login(client, user, password):
    return client.post("/login", data={"username": user, "password": password, "next": "/"})


def test_pages_send_anonymous_visitors_to_the_login(client):
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def test_login_rejects_a_wrong_password_and_sets_a_strict_cookie(client):
    r = login(client, "alice", "wrong-password")
    assert r.status_code == 401 and "用户名或密码错误" in r.text  # zh-CN unless the browser asks otherwise
    r = login(client, "alice", "alice-password")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    for path in PAGES:
        assert client.get(path).status_code == 200, path
    assert "总览" in client.get("/?lang=zh-CN").text
    assert client.post("/logout").status_code == 303
    assert client.get("/").status_code == 303


def test_login_next_cannot_redirect_to_another_site(client):
    r = client.post("/login", data={"username": "alice", "password": "alice-password", "next": "//evil.example/"})
    assert r.headers["location"] == "/"


def test_steward_gets_403_on_admin_pages(client):
    login(client, "sam", "steward-password")
    assert client.get("/passes").status_code == 403
    assert client.post("/status/publish", data={"what": "status"}).status_code == 403


@pytest.mark.parametrize("query", ["gate=NOT VALID", "since=yesterday", "cursor=%%%", "reason=a%25b",
                                   "until=99999-01-01T00:00", "outcome=maybe", "date=2026-13-40"])
def test_bad_filters_are_reported_not_crashed(client, query):
    login(client, "alice", "alice-password")
    assert client.get(f"/events?{query}").status_code == 200
    assert client.get(f"/report?{query}").status_code == 200


def test_issue_import_and_revoke_passes_from_the_pages(client):
    login(client, "alice", "alice-password")
    r = client.post("/passes", data={"kind": "resident", "name": "赵六", "zones": "north", "expires": "2027-03-01"})
    assert r.status_code == 303 and "issued" in r.headers["location"]
    r = client.post("/passes/import", files={"file": ("p.csv", io.BytesIO(
        "name,kind,expires\n钱七,visitor,2027-01-01\n".encode()))})
    assert "issued%201" in r.headers["location"]
    page = client.get("/passes").text
    assert "赵六" in page and "钱七" in page
    pass_id = re.search(r'action="/passes/(ps_[0-9a-f]+)/revoke"', page).group(1)
    assert client.post(f"/passes/{pass_id}/revoke", data={"reason": "lost card"}).status_code == 303
    assert client.get(f"/passes/{pass_id}/card").status_code == 200
    sheet = client.get("/passes/cards").text
    # the revoked pass is not printed
    assert sheet.count('class="pass-card"') == 1 and ("赵六" in sheet) != ("钱七" in sheet)
    r = client.post("/status/import", files={"file": ("s.csv", io.BytesIO(b"subject,status\np_x,red\n"))})
    assert "imported%201" in r.headers["location"]
    # no broker in this test: publishing fails with a message, not an error page
    r = client.post("/status/publish", data={"what": "status"})
    assert r.status_code == 303 and "error" in r.headers["location"]


def test_gate_page_shows_devices_faults_queue_and_missing_ranges(client):
    import json

    from server.normalize import event_row
    from server.store import utcnow
    from server.testing import make_event

    store = client.app.state.store
    store.record_gate_state("east-2", True, {"camera": {"state": "stalled"}, "queue": {"pending": 4},
                                             "lists": {"status": {"version": 9, "age_s": 120}},
                                             "faults": ["camera_stalled"]}, utcnow())
    store.insert_events([event_row("checkgate/v1/gates/east-2/events", json.dumps(make_event("east-2", s)).encode(),
                                   utcnow()) for s in (1, 4)])
    store.add_dead_letters([(utcnow(), "checkgate/v1/gates/east-2/events", "payload is not JSON", b"{")])
    login(client, "sam", "steward-password")
    page = client.get("/gates?lang=en").text
    assert "camera: stalled" in page and "camera_stalled" in page and "status: v9 (2 min)" in page
    assert "2–3" in page  # the missing seq range
    assert "payload is not JSON" in page and "{" not in page.split('id="dead-letters"')[1].split("</table>")[0]


def test_pages_load_scripts_and_styles_only_from_this_server(client):
    login(client, "alice", "alice-password")
    for path in PAGES:
        page = client.get(path).text
        for ref in re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page):
            assert ref.startswith("/static/"), f"{path} loads {ref}"
            assert client.get(ref).status_code == 200, ref


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://other.testserver"},  # a sibling site on the domain
    {"Origin": "https://evil.example"},  # an older browser: no Sec-Fetch-Site
    {"Origin": "null"},  # a sandboxed frame or a data: page
])
def test_a_form_posted_from_another_site_is_refused_and_changes_nothing(client, headers):
    login(client, "alice", "alice-password")
    r = client.post("/passes", data={"kind": "resident", "name": "赵六", "zones": "north", "expires": "2027-03-01"},
                    headers=headers)
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = client.post("/api/v1/status/publish", headers=headers)  # the session cookie reaches the API too
    assert r.status_code == 403
    assert "赵六" not in client.get("/passes").text


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    {"Origin": "http://testserver"},
    {"Sec-Fetch-Site": "none"},  # typed into the address bar
    {},  # not a browser
])
def test_a_form_posted_from_the_dashboard_itself_goes_through(client, headers):
    login(client, "alice", "alice-password")
    r = client.post("/passes", data={"kind": "resident", "name": "赵六", "zones": "north", "expires": "2027-03-01"},
                    headers=headers)
    assert r.status_code == 303 and "issued" in r.headers["location"]


def test_a_trusted_origin_behind_a_proxy_may_post(sqlite_url, tmp_path):
    config = server_config(sqlite_url, 1, ingest_enabled=False, http={"trusted_origins": ["https://centre.example.org/"]})
    migrate(sqlite_url)
    store = Store(sqlite_url)
    create_user(store, "alice", "alice-password", "admin")
    try:
        with TestClient(create_app(config, store, None, run_jobs=False), follow_redirects=False) as c:
            proxied = {"Origin": "https://centre.example.org"}  # an older browser, Host rewritten by the proxy
            assert login(c, "alice", "alice-password").status_code == 303
            assert c.post("/logout", headers=proxied).status_code == 303
            assert c.post("/logout", headers={"Origin": "https://evil.example"}).status_code == 403
    finally:
        store.close()
