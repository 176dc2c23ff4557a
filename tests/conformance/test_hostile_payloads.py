"""Malformed bodies through each connector and the sync cycle, on real PostgreSQL (issue 10, part 4).

The emulators' ``tamper_next`` control rewrites answers the way a provider (or a proxy in front of
it) one day will: an HTML error page, truncated JSON, a number where a list belongs, a null list, a
record that is not an object, a 10 MB page, a cursor served twice, names full of Unicode edge cases.
For every provider each must end as a clear ``ProviderDataError`` (the run stops as
``provider_data``, nothing swept) or a skip that is counted, never another exception, and never a
lost row: what an earlier sync stored is still there afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import update

from connectors.base import TransientError
from emulators.clever import CleverEmulator
from emulators.core import EmulatorCore, Request, Response, Rewrite
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from mappers.text import display
from services.linking import link_org
from settings import Settings
from store.models import Integration
from store.runtime import Runtime, build_runtime, set_runtime
from sync.cycle import run_sync
from tests.clever_fixtures import clever_settings_for, link_district
from tests.conftest import link_teacher, settings_for
from tests.helpers import classes, dump_tables, enrollments, people
from tests.microsoft_fixtures import microsoft_settings_for

TEN_MB = 10 * 1024 * 1024
HOSTILE_NAMES = (
    "\u200f\u05de\u05ea\u05de\u05d8\u05d9\u05e7\u05d4 \u05d0",  # RTL mark + Hebrew
    "Z\u0351\u0352\u0353\u0354\u0355a\u0301\u0302lgo",  # stacked combining marks
    "Hist\x00ory",  # NUL: PostgreSQL refuses it in text
    "Phys\ud800ics",  # a lone surrogate, sent as a JSON "\\ud800" escape
    "L" * 10_000,
    "\u202egnitirw\u202c \U0001f600",
)


# ------------------------------------------------------------------------------------ the worlds
@dataclass
class World:
    """One provider's emulator, a runtime on PostgreSQL, and an integration already synced once."""

    provider: str
    emu: EmulatorCore
    runtime: Runtime
    integration_id: int
    class_path: str
    """``request.path`` of the class listing."""
    member_path: str
    """A path part of the requests that read the rest of the roster."""
    records: Callable[[dict[str, Any]], list[Any]]
    """The record list of a class listing's body."""
    list_key: str
    name_key: str
    next_get: Callable[[dict[str, Any]], Any]
    next_set: Callable[[dict[str, Any], Any], None]

    def roster(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]], int]:
        engine, integration = self.runtime.engine, self.integration_id
        return (
            {(c.external_id, c.name) for c in classes(engine, integration)},
            {(p.role, p.pseudonym) for p in people(engine, integration)},
            len(enrollments(engine, integration)),
        )

    def force_full_sync(self) -> None:
        """The listing is what is under test: drop the change-feed cursor so the next run lists everything."""
        with self.runtime.engine.begin() as connection:
            connection.execute(
                update(Integration).where(Integration.id == self.integration_id).values(sync_cursor=None)
            )

    def requests_to(self, path: str, since: int = 0) -> int:
        return sum(1 for r in self.emu.requests[since:] if r.path == path)


def _runtime(settings: Settings) -> Runtime:
    runtime = build_runtime(settings)
    set_runtime(runtime)
    return runtime


def _clever_next_get(body: dict[str, Any]) -> Any:
    return next((link.get("uri") for link in body.get("links") or [] if link.get("rel") == "next"), None)


def _clever_next_set(body: dict[str, Any], uri: Any) -> None:
    body["links"] = [link for link in body.get("links") or [] if link.get("rel") != "next"]
    body["links"].append({"rel": "next", "uri": uri})


def _set(key: str) -> Callable[[dict[str, Any], Any], None]:
    def setter(body: dict[str, Any], value: Any) -> None:
        body[key] = value

    return setter


