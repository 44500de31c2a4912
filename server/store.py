"""Storage: SQLite (WAL) by default, PostgreSQL for real deployments.

One `Store` per process. Event batches go in one transaction each: the events
(idempotent on event_id), the per-gate sequence counters and the hourly/daily
rollups, so the dashboards never scan raw events and a crash never leaves the
rollups out of step with the events.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime as dt
import fcntl
import functools
import json
import logging
import pathlib
import time
import zoneinfo
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from server import models as m
from server.normalize import utc_naive

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent / "migrations"
TOTAL = "*"  # the rollup "reason" holding the total per outcome
_INSERT_CHUNK = 1000  # rows per INSERT statement (SQLite allows 32766 parameters)
_EVENT_COLS = ("event_id", "gate_id", "seq", "type", "outcome", "reasons", "alert", "ts", "received_at", "late",
               "credential_kind", "subject", "temperature_c", "credential_status", "operator", "payload")
_PG_TYPES = {"seq": "bigint", "alert": "boolean", "late": "boolean", "ts": "timestamp", "received_at": "timestamp",
             "temperature_c": "float8"}
_PG_TYPES = {c: _PG_TYPES.get(c, "text") for c in _EVENT_COLS}


def _pg_raw(conn: Connection, sql: str, params: list, fetch: bool = False) -> list:
    """Run `sql` with $n placeholders on the raw psycopg connection of `conn`'s transaction.

    A raw cursor takes the placeholders as they are; psycopg's default cursor would parse a
    statement with thousands of %s in Python on every batch, and arrays (unnest) are escaped
    element by element in Python too.
    """
    import psycopg

    cursor = psycopg.RawCursor(conn.connection.driver_connection)
    try:
        cursor.execute(sql, params)
        return cursor.fetchall() if fetch else []
    finally:
        cursor.close()


def _pg_values(conn: Connection, head: str, rows: list, tail: str, chunk: int = 2000) -> None:
    """`head VALUES (...), (...) tail` for many rows, in chunks (PostgreSQL allows 65,535 parameters)."""
    if not rows:
        return
    width = len(rows[0])
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        params = [v for row in part for v in row]
        _pg_raw(conn, f"{head} VALUES {_values_marks(len(part), width, True)} {tail}", params)


@functools.lru_cache(maxsize=32)
def _values_marks(rows: int, cols: int, numbered: bool) -> str:
    """"(?, ?), (?, ?)" or "($1, $2), ($3, $4)" for a multi-row VALUES clause."""
    if not numbered:
        one = "(" + ", ".join(["?"] * cols) + ")"
        return ", ".join([one] * rows)
    return ", ".join("(" + ", ".join(f"${r * cols + c + 1}" for c in range(cols)) + ")" for r in range(rows))


def _sqlite_value(value):
    """Values as SQLAlchemy stores them in SQLite (so its own queries compare them correctly)."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def make_engine(url: str, *, write: bool = False, pool_size: int = 5) -> Engine:
    """An engine with the settings the server relies on.

    SQLite: WAL, a busy timeout, and for the writer `BEGIN IMMEDIATE` so two
    processes writing the same file wait for each other instead of failing.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return sa.create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def _insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def migrate(url: str) -> str:
    """Bring the schema to the newest revision (safe to run from several processes at once)."""
    from alembic import command
    from alembic.config import Config

    for name in ("alembic", "alembic.runtime.migration", "alembic.runtime.plugins"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = make_engine(url)
    try:
        with _migration_lock(engine, url), engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
    finally:
        engine.dispose()
    logger.info("database schema at revision %s", version)
    return version


@contextlib.contextmanager
def _migration_lock(engine: Engine, url: str) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(725001)")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(725001)")
                conn.commit()
        return
    db_path = engine.url.database
    if not db_path or db_path == ":memory:":
        yield
        return
    with open(f"{db_path}.migrate-lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stored_event_keys(database_url: str) -> list[tuple[str, str, int]]:
    """(event_id, gate_id, seq) of every stored event row, duplicates included."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(m.events.c.event_id, m.events.c.gate_id, m.events.c.seq)
                                .order_by(m.events.c.id)).all()
    finally:
        engine.dispose()
    return [(r.event_id, r.gate_id, int(r.seq)) for r in rows]


