"""A reference consumer of rostersync's platform API (docs/platform.md): a mirror of the rosters in SQLite.

Python's standard library only. Run it as ``ROSTERSYNC_PLATFORM_TOKEN=... python platform_consumer.py
https://rostersync.example.org mirror.db [--follow]``: the first run takes the feed's head, then the
snapshot, then applies the feed from that head; every later run goes on from the position it stored.
With ``--follow`` it keeps long-polling for new events. A 410 (the mirror fell further behind than
the feed keeps) empties the mirror and takes a new snapshot.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

PAGE = 1000
WAIT = 25  # seconds a request of the feed waits for news when there is none

SCHEMA = """
CREATE TABLE IF NOT EXISTS integrations (id INTEGER PRIMARY KEY, provider TEXT, tenant TEXT, linked_by TEXT,
    status TEXT, consent_basis TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS classes (integration_id INTEGER, key TEXT, name TEXT, section TEXT, state TEXT,
    PRIMARY KEY (integration_id, key));
CREATE TABLE IF NOT EXISTS members (integration_id INTEGER, class TEXT, person TEXT, role TEXT, display_name TEXT,
    PRIMARY KEY (integration_id, class, person, role));
CREATE TABLE IF NOT EXISTS position (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
"""
UPSERT_INTEGRATION = """INSERT INTO integrations (id, provider, tenant, linked_by, status, updated_at)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, tenant = excluded.tenant,
    linked_by = excluded.linked_by, status = excluded.status, updated_at = excluded.updated_at"""
WITHOUT_ROSTER = ("revoked", "degraded")  # an ended integration's roster is purged with it


class Gone(Exception):
    """410: the feed no longer holds the events after our position."""


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def get(self, path: str, timeout: float = 30, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url, headers = f"{self.base_url}{path}?{query}", {"Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the operator's https URL
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the same
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 410:
                raise Gone(json.load(error)["detail"]) from None
            raise

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list, one page at a time, following ``next``."""
        after = None
        while True:
            page = self.get(path, limit=PAGE, after=after, **params)
            yield from page["data"]
            after = page["next"]
            if after is None:
                return


class Mirror:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)

    def position(self) -> int | None:
        row = self.db.execute("SELECT seq FROM position").fetchone()
        return None if row is None else int(row[0])

    def snapshot(self, api: Api) -> None:
        """Head first, then every list: the feed from that head covers whatever changes meanwhile."""
        head = api.get("/v1/changes/head")["seq"]
        with self.db:
            for table in ("integrations", "classes", "members", "position"):
                self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - our own table names
            for i in api.pages("/v1/integrations"):
                self.db.execute(
                    "INSERT INTO integrations VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        i["id"],
                        i["provider"],
                        i["tenant"],
                        i["linked_by"],
                        i["status"],
                        i["consent_basis"],
                        i["updated_at"],
                    ),
                )
                for c in api.pages(f"/v1/integrations/{i['id']}/classes"):
                    self.upsert_class(i["id"], c)
                for m in api.pages(f"/v1/integrations/{i['id']}/members"):
                    self.add_member(i["id"], m)
            self.db.execute("INSERT INTO position VALUES (1, ?)", (head,))

    def upsert_class(self, integration: int, c: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO classes VALUES (?, ?, ?, ?, ?)",
            (integration, c["key"], c["name"], c["section"], c["state"]),
        )

    def add_member(self, integration: int, m: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?)",
            (integration, m["class"], m["person"], m["role"], m["display_name"]),
        )

    def drop_roster(self, integration: int) -> None:
        self.db.execute("DELETE FROM classes WHERE integration_id = ?", (integration,))
        self.db.execute("DELETE FROM members WHERE integration_id = ?", (integration,))

    def apply(self, event: dict[str, Any]) -> None:
        """One event; applying it again changes nothing. A type this consumer does not know is skipped."""
        kind, integration, data, db = event["type"], event["integration_id"], event["data"], self.db
        if kind == "integration.updated":
            db.execute(
                UPSERT_INTEGRATION,
                (integration, data["provider"], data["tenant"], data["linked_by"], data["status"], event["at"]),
            )
            if data["status"] in WITHOUT_ROSTER:
                self.drop_roster(integration)
        elif kind == "integration.purged":
            self.drop_roster(integration)
            db.execute("DELETE FROM integrations WHERE id = ?", (integration,))
        elif kind == "class.upserted":
            self.upsert_class(integration, data)
        elif kind == "class.removed":
            db.execute("DELETE FROM classes WHERE integration_id = ? AND key = ?", (integration, data["key"]))
            db.execute("DELETE FROM members WHERE integration_id = ? AND class = ?", (integration, data["key"]))
        elif kind == "member.added":
            self.add_member(integration, data)
        elif kind == "member.removed":
            db.execute(
                "DELETE FROM members WHERE integration_id = ? AND class = ? AND person = ?",
                (integration, data["class"], data["person"]),
            )
        elif kind == "person.updated":
            db.execute(
                "UPDATE members SET display_name = ? WHERE integration_id = ? AND person = ? AND role = 'teacher'",
                (data["display_name"], integration, data["person"]),
            )
        elif kind == "person.erased":
            db.execute("DELETE FROM members WHERE integration_id = ? AND person = ?", (integration, data["person"]))

    def follow(self, api: Api, *, forever: bool = False) -> None:
        """Apply the feed from the stored position; a page and its new position commit together."""
        while True:
            position = self.position()
            assert position is not None, "take the snapshot first"
            page = api.get("/v1/changes", timeout=WAIT + 30, after=position, limit=PAGE, wait=WAIT if forever else 0)
            with self.db:
                for event in page["data"]:
                    self.apply(event)
                self.db.execute("UPDATE position SET seq = ?", (page["next"],))
            if not page["data"] and not forever:
                return


def run(base_url: str, token: str, path: str, *, forever: bool = False) -> Mirror:
    """Snapshot when there is no position (or the feed answered 410), then the feed."""
    api, mirror = Api(base_url, token), Mirror(path)
    while True:
        try:
            if mirror.position() is None:
                mirror.snapshot(api)
            mirror.follow(api, forever=forever)
            return mirror
        except Gone:
            with mirror.db:
                mirror.db.execute("DELETE FROM position")


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--follow"]
    run(arguments[0], os.environ["ROSTERSYNC_PLATFORM_TOKEN"], arguments[1], forever="--follow" in sys.argv)
