"""The tables of Sandbar 0.1: articles, users, the outbox, topic counters, facts.

``if_not_exists``: a database that ``create_schema`` made before migrations existed is
adopted as it is.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: rows still waiting for the bridge: the partial index's condition
UNACKNOWLEDGED = sa.text("delivered_at IS NULL AND failed IS NULL")


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_articles"),
        if_not_exists=True,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("token_version", sa.Integer, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        if_not_exists=True,
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("audience", sa.Text, nullable=True),
        sa.Column("lease_until", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("delivered_at", sa.BigInteger, nullable=True),
        sa.Column("failed", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        sa.UniqueConstraint("topic", "seq", name="uq_outbox_topic_seq"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_outbox_pending", "outbox", ["delivered_at", "lease_until"], if_not_exists=True
    )
    op.create_index("ix_outbox_ts", "outbox", ["ts"], if_not_exists=True)
    op.create_index(
        "ix_outbox_unacknowledged",
        "outbox",
        ["topic", "seq"],
        sqlite_where=UNACKNOWLEDGED,
        postgresql_where=UNACKNOWLEDGED,
        if_not_exists=True,
    )
    op.create_table(
        "topic_seqs",
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("topic", name="pk_topic_seqs"),
        if_not_exists=True,
    )
    op.create_table(
        "sandbar_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_sandbar_meta"),
        if_not_exists=True,
    )


def downgrade() -> None:
    for table in ("sandbar_meta", "topic_seqs", "outbox", "users", "articles"):
        op.drop_table(table)
