"""The run counters have one definition (store.runs.RunCounts): the table, the outcome, the view and the API follow it.

The sync's outcome and the admin view inherit the counters; the ``sync_runs`` columns and the web
schema cannot (SQLAlchemy and pydantic declare their own fields), so they are held to it here.
"""

from __future__ import annotations

from dataclasses import fields

from sqlalchemy import Integer

from store.models import SyncRun
from store.overview import RunView
from store.runs import RUN_COUNTERS, RunCounts
from sync.outcomes import SyncOutcome
from web.schemas import Run

RUN_RECORD = ("id", "integration_id", "started_at", "finished_at", "outcome")
"""The columns of a run that are not counters."""


def test_the_table_has_one_integer_column_per_counter_and_no_other() -> None:
    columns = SyncRun.__table__.c
    assert tuple(column.name for column in columns if column.name not in RUN_RECORD) == RUN_COUNTERS
    for name in RUN_COUNTERS:
        assert isinstance(columns[name].type, Integer) and columns[name].default.arg == 0


def test_the_outcome_and_the_view_inherit_the_counters() -> None:
    assert issubclass(SyncOutcome, RunCounts) and issubclass(RunView, RunCounts)
    assert {f.name for f in fields(RunView)} == set(RUN_RECORD) | set(RUN_COUNTERS)


def test_the_api_schema_names_every_field_of_the_view() -> None:
    assert list(Run.model_fields) == [*RUN_RECORD, *RUN_COUNTERS]


def test_an_outcome_records_its_removals_as_rows_written() -> None:
    outcome = SyncOutcome(1, rows_written=2, removed=3, classes_seen=4)
    assert outcome.counts() == RunCounts(classes_seen=4, rows_written=5)
