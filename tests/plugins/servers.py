"""Where the test suite's real servers listen (one place: the database plugin and the tests read it)."""

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
"""The database the suite connects to for administration (and for the empty schemas of migration tests)."""
