"""The outbox keeps each event's W3C traceparent (sandbar/tracing.py): resends and
GET /events carry the trace of the request that made the event.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # like 0001's if_not_exists: a schema made by create_all (api/db.py) already has it
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("outbox")}
    if "trace" in columns:
        return
    with op.batch_alter_table("outbox") as batch:  # SQLite: a plain ADD COLUMN, no copy
        batch.add_column(sa.Column("trace", sa.String(55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("trace")
