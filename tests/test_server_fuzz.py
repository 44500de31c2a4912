"""Schemathesis against the server's own OpenAPI document: no request may cause a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from edge.credentials.keys import generate_keypair
from server.app import create_app
from server.auth import create_user
from server.store import Store, migrate
from server.testing import make_event, server_config

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}


@pytest.fixture
def api_schema(sqlite_url, tmp_path):
    key, _pub = generate_keypair(tmp_path / "keys", kid="fz1")
    # no broker on port 1: publishing answers "not acknowledged" (422), never a crash
    config = server_config(sqlite_url, 1, signing_key=str(key), ingest_enabled=False)
    migrate(sqlite_url)
    store = Store(sqlite_url)
    create_user(store, "alice", "alice-password", "admin")
    import json

    from server.normalize import event_row
    from server.store import utcnow

    store.insert_events([event_row("checkgate/v1/gates/north-1/events", json.dumps(make_event("north-1", s)).encode(),
                                   utcnow()) for s in range(1, 30)])
    app = create_app(config, store, None, run_jobs=False)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    store.close()


@pytest.mark.slow
def test_no_request_causes_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    tried = 0
    statuses: dict[int, int] = {}
    for operation in operations:
        if operation.path == "/api/v1/alerts/stream":  # an endless stream by design; covered in the browser test
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call_and_validate(headers=ADMIN, checks=[not_a_server_error])
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        check()
        tried += 1
    assert tried == len(operations) - 1
    assert sum(statuses.values()) > 10 * tried, statuses  # many generated requests really ran
    assert statuses.get(200, 0) > 0 and statuses.get(422, 0) > 0, statuses
