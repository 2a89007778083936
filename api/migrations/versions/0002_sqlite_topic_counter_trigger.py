"""SQLite: the outbox row moves its topic's counter on by itself (one statement per event).

On SQLite an event's number is read from ``topic_seqs`` inside its own INSERT (writers take
turns, so the read is the latest) and this trigger stores it back in the same statement:
one statement on the request path instead of three (api/backends.py ``insert_event``).
PostgreSQL keeps its row-locked counter (the lock orders writers across hosts).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TRIGGER = "outbox_moves_topic_counter"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        f"""CREATE TRIGGER IF NOT EXISTS {TRIGGER} AFTER INSERT ON outbox
        BEGIN
            INSERT INTO topic_seqs (topic, seq) VALUES (NEW.topic, NEW.seq)
            ON CONFLICT (topic) DO UPDATE SET seq = excluded.seq;
        END"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
