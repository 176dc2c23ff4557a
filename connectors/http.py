"""The one way connectors make a requests session: our CA only, and never a request without timeouts.

Why a session of our own: a requests call with no ``timeout`` waits forever, and libraries we hand
the session to do not all pass one (MSAL drops its own ``timeout=`` as soon as it is given an
``http_client``; google-auth and requests-oauthlib pass whatever their caller gave). A provider that
accepts the connection and then stalls would hold a worker thread, and the integration's lease, for
good. So every request through this session gets ``(connect, read)`` timeouts from the settings
unless the caller set its own, and an explicit ``timeout=None`` is overridden too.
"""

from __future__ import annotations

from typing import Any

import requests

from settings import Settings

_TIMEOUT_POSITION = 6
"""Index of ``timeout`` in ``Session.request``'s positional arguments after method and url."""


class TimeoutSession(requests.Session):
    """A ``requests.Session`` whose every request is bounded by ``timeouts`` unless it brings its own."""

    def __init__(self, timeouts: tuple[float, float]) -> None:
        super().__init__()
        self.timeouts = timeouts

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if len(args) > _TIMEOUT_POSITION:
            if args[_TIMEOUT_POSITION] is None:
                args = (*args[:_TIMEOUT_POSITION], self.timeouts, *args[_TIMEOUT_POSITION + 1 :])
        elif kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeouts
        return super().request(method, url, *args, **kwargs)


def http_session(settings: Settings) -> TimeoutSession:
    """A session that trusts exactly ``CA_BUNDLE`` (or the system store), whatever the environment says."""
    session = TimeoutSession(settings.http_timeouts)
    session.trust_env = False
    session.verify = settings.tls_verify
    return session
