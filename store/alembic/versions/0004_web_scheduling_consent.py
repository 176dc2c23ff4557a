"""web + scheduler (issue 8): consent basis, per-integration interval, coalescing, manual cooldown, pending revokes

Revision ID: 0004
Revises: 0003

The integrations' ``consent_basis`` column itself comes from 0003 (rights and retention), which
shows it in exports and the audit; this revision starts recording it.
Create Date: 2026-11-29 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        # integrations.consent_basis (0003): NULL is no recorded basis, so no student is synced (P7);
        # existing links are not back-filled.
        batch_op.add_column(sa.Column("sync_interval_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("manual_sync_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("link_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_basis", sa.String(length=16), nullable=True))
    op.create_table(
        "pending_revokes",
        sa.Column("id", Id, nullable=False),
        sa.Column("integration_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("token_blob", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_revokes")),
    )
    with op.batch_alter_table("pending_revokes", schema=None) as batch_op:
        batch_op.create_index("ix_pending_revokes_due", ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pending_revokes_integration_id"), ["integration_id"], unique=False)


def downgrade() -> None:
    op.drop_table("pending_revokes")
    with op.batch_alter_table("link_attempts", schema=None) as batch_op:
        batch_op.drop_column("consent_basis")
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("manual_sync_at")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("sync_interval_seconds")
