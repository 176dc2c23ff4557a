"""PostgreSQL: ``ix_change_events_person`` is a hash index on the same prefix (issue 22)

The index keys each event by the first 8 characters of its pseudonym (migration 0010, store.models
``PERSON_KEY``) and serves one query only, an erase's equality on that prefix (store.outbox.naming). A
btree places each of a first sync's events (one an enrolment, random keys) by a descent of text
comparisons under the database's collation (``C.UTF-8`` is not byte order to PostgreSQL 15, so each
comparison is a ``strcoll``), and dirties a leaf anywhere in the tree. A hash index hashes the 8 bytes once
and appends to its bucket, and leaves out the events that name no one (a class's, an integration's), which
a btree indexes as NULL. Measured on this machine: 135,000 such events into a table already holding 400,000,
1.24 to 1.54 s with the hash index against 2.23 to 2.54 s with the btree (0.25 to 0.28 s with none).
The erase still finds a person's events through the index (an equality is all a hash index answers, and
all the erase asks). SQLite has no hash index: its index stays a btree, as 0010 made it.

Deploying: the index is built again with a plain ``CREATE INDEX`` inside the migration's transaction, which
holds writes to ``change_events`` (every roster write, through the triggers) until it is built (10 MB of
index for 300,000 events here; the build takes longer as the feed grows).

Revision ID: 0011_outbox_person_hash
Revises: 0010_outbox_bulk_events
Create Date: 2026-12-07 09:00:00
"""

from alembic import op

revision = "0011_outbox_person_hash"
down_revision = "0010_outbox_bulk_events"
branch_labels = None
depends_on = None

_KEY = "substr(person, 1, 8)"


def _person_index(method: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_change_events_person")
    op.execute(f"CREATE INDEX ix_change_events_person ON change_events USING {method} ({_KEY})")


def upgrade() -> None:
    _person_index("hash")


def downgrade() -> None:
    _person_index("btree")
