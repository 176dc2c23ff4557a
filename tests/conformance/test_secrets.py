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

``test_every_logger_at_debug_names_no_provider_id_and_no_token`` (issue 18, item 13) puts every logger
of this process at DEBUG, the HTTP libraries' own included (urllib3, requests-oauthlib, oauthlib, MSAL,
google-auth, googleapiclient), as an embedding application may, links and syncs every kind of link of
the three providers in-process, and searches what was logged for every raw person id the emulators
issued (teachers and students) and every token.
"""

from __future__ import annotations

import http.client
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httplib2
import pytest
import redis
from sqlalchemy import inspect, select, text

from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from services.linking import link_org
from services.revoke import revoke_integration as revoke_here
from settings import Settings
from store import integrations
from store.models import Person
from store.runtime import Runtime, build_runtime, set_runtime
from sync.cycle import run_sync
from tests.clever_fixtures import link_clever_teacher
from tests.conftest import REDIS_URL, MessageRecorder
from tests.faults import WorkerProcess, World, clear_namespace, finished_runs, wait_until
from worker import broker as brokers

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
            settings.google.client_secret.get_secret_value(),
            settings.clever.client_secret.get_secret_value(),
            settings.microsoft.client_secret.get_secret_value(),
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
    raw_ids = google.person_ids() | clever.person_ids() | microsoft.person_ids()
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
    for where in ("the worker's log", "this process's log", "the console"):
        assert not [value for value in raw_ids if value in places[where]], f"a raw provider person id in {where}"
    set_runtime(None)
    runtime.engine.dispose()


@pytest.fixture
def every_logger_at_debug() -> Iterator[None]:
    """Every logger that exists once the connectors are imported at DEBUG, the root too; restored after."""
    import connectors.clever
    import connectors.google
    import connectors.microsoft  # noqa: F401 - their libraries create their loggers on import

    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    httplib2.debuglevel = 4  # httplib2's own switch: http.client then prints every request it sends
    http.client.HTTPConnection.debuglevel = 1  # the same for requests (urllib3), the usual debugging recipe
    yield
    http.client.HTTPConnection.debuglevel = 0
    httplib2.debuglevel = 0
    for logger, level in levels:
        logger.setLevel(level)


def leaks(records: list[logging.LogRecord], values: set[str]) -> dict[str, int]:
    """Loggers whose records carry any of ``values`` (message, arguments rendered, traceback), with counts."""
    found: dict[str, int] = {}
    for record in records:
        text = record.getMessage() + str(record.exc_text or "")
        if any(value in text for value in values):
            found[record.name] = found.get(record.name, 0) + 1
    return found


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("every_logger_at_debug")
def test_every_logger_at_debug_names_no_provider_id_and_no_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with World(tmp_path, f"sqlite:///{tmp_path / 'logs.db'}") as world:
        google, clever, microsoft = (case.emulator for case in world.cases)
        assert isinstance(google, GoogleEmulator) and isinstance(clever, CleverEmulator)
        assert isinstance(microsoft, MicrosoftEmulator)
        runtime = build_runtime(world.settings)
        set_runtime(runtime)
        try:
            district_teacher = clever.teacher_ids(clever.district_ids[0])[0]
            links: list[Any] = [case.link(runtime) for case in world.cases]
            links.append(link_clever_teacher(runtime, clever, district_teacher, "clever-teacher"))
            links.append(link_org(runtime, provider_name="microsoft", org=microsoft.tenant_ids[0], tenant="tenant-one"))
            for one in links:
                run_sync(runtime, one)
            google.expire_access_tokens()
            microsoft.expire_access_tokens()  # the next syncs refresh: token calls logged too
            for one in links:
                run_sync(runtime, one)
            revoke_here(runtime, links[0], actor="admin:logs-test")  # Google's /revoke
        finally:
            set_runtime(None)
            runtime.engine.dispose()
        raw_ids = google.person_ids() | clever.person_ids() | microsoft.person_ids()
        tokens = google.issued_tokens() | clever.issued_tokens() | microsoft.issued_tokens()
        secrets = {world.settings.google.client_secret.get_secret_value()}
        secrets |= {world.settings.clever.client_secret.get_secret_value()}
        secrets |= {world.settings.microsoft.client_secret.get_secret_value()}
    assert len(raw_ids) > 40 and len(tokens) >= 6
    assert {r.levelno for r in caplog.records} & {logging.DEBUG, logging.INFO}, "the run logged at DEBUG"
    found = {
        "raw person id": leaks(caplog.records, raw_ids),
        "token or secret": leaks(caplog.records, tokens | secrets),
    }
    assert found == {"raw person id": {}, "token or secret": {}}, "loggers that named a person id or a secret"
    printed = capsys.readouterr()
    assert not [value for value in raw_ids | tokens if value in printed.out + printed.err]


def test_a_library_lowered_to_debug_by_the_application_still_logs_no_path_and_no_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An application's own logging set-up (dictConfig naming urllib3 at DEBUG) cannot undo the filter."""
    import logging.config

    import connectors.http  # noqa: F401 - holds the libraries at WARNING, as any connector import does
    from connectors import logs

    logs.install()
    raw = "5f0c2a9d8e7b6c5d4e3f2a1b"
    logging.config.dictConfig(
        {"version": 1, "disable_existing_loggers": False, "loggers": {"urllib3": {"level": "DEBUG"}}}
    )
    try:
        caplog.set_level(logging.DEBUG)
        pool = logging.getLogger("urllib3.connectionpool")
        pool.debug(
            '%s://%s:%s "%s %s %s" %s %s',
            "https",
            "clever",
            443,
            "GET",
            f"/v3.0/users/{raw}/sections",
            "HTTP/1.1",
            200,
            9,
        )
        pool.warning(
            "Failed to parse headers (url=%s): %s", f"https://clever:443/v3.0/users/{raw}/sections?limit=10", "x"
        )
    finally:
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("urllib3")] == [
        (logging.WARNING, "Failed to parse headers (url=https://clever:443/v3.0/users/*/sections?limit=*): x")
    ]
