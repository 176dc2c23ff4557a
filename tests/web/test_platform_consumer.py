"""The reference consumer of docs/platform.md, run as printed there against `rostersync web` in a process.

The roster comes from real syncs of the Google emulator; the events are the ones the outbox writes for
those changes (tests/feedkit.py ``events_between``). After each step the consumer's SQLite mirror must
equal the snapshot the /v1 lists serve.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from pathlib import Path
from types import ModuleType

from emulators.google import GoogleEmulator
from services.revoke import revoke_integration
from settings import Settings
from store.runtime import Runtime
from sync.cycle import run_sync
from tests.clikit import env_for
from tests.conftest import Linker
from tests.feedkit import events_between, forget, mirrored, roster, served, write_events
from tests.proxykit import free_port, rostersync_web
from tests.webkit import PLATFORM_TOKENS

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = ROOT / "docs" / "examples" / "platform_consumer.py"
TOKEN = PLATFORM_TOKENS[0]


def _consumer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("platform_consumer", CONSUMER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_show_the_consumer_in_full() -> None:
    docs = (ROOT / "docs" / "platform.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, flags=re.DOTALL)
    assert CONSUMER.read_text() in blocks


def _change(runtime: Runtime, emulator: GoogleEmulator, ids: list[int], step: int) -> None:
    """One round of roster changes at the provider, synced, with the events the outbox writes for them."""
    before = roster(runtime.engine)
    teacher = emulator.teacher_ids[0]
    course, other = emulator.course_ids_of(teacher, states={"ACTIVE"})[:2]
    emulator.remove_student(course, emulator.student_ids_of(course)[0])
    emulator.add_student(other)
    emulator.rename_course(other, name=f"Renamed {step}", section=f"S{step}")
    emulator.name_user(teacher, "Step", f"Teacher {step}")
    if step == 2:
        emulator.archive_course(course)
    assert run_sync(runtime, ids[0]).outcome == "ok"
    events = events_between(before, roster(runtime.engine))
    expected = {"class.upserted", "member.added", "person.updated"} | {
        "member.removed" if step == 1 else "class.removed"
    }
    assert {kind for kind, _, _ in events} >= expected
    write_events(runtime.engine, events)


def test_the_reference_consumer_mirrors_the_snapshot_through_every_change(
    settings: Settings, runtime: Runtime, link: Linker, emulator: GoogleEmulator, tmp_path: Path
) -> None:
    consumer, mirror = _consumer(), tmp_path / "mirror.db"
    ids = [link(0), link(1)]
    for integration_id in ids:
        assert run_sync(runtime, integration_id).outcome == "ok"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with rostersync_web(env_for(settings) | {"ROSTERSYNC_PLATFORM_TOKENS": ",".join(PLATFORM_TOKENS)}, port):
        consumer.run(base, TOKEN, str(mirror))  # head, snapshot, feed
        assert mirrored(mirror) == served(base, TOKEN, page=3) == roster(runtime.engine)
        taken_at = consumer.Mirror(str(mirror)).position()

        _change(runtime, emulator, ids, 1)
        before = roster(runtime.engine)
        revoke_integration(runtime, ids[1], actor="admin:test", reason="")
        write_events(runtime.engine, events_between(before, roster(runtime.engine)))
        consumer.run(base, TOKEN, str(mirror))
        assert mirrored(mirror) == served(base, TOKEN, page=3)
        assert not [key for key in mirrored(mirror)["members"] if key[0] == ids[1]]

        again = sqlite3.connect(mirror)  # the same events applied twice change nothing
        with again:
            again.execute("UPDATE position SET seq = ?", (taken_at,))
        again.close()
        consumer.run(base, TOKEN, str(mirror))
        assert mirrored(mirror) == served(base, TOKEN, page=3)

        stale = consumer.Mirror(str(mirror)).position()
        _change(runtime, emulator, ids, 2)
        forget(runtime.engine, consumer.Api(base, TOKEN).get("/v1/changes/head")["seq"])  # past the mirror's
        consumer.run(base, TOKEN, str(mirror))  # 410, a new snapshot, the feed from its head
        assert consumer.Mirror(str(mirror)).position() > stale
        assert mirrored(mirror) == served(base, TOKEN, page=3) == roster(runtime.engine)
