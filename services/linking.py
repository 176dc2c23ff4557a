"""Headless linking: a consent URL with state and PKCE (S256), then the callback turned into an integration.

The state is stored hashed and used once; the verifier is stored encrypted. A grant that lacks
a required scope is refused and revoked at once, so no half-useful token lingers anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

from connectors.base import ConnectorError, TokenSet
from providers.config import missing
from providers.registry import SUPPORTED, Callback, ConsentStart, Grant, Provider, provider, tokens_to_payload
from store import integrations, links
from store.models import KEY_LENGTH
from store.runtime import Runtime
from sync.consent import DEFAULT_BASIS, BasisError, checked
from sync.grants import AtProvider, revoke_at_provider, revoke_grant


class LinkError(Exception):
    """A link cannot be completed; the message says why and what to do, and names no secret."""


class WrongFinisher(LinkError):
    """The callback came from a client that did not begin the link (another browser, the other path); spent."""


class AccountTaken(LinkError):
    """The provider account is another platform teacher's in this tenant: refused, the fresh grant given back.

    ``given_back`` says what the provider did with the refused grant, for the page the teacher sees.
    """

    def __init__(self, message: str, given_back: AtProvider) -> None:
        super().__init__(message)
        self.given_back = given_back


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _platform_id(option: str, value: str) -> str:
    """The platform's ids are short printable keys; anything else is refused before it reaches a column."""
    if not value.strip():
        raise LinkError(f"{option} must not be empty")
    if len(value) > KEY_LENGTH:
        raise LinkError(f"{option} is longer than {KEY_LENGTH} characters")
    if not value.isprintable():
        raise LinkError(f"{option} holds control characters")
    return value


def checked_request(*, provider_name: str, teacher: str, tenant: str | None, basis: str) -> str:
    """What a teacher's link asks for, refused with a clear message before anything is stored; the basis."""
    if provider_name not in SUPPORTED:
        raise LinkError(f"linking {provider_name!r} is not supported yet (supported: {', '.join(SUPPORTED)})")
    try:
        basis = checked(basis)
    except BasisError as error:
        raise LinkError(str(error)) from None
    teacher = _platform_id("--teacher", teacher)
    if teacher.startswith(ORG_PREFIX):
        raise LinkError(f"--teacher must not start with {ORG_PREFIX!r} (kept for `link org`)")
    if tenant is not None:
        _platform_id("--tenant", tenant)
    return basis


def start_link(
    runtime: Runtime,
    *,
    provider_name: str,
    teacher: str,
    tenant: str | None = None,
    basis: str = DEFAULT_BASIS,
    browser_cookie: str | None = None,
) -> str:
    """The consent URL; ``browser_cookie`` binds the state to the browser that holds it (None: headless)."""
    basis = checked_request(provider_name=provider_name, teacher=teacher, tenant=tenant, basis=basis)
    unset = missing(runtime.settings, provider_name)
    if unset:
        raise LinkError(f"{provider_name} is not configured on this server: {'; '.join(unset)}")
    tenant = tenant if tenant is not None else runtime.settings.default_tenant
    spec = provider(provider_name)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    try:
        started = spec.consent_url(runtime.settings, state=state, code_challenge=_challenge(verifier))
    except ConnectorError as error:
        raise LinkError(str(error)) from None
    # A provider client that keeps its own PKCE verifier (a client library's flow) has it sealed here, not ours.
    url, kept = (started.url, started.secret) if isinstance(started, ConsentStart) else (started, verifier)
    links.remember(
        runtime.engine,
        state=state,
        provider=provider_name,
        tenant=tenant,
        linked_by=teacher,
        verifier_blob=runtime.vault.seal_text(kept),
        consent_basis=basis,
        browser_cookie=browser_cookie,
    )
    return url


