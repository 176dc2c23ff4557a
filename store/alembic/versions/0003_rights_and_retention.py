"""data-subject rights and retention: suppressions, account deletions, consent basis, audit details

Also makes the audit log append-only at the database (a trigger refuses UPDATE and DELETE), lets an
audit event name no single integration (an erase or a retention run spans several), and gives it a
``details`` column for ids and counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 22:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_APPEND_ONLY = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
"""


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", Id, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("provider", "tenant", "pseudonym", name=op.f("uq_suppressions_provider")),
    )
    op.create_table(
        "account_deletions",
        sa.Column("id", Id, nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.Column("purged_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_deletions")),
        sa.UniqueConstraint("account", name=op.f("uq_account_deletions_account")),
    )
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_basis", sa.String(length=32), nullable=True))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("integration_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("details", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER audit_events_no_update")
        op.execute("DROP TRIGGER audit_events_no_delete")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("details")
        batch_op.alter_column("integration_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("consent_basis")
    op.drop_table("account_deletions")
    op.drop_table("suppressions")
