"""The server's tables (SQLAlchemy Core), shared by the store and the migrations.

Times are stored as naive UTC datetimes so SQLite and PostgreSQL compare them the
same way. Columns holding personal data are listed in PERSONAL_EVENT_COLUMNS: the
retention job clears them and stewards never see them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# A 64-bit key that is still SQLite's rowid alias (only INTEGER PRIMARY KEY is).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("gate_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(16)),
    # ",fever,expired," so one reason is found with LIKE '%,fever,%'
    sa.Column("reasons", sa.String(512), nullable=False, server_default=""),
    sa.Column("alert", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("ts", sa.DateTime, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("credential_kind", sa.String(32)),
    # personal fields (purged after retention_days)
    sa.Column("subject", sa.String(64)),
    sa.Column("temperature_c", sa.Float),
    sa.Column("credential_status", sa.String(16)),
    sa.Column("operator", sa.String(64)),
    sa.Column("payload", sa.Text),
    sa.Column("purged", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_events_ts", "ts", "id"),
    sa.Index("ix_events_gate_ts", "gate_id", "ts", "id"),
    sa.Index("ix_events_gate_seq", "gate_id", "seq"),
    sa.Index("ix_events_subject_ts", "subject", "ts"),
    # alerts are rare: a partial index stays tiny and costs inserts almost nothing
    sa.Index("ix_events_alert", "id", postgresql_where=sa.text("alert"), sqlite_where=sa.text("alert = 1")),
)

PERSONAL_EVENT_COLUMNS = ("subject", "temperature_c", "credential_status", "operator", "payload")

dead_letters = sa.Table(
    "dead_letters", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary),
    sa.Index("ix_dead_letters_received_at", "received_at"),
)

gates = sa.Table(
    "gates", metadata,
    sa.Column("gate_id", sa.String(64), primary_key=True),
    sa.Column("min_seq", sa.BigInteger),
    sa.Column("max_seq", sa.BigInteger),
    sa.Column("event_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_event_at", sa.DateTime),
    sa.Column("last_seen", sa.DateTime),
    sa.Column("online", sa.Boolean),
    sa.Column("state_at", sa.DateTime),
    sa.Column("health", sa.Text),
)

rollup_hourly = sa.Table(
    "rollup_hourly", metadata,
    sa.Column("hour", sa.DateTime, primary_key=True),
    sa.Column("gate_id", sa.String(64), primary_key=True),
    sa.Column("outcome", sa.String(16), primary_key=True),
    # "*" holds the total per outcome; other rows count one reason each
    sa.Column("reason", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_rollup_hourly_gate_hour", "gate_id", "hour"),
)

rollup_daily = sa.Table(
    "rollup_daily", metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("gate_id", sa.String(64), primary_key=True),
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("reason", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

auth_tokens = sa.Table(
    "auth_tokens", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # session | api
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255)),
    sa.Column("detail", sa.Text),
    sa.Index("ix_audit_log_at", "at"),
)

# The pass registry: the only place mapping a pseudonymous subject to a person.
subjects = sa.Table(
    "subjects", metadata,
    sa.Column("subject", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128)),
    sa.Column("id_number", sa.String(64)),
    sa.Column("phone", sa.String(32)),
    sa.Column("household", sa.String(64)),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

passes = sa.Table(
    "passes", metadata,
    sa.Column("pass_id", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("zones", sa.String(255), nullable=False, server_default=""),
    sa.Column("not_before", sa.DateTime),
    sa.Column("expires", sa.DateTime),
    sa.Column("issued_at", sa.DateTime, nullable=False),
    sa.Column("issued_by", sa.String(64), nullable=False),
    sa.Column("kid", sa.String(32)),
    sa.Column("payload", sa.Text),
    sa.Column("revoked_at", sa.DateTime),
    sa.Column("revoke_reason", sa.String(255)),
    sa.Index("ix_passes_subject", "subject"),
)

status_entries = sa.Table(
    "status_entries", metadata,
    sa.Column("subject", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # green | yellow | red
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("source", sa.String(64)),
)

control_documents = sa.Table(
    "control_documents", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("doc_type", sa.String(16), nullable=False),  # status | trust | config
    sa.Column("target", sa.String(64), nullable=False),  # "all" or a gate id
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("signed", sa.LargeBinary),
    sa.Column("published_at", sa.DateTime, nullable=False),
    sa.Column("published_by", sa.String(64), nullable=False),
    sa.UniqueConstraint("doc_type", "target", "version", name="uq_control_documents_version"),
)
