"""the platform's change feed (issue 20): the outbox table, its counter row and the webhook position

``change_events`` holds the feed; ``outbox_head`` (one row) hands out sequence numbers under its row
lock and remembers how far retention has forgotten; ``webhook_cursor`` (one row) is how far delivery
to ``WEBHOOK_URL`` has got.

Revision ID: 0008_change_feed
Revises: 0007_linking
Create Date: 2026-12-06 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_change_feed"
down_revision = "0007_linking"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "change_events",
        sa.Column("seq", _ID, autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("integration_id", sa.BigInteger(), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_change_events")),
    )
    with op.batch_alter_table("change_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_change_events_integration_id"), ["integration_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_change_events_person"), ["person"], unique=False)
    head = op.create_table(
        "outbox_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("forgotten_through", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_outbox_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_head")),
    )
    op.bulk_insert(head, [{"id": 1, "last_seq": 0, "forgotten_through": 0}])
    cursor = op.create_table(
        "webhook_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("delivered_through", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_webhook_cursor_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_cursor")),
    )
    op.bulk_insert(cursor, [{"id": 1, "delivered_through": 0, "failures": 0, "last_error": ""}])


def downgrade() -> None:
    op.drop_table("webhook_cursor")
    op.drop_table("outbox_head")
    with op.batch_alter_table("change_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_change_events_person"))
        batch_op.drop_index(batch_op.f("ix_change_events_integration_id"))
    op.drop_table("change_events")
