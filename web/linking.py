"""A teacher links in the browser: ``/link/{provider}`` sends them to consent, the callback completes the link.

Same state + PKCE store and the same ``complete_link`` as the command line; the first sync is
queued at once (coalesced with one already queued). Each provider is one row of
``providers.registry``: every provider plugs in by its row and its settings.

Trust at the edges (issue 18): a signed ``/link`` request is used once (its nonce is spent), and
the link is bound to the browser that made it: ``/link`` sets a ``__Host-`` cookie holding a random
value whose hash is stored with the state, and the callback finishes only a state whose cookie it
receives, on the path of the state's own provider. A consent URL forwarded to someone else, or a
state of ``rostersync link start``, links nothing here.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from providers.config import browser_problems
from providers.registry import PROVIDERS, SUPPORTED
from services.linking import AccountTaken, LinkError, WrongFinisher, complete_link, start_link
from services.preview import class_names
from store import integrations, links
from store.models import KEY_LENGTH
from store.vault import VaultError
from sync.consent import BASES, DEFAULT_BASIS
from web import failures, privacy, signing
from web.callback_url import provider_callback_url
from web.context import WebContext, context
from web.pages import NO_STORE, message, words_for
from worker import broker as brokers
from worker.sync_requests import sync_after_link

log = logging.getLogger("rostersync.web")
router = APIRouter(tags=["linking"])

ProviderName = Annotated[
    str, Path(max_length=32, description=f"A provider of providers/registry.py, e.g. {SUPPORTED[0]}.")
]
BASIS_PATTERN = "^(" + "|".join(BASES) + ")$"
COOKIE = "__Host-rostersync-link"
"""Host-only, Secure, path ``/``: the browser keeps it from every other host and from plain http."""


def _unusable(ctx: WebContext, request: Request, provider: str) -> HTMLResponse | None:
    words = words_for(request)
    if provider not in SUPPORTED:
        return message(
            request,
            words.gettext("This service cannot be connected"),
            [
                words.gettext("The link you followed names a service this platform does not connect to."),
                words.gettext("Nothing was changed. Go back to the platform and use its Connect button again."),
            ],
            status=404,
        )
    if ctx.runtime.settings.link_signing_key is None:
        return _not_ready(request, words.gettext("Connecting your classes is not available yet"), status=503)
    if browser_problems(ctx.runtime.settings, provider):  # what is missing: GET /providers
        name = PROVIDERS[provider].proper_name
        return _not_ready(request, words.gettext("Connecting %(provider)s is not available yet", provider=name), 503)
    return None


def _not_ready(request: Request, title: str, status: int) -> HTMLResponse:
    words = words_for(request)
    return message(
        request,
        title,
        [
            words.gettext("Your school has not finished setting this up here, so nothing was changed."),
            words.gettext("Please tell your school's administrator. You can connect once they have finished."),
        ],
        status=status,
    )


@router.get(
    "/link/{provider}",
    response_class=RedirectResponse,
    status_code=302,
    responses={302: {"description": "To the provider's consent page"}, 400: {}, 403: {}, 404: {}, 503: {}},
    summary="Start linking: redirect the teacher to the provider's consent page",
)
def link(
    provider: ProviderName,
    request: Request,
    ctx: Annotated[WebContext, Depends(context)],
    teacher: Annotated[str, Query(min_length=1, max_length=KEY_LENGTH, description="The platform's teacher id")],
    tenant: Annotated[
        str | None, Query(min_length=1, max_length=KEY_LENGTH, description="The platform's school")
    ] = None,
    basis: Annotated[
        str, Query(pattern=BASIS_PATTERN, description="Consent basis: school (default) or parent")
    ] = DEFAULT_BASIS,
    expires: Annotated[int | None, Query(ge=0, le=2**40, description="Unix time the signature ends")] = None,
    nonce: Annotated[
        str | None, Query(pattern=signing.NONCE_PATTERN, description="Random, used once: see docs/web.md")
    ] = None,
    sig: Annotated[str | None, Query(max_length=64, description="The platform's HMAC, see docs/web.md")] = None,
) -> Response:
    refused = _unusable(ctx, request, provider)
    if refused is not None:
        return refused
    key = ctx.runtime.settings.link_signing_key
    assert key is not None  # _unusable refused an unsigned server
    try:
        signing.check(
            key.get_secret_value(),
            provider=provider,
            teacher=teacher,
            tenant=tenant,
            basis=basis,
            expires=expires,
            nonce=nonce,
            sig=sig,
        )
    except signing.BadSignature as error:
        ctx.metrics.links.labels(provider, error.kind).inc()
        return failures.bad_signature(request, error)
    assert nonce is not None and expires is not None  # signing.check refused a request without them
    if not links.spend_nonce(ctx.runtime.engine, nonce, datetime.fromtimestamp(expires, UTC).replace(tzinfo=None)):
        ctx.metrics.links.labels(provider, "replayed").inc()
        return failures.replayed(request)
    return _to_consent(ctx, request, provider, teacher=teacher, tenant=tenant, basis=basis)


def _to_consent(
    ctx: WebContext, request: Request, provider: str, *, teacher: str, tenant: str | None, basis: str
) -> Response:
    """Store the state bound to a fresh cookie value, set the cookie, send the browser to consent."""
    cookie = secrets.token_urlsafe(32)
    try:
        url = start_link(
            ctx.runtime, provider_name=provider, teacher=teacher, tenant=tenant, basis=basis, browser_cookie=cookie
        )
    except LinkError:
        return failures.not_started(request)
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=ctx.runtime.settings.link_state_ttl_seconds,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to us, never on a cross-site POST
    )
    return response


@router.get(
    "/oauth/{provider}/callback",
    response_class=HTMLResponse,
    responses={400: {}, 404: {}, 409: {}, 500: {}, 503: {}},
    summary="The provider sends the teacher back here: complete the link and queue the first sync",
)
def callback(
    provider: ProviderName,
    request: Request,
    ctx: Annotated[WebContext, Depends(context)],
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    refused = _unusable(ctx, request, provider)
    if refused is not None:
        return refused
    response = _finish(ctx, provider, request)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")  # the state is spent
    return response


def _finish(ctx: WebContext, provider: str, request: Request) -> HTMLResponse:
    finisher = links.Finisher(browser=True, cookie=request.cookies.get(COOKIE), provider=provider)
    try:
        callback_url = provider_callback_url(ctx.runtime.settings, provider, request.url.query)
        integration_id = complete_link(ctx.runtime, callback_url, finisher)
    except AccountTaken as taken:
        ctx.metrics.links.labels(provider, "refused").inc()
        return failures.account_taken(request, provider, taken.given_back)
    except WrongFinisher:
        ctx.metrics.links.labels(provider, "refused").inc()
        return failures.wrong_browser(request)
    except LinkError as failure:
        ctx.metrics.links.labels(provider, "refused").inc()
        return failures.not_linked(request, provider, str(failure), ctx.runtime.settings.link_state_ttl_seconds)
    except VaultError:
        ctx.metrics.links.labels(provider, "error").inc()
        log.error("link callback: the token keys cannot open the consent in flight")
        return failures.our_side(request)
    ctx.metrics.links.labels(provider, "linked").inc()
    return _linked_page(ctx, request, integration_id)


def _linked_page(ctx: WebContext, request: Request, integration_id: int) -> HTMLResponse:
    """Linked: which classes will sync, when, what of the students is kept; no internal id."""
    state = integrations.load(ctx.runtime.engine, integration_id)
    words = words_for(request)
    name = PROVIDERS[state.provider].proper_name
    try:
        sync_after_link(ctx.runtime, integration_id)
        when = words.gettext("We have started copying your classes: they appear in the platform within a few minutes.")
    except brokers.BrokerUnavailable:
        log.warning("integration %s linked; first sync not queued (broker down), the scheduler will run it", state.id)
        when = words.gettext("We will start copying your classes shortly: they appear in the platform soon after.")
    names = class_names(ctx.runtime, integration_id)
    if names:
        listing = words.ngettext("This class will sync:", "These %(num)d classes will sync:", len(names))
    elif names == []:
        listing = words.gettext(
            "We found no active class in your %(provider)s account yet. Classes you create or join later "
            "will sync on their own.",
            provider=name,
        )
    else:
        listing = words.gettext("We could not list your classes just now: you will see them in the platform soon.")
    return message(
        request,
        words.gettext("Your %(provider)s account is linked", provider=name),
        [
            words.gettext(
                "Your classes in %(provider)s will appear in the platform and stay up to date on their own.",
                provider=name,
            ),
            when,
            listing,
        ],
        items=names or None,
        after=[privacy.students_sentence(words, state.provider, state.consent_basis in BASES)],
        privacy_url=request.scope.get("root_path", "") + f"/privacy/{state.provider}",
        provider_name=name,
    )