@contextmanager
def open_world(
    provider: str, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, *, change_feed: bool = False
) -> Iterator[World]:
    """``change_feed=False``: every sync lists everything (Clever's events off); True: Clever's events on."""
    if provider == "google":
        emu: EmulatorCore = GoogleEmulator(
            cert_dir=tmp_path, teachers=1, courses_per_teacher=3, students_per_course=6, courses_page_cap=2
        )
        with emu:
            assert isinstance(emu, GoogleEmulator)
            runtime = _runtime(settings_for(emu, pg_url))
            integration = link_teacher(runtime, emu, 0)
            yield World(
                "google", emu, runtime, integration, "/v1/courses", "/students",
                lambda body: body["courses"], "courses", "name",
                lambda body: body.get("nextPageToken"), _set("nextPageToken"),
            )  # fmt: skip
    elif provider == "clever":
        monkeypatch.setattr("connectors.clever.PAGE_LIMIT", 3)
        emu = CleverEmulator(cert_dir=tmp_path, districts=1, teachers=2, students_per_course=6)
        with emu:
            assert isinstance(emu, CleverEmulator)
            emu.set_events_enabled(emu.district_ids[0], change_feed)
            runtime = _runtime(clever_settings_for(emu, pg_url))
            integration = link_district(runtime, emu)
            yield World(
                "clever", emu, runtime, integration, "/v3.0/sections", "/v3.0/users",
                lambda body: [item["data"] for item in body["data"]], "data", "name",
                _clever_next_get, _clever_next_set,
            )  # fmt: skip
    else:
        monkeypatch.setattr("connectors.microsoft.PAGE_SIZE", 2)
        emu = MicrosoftEmulator(cert_dir=tmp_path, tenants=1, teachers=2, students_per_course=6)
        with emu:
            assert isinstance(emu, MicrosoftEmulator)
            runtime = _runtime(microsoft_settings_for(emu, pg_url))
            integration = link_org(runtime, provider_name="microsoft", org=emu.tenant_ids[0])
            yield World(
                "microsoft", emu, runtime, integration, "/v1.0/education/classes", "/$batch",
                lambda body: body["value"], "value", "displayName",
                lambda body: body.get("@odata.nextLink"), _set("@odata.nextLink"),
            )  # fmt: skip
    set_runtime(None)
    runtime.engine.dispose()


