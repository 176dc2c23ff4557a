"""One small world per provider for the fault matrix: its emulator, settings, a link, and where to hurt it.

A fault is generic when it happens below the provider (the network, the queue, the database, the
lease); those tests take the ``case`` fixture and run once per provider. ``Case`` says, for each
provider, which request reads the class list, which one is a later page of the same run, how to
end the grant at the provider and what a complete roster holds, so a test can assert "nothing
lost" against the emulator itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import select

from devtools.demo import headless_redirect
from devtools.emulation import settings_values
from emulators.clever import CleverEmulator
from emulators.core import EmulatorCore, RequestRecord
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from settings import Settings
from store.models import SyncRun
from store.runtime import Runtime
from store.vault import new_key
from tests.clever_fixtures import link_district
from tests.clikit import ROSTERSYNC
from tests.conftest import link_teacher
from tests.helpers import classes, enrollments
from tests.microsoft_fixtures import link_microsoft_teacher
from tests.provider_worlds import env_of

PROVIDERS = ("google", "clever", "microsoft")


@dataclass
class Case:
    """One provider's side of a fault test."""

    name: str
    emulator: EmulatorCore
    link: Callable[[Runtime], int]
    classes_path: str  # the run's first roster read
    later_path: str  # a read of the same run after the first roster write
    token_path: str | None  # where a refresh goes (None: no refresh token, e.g. a Clever district token)
    end_grant: Callable[[], None]  # the school or teacher ends our access at the provider
    expire_access: Callable[[], None]  # the access token in hand stops working (Clever: the district token rotates)
    expected: Callable[[], tuple[set[str], int]]  # class ids and the number of student enrolments a full roster has

    def settings_values(self) -> dict[str, Any]:
        return provider_values(self.name, self.emulator)


def provider_values(name: str, emulator: Any) -> dict[str, Any]:
    """The settings that point rostersync at one provider's emulator (its CA included): devtools' kit."""
    return settings_values(name, emulator)


def google_case(tmp_path: Path) -> Case:
    emu = GoogleEmulator(cert_dir=tmp_path, teachers=1, courses_per_teacher=2, students_per_course=6)
    teacher = emu.teacher_ids[0]

    def expected() -> tuple[set[str], int]:
        courses = emu.course_ids_of(teacher, states=("ACTIVE",))
        return set(courses), sum(len(emu.student_ids_of(c)) for c in courses)

    return Case(
        name="google",
        emulator=emu,
        link=lambda runtime: link_teacher(runtime, emu, 0),
        classes_path="/v1/courses",
        later_path="/batch",  # the roster batch: one HTTP round trip carrying every students and teachers list
        token_path="/token",
        end_grant=lambda: emu.revoke_grants(teacher),
        expire_access=lambda: emu.expire_access_tokens(teacher),
        expected=expected,
    )


def clever_case(tmp_path: Path) -> Case:
    emu = CleverEmulator(cert_dir=tmp_path, districts=1, teachers=1, courses_per_teacher=2, students_per_course=6)
    district = emu.district_ids[0]

    def expected() -> tuple[set[str], int]:
        sections = emu.section_ids(district)
        return set(sections), sum(len(emu.students_of(s)) for s in sections)

    def rotate() -> None:
        emu.rotate_district_token(district)

    return Case(
        name="clever",
        emulator=emu,
        link=lambda runtime: link_district(runtime, emu, 0),
        classes_path="/v3.0/sections",
        later_path="/v3.0/users",
        token_path=None,
        end_grant=lambda: emu.disconnect_district(district),
        expire_access=rotate,
        expected=expected,
    )


def microsoft_case(tmp_path: Path) -> Case:
    emu = MicrosoftEmulator(cert_dir=tmp_path, tenants=1, teachers=1, courses_per_teacher=2, students_per_course=6)
    tenant = emu.tenant_ids[0]
    teacher = emu.teacher_ids(tenant)[0]

    def expected() -> tuple[set[str], int]:
        ids = emu.class_ids(tenant, teacher_id=teacher)
        students = set(emu.student_ids(tenant))
        return set(ids), sum(len(set(emu.members_of(c)) & students) for c in ids)

    return Case(
        name="microsoft",
        emulator=emu,
        link=lambda runtime: link_microsoft_teacher(runtime, emu, teacher),
        classes_path="/education/me/classes",
        later_path="/$batch",
        token_path="/oauth2/v2.0/token",
        end_grant=lambda: emu.withdraw_consent(tenant),
        expire_access=emu.expire_access_tokens,
        expected=expected,
    )


MAKERS = {"google": google_case, "clever": clever_case, "microsoft": microsoft_case}