def encode_cursor(ts: dt.datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """Raises ValueError on a cursor that was not made by encode_cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts_text, id_text = raw.split("|", 1)
        return dt.datetime.fromisoformat(ts_text).replace(tzinfo=None), int(id_text)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError("invalid cursor") from err


class Store:
    """All database access of the server."""

    def __init__(self, url: str, *, timezone: str = "Asia/Shanghai", pool_size: int = 5):
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.write_engine = make_engine(url, write=True, pool_size=2) if url.startswith("sqlite") else self.engine
        self.dialect = self.engine.dialect.name
        self.tz = zoneinfo.ZoneInfo(timezone)
        self._insert = _insert(self.dialect)

    def close(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()

    # --- writing ------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction, retried on deadlock / lock timeout by callers via _retry."""
        with self.write_engine.begin() as conn:
            yield conn

    def _retry(self, func, attempts: int = 6):
        for attempt in range(attempts):
            try:
                return func()
            except sa.exc.OperationalError as err:
                # deadlocks between instances (PostgreSQL) or a busy file (SQLite): try again
                if attempt == attempts - 1:
                    raise
                logger.warning("database busy, retrying (%s)", str(err.orig)[:120])
                time.sleep(0.05 * (attempt + 1))

    def insert_events(self, rows: list[dict]) -> int:
        """Store validated event rows; returns how many were new (the rest were duplicates)."""
        if not rows:
            return 0
        rows = sorted(rows, key=lambda r: r["event_id"])  # one lock order across instances
        return self._retry(lambda: self._insert_events(rows))

    def _insert_events(self, rows: list[dict]) -> int:
        with self.writing() as conn:
            inserted: list[dict] = []
            for start in range(0, len(rows), _INSERT_CHUNK):
                chunk = rows[start:start + _INSERT_CHUNK]
                new_ids = set(self._bulk_insert(conn, chunk))
                inserted += [r for r in chunk if r["event_id"] in new_ids]
            if inserted:
                self._update_gates(conn, inserted)
                self._update_rollups(conn, inserted)
        return len(inserted)

    # The hot path talks to the driver directly: one multi-row VALUES statement per
    # chunk, many times faster than a generic executemany with RETURNING.
    def _bulk_insert(self, conn: Connection, chunk: list[dict]) -> list[str]:
        cols = _EVENT_COLS
        pg = self.dialect == "postgresql"
        # one parameter per value: sent out of band, no quoting work (arrays would be escaped in Python)
        params: list = []
        for r in chunk:
            params += [r[c] for c in cols] if pg else [_sqlite_value(r[c]) for c in cols]
        sql = f"INSERT INTO events ({', '.join(cols)}) VALUES {_values_marks(len(chunk), len(cols), pg)}" \
              " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        if pg:
            return [r[0] for r in _pg_raw(conn, sql, params, fetch=True)]
        return [r[0] for r in conn.exec_driver_sql(sql, tuple(params))]

    def _update_gates(self, conn: Connection, inserted: list[dict]) -> None:
        per_gate: dict[str, list] = {}
        for r in inserted:
            g = per_gate.get(r["gate_id"])
            if g is None:
                per_gate[r["gate_id"]] = [r["gate_id"], r["seq"], r["seq"], 1, r["ts"], r["received_at"]]
            else:
                g[1] = min(g[1], r["seq"])
                g[2] = max(g[2], r["seq"])
                g[3] += 1
                g[4] = max(g[4], r["ts"])
                g[5] = max(g[5], r["received_at"])
        values = [per_gate[k] for k in sorted(per_gate)]
        if self.dialect == "postgresql":
            _pg_values(conn, "INSERT INTO gates (gate_id, min_seq, max_seq, event_count, last_event_at, last_seen)",
                       values, "ON CONFLICT (gate_id) DO UPDATE SET "
                       "event_count = gates.event_count + excluded.event_count, "
                       "min_seq = LEAST(gates.min_seq, excluded.min_seq), "
                       "max_seq = GREATEST(gates.max_seq, excluded.max_seq), "
                       "last_event_at = GREATEST(gates.last_event_at, excluded.last_event_at), "
                       "last_seen = GREATEST(gates.last_seen, excluded.last_seen)")
            return
        conn.exec_driver_sql(
            "INSERT INTO gates (gate_id, min_seq, max_seq, event_count, last_event_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (gate_id) DO UPDATE SET "
            "event_count = gates.event_count + excluded.event_count, "
            "min_seq = min(coalesce(gates.min_seq, excluded.min_seq), excluded.min_seq), "
            "max_seq = max(coalesce(gates.max_seq, excluded.max_seq), excluded.max_seq), "
            "last_event_at = max(coalesce(gates.last_event_at, excluded.last_event_at), excluded.last_event_at), "
            "last_seen = max(coalesce(gates.last_seen, excluded.last_seen), excluded.last_seen)",
            [tuple(_sqlite_value(v) for v in row) for row in values])

    def _update_rollups(self, conn: Connection, inserted: list[dict]) -> None:
        hourly: collections.Counter = collections.Counter()
        daily: collections.Counter = collections.Counter()
        tz = self.tz
        day_of_slot: dict[dt.datetime, dt.date] = {}
        for r in inserted:
            ts = r["ts"]
            hour = ts.replace(minute=0, second=0, microsecond=0)
            # every UTC offset is a multiple of 15 minutes: the local date is constant per quarter hour
            slot = ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0)
            day = day_of_slot.get(slot)
            if day is None:
                day = day_of_slot[slot] = slot.replace(tzinfo=dt.UTC).astimezone(tz).date()
            outcome = r["outcome"] or "none"
            gate = r["gate_id"]
            for reason in [TOTAL, *(x for x in r["reasons"].split(",") if x)]:
                hourly[(hour, gate, outcome, reason)] += 1
                daily[(day, gate, outcome, reason)] += 1
        for table, key, counts in (("rollup_hourly", "hour", hourly), ("rollup_daily", "day", daily)):
            items = sorted(counts.items())
            upsert = (f" ON CONFLICT ({key}, gate_id, outcome, reason) DO UPDATE SET "
                      f"count = {table}.count + excluded.count")
            if self.dialect == "postgresql":
                _pg_values(conn, f"INSERT INTO {table} ({key}, gate_id, outcome, reason, count)",
                           [(k[0], k[1], k[2], k[3], n) for k, n in items], upsert)
            else:
                conn.exec_driver_sql(
                    f"INSERT INTO {table} ({key}, gate_id, outcome, reason, count) VALUES (?, ?, ?, ?, ?)" + upsert,
                    [(_sqlite_value(k[0]), k[1], k[2], k[3], n) for k, n in items])

    def add_dead_letters(self, letters: list[tuple[dt.datetime, str, str, bytes]]) -> None:
        """(received_at, topic, reason, payload) of messages that could not be stored as events."""
        if not letters:
            return
        rows = [{"received_at": at, "topic": topic[:255], "reason": reason[:2000], "payload": payload[:65536]}
                for at, topic, reason, payload in letters]

        def _do():
            with self.writing() as conn:
                conn.execute(sa.insert(m.dead_letters), rows)
        self._retry(_do)

    def record_gate_state(self, gate_id: str, online: bool | None, health: dict | None,
                          received_at: dt.datetime) -> None:
        stmt = self._insert(m.gates).values(gate_id=gate_id, online=online, state_at=received_at,
                                            health=json.dumps(health) if health is not None else None,
                                            last_seen=received_at if online else None, event_count=0)
        set_ = {"online": stmt.excluded.online, "state_at": stmt.excluded.state_at}
        if health is not None:
            set_["health"] = stmt.excluded.health
        if online:
            set_["last_seen"] = stmt.excluded.last_seen
        stmt = stmt.on_conflict_do_update(index_elements=["gate_id"], set_=set_)

        def _do():
            with self.writing() as conn:
                conn.execute(stmt)
        self._retry(_do)

    def audit(self, actor: str, action: str, target: str | None = None, detail: dict | str | None = None) -> None:
        if isinstance(detail, dict):
            detail = json.dumps(detail, ensure_ascii=False, default=str)

        def _do():
            with self.writing() as conn:
                conn.execute(sa.insert(m.audit_log).values(at=utcnow(), actor=actor, action=action,
                                                           target=target, detail=detail))
        self._retry(_do)

    # --- retention ------------------------------------------------------------

    def purge_personal(self, older_than: dt.datetime, chunk: int = 5000) -> int:
        """Clear personal fields of events decided before `older_than`; rollups stay."""
        ev = m.events
        cleared = {c: None for c in m.PERSONAL_EVENT_COLUMNS}
        total = 0
        while True:
            with self.engine.connect() as conn:
                ids = conn.execute(sa.select(ev.c.id).where(ev.c.ts < older_than, ev.c.purged.is_(False))
                                   .order_by(ev.c.ts).limit(chunk)).scalars().all()
            if not ids:
                break

            def _do(ids=ids):
                with self.writing() as conn:
                    return conn.execute(ev.update().where(ev.c.id.in_(ids), ev.c.purged.is_(False))
                                        .values(purged=True, **cleared)).rowcount
            total += self._retry(_do)
        with self.writing() as conn:
            conn.execute(m.dead_letters.update().where(m.dead_letters.c.received_at < older_than,
                                                       m.dead_letters.c.payload.is_not(None)).values(payload=None))
        if total:
            logger.info("retention: cleared personal fields of %d events decided before %s", total, older_than)
        return total

    # --- reading ------------------------------------------------------------

    def search_events(self, *, gate: str | None = None, since: dt.datetime | None = None,
                      until: dt.datetime | None = None, outcome: str | None = None, reason: str | None = None,
                      subject: str | None = None, late: bool | None = None, alert: bool | None = None,
                      cursor: str | None = None, limit: int = 100) -> tuple[list, str | None]:
        """Newest first; returns (rows, next_cursor or None). Raises ValueError on a bad cursor."""
        ev = m.events.c
        q = sa.select(m.events)
        if gate:
            q = q.where(ev.gate_id == gate)
        if since:
            q = q.where(ev.ts >= utc_naive(since))
        if until:
            q = q.where(ev.ts < utc_naive(until))
        if outcome:
            q = q.where(ev.outcome == outcome)
        if reason:
            q = q.where(ev.reasons.like(f"%,{_escape_like(reason)},%", escape="\\"))
        if subject:
            q = q.where(ev.subject == subject)
        if late is not None:
            q = q.where(ev.late.is_(late))
        if alert is not None:
            q = q.where(self._alert_clause() if alert else ev.alert.is_(False))
        if cursor:
            c_ts, c_id = decode_cursor(cursor)
            q = q.where(sa.tuple_(ev.ts, ev.id) < sa.tuple_(sa.literal(c_ts, sa.DateTime), sa.literal(c_id)))
        q = q.order_by(ev.ts.desc(), ev.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1].ts, rows[-1].id) if more and rows else None)

    def alerts_after(self, after_id: int, limit: int = 50, *, newest: bool = False) -> list:
        """Alert events with an id above `after_id`, in id order: the first `limit` of them,
        or with `newest` the last `limit` (a dashboard catching up wants the latest)."""
        ev = m.events.c
        q = sa.select(m.events).where(self._alert_clause(), ev.id > after_id)
        with self.engine.connect() as conn:
            if newest:
                return list(reversed(conn.execute(q.order_by(ev.id.desc()).limit(limit)).all()))
            return conn.execute(q.order_by(ev.id).limit(limit)).all()

    def _alert_clause(self):
        # spelled exactly like the partial index's predicate, so both databases use it
        return sa.text("events.alert") if self.dialect == "postgresql" else sa.text("events.alert = 1")

    def last_event_id(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.coalesce(sa.func.max(m.events.c.id), 0))).scalar_one()

    def stats(self, *, since: dt.datetime, until: dt.datetime, bucket: str = "hour",
              gate: str | None = None, by_gate: bool = True, totals_only: bool = False) -> list:
        """Rollup rows (bucket, gate_id, outcome, reason, count) in [since, until).

        bucket "hour": UTC hours; "day": the office's local days (since/until dates).
        by_gate=False sums over all gates (gate_id "*"); totals_only keeps only reason "*".
        """
        if bucket == "day":
            t, key = m.rollup_daily, m.rollup_daily.c.day
            lo = since.replace(tzinfo=since.tzinfo or dt.UTC).astimezone(self.tz).date()
            hi = until.replace(tzinfo=until.tzinfo or dt.UTC).astimezone(self.tz).date()
            cond = [key >= lo, key < hi] if hi > lo else [key == lo]
        else:
            t, key = m.rollup_hourly, m.rollup_hourly.c.hour
            cond = [key >= utc_naive(since), key < utc_naive(until)]
        if gate:
            cond.append(t.c.gate_id == gate)
        if totals_only:
            cond.append(t.c.reason == TOTAL)
        if by_gate:
            q = (sa.select(key.label("bucket"), t.c.gate_id, t.c.outcome, t.c.reason, t.c.count).where(*cond)
                 .order_by(key, t.c.gate_id, t.c.outcome, t.c.reason))
        else:
            q = (sa.select(key.label("bucket"), sa.literal(gate or TOTAL).label("gate_id"), t.c.outcome, t.c.reason,
                           sa.func.sum(t.c.count).label("count"))
                 .where(*cond).group_by(key, t.c.outcome, t.c.reason).order_by(key, t.c.outcome, t.c.reason))
        with self.engine.connect() as conn:
            return conn.execute(q).all()

    def totals(self, *, since: dt.datetime, until: dt.datetime, gate: str | None = None) -> dict:
        """{gate_id: {outcome: n}} and reason counts over hourly rollups."""
        r = m.rollup_hourly.c
        q = (sa.select(r.gate_id, r.outcome, r.reason, sa.func.sum(r.count).label("n"))
             .where(r.hour >= utc_naive(since), r.hour < utc_naive(until))
             .group_by(r.gate_id, r.outcome, r.reason))
        if gate:
            q = q.where(r.gate_id == gate)
        per_gate: dict[str, dict[str, int]] = collections.defaultdict(dict)
        reasons: collections.Counter = collections.Counter()
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                if row.reason == TOTAL:
                    per_gate[row.gate_id][row.outcome] = int(row.n)
                else:
                    reasons[(row.outcome, row.reason)] += int(row.n)
        return {"per_gate": dict(per_gate), "reasons": reasons}

    def gates(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(m.gates).order_by(m.gates.c.gate_id)).all()

    def gate(self, gate_id: str):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(m.gates).where(m.gates.c.gate_id == gate_id)).first()

    def gaps(self, gate_id: str, limit: int = 100) -> list[tuple[int, int]]:
        """Missing seq ranges [(first, last), ...] for one gate, oldest first."""
        ev = m.events.c
        inner = (sa.select(ev.seq, sa.func.lag(ev.seq).over(order_by=ev.seq).label("prev"))
                 .where(ev.gate_id == gate_id).subquery())
        q = (sa.select((inner.c.prev + 1).label("first"), (inner.c.seq - 1).label("last"))
             .where(inner.c.seq - inner.c.prev > 1).order_by(inner.c.seq).limit(limit))
        with self.engine.connect() as conn:
            out = [(int(r.first), int(r.last)) for r in conn.execute(q)]
            first_seq = conn.execute(sa.select(sa.func.min(ev.seq)).where(ev.gate_id == gate_id)).scalar()
        if first_seq is not None and first_seq > 1:
            out.insert(0, (1, int(first_seq) - 1))
        return out[:limit]

    def dead_letter_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(m.dead_letters)).scalar_one()

    def dead_letters(self, limit: int = 100) -> list:
        d = m.dead_letters.c
        with self.engine.connect() as conn:
            return conn.execute(sa.select(d.id, d.received_at, d.topic, d.reason, d.payload)
                                .order_by(d.id.desc()).limit(limit)).all()

    def event_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.coalesce(sa.func.sum(m.gates.c.event_count), 0))).scalar_one()

    def audit_entries(self, limit: int = 200) -> list:
        a = m.audit_log.c
        with self.engine.connect() as conn:
            return conn.execute(sa.select(m.audit_log).order_by(a.id.desc()).limit(limit)).all()

    def execute_read(self, stmt) -> list:
        with self.engine.connect() as conn:
            return conn.execute(stmt).all()

    def iter_rows(self, stmt, chunk: int = 2000) -> Iterable:
        """Stream a large result (CSV export) without holding it in memory."""
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=chunk).execute(stmt)
            yield from result


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
