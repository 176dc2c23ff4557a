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
from providers.registry import SUPPORTED
from services.linking import AccountTaken, LinkError, WrongFinisher, complete_link, start_link
from services.preview import class_names
from store import integrations, links
from store.models import KEY_LENGTH
from store.vault import VaultError
from sync.consent import BASES, DEFAULT_BASIS
from sync.grants import AtProvider
from web import signing
from web.callback_url import provider_callback_url
from web.context import WebContext, context
from web.pages import NO_STORE, page, what_to_do
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


def _unusable(ctx: WebContext, provider: str) -> HTMLResponse | None:
    if provider not in SUPPORTED:
        return page("Unknown provider", [f"rostersync cannot link {provider!r}."], status=404)
    if ctx.runtime.settings.link_signing_key is None:
        return page(
            "Not available yet",
            [
                "Linking in the browser is not configured on this server (no link signing key). "
                "Tell your school's administrator."
            ],
            status=503,
        )
    if browser_problems(ctx.runtime.settings, provider):  # what is missing: GET /providers
        return page(
            "Not available yet",
            [f"Linking {provider} is not configured on this server. Tell your school's administrator."],
            status=503,
        )
    return None


@router.get(
    "/link/{provider}",
    response_class=RedirectResponse,
    status_code=302,
    responses={302: {"description": "To the provider's consent page"}, 400: {}, 403: {}, 404: {}, 503: {}},
    summary="Start linking: redirect the teacher to the provider's consent page",
)
def link(
    provider: ProviderName,
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
    refused = _unusable(ctx, provider)
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
        return page("Cannot start linking", [f"{error}. Start again from the platform."], status=403)
    assert nonce is not None and expires is not None  # signing.check refused a request without them
    if not links.spend_nonce(ctx.runtime.engine, nonce, datetime.fromtimestamp(expires, UTC).replace(tzinfo=None)):
        ctx.metrics.links.labels(provider, "replayed").inc()
        return page("Cannot start linking", ["This link was already used. Start again from the platform."], status=403)
    return _to_consent(ctx, provider, teacher=teacher, tenant=tenant, basis=basis)


def _to_consent(ctx: WebContext, provider: str, *, teacher: str, tenant: str | None, basis: str) -> Response:
    """Store the state bound to a fresh cookie value, set the cookie, send the browser to consent."""
    cookie = secrets.token_urlsafe(32)
    try:
        url = start_link(
            ctx.runtime, provider_name=provider, teacher=teacher, tenant=tenant, basis=basis, browser_cookie=cookie
        )
    except LinkError as error:
        return page("Cannot start linking", [str(error)], status=400)
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
    responses={400: {}, 404: {}, 500: {}, 503: {}},
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
    refused = _unusable(ctx, provider)
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
        return page("Not linked", [str(taken), _given_back(provider, taken.given_back), TAKEN_ADVICE], status=409)
    except WrongFinisher as failure:
        ctx.metrics.links.labels(provider, "refused").inc()
        return page("Not linked", [f"{failure}.", "Nothing was linked. Start again from the platform."], status=400)
    except LinkError as failure:
        ctx.metrics.links.labels(provider, "refused").inc()
        return page("Not linked", [str(failure), what_to_do(str(failure))], status=400)
    except VaultError:
        ctx.metrics.links.labels(provider, "error").inc()
        log.error("link callback: the token keys cannot open the consent in flight")
        return page("Not linked", ["The server's keys changed during your link. Connect again."], status=500)
    ctx.metrics.links.labels(provider, "linked").inc()
    return _linked_page(ctx, integration_id)


TAKEN_ADVICE = (
    "A provider account can be linked by one teacher of a school at a time. If it is yours, ask your "
    "school's administrator to end the other link (or its teacher to unlink it), then connect again."
)


def _given_back(provider: str, verdict: AtProvider) -> str:
    """What became of the access the teacher just granted: nothing of it may stay live unseen."""
    if verdict is AtProvider.REVOKED:
        return f"The access you just granted was given back: {provider} confirmed it is revoked."
    if verdict is AtProvider.PENDING:
        return f"The access you just granted is being given back: {provider} did not answer yet, rostersync retries."
    hint = f"remove rostersync from the apps allowed in your {provider} account's settings"
    if verdict is AtProvider.UNSUPPORTED:
        return f"The access you just granted was not kept, but {provider} cannot take it back for us: {hint}."
    return f"The access you just granted was not kept, but {provider} did not confirm it was given back: {hint}."


def _linked_page(ctx: WebContext, integration_id: int) -> HTMLResponse:
    state = integrations.load(ctx.runtime.engine, integration_id)
    try:
        sync_after_link(ctx.runtime, integration_id)
        when = "The first sync has started; your classes appear in the platform within a few minutes."
    except brokers.BrokerUnavailable:
        log.warning("integration %s linked; first sync not queued (broker down), the scheduler will run it", state.id)
        when = "The first sync will run shortly."
    names = class_names(ctx.runtime, integration_id)
    students = (
        "Class lists include students, stored under a pseudonym only."
        if state.consent_basis in BASES
        else "No consent basis was recorded, so only teachers and classes sync, never students."
    )
    listing = (
        ["These classes will sync:"]
        if names
        else ["No active class was found yet." if names == [] else "The classes will be listed after the first sync."]
    )
    return page(
        "Linked",
        [f"Your {state.provider} account is linked (integration {state.id}).", when, students, *listing],
        items=names or None,
    )
