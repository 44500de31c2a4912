"""Several server instances on one shared subscription, and server restarts while gates publish."""

from __future__ import annotations

import contextlib

import pytest

from server.store import stored_event_keys
from server.testing import make_event, publish_events, running_ingest, server_config
from tests.conftest import wait_until


def test_two_instances_on_one_shared_subscription_store_every_event_exactly_once(mosquitto, db_url):
    a = server_config(db_url, mosquitto.port, mqtt={"client_id": "server-a", "share_group": "ingest"})
    b = server_config(db_url, mosquitto.port, mqtt={"client_id": "server-b", "share_group": "ingest"})
    events = [make_event(f"gate-{g}", s) for g in range(8) for s in range(1, 151)]
    with contextlib.ExitStack() as stack:
        _store_a, ingest_a = stack.enter_context(running_ingest(a))
        _store_b, ingest_b = stack.enter_context(running_ingest(b))
        publish_events(mosquitto.port, events + events[:100])  # 100 redelivered duplicates
        wait_until(lambda: ingest_a.stored_total + ingest_b.stored_total == len(events), timeout=60,
                   message="every event stored")
        wait_until(lambda: ingest_a.stored_total + ingest_b.stored_total + ingest_a.duplicate_total
                   + ingest_b.duplicate_total == len(events) + 100, timeout=30, message="duplicates handled")
        assert ingest_a.stored_total > 0 and ingest_b.stored_total > 0  # the broker really split the load
    keys = stored_event_keys(db_url)
    assert len(keys) == len(events)
    assert sorted(k[0] for k in keys) == sorted(e["event_id"] for e in events)


@pytest.mark.parametrize("mqtt_protocol", ["5", "3.1.1"])
def test_events_published_while_the_server_is_down_arrive_after_restart(mosquitto, sqlite_url, mqtt_protocol):
    config = server_config(sqlite_url, mosquitto.port, mqtt={"client_id": "server-restart", "protocol": mqtt_protocol})
    first = [make_event("north-1", s) for s in range(1, 51)]
    second = [make_event("north-1", s) for s in range(51, 301)]
    with running_ingest(config) as (_store, ingest):
        publish_events(mosquitto.port, first)
        wait_until(lambda: ingest.stored_total == 50)
    # the server is down: the broker keeps its persistent session and queues for it
    publish_events(mosquitto.port, second)
    with running_ingest(config) as (store, ingest):
        wait_until(lambda: ingest.stored_total == 250, timeout=30, message="queued events delivered after restart")
        assert store.gaps("north-1") == []
    assert len(stored_event_keys(sqlite_url)) == 300


@pytest.mark.chaos
@pytest.mark.slow
def test_server_killed_mid_stream_loses_nothing_and_stores_nothing_twice(mosquitto, tmp_path):
    import signal
    import subprocess
    import sys
    import threading

    import httpx
    import sqlalchemy as sa

    from checkgate.broker import free_port, wait_for_port

    db = tmp_path / "server.sqlite3"
    cfg = tmp_path / "server.yaml"
    http_port = free_port()
    cfg.write_text(f"database_url: sqlite:///{db}\nhttp: {{port: {http_port}}}\n"
                   f"mqtt: {{port: {mosquitto.port}, client_id: chaos-server}}\n")

    def start():
        return subprocess.Popen([sys.executable, "-m", "checkgate.cli", "server", "run", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stored() -> int:
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
        except sa.exc.OperationalError:
            return 0
        finally:
            engine.dispose()

    events = [make_event(f"gate-{g}", s) for g in range(4) for s in range(1, 1001)]
    proc = start()
    try:
        # the first start creates the persistent session; from then on the broker keeps our messages
        assert wait_for_port("127.0.0.1", http_port, 30)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{http_port}/healthz").json()["mqtt"], timeout=20)
        publisher = threading.Thread(target=publish_events, args=(mosquitto.port, events), daemon=True)
        publisher.start()
        wait_until(lambda: stored() >= 500, timeout=60, message="the server is storing")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        publisher.join(60)
        proc = start()
        wait_until(lambda: stored() == len(events), timeout=90, message="every event stored after the restart")
    finally:
        proc.terminate()
        proc.wait(15)
    keys = stored_event_keys(f"sqlite:///{db}")
    assert len(keys) == len(events) and len({k[0] for k in keys}) == len(events)
