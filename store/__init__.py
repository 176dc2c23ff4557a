"""SQLAlchemy 2.0 models, fenced upserts and purges. Takes canonical records, never raw payloads."""