def base_settings(database_url: str, ca_bundle: Path, /, **overrides: Any) -> Settings:
    """Settings for a fault test; ``ca_bundle`` wins over any CA in ``overrides`` (a world trusts all its emulators)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": None,
        "pseudonym_key": secrets.token_urlsafe(48),
        "token_keys": new_key(),
        "ca_bundle": ca_bundle,
        "retry_min_backoff_ms": 20,
        "retry_max_backoff_ms": 100,
        "http_timeout_seconds": 5,
        **{f"{name}_redirect_uri": headless_redirect(name) for name in ("google", "clever", "microsoft")},
    }
    values.update(overrides)
    values["ca_bundle"] = ca_bundle
    return Settings(**values)


def started(name: str, tmp_path: Path) -> Iterator[Case]:
    """The body of a test module's ``case`` fixture: the provider's world, its emulator serving."""
    made = MAKERS[name](tmp_path)
    with made.emulator:
        yield made


def roster_of(runtime: Runtime, integration_id: int) -> tuple[set[str], int]:
    """What is stored now, in the shape ``Case.expected`` gives: class ids and student enrolments."""
    stored = {row.external_id for row in classes(runtime.engine, integration_id)}
    students = [e for e in enrollments(runtime.engine, integration_id) if e.role == "student"]
    return stored, len(students)


def outcomes(runtime: Runtime, integration_id: int) -> list[str]:
    with runtime.engine.connect() as connection:
        return list(
            connection.execute(
                select(SyncRun.outcome).where(SyncRun.integration_id == integration_id).order_by(SyncRun.id)
            ).scalars()
        )


def once_on(emulator: EmulatorCore, path: str, action: Callable[[], Any]) -> list[int]:
    """Run ``action`` (in the serving thread, before the answer) on the first request whose path has ``path``.

    Returns a list that gets the request log's length when it fires (the firing request is logged at
    that index or, for a Graph ``$batch``, after its sub-requests), so a test can tell that it fired and when.
    """
    fired: list[int] = []
    lock = threading.Lock()

    def hook(record: RequestRecord) -> None:
        with lock:
            if fired or path not in record.path:
                return
            fired.append(len(emulator.requests))
        action()

    emulator.add_hook(hook)
    return fired


def run_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at the same instant (a barrier), to open the widest race window there is."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(go, calls))


# --------------------------------------------------------------------- all three, with real workers
class World:
    """All three providers' worlds at once (serving from construction on), one set of settings for them,
    and the environment a worker process needs; leave it (``with`` or ``__exit__``) to stop the emulators."""

    def __init__(self, tmp_path: Path, database_url: str, **overrides: Any) -> None:
        self.cases = [MAKERS[name](tmp_path) for name in PROVIDERS]
        for case in self.cases:
            case.emulator.start()  # the settings need their ports
        self.tmp_path = tmp_path
        bundle = tmp_path / "ca-bundle.pem"
        bundle.write_bytes(b"".join(case.emulator.ca_path.read_bytes() for case in self.cases))
        values: dict[str, Any] = {}
        for case in self.cases:
            values |= case.settings_values()
        self.settings = base_settings(database_url, bundle, **(values | overrides))

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_exc: object) -> None:
        for case in self.cases:
            case.emulator.stop()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a worker process: every setting the test's runtime has, as ROSTERSYNC_*."""
        settings = self.settings
        assert settings.pseudonym_key is not None and settings.token_keys is not None and settings.broker_url
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")}
        env |= {name: value for name, value in env_of(settings).items() if value != ""}
        env["ROSTERSYNC_WORKER_METRICS_PORT"] = "0"  # no shared metrics port between tests
        return env | extra


class WorkerProcess:
    """`rostersync worker` in a session of its own, so that SIGKILL reaches its children too (and nothing else)."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [ROSTERSYNC, "worker", "--processes", "1", "--threads", "3", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, the whole process group: no shutdown hook, no lease release, no ack."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> int:
        if self.process.poll() is None:  # the main process only: it hands SIGTERM on (a second one means kill)
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._log.close()
        return code

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float = 90, worker: WorkerProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if worker is not None and not worker.alive():
            raise AssertionError(f"the worker died while waiting for {what}:\n{worker.text()[-3000:]}")
        time.sleep(0.1)
    tail = worker.text()[-3000:] if worker is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def finished_runs(runtime: Runtime, integration_id: int) -> list[Any]:
    with runtime.engine.connect() as connection:
        return list(
            connection.execute(
                select(SyncRun.outcome, SyncRun.rows_written, SyncRun.finished_at)
                .where(SyncRun.integration_id == integration_id, SyncRun.finished_at.is_not(None))
                .order_by(SyncRun.id)
            )
        )


def clear_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()
