"""Writing the change feed the way the outbox does, for tests of its read side (store.feed, /v1).

Until the outbox writes events in the roster change's own transaction, tests put them in directly:
seq taken from ``outbox_head`` under its row lock, in one transaction with the rows. ``forget``
is the retention sweep's part: delete up to a seq and remember how far.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, delete, insert, select, update

from store import feed
from store.db import utcnow
from store.models import ChangeEvent, OutboxHead

Written = tuple[str, int, dict[str, Any]]
"""``(type, integration_id, data)``: one event to write."""


def write_events(engine: Engine, events: Sequence[Written], *, at: datetime | None = None) -> list[int]:
    """Append the events in order, in one transaction; returns their seqs."""
    with engine.begin() as connection:
        last = connection.execute(select(OutboxHead.last_seq).where(OutboxHead.id == 1).with_for_update()).scalar_one()
        rows = [
            {
                "seq": last + offset,
                "at": at or utcnow(),
                "type": kind,
                "integration_id": integration_id,
                "person": data.get("person"),
                "data": json.dumps(data),
            }
            for offset, (kind, integration_id, data) in enumerate(events, start=1)
        ]
        if rows:
            connection.execute(insert(ChangeEvent), rows)
            connection.execute(update(OutboxHead).where(OutboxHead.id == 1).values(last_seq=last + len(rows)))
    return [row["seq"] for row in rows]


def forget(engine: Engine, through: int) -> None:
    """What retention does: events up to ``through`` deleted, and the counter row told so."""
    with engine.begin() as connection:
        connection.execute(delete(ChangeEvent).where(ChangeEvent.seq <= through))
        connection.execute(update(OutboxHead).where(OutboxHead.id == 1).values(forgotten_through=through))


# ------------------------------------------------------------------------------------------ as the outbox would
Roster = dict[str, Any]
"""``{"integrations": {id: record}, "classes": {(id, key): fields}, "members": {(id, class, person, role): name}}``."""


def roster(engine: Engine) -> Roster:
    """The snapshot the /v1 lists serve, read through store.feed, as sets to compare."""
    state: Roster = {"integrations": {}, "classes": {}, "members": {}}
    for item in _every(lambda after: feed.integrations(engine, tenant=None, status=None, after=after, limit=1000)):
        integration_id = item["id"]
        state["integrations"][integration_id] = {k: item[k] for k in ("provider", "tenant", "linked_by", "status")}
        if item["status"] in feed.WITHOUT_ROSTER:
            continue
        for c in _every(lambda after, i=integration_id: feed.classes(engine, i, after=after, limit=1000)):
            state["classes"][(integration_id, c["key"])] = {k: c[k] for k in ("key", "name", "section", "state")}
        for m in _every(
            lambda after, i=integration_id: feed.members(engine, i, class_key=None, after=after, limit=1000)
        ):
            state["members"][(integration_id, m["class"], m["person"], m["role"])] = m["display_name"]
    return state


def _every(page_of: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = page_of(after)
        items += page.items
        after = page.next_after
    return items


def events_between(before: Roster, after: Roster) -> list[Written]:
    """The events the outbox writes for the change from ``before`` to ``after`` (docs/platform.md, the types)."""
    events: list[Written] = []
    for integration_id, record in after["integrations"].items():
        if before["integrations"].get(integration_id) != record:
            events.append(("integration.updated", integration_id, record))
    for (integration_id, _), fields in after["classes"].items():
        if before["classes"].get((integration_id, fields["key"])) != fields:
            events.append(("class.upserted", integration_id, fields))
    for (integration_id, key, person, role), name in after["members"].items():
        old = before["members"].get((integration_id, key, person, role), "absent")
        if old == "absent":
            member = {"class": key, "person": person, "role": role, "display_name": name}
            events.append(("member.added", integration_id, member))
        elif old != name:
            events.append(("person.updated", integration_id, {"person": person, "display_name": name}))
    for integration_id, key, person, _role in before["members"].keys() - after["members"].keys():
        if (integration_id, key) in after["classes"]:
            events.append(("member.removed", integration_id, {"class": key, "person": person}))
    for integration_id, key in before["classes"].keys() - after["classes"].keys():
        if integration_id in after["integrations"]:
            events.append(("class.removed", integration_id, {"key": key}))
    for integration_id in before["integrations"].keys() - after["integrations"].keys():
        events.append(("integration.purged", integration_id, {}))
    return events


def served(base: str, token: str, page: int = 25) -> Roster:
    """The snapshot as the platform reads it over HTTP from ``base``, with a plain client (not the reference
    consumer's) in pages of ``page``; every answer must be a 200."""
    state: Roster = {"integrations": {}, "classes": {}, "members": {}}
    with requests.Session() as http:
        http.trust_env = False
        http.headers["Authorization"] = f"Bearer {token}"

        def every(path: str) -> list[dict[str, Any]]:
            items, after = [], None
            while True:
                answer = http.get(base + path, params={"limit": page, "after": after}, timeout=30)
                assert answer.status_code == 200, (path, answer.status_code)
                items += answer.json()["data"]
                after = answer.json()["next"]
                if after is None:
                    return items

        for i in every("/v1/integrations"):
            state["integrations"][i["id"]] = {k: i[k] for k in ("provider", "tenant", "linked_by", "status")}
            for c in every(f"/v1/integrations/{i['id']}/classes"):
                state["classes"][(i["id"], c["key"])] = c
            for m in every(f"/v1/integrations/{i['id']}/members"):
                state["members"][(i["id"], m["class"], m["person"], m["role"])] = m["display_name"]
    return state


def mirrored(path: str | Path) -> Roster:
    """The reference consumer's SQLite mirror, in the snapshot's shape (the fields the feed carries:
    docs/platform.md)."""
    db = sqlite3.connect(path)
    state: Roster = {"integrations": {}, "classes": {}, "members": {}}
    for row in db.execute("SELECT id, provider, tenant, linked_by, status FROM integrations"):
        state["integrations"][row[0]] = dict(zip(("provider", "tenant", "linked_by", "status"), row[1:], strict=True))
    for integration_id, *fields in db.execute("SELECT integration_id, key, name, section, state FROM classes"):
        state["classes"][(integration_id, fields[0])] = dict(
            zip(("key", "name", "section", "state"), fields, strict=True)
        )
    for *key, name in db.execute("SELECT integration_id, class, person, role, display_name FROM members"):
        state["members"][tuple(key)] = name
    db.close()
    return state
