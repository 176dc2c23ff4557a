"""A whole demo run, then a search for every personal string of the district (P1, P5, P6).

Students: nowhere at all. Teachers: their display name only in their own people row. Tokens:
nowhere in the clear. Logs (every logger at DEBUG) and queued messages: nothing personal, no token.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from store.models import Person
from tests.conftest import MessageRecorder
from tests.helpers import dump_tables
from worker import broker as brokers
from worker.demo import demo_emulator, tell_story


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
    with demo_emulator(60, tmp_path) as emulator:
        brokers.make_broker = recording_broker  # type: ignore[assignment]
        try:
            runtime = tell_story(emulator, tmp_path)
        finally:
            brokers.make_broker = original_make  # type: ignore[assignment]
            brokers.shutdown()
        personal = emulator.personal_strings()
        tokens = emulator.issued_tokens()

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
        ) | set(connection.execute(select(Person.email_address)).scalars())
    assert student_fields == {None}
    assert teacher_names - {None}, "the active teacher keeps a display name"
    dump = dump_tables(runtime.engine)
    for name in teacher_names - {None}:
        dump = dump.replace(name, "")
    assert not [s for s in personal if s in dump], "personal data in a table"
    assert not [t for t in tokens if t in dump], "token in the clear in a table"
