"""integrations.account_key (pseudonym of the linked provider account); audit actors wide enough for any id

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 22:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_key", sa.String(length=64), nullable=True))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("actor", existing_type=sa.String(length=128), type_=sa.String(length=160))


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("actor", existing_type=sa.String(length=160), type_=sa.String(length=128))
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("account_key")