@pytest.fixture(params=["google", "clever", "microsoft"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    with open_world(request.param, tmp_path, pg_url, monkeypatch) as opened:
        yield opened


@pytest.fixture
def synced(world: World) -> World:
    """The world after one good full sync: the rows that must survive whatever comes next."""
    first = run_sync(world.runtime, world.integration_id)
    assert first.outcome == "ok" and first.records_skipped == 0
    assert len(classes(world.runtime.engine, world.integration_id)) >= 3
    world.force_full_sync()
    return world


# ------------------------------------------------------------------------------------ rewrites
def on_path(path: str, rewrite: Callable[[Request, Response], Response]) -> Rewrite:
    """Only successful answers to exactly ``path`` are rewritten."""

    def chosen(request: Request, response: Response) -> Response | None:
        if request.path != path or response.status != 200:
            return None
        return rewrite(request, response)

    return chosen


def html_page(status: int) -> Callable[[Request, Response], Response]:
    """What a proxy or a load balancer sends: an HTML page, whatever the API would have said."""
    page = b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h1>Oops</h1></body></html>"
    return lambda request, response: Response(status, page, [("Content-Type", "text/html; charset=utf-8")])


def truncated(request: Request, response: Response) -> Response:
    return Response(response.status, response.body[: len(response.body) // 2], response.headers)


def json_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[Request, Response], Response]:
    """Parse the answer, let ``edit`` change it, send it back as ASCII JSON (lone surrogates as escapes)."""

    def rewrite(request: Request, response: Response) -> Response:
        body = json.loads(response.body)
        edit(body)
        encoded = json.dumps(body, ensure_ascii=True).encode()
        return Response(response.status, encoded, [("Content-Type", "application/json; charset=utf-8")])

    return rewrite


def tamper_class_list(world: World, rewrite: Callable[[Request, Response], Response], count: int = 1) -> None:
    world.emu.tamper_next(world.class_path, on_path(world.class_path, rewrite), count)


def assert_nothing_lost(world: World, before: tuple[Any, ...], outcome: Any, expected: str) -> None:
    assert outcome.outcome == expected
    assert outcome.removed == 0
    assert world.roster() == before, "rows already stored stay"


# ------------------------------------------------------------------------------------ the cases
@pytest.mark.parametrize(
    ("case", "rewrite"),
    [
        ("html page, status 200", html_page(200)),
        ("truncated json", truncated),
        ("list is a number", None),
        ("list is null", None),
        ("body is a json list", json_edit(lambda body: None)),
    ],
)
def test_a_broken_class_listing_is_a_provider_data_error_and_loses_nothing(
    synced: World, case: str, rewrite: Callable[[Request, Response], Response] | None
) -> None:
    world = synced
    if case == "list is a number":
        rewrite = json_edit(lambda body: body.__setitem__(world.list_key, 5))
    elif case == "list is null":
        rewrite = json_edit(lambda body: body.__setitem__(world.list_key, None))
    elif case == "body is a json list":
        rewrite = lambda request, response: Response(200, b"[1, 2, 3]", [("Content-Type", "application/json")])  # noqa: E731
    assert rewrite is not None
    before = world.roster()
    tamper_class_list(world, rewrite)
    assert_nothing_lost(world, before, run_sync(world.runtime, world.integration_id), "provider_data")
    world.force_full_sync()
    assert run_sync(world.runtime, world.integration_id).outcome == "ok", "the next good run completes"
    assert world.roster() == before


def test_an_html_error_page_with_a_5xx_status_is_retried_and_loses_nothing(synced: World) -> None:
    world = synced
    before = world.roster()
    tamper_class_list(world, html_page(502))
    with pytest.raises(TransientError):
        run_sync(world.runtime, world.integration_id)
    assert world.roster() == before


@pytest.mark.parametrize("bad", [5, None, "a string"])
def test_a_record_that_is_not_an_object_is_skipped_and_counted(synced: World, bad: Any) -> None:
    world = synced
    before = world.roster()

    def edit(body: dict[str, Any]) -> None:
        body[world.list_key].insert(0, bad)

    tamper_class_list(world, json_edit(edit))
    outcome = run_sync(world.runtime, world.integration_id)
    assert (outcome.outcome, outcome.records_skipped, outcome.removed) == ("ok", 1, 0)
    assert world.roster() == before


def test_a_broken_member_page_loses_nothing(synced: World) -> None:
    """Google marks the course unreadable and keeps its enrolments; Clever and Graph stop the run unswept."""
    world = synced
    before = world.roster()
    world.emu.tamper_next(world.member_path, lambda req, resp: truncated(req, resp) if resp.status == 200 else None)
    outcome = run_sync(world.runtime, world.integration_id)
    assert outcome.outcome == ("ok" if world.provider == "google" else "provider_data")
    assert outcome.removed == 0
    assert world.roster() == before


def test_a_10_mb_page_is_read_and_only_the_allowlist_is_kept(synced: World) -> None:
    world = synced
    before = world.roster()
    padding = "PADDING-" + "x" * TEN_MB

    def pad(body: dict[str, Any]) -> None:
        world.records(body)[0]["description"] = padding

    tamper_class_list(world, json_edit(pad))
    outcome = run_sync(world.runtime, world.integration_id)
    assert (outcome.outcome, outcome.records_skipped, outcome.removed) == ("ok", 0, 0)
    assert world.roster() == before
    assert "PADDING-" not in dump_tables(world.runtime.engine)


def test_the_same_cursor_twice_is_a_loop_and_loses_nothing(synced: World) -> None:
    """Page 2 names page 2 again (the cursor page 1 gave): the connector refuses to go round."""
    world = synced
    before = world.roster()
    served: list[Any] = []

    def loop(body: dict[str, Any]) -> None:
        cursor = world.next_get(body)
        if served:
            world.next_set(body, served[0])
        elif cursor is not None:
            served.append(cursor)

    start = len(world.emu.requests)
    tamper_class_list(world, json_edit(loop), count=10)
    outcome = run_sync(world.runtime, world.integration_id)
    assert_nothing_lost(world, before, outcome, "provider_data")
    assert world.requests_to(world.class_path, start) <= 3, "the loop is caught at the first repeat"


def test_unicode_edge_cases_in_names_are_stored_readably(synced: World) -> None:
    world = synced
    before = world.roster()
    renamed: dict[str, str] = {}

    def rename(body: dict[str, Any]) -> None:
        for index, record in enumerate(world.records(body)):
            name = HOSTILE_NAMES[(len(renamed) + index) % len(HOSTILE_NAMES)]
            record[world.name_key] = name
            renamed[record["id"]] = name

    tamper_class_list(world, json_edit(rename), count=10)
    outcome = run_sync(world.runtime, world.integration_id)
    assert (outcome.outcome, outcome.records_skipped, outcome.removed) == ("ok", 0, 0)
    stored = {c.external_id: c.name for c in classes(world.runtime.engine, world.integration_id)}
    assert set(stored) == {external_id for external_id, _ in before[0]}
    assert renamed, "the listing was rewritten"
    for external_id, name in renamed.items():
        if external_id not in stored:  # Google's listing includes an ARCHIVED course, which is never stored
            continue
        expected = display(name, strip=world.provider != "google")  # Clever's stream too: the standard decoder
        assert stored[external_id] == expected
        assert "\x00" not in stored[external_id]
    assert world.roster()[1:] == before[1:], "people and enrolments untouched"


FEEDS = {"clever": "/v3.0/events", "microsoft": "/v1.0/education/users/delta"}


@pytest.mark.parametrize("provider", ["clever", "microsoft"])
def test_a_change_feed_page_that_names_itself_next_is_a_loop(
    provider: str, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clever's events and Graph's delta follow their next links as given; one pointing back is refused."""
    with open_world(provider, tmp_path, pg_url, monkeypatch, change_feed=True) as world:
        assert run_sync(world.runtime, world.integration_id).outcome == "ok"
        before = world.roster()
        emu = world.emu
        if isinstance(emu, CleverEmulator):
            emu.add_student(emu.section_ids(emu.district_ids[0])[0])
        else:
            assert isinstance(emu, MicrosoftEmulator)
            emu.add_student(emu.class_ids(emu.tenant_ids[0])[0])
        path = FEEDS[provider]

        def itself(request: Request, response: Response) -> Response:
            if isinstance(emu, MicrosoftEmulator):
                token = request.param("$deltatoken") or request.param("$skiptoken")
                kind = "$deltatoken" if request.param("$deltatoken") else "$skiptoken"
                own = f"{emu.graph_endpoint}/education/users/delta?{kind}={token}"
            else:
                own = f"{request.path}?{urlencode(request.query, doseq=True)}"
            return json_edit(lambda body: world.next_set(body, own))(request, response)

        start = len(emu.requests)
        # Graph's connector knows the page it asked for, so a link back to it is a loop at once (one
        # answer tampered); Clever's events are caught when the repeated link comes round (two).
        emu.tamper_next(path, on_path(path, itself), count=1 if isinstance(emu, MicrosoftEmulator) else 2)
        outcome = run_sync(world.runtime, world.integration_id)
        assert (outcome.outcome, outcome.mode, outcome.removed) == ("provider_data", "changes", 0)
        assert world.requests_to(path, start) <= 3, "the loop is caught at the first repeat"
        after = world.roster()
        assert before[0] <= after[0] and before[1] <= after[1] and before[2] <= after[2], "rows already stored stay"
        assert run_sync(world.runtime, world.integration_id).outcome == "ok", "the next good run completes"
