"""A whole demo run, then a search for every personal string of the district (P1, P5, P6).

Students: nowhere at all. Teachers: their display name only in their own people row. Tokens:
nowhere in the clear. Logs (every logger at DEBUG) and queued messages: nothing personal, no token.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from devtools.demo import tell_story
from devtools.providers.clever import demo_emulator as demo_clever
from devtools.providers.google import demo_emulator
from devtools.providers.microsoft import demo_emulator as demo_microsoft
from store.models import ChangeEvent, Person
from tests.conftest import MessageRecorder
from tests.helpers import dump_tables
from worker import broker as brokers


def test_full_demo_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = MessageRecorder()
    original_make = brokers.make_broker

    def recording_broker(settings):  # type: ignore[no-untyped-def]
        broker = original_make(settings)
        broker.add_middleware(recorder)
        return broker

    caplog.set_level(logging.DEBUG)
    with (
        demo_emulator(60, tmp_path) as emulator,
        demo_clever(60, tmp_path) as clever,
        demo_microsoft(60, tmp_path) as microsoft,
    ):
        brokers.make_broker = recording_broker  # type: ignore[assignment]
        try:
            runtime = tell_story({"google": emulator, "clever": clever, "microsoft": microsoft}, tmp_path)
        finally:
            brokers.make_broker = original_make  # type: ignore[assignment]
            brokers.shutdown()
        personal = emulator.personal_strings() | clever.personal_strings() | microsoft.personal_strings()
        tokens = emulator.issued_tokens() | clever.issued_tokens() | microsoft.issued_tokens()
        member_selects = {
            chosen
            for call in microsoft.requests
            if call.path.endswith("/members") or call.path.endswith("/users/delta")
            for chosen in call.query.get("$select", [])
        }
        student_records = set(clever.student_ids(None)) | {
            s for d in clever.district_ids for s in clever.student_ids(d)
        }
        asked = {call.path.rsplit("/", 1)[-1] for call in clever.requests if call.path.startswith("/v3.0/users/")}
        roles = {role for call in clever.requests for role in call.query.get("role", [])}
    assert not asked & student_records and roles <= {"teacher"}, "a Clever student record was requested"
    assert member_selects == {"id,primaryRole"}, "a Graph read of people could have returned a student's name"

    assert recorder.encoded, "the demo queued its syncs"
    messages = b"\n".join(recorder.encoded).decode()
    captured = capsys.readouterr()
    logs = "\n".join(record.getMessage() + str(record.exc_text or "") for record in caplog.records)
    outputs = {"logs": logs, "queued messages": messages, "stdout": captured.out, "stderr": captured.err}
    for where, text in outputs.items():
        assert not [s for s in personal if s in text], f"personal data in {where}"
        assert not [t for t in tokens if t in text], f"token in {where}"

    with runtime.engine.connect() as connection:
        teacher_names = set(connection.execute(select(Person.display_name).where(Person.role == "teacher")).scalars())
        student_fields = set(
            connection.execute(select(Person.display_name).where(Person.role == "student")).scalars()
        ) | set(connection.execute(select(Person.email_address).where(Person.role == "student")).scalars())
    assert student_fields == {None}
    assert teacher_names - {None}, "the active teacher keeps a display name"
    dump = dump_tables(runtime.engine)
    with runtime.engine.connect() as connection:
        teacher_emails = set(connection.execute(select(Person.email_address).where(Person.role == "teacher")).scalars())
        # The change feed told the platform each teacher's name, and keeps that history for its retention
        # window (a renamed teacher's earlier name too): a teacher's name, never a student's field.
        told = {
            data.get("display_name")
            for data in map(json.loads, connection.execute(select(ChangeEvent.data)).scalars())
            if data.get("role") == "teacher" or ("display_name" in data and "role" not in data)
        }
    for name in (teacher_names | teacher_emails | told) - {None}:
        dump = dump.replace(name, "")
    assert not [s for s in personal if s in dump], "personal data in a table"
    assert not [t for t in tokens if t in dump], "token in the clear in a table"
