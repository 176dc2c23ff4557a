"""The token refreshes one request, or one batch, may spend on a 401 before the 401 is final.

Why a budget: a 401 on a token we have not refreshed may only mean it expired, so it earns a
refresh and a resend; a 401 right after a refresh is the provider refusing the grant itself, and
refreshing again would loop for as long as the provider keeps saying no. Every connector asks this
one object, so the rule reads the same everywhere: Google and Graph spend one refresh (Google's
counts a refresh made just before sending, for a stale token), Clever's district links up to
``MAX_ROTATIONS`` token re-fetches, a Clever sign-in token none.
"""

from __future__ import annotations

from collections.abc import Callable


class RefreshOnce:
    """Counts the refreshes spent for one request; ``limit`` is one unless a provider documents more."""

    def __init__(self, *, spent: bool = False, limit: int = 1) -> None:
        self.limit = limit
        self.count = 1 if spent else 0

    @property
    def spent(self) -> bool:
        return self.count >= self.limit

    def again(self, refresh: Callable[[], object]) -> bool:
        """On a 401: run ``refresh`` and say True (send again) while the budget lasts; False: the 401 is final.

        A ``refresh`` that raises (the grant is gone, the token endpoint is down) ends the request with its
        own error, as the caller's refresh would."""
        if self.spent:
            return False
        self.count += 1
        refresh()
        return True
