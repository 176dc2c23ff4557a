"""The secrets dump (issue 10, part 6): a whole story in the production shape, then a search of everything kept.

Google, Clever and Microsoft (a teacher link and a tenant link), the Redis broker, a real
`rostersync worker` process logging at DEBUG, PostgreSQL. The story links, syncs, changes rosters,
expires and rotates tokens, lets a teacher revoke at the provider and an admin revoke here, and
leaves messages queued. Then every table of the schema, every log line (the worker's stdout and
stderr, this process's loggers, the console), every Redis key of the namespace and every message
ever queued are searched for the actual secret values: every access and refresh token the
emulators issued, MSAL token caches, the three client secrets, the Fernet keys, the pseudonym
key, and every canary personal value of the synthetic districts. ``test_privacy.py`` does the
same for the embedded demo (in-memory broker); this one adds Redis, a worker process, secrets.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import inspect, select, text

from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from settings import Settings
from store import integrations
from store.models import Person
from tests.conftest import REDIS_URL, MessageRecorder
from tests.faults import WorkerProcess, World, clear_namespace, finished_runs, wait_until
from worker import broker as brokers
from worker.linking import link_org
from worker.runtime import Runtime, build_runtime, set_runtime

MSAL_CACHE_MARKERS = ('"AccessToken"', '"RefreshToken"', '"IdToken"', '"AppMetadata"', '"credential_type"', '"secret"')
"""What a serialised MSAL token cache is made of (its sections, and the key each token sits under)."""


@pytest.fixture
def world(tmp_path: Path, pg_url: str) -> Iterator[World]:
    with World(tmp_path, pg_url, broker_url=REDIS_URL, broker_namespace=f"rs-secrets-{uuid.uuid4().hex[:10]}") as made:
        yield made
        clear_namespace(REDIS_URL, made.settings.broker_namespace)


def secrets_of(settings: Settings, emulators: list[object]) -> dict[str, set[str]]:
    """The actual secret values of this run, by kind."""
    assert settings.token_keys is not None and settings.pseudonym_key is not None
    tokens: set[str] = set()
    for emulator in emulators:
        tokens |= emulator.issued_tokens()  # type: ignore[attr-defined]
    return {
        "token": tokens,
        "client secret": {
            settings.google_client_secret.get_secret_value(),
            settings.clever_client_secret.get_secret_value(),
            settings.microsoft_client_secret.get_secret_value(),
        },
        "Fernet key": {key.strip() for key in settings.token_keys.get_secret_value().split(",") if key.strip()},
        "pseudonym key": {settings.pseudonym_key.get_secret_value()},
    }


def dump_schema(runtime: Runtime) -> str:
    """Every row of every table in the schema (not only the ones the models know), blobs included."""
    chunks: list[str] = []
    with runtime.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            chunks.extend(repr(tuple(row)) for row in connection.execute(text(f'SELECT * FROM "{table}"')))  # noqa: S608
    return "\n".join(chunks)


def dump_redis(url: str, namespace: str) -> str:
    """Every key of the namespace and everything in it, whatever its type."""
    client = redis.Redis.from_url(url)
    chunks: list[bytes] = []
    for key in client.scan_iter(f"{namespace}*"):
        kind = client.type(key)
        chunks.append(key)
        if kind == b"string":
            chunks.append(client.get(key) or b"")
        elif kind == b"hash":
            chunks.extend(k + b"=" + v for k, v in client.hgetall(key).items())
        elif kind == b"list":
            chunks.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            chunks.extend(client.smembers(key))
        elif kind == b"zset":
            chunks.extend(member for member, _score in client.zrange(key, 0, -1, withscores=True))
    client.close()
    return b"\n".join(chunks).decode("utf-8", "replace")


@pytest.mark.timeout(300)
def test_a_whole_run_on_redis_with_a_real_worker_keeps_no_secret_in_clear(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    google, clever, microsoft = (case.emulator for case in world.cases)
    assert isinstance(google, GoogleEmulator) and isinstance(clever, CleverEmulator)
    assert isinstance(microsoft, MicrosoftEmulator)
    runtime = build_runtime(world.settings)
    set_runtime(runtime)
    recorder = MessageRecorder()
    broker = brokers.make_broker(world.settings)
    broker.add_middleware(recorder)
    brokers.install(broker)
    from worker.actors import revoke_integration, sync_integration

    worker = WorkerProcess(world.env(), tmp_path / "worker.log", "--verbose")  # DEBUG: the most it ever logs
    try:
        teacher, district, ms_teacher = (case.link(runtime) for case in world.cases)
        tenant = link_org(runtime, provider_name="microsoft", org=microsoft.tenant_ids[0], tenant="tenant-one")
        ids = [teacher, district, ms_teacher, tenant]

        def cycle(count: int, of: list[int]) -> None:
            for one in of:
                sync_integration.send(one)
            wait_until(lambda: all(len(finished_runs(runtime, one)) >= count for one in of), "a cycle", worker=worker)

        cycle(1, ids)
        # Rosters change; every token in hand expires or rotates, so the next cycle refreshes and re-seals.
        course = google.course_ids_of(google.teacher_ids[0])[0]
        google.add_student(course)
        google.rename_user(google.teacher_ids[0])
        clever.add_student(clever.section_ids(clever.district_ids[0])[0])
        google.expire_access_tokens()
        microsoft.expire_access_tokens()
        clever.rotate_district_token(clever.district_ids[0])
        cycle(2, ids)
        # The Google teacher removes the app at Google; an admin revokes the Microsoft teacher here.
        google.revoke_grants(google.teacher_ids[0])
        revoke_integration.send(ms_teacher, "admin:secrets-test")
        cycle(3, [teacher, district, tenant])
        wait_until(lambda: integrations.load(runtime.engine, ms_teacher).status == "revoked", "the admin revoke")
        assert integrations.load(runtime.engine, teacher).status == "revoked"
    finally:
        assert worker.stop() == 0, worker.text()
    for one in ids:  # left in the queue: messages at rest in Redis
        sync_integration.send(one)
    brokers.shutdown()

    found = secrets_of(world.settings, [google, clever, microsoft])
    assert len(found["token"]) >= 8, "the story issued and rotated tokens"
    personal = google.personal_strings() | clever.personal_strings() | microsoft.personal_strings()
    captured = capsys.readouterr()
    tables = dump_schema(runtime)
    with runtime.engine.connect() as connection:
        teacher_fields = set(
            connection.execute(select(Person.display_name).where(Person.role == "teacher")).scalars()
        ) | set(connection.execute(select(Person.email_address).where(Person.role == "teacher")).scalars())
        sealed = [
            blob
            for blob in connection.execute(text("SELECT token_blob FROM integrations")).scalars()
            if blob is not None
        ]
    assert len(sealed) == 2, "the active integrations keep their tokens, sealed"
    for value in teacher_fields - {None}:  # the account holders' own names are kept, in their people row only
        tables = tables.replace(value, "")
    places = {
        "a table": tables,
        "the worker's log": worker.text(),
        "this process's log": "\n".join(r.getMessage() + str(r.exc_text or "") for r in caplog.records),
        "the console": captured.out + captured.err,
        "Redis": dump_redis(REDIS_URL, world.settings.broker_namespace),
        "a queued message": b"\n".join(recorder.encoded).decode(),
    }
    assert "sync of integration" in places["the worker's log"] and "DEBUG" in places["the worker's log"]
    assert len(recorder.encoded) == 4 + 4 + 3 + 1 + 4 and "sync_integration" in places["Redis"]
    for where, dumped in places.items():
        for kind, values in found.items():
            assert not [v for v in values if v in dumped], f"a {kind} in clear in {where}"
        assert not [marker for marker in MSAL_CACHE_MARKERS if marker in dumped], f"an MSAL token cache in {where}"
        assert not [value for value in personal if value in dumped], f"a canary personal value in {where}"
    set_runtime(None)
    runtime.engine.dispose()
