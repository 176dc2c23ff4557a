"""Links, revokes, refreshes and leases that interleave: every grant we do not keep ends at the provider,
the audit says only what happened, and no sync writes or schedules anything for a generation that is over."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from dramatiq.middleware import Shutdown
from sqlalchemy import select, update

from connectors.google import http_session
from devtools.demo import consent_headlessly
from emulators.google import GoogleEmulator
from services.linking import AccountTaken, complete_link, start_link
from services.revoke import revoke_integration
from settings import GOOGLE_SCOPES
from store import audit as audit_log
from store import integrations, leases, runs
from store.db import utcnow
from store.fence import Fenced, Lease, fenced
from store.models import Integration, SyncRun
from store.runtime import Runtime
from sync.cycle import run_sync
from sync.grants import AtProvider
from tests.conftest import Linker
from tests.helpers import classes, row_count

ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def audit(runtime: Runtime, integration_id: int) -> list[str]:
    """The integration's audit trail without the per-run ``synced`` bookkeeping events."""
    return [action for action in audit_log.actions(runtime.engine, integration_id) if action not in runs.RUN_ACTIONS]


def integration_row(runtime: Runtime, integration_id: int) -> Any:
    with runtime.engine.connect() as connection:
        return connection.execute(select(Integration).where(Integration.id == integration_id)).one()


def callback_for(
    runtime: Runtime, emulator: GoogleEmulator, platform_teacher: str, google_teacher: int, tenant: str | None = None
) -> str:
    emulator.set_consent_user(emulator.teacher_ids[google_teacher])
    url = start_link(runtime, provider_name="google", teacher=platform_teacher, tenant=tenant)
    with http_session(runtime.settings) as browser:
        return consent_headlessly(browser, url)


def run_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at the same instant (a barrier), to open the widest race window there is."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(go, calls))