def _callback_parameters(callback_url: str) -> dict[str, str]:
    parts = urlsplit(callback_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LinkError("malformed callback URL: expected the full URL the browser was sent back to")
    query = {key: values[0] for key, values in parse_qs(parts.query).items() if values}
    if "state" not in query:
        raise LinkError("malformed callback URL: it carries no 'state' parameter")
    if "code" not in query and "error" not in query:
        raise LinkError("malformed callback URL: it carries neither 'code' nor 'error'")
    return query


def _refuse(runtime: Runtime, spec: Provider, tokens: TokenSet, message: str) -> LinkError:
    """Revoke a grant we will not keep (best effort: it is refused either way) and say why."""
    with contextlib.suppress(ConnectorError):
        spec.revoke_token(runtime.settings, tokens.refresh_token)
    return LinkError(message)


def _account_taken(runtime: Runtime, spec: Provider, tokens: TokenSet, *, owner_id: int, actor: str) -> AccountTaken:
    """Audit the refusal on the integration that holds the account, then give the refused grant back.

    The holder keeps its link: only an admin (or its own teacher) ends it. Why not the other way
    round: whoever held the provider account for a moment could otherwise purge a colleague's roster.
    The revoke is the one of every ended grant (``revoke_at_provider``): its verdict is audited next
    to ``link_refused``, and a provider that fails transiently gets it again from the retry worker.
    """
    with runtime.engine.begin() as connection:
        integrations.record_audit(
            connection, owner_id, actor, "link_refused", "another teacher linked this provider account; refused"
        )
    sealed = runtime.vault.seal(tokens_to_payload(tokens))
    given_back = revoke_at_provider(runtime, spec.name, owner_id, sealed, actor=actor)
    return AccountTaken(
        f"this {spec.name} account is already linked by another teacher of this school; nothing was linked",
        given_back,
    )


def complete_link(runtime: Runtime, callback_url: str, finisher: links.Finisher = links.HEADLESS) -> int:
    """Exchange the code, check the granted scopes, store encrypted tokens; returns the integration id.

    ``finisher`` is who presents the callback: the state must have been begun by the same kind of
    client (and, in a browser, the same browser) for the code to be exchanged at all. Every grant
    this ends up not keeping is revoked at the provider: one that lacks a scope, one of an account
    another teacher holds, and the one a re-link replaces (also when two links of the same teacher race).
    """
    query = _callback_parameters(callback_url)
    try:
        pending = links.claim(runtime.engine, query["state"], runtime.settings.link_state_ttl_seconds, finisher)
    except links.WrongFinisher as error:
        raise WrongFinisher(str(error)) from None
    except links.LinkStateError as error:
        raise LinkError(str(error)) from None
    if refusal := integrations.link_refusal(runtime.engine, pending.linked_by):  # issue 18: a deleted account
        raise LinkError(refusal)
    if "error" in query:
        raise LinkError(f"the teacher did not grant access at the provider ({query['error'][:40]})")
    spec = provider(pending.provider)
    verifier = runtime.vault.open_text(pending.verifier_blob)
    callback = Callback(url=callback_url.strip(), state=query["state"], code=query["code"], verifier=verifier)
    try:
        tokens = spec.exchange_code(runtime.settings, callback)
    except ConnectorError as error:
        raise LinkError(str(error)) from None
    missing = spec.required_scopes - tokens.scopes
    if missing:
        names = ", ".join(sorted(scope.rsplit("/", 1)[-1] for scope in missing))
        raise _refuse(
            runtime,
            spec,
            tokens,
            f"the grant lacks required scope(s): {names}; ask the teacher to link again and allow every "
            "requested permission",
        )
    try:
        grant = spec.grant(runtime.settings, tokens)
    except ConnectorError as error:
        raise _refuse(runtime, spec, tokens, f"cannot link this account: {error}") from None
    return _save(
        runtime,
        spec,
        grant,
        tenant=pending.tenant,
        linked_by=pending.linked_by,
        actor=f"teacher:{pending.linked_by}",
        basis=pending.consent_basis,
    )


def _save(
    runtime: Runtime, spec: Provider, grant: Grant, *, tenant: str, linked_by: str, actor: str, basis: str | None
) -> int:
    """Store the grant sealed (tokens and their ``extra``) under the account's pseudonym; revoke what it replaces."""
    try:
        saved = integrations.save_link(
            runtime.engine,
            provider=spec.name,
            tenant=tenant,
            linked_by=linked_by,
            account_key=runtime.pseudonymiser.pseudonym(spec.name, tenant, grant.account),
            scopes=grant.tokens.scopes,
            token_blob=runtime.vault.seal(tokens_to_payload(grant.tokens)),
            actor=actor,
            consent_basis=basis,
        )
    except integrations.AccountTaken as taken:
        raise _account_taken(runtime, spec, grant.tokens, owner_id=taken.owner_id, actor=actor) from None
    if saved.replaced_token_blob is not None:
        revoke_grant(runtime, spec.name, saved.integration_id, saved.replaced_token_blob, actor=actor)
    return saved.integration_id


ORG_PREFIX = "org:"


def link_org(
    runtime: Runtime,
    *,
    provider_name: str,
    org: str,
    tenant: str | None = None,
    actor: str = "admin:cli",
    basis: str = DEFAULT_BASIS,
) -> int:
    """Link a whole organisation (a district, a tenant) with the app token it granted.

    Nothing is stored when the provider holds no grant for the organisation. The integration's
    ``linked_by`` is ``org:<id>``, so one organisation is linked once per tenant (a re-link keeps its data).
    The consent basis defaults to ``school``: an organisation-wide link is the institution's own.
    """
    try:
        basis = checked(basis)
    except BasisError as error:
        raise LinkError(str(error)) from None
    if provider_name not in SUPPORTED:
        raise LinkError(f"linking {provider_name!r} is not supported yet (supported: {', '.join(SUPPORTED)})")
    spec = provider(provider_name)
    if spec.org_grant is None:
        orgs = ", ".join(name for name in SUPPORTED if provider(name).org_grant is not None)
        raise LinkError(f"{provider_name} has no organisation-wide link (available for: {orgs})")
    org = _platform_id("--org", org)
    if len(ORG_PREFIX + org) > KEY_LENGTH:
        raise LinkError(f"--org is longer than {KEY_LENGTH - len(ORG_PREFIX)} characters")
    tenant = _platform_id("--tenant", tenant) if tenant is not None else runtime.settings.default_tenant
    try:
        grant = spec.org_grant(runtime.settings, org)
    except ConnectorError as error:
        raise LinkError(str(error)) from None
    if grant is None:
        raise LinkError(
            f"{provider_name} holds no grant of organisation {org} for this client: it has not connected "
            "the app (or disconnected it); nothing was stored"
        )
    return _save(runtime, spec, grant, tenant=tenant, linked_by=ORG_PREFIX + org, actor=actor, basis=basis)
