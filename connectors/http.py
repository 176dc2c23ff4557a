"""The one way connectors make a requests session: our CA only, no request without timeouts, no redirect followed.

Why a session of our own: a requests call with no ``timeout`` waits forever, and libraries we hand
the session to do not all pass one (MSAL drops its own ``timeout=`` as soon as it is given an
``http_client``; google-auth and requests-oauthlib pass whatever their caller gave). A provider that
accepts the connection and then stalls would hold a worker thread, and the integration's lease, for
good. So every request through this session gets ``(connect, read)`` timeouts from the settings
unless the caller set its own, and an explicit ``timeout=None`` is overridden too.

Why no redirect is followed: a 307 or 308 sends the method and the body again, to wherever
``Location`` says. On a token call that body holds the client secret, the code and its verifier; on a
revoke, the refresh token. requests strips ``Authorization`` when the host changes, but never the
body, and the libraries we hand the session to (google-auth, MSAL, requests-oauthlib) call it with
redirects on. No provider endpoint we call redirects, so a redirect means a moved endpoint (fix the
setting) or someone in between (a proxy, a hijacked name): the session refuses it before anything is
sent, as ``RedirectNotFollowed``, a transport failure every caller already turns into ``TransientError``.
"""

from __future__ import annotations

from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection

from connectors import logs
from settings import Settings

logs.hold_at_warning()

_TIMEOUT_POSITION = 6
"""Index of ``timeout`` in ``Session.request``'s positional arguments after method and url."""


class RedirectNotFollowed(requests.exceptions.RequestException):
    """A provider answered with a redirect and it was not followed; the text holds the status only (no URL)."""


class _QuietHTTPConnection(urllib3.connection.HTTPConnection):
    debuglevel = 0
    """Shadows ``http.client.HTTPConnection.debuglevel``: set above 0 (the usual recipe for debugging
    requests), http.client prints every request to stdout, bearer token and ids included."""


class _QuietHTTPSConnection(urllib3.connection.HTTPSConnection):
    debuglevel = 0


class _QuietHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _QuietHTTPConnection


class _QuietHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _QuietHTTPSConnection


class _QuietAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections never print what they send (``_QuietHTTPConnection``)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _QuietHTTPPool, "https": _QuietHTTPSPool}


class GuardedSession(requests.Session):
    """A session that sends nothing to where a redirect points, whoever calls it (``send`` is where
    ``Session.request`` and every library's call meet), and whose connections print nothing.

    A caller that asks for ``allow_redirects=False`` gets the 3xx answer to read (the headless consent
    step reads its ``Location``, carrying no credential); any other redirect is ``RedirectNotFollowed``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mount("https://", _QuietAdapter())
        self.mount("http://", _QuietAdapter())

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        wanted = kwargs.get("allow_redirects", True)
        kwargs["allow_redirects"] = False
        response = super().send(request, **kwargs)
        if wanted and response.is_redirect:
            response.close()
            raise RedirectNotFollowed(f"answered {response.status_code} with a redirect; not followed")
        return response


class TimeoutSession(GuardedSession):
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
    """A session that trusts exactly ``CA_BUNDLE`` (or the system store), whatever the environment says,
    and follows no redirect. The HTTP libraries' loggers get their filter first (``connectors.logs``)."""
    logs.install()
    session = TimeoutSession(settings.http_timeouts)
    session.trust_env = False
    session.verify = settings.tls_verify
    return session