# --- defect 1: two `link complete` of one teacher racing -------------------------------------------
@ON_POSTGRESQL  # the race is PostgreSQL's: SQLite serialises writers
def test_racing_links_of_one_teacher_both_complete_and_the_grant_not_kept_is_revoked(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    teachers = [f"racer-{n}" for n in range(8)]
    # one Google account, so each racer in a school of its own (an account is one teacher's per school)
    callbacks = [callback_for(runtime, emulator, t, 0, tenant=f"school-{t}") for t in teachers for _ in range(2)]
    ids = run_at_once([lambda url=url: complete_link(runtime, url) for url in callbacks])

    assert len(set(ids)) == len(teachers)  # both links of each teacher landed on one integration
    for integration_id in set(ids):
        assert integrations.load(runtime.engine, integration_id).status == "active"
        assert audit(runtime, integration_id)[:2] == ["linked", "relinked"]
        assert audit(runtime, integration_id).count("provider_revoked") == 1
    # exactly one live grant per kept integration: every replaced one was revoked at Google
    assert emulator.live_grants(emulator.teacher_ids[0]) == len(teachers)


@ON_POSTGRESQL  # the race is PostgreSQL's: SQLite serialises writers
def test_racing_links_of_one_account_by_two_teachers_keep_one(runtime: Runtime, emulator: GoogleEmulator) -> None:
    """Issue 18, item 2: two teachers of a school link the same account at once; one link, one live grant."""
    callbacks = [callback_for(runtime, emulator, f"rival-{n}", 0) for n in range(6)]

    def attempt(url: str) -> int | None:
        try:
            return complete_link(runtime, url)
        except AccountTaken:
            return None

    results = run_at_once([lambda url=url: attempt(url) for url in callbacks])
    [kept] = [one for one in results if one is not None]
    assert results.count(None) == len(callbacks) - 1
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1
    assert audit(runtime, kept).count("link_refused") == len(callbacks) - 1


# --- defect 2: an admin revoke while a sync rotates the refresh token ------------------------------
def test_revoke_during_a_refresh_leaves_no_live_grant_and_no_false_audit(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration_id = link(0)
    teacher = emulator.teacher_ids[0]
    emulator.expire_access_tokens(teacher)  # the next API call gets 401 -> refresh -> rotation
    store_tokens = integrations.store_tokens
    results: list[Any] = []

    def revoke_then_store(*args: Any, **kwargs: Any) -> None:
        # Google has rotated the refresh token; the vault still holds the old one. The admin's revoke
        # reads that dead token now, before the sync can persist the live one.
        results.append(revoke_integration(runtime, integration_id, actor="admin:test"))
        store_tokens(*args, **kwargs)

    monkeypatch.setattr(integrations, "store_tokens", revoke_then_store)
    assert run_sync(runtime, integration_id).outcome == "fenced"

    assert emulator.live_grants(teacher) == 0  # the rotated token was revoked by the sync that held it
    [admin_revoke] = results
    assert admin_revoke.at_provider is AtProvider.NOT_CONFIRMED
    actions = audit(runtime, integration_id)
    assert actions == ["linked", "revoked", "purged", "provider_token_invalid", "provider_revoked"]
    assert row_count(runtime.engine, integration_id) == 0


def test_revoke_with_a_rotated_out_refresh_token_ends_the_grant_through_its_access_token(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    """Google calls a rotated-out refresh token invalid; the unexpired access token of the same grant ends it."""
    integration_id = link(0)
    payload = runtime.vault.open(integrations.load(runtime.engine, integration_id).token_blob or b"")
    payload["expiry"] = (utcnow() - timedelta(minutes=1)).isoformat()  # we think it expired; Google does not
    stale_blob = runtime.vault.seal(payload)
    with runtime.engine.begin() as connection:
        connection.execute(update(Integration).where(Integration.id == integration_id).values(token_blob=stale_blob))
    assert run_sync(runtime, integration_id).outcome == "ok"  # refreshed first: the refresh token rotated
    with runtime.engine.begin() as connection:  # as if the revoke had read the vault before the rotation landed
        connection.execute(update(Integration).where(Integration.id == integration_id).values(token_blob=stale_blob))

    result = revoke_integration(runtime, integration_id, actor="admin:test")
    assert result.at_provider is AtProvider.REVOKED
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0
    assert audit(runtime, integration_id)[-1] == "provider_revoked"


# --- defect 8: revoking a degraded integration; two revokes at once --------------------------------
def test_revoking_a_degraded_integration_claims_nothing_at_the_provider(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker
) -> None:
    integration_id = link(0)
    emulator.withdraw_scope(emulator.teacher_ids[0], GOOGLE_SCOPES[1])
    assert run_sync(runtime, integration_id).outcome == "degraded"
    before = audit(runtime, integration_id)
    assert before.count("provider_revoked") == 1  # the sync revoked the grant when it degraded it

    result = revoke_integration(runtime, integration_id, actor="admin:test")
    assert result.at_provider is AtProvider.NONE_HELD and not result.already_revoked
    after = audit(runtime, integration_id)[len(before) :]
    assert after == ["revoked", "purged"]  # no provider_revoke_failed for a grant already gone
    assert integrations.load(runtime.engine, integration_id).status == "revoked"


@ON_POSTGRESQL
def test_two_concurrent_revokes_end_once(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    generation = integrations.load(runtime.engine, integration_id).generation
    revokes = [lambda n=n: revoke_integration(runtime, integration_id, actor=f"admin:{n}") for n in range(4)]
    results = run_at_once(revokes)
    assert sorted(r.already_revoked for r in results) == [False, True, True, True]
    assert integrations.load(runtime.engine, integration_id).generation == generation + 1
    actions = audit(runtime, integration_id)
    assert actions.count("revoked") == 1 and actions.count("purged") == 1
    assert actions.count("provider_revoked") == 1


# --- defect 9: re-linking to another provider account ----------------------------------------------
def test_relink_to_another_account_ends_the_old_one_first(runtime: Runtime, emulator: GoogleEmulator) -> None:
    first = complete_link(runtime, callback_for(runtime, emulator, "teacher-x", 0))
    run_sync(runtime, first)
    old_classes = {row.external_id for row in classes(runtime.engine, first)}
    assert old_classes and emulator.live_grants(emulator.teacher_ids[0]) == 1

    second = complete_link(runtime, callback_for(runtime, emulator, "teacher-x", 1))
    assert second == first
    assert emulator.live_grants(emulator.teacher_ids[0]) == 0  # the old account's grant ended at Google
    assert row_count(runtime.engine, first) == 0  # and its roster here, before any sync
    assert audit(runtime, first)[-4:] == ["revoked", "purged", "relinked", "provider_revoked"]

    run_sync(runtime, first)
    stored = {row.external_id for row in classes(runtime.engine, first, current=False)}
    assert stored == {row.external_id for row in classes(runtime.engine, first)}  # no soft-deleted leftovers
    assert stored == set(emulator.course_ids_of(emulator.teacher_ids[1], states=["ACTIVE"])) != old_classes


def test_relink_to_the_same_account_keeps_the_roster_and_ends_the_replaced_grant(
    runtime: Runtime, emulator: GoogleEmulator
) -> None:
    first = complete_link(runtime, callback_for(runtime, emulator, "teacher-y", 0))
    run_sync(runtime, first)
    rows = row_count(runtime.engine, first)
    second = complete_link(runtime, callback_for(runtime, emulator, "teacher-y", 0))
    assert second == first and row_count(runtime.engine, first) == rows
    assert emulator.live_grants(emulator.teacher_ids[0]) == 1  # the new grant only
    assert "purged" not in audit(runtime, first)
    assert run_sync(runtime, first).outcome == "ok" and run_sync(runtime, first).rows_written == 0


# --- defect 10: a sync that outlives its lease ------------------------------------------------------
def test_a_sync_whose_lease_was_taken_over_writes_nothing_more(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    mine = Lease(owner="first", seconds=60)
    state = leases.acquire(runtime.engine, integration_id, mine)
    assert state is not None
    with runtime.engine.begin() as connection:  # the first sync stalls past its lease ...
        connection.execute(
            update(Integration)
            .where(Integration.id == integration_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert leases.acquire(runtime.engine, integration_id, Lease("second", 60)) is not None  # ... and is overtaken
    with pytest.raises(Fenced, match="lease"), fenced(runtime.engine, integration_id, state.generation, mine):
        pass


def test_a_long_sync_renews_its_lease_on_write(runtime: Runtime, link: Linker) -> None:
    integration_id = link(0)
    lease = Lease(owner="long", seconds=600)
    state = leases.acquire(runtime.engine, integration_id, lease)
    assert state is not None
    nearly_over = utcnow() + timedelta(seconds=60)  # less than half of the lease left
    with runtime.engine.begin() as connection:
        connection.execute(
            update(Integration).where(Integration.id == integration_id).values(lease_expires_at=nearly_over)
        )
    with fenced(runtime.engine, integration_id, state.generation, lease):
        pass
    assert integration_row(runtime, integration_id).lease_expires_at > utcnow() + timedelta(seconds=500)
    assert leases.acquire(runtime.engine, integration_id, Lease("other", 600)) is None


def test_a_whole_sync_keeps_a_short_lease_alive(
    runtime: Runtime, emulator: GoogleEmulator, link: Linker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: with a lease of 5 s and a sync that takes longer, nobody else can take it meanwhile."""
    integration_id = link(0)
    course = emulator.course_ids_of(emulator.teacher_ids[0])[0]
    for _ in range(95):  # 107 students: four pages, so four roster batches (each follow-up needs the last page)
        emulator.add_student(course)
    monkeypatch.setattr(runtime.settings, "lease_seconds", 5)
    # five calls 1.5 s apart (the course list, four batches), the last one past the first lease (6 s > 5 s):
    # without renewal the thief would win there; every write renews once 2.5 s are left, a margin of 1 s
    emulator.latency = 1.5
    stolen: list[bool] = []

    def try_to_steal(_record: Any) -> None:
        stolen.append(leases.acquire(runtime.engine, integration_id, Lease("thief", 5)) is not None)

    emulator.add_hook(try_to_steal)
    outcome = run_sync(runtime, integration_id)
    assert outcome.outcome == "ok" and outcome.provider_calls >= 5
    assert stolen and not any(stolen)


# --- defect 11: a revoke landing between the sync's last write and its release ---------------------
def test_no_due_time_on_an_integration_revoked_before_the_lease_is_released(
    runtime: Runtime, link: Linker, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration_id = link(0)
    release = leases.release

    def revoke_then_release(*args: Any, **kwargs: Any) -> None:
        revoke_integration(runtime, integration_id, actor="admin:test")
        release(*args, **kwargs)

    monkeypatch.setattr(leases, "release", revoke_then_release)
    assert run_sync(runtime, integration_id).outcome == "ok"
    row = integration_row(runtime, integration_id)
    assert row.status == "revoked" and row.due_at is None and row.lease_owner is None


# --- a worker's SIGTERM lands anywhere in a sync's bookkeeping (CI's test_fleet: a lease left held) ---------
# dramatiq raises its Shutdown in the sync's thread at whatever line that thread is on; these place it at
# the three lines where it used to leave the lease held and the run open.
def runs_of(runtime: Runtime, integration_id: int) -> list[str | None]:
    with runtime.engine.connect() as connection:
        return list(
            connection.execute(
                select(SyncRun.outcome).where(
                    SyncRun.integration_id == integration_id, SyncRun.finished_at.is_not(None)
                )
            ).scalars()
        )


def open_runs(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return len(connection.execute(select(SyncRun.id).where(SyncRun.finished_at.is_(None))).all())


def test_a_shutdown_right_after_the_lease_is_taken_gives_it_back(
    runtime: Runtime, link: Linker, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration_id = link(0)
    begin = leases.begin

    def begin_then_shutdown(*args: Any, **kwargs: Any) -> Any:
        begin(*args, **kwargs)  # committed: the lease is taken and the run opened ...
        raise Shutdown  # ... and the notice lands before the sync's own try

    monkeypatch.setattr(leases, "begin", begin_then_shutdown)
    with pytest.raises(Shutdown):
        run_sync(runtime, integration_id)
    assert integration_row(runtime, integration_id).lease_owner is None
    assert open_runs(runtime) == 0 and runs_of(runtime, integration_id) == ["error"]


@pytest.mark.parametrize("committed", [False, True], ids=["before-its-commit", "after-its-commit"])
def test_a_shutdown_inside_the_release_still_gives_the_lease_back(
    runtime: Runtime, link: Linker, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    integration_id = link(0)
    release, calls = leases.release, []

    def shutdown_in_release(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:  # the give-back after the notice: nothing interrupts it any more
            return release(*args, **kwargs)
        if committed:
            release(*args, **kwargs)
        raise Shutdown

    monkeypatch.setattr(leases, "release", shutdown_in_release)
    with pytest.raises(Shutdown):
        run_sync(runtime, integration_id)
    assert integration_row(runtime, integration_id).lease_owner is None and open_runs(runtime) == 0
    # A release that had committed keeps its outcome and its one audit; one cut short is closed as an error.
    assert runs_of(runtime, integration_id) == (["ok"] if committed else ["error"])
    assert audit_log.actions(runtime.engine, integration_id).count("synced") == (1 if committed else 0)
