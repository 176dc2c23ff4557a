"""trust at the edges of a browser link (issue 18): the browser a link began in, and spent link nonces

``link_attempts.browser_hash``: SHA-256 of the random value of the ``__Host-`` cookie set by
``/link``; NULL marks a state issued by ``rostersync link start`` (headless). ``link_nonces``: the
nonce of each signed ``/link`` request used once, kept until the signature it came with expires.

Revision ID: 0007_linking
Revises: 0006
Create Date: 2026-12-06 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_linking"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("link_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("browser_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "link_nonces",
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce_hash", name=op.f("pk_link_nonces")),
    )
    with op.batch_alter_table("link_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_nonces_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("link_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_nonces_expires_at"))
    op.drop_table("link_nonces")
    with op.batch_alter_table("link_attempts", schema=None) as batch_op:
        batch_op.drop_column("browser_hash")
