"""The sync cursor document kept in ``integrations.sync_cursor``: where the change feed stands, and why to trust it.

A cursor is only worth using under the allowlist it was taken with (records stored under other
rules need a full listing) and for a while after the last full listing (a periodic full
reconcile catches what a feed missed). Anything unreadable counts as no cursor: a full sync.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class CursorState:
    cursor: str  # the provider's change-feed position (opaque; an event id for Clever)
    allowlist: str  # mappers.policy.allowlist_digest at the time of the full listing
    full_at: datetime  # when the last full listing (with its sweep) finished

    def dumps(self) -> str:
        return json.dumps({"cursor": self.cursor, "allowlist": self.allowlist, "full_at": self.full_at.isoformat()})

    def advanced(self, cursor: str) -> CursorState:
        return replace(self, cursor=cursor)

    def usable(self, allowlist: str, now: datetime, max_age_seconds: int) -> bool:
        return self.allowlist == allowlist and now - self.full_at < timedelta(seconds=max_age_seconds)


def loads(document: str | None) -> CursorState | None:
    if not document:
        return None
    try:
        value = json.loads(document)
        return CursorState(str(value["cursor"]), str(value["allowlist"]), datetime.fromisoformat(value["full_at"]))
    except (ValueError, KeyError, TypeError):
        return None
