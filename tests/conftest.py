"""Shared fixtures: a real Mosquitto per test, temporary SQLite files, PostgreSQL.

Nothing here depends on a broker or database already being set up for the tests:
the broker is started on a free port with a generated config, and each PostgreSQL
test gets a fresh database on the server at 127.0.0.1:5432 that is dropped after.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time
import uuid

import pytest

from checkgate.broker import MosquittoProcess

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
if not SHARED.exists():  # a clone placed elsewhere: look beside the repo root
    SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"

ARTIFACTS = pathlib.Path(__file__).resolve().parents[1] / "test-artifacts"  # screenshots (git-ignored)
# Debian's chromium, headless, with nothing phoning home (the machine has no network)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]

PG_ADMIN_URL = os.environ.get("CHECKGATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def shared_dir() -> pathlib.Path:
    if not SHARED.exists():
        pytest.fail("../shared (the project's public data) is missing beside the checkout")
    return SHARED


@pytest.fixture
def mosquitto(tmp_path):
    """A real Mosquitto on a free port; yields the MosquittoProcess (use .port)."""
    broker = MosquittoProcess(workdir=tmp_path / "broker")
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture
def sqlite_path(tmp_path) -> pathlib.Path:
    return tmp_path / "test.sqlite3"


@pytest.fixture
def sqlite_url(sqlite_path) -> str:
    return f"sqlite:///{sqlite_path}"


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "checkgate_test"):
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as err:  # CI must run these tests: fail loudly rather than skip
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable: {err}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database (dropped afterwards)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request):
    """The test runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
def store(db_url):
    """A migrated server Store on `db_url` (both backends)."""
    from server.store import Store, migrate

    migrate(db_url)
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser():
    """A headless Debian chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
