"""The sync cursor document kept in ``integrations.sync_cursor``: where the change feed stands, and why to trust it.

A cursor is only worth using under the allowlist it was taken with (records stored under other
rules need a full listing) and for a while after the last full listing (a periodic full
reconcile catches what a feed missed), never when that listing lies in the future. Anything
unreadable counts as no cursor: a full sync.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from store.scheduling import CLOCK_SLACK


@dataclass(frozen=True)
class CursorState:
    cursor: str  # the provider's change-feed position (opaque; an event id, say)
    allowlist: str  # mappers.policy.allowlist_digest at the time of the full listing
    full_at: datetime  # when the last full listing (with its sweep) finished

    def dumps(self) -> str:
        return json.dumps({"cursor": self.cursor, "allowlist": self.allowlist, "full_at": self.full_at.isoformat()})

    def advanced(self, cursor: str) -> CursorState:
        return replace(self, cursor=cursor)

    def usable(self, allowlist: str, now: datetime, max_age_seconds: int) -> bool:
        """Taken under this allowlist, and its full listing neither too old nor in the future.

        A ``full_at`` a little ahead (clocks of two machines, within ``CLOCK_SLACK``) counts as now; one
        further ahead was written by a clock that ran ahead, and trusting it would put off the full
        reconcile for as long as that clock was wrong: a full listing decides instead.
        """
        age = now - self.full_at
        return self.allowlist == allowlist and -CLOCK_SLACK <= age < timedelta(seconds=max_age_seconds)


def loads(document: str | None) -> CursorState | None:
    if not document:
        return None
    try:
        value = json.loads(document)
        return CursorState(str(value["cursor"]), str(value["allowlist"]), datetime.fromisoformat(value["full_at"]))
    except (ValueError, KeyError, TypeError):
        return None
