"""lighter event indexes: partial alert index, no outcome index

Every index costs time on each insert; an outcome filter is always combined with a
time range (served by ix_events_ts), and alerts are rare enough for a partial index.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_events_outcome_ts", table_name="events")
    op.drop_index("ix_events_alert_id", table_name="events")
    op.create_index("ix_events_alert", "events", ["id"], postgresql_where=sa.text("alert"),
                    sqlite_where=sa.text("alert = 1"))


def downgrade() -> None:
    op.drop_index("ix_events_alert", table_name="events")
    op.create_index("ix_events_alert_id", "events", ["alert", "id"])
    op.create_index("ix_events_outcome_ts", "events", ["outcome", "ts"])
