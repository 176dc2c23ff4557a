"""mass-removal breaker (issue 10, part 1): removals a sweep held back for an admin to approve or drop

Ids and counts only: a hold names its integration, the sync run that asked for the removals and the
generation it ran on; each held removal names a class, or a class and a person, by internal row id.
The foreign keys cascade, so purging or erasing the roster rows takes their held removals along.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "removal_holds",
        sa.Column("id", Id, nullable=False),
        sa.Column("integration_id", Id, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("held_at", sa.DateTime(), nullable=False),
        sa.Column("held_since", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_removal_holds_integration_id_integrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_holds")),
        sa.UniqueConstraint("run_id", name=op.f("uq_removal_holds_run_id")),
    )
    with op.batch_alter_table("removal_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_removal_holds_integration_id"), ["integration_id"], unique=True)
    op.create_table(
        "held_removals",
        sa.Column("id", Id, nullable=False),
        sa.Column("hold_id", Id, nullable=False),
        sa.Column("integration_id", Id, nullable=False),
        sa.Column("class_id", Id, nullable=False),
        sa.Column("person_id", Id, nullable=True),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["removal_holds.id"], name=op.f("fk_held_removals_hold_id_removal_holds"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["class_id"], ["classes.id"], name=op.f("fk_held_removals_class_id_classes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_held_removals_person_id_people"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_removals")),
    )
    with op.batch_alter_table("held_removals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_held_removals_hold_id"), ["hold_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_held_removals_integration_id"), ["integration_id"], unique=False)


def downgrade() -> None:
    op.drop_table("held_removals")
    op.drop_table("removal_holds")
