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
from store import integrations, links
from store.models import KEY_LENGTH
from worker.consent import DEFAULT_BASIS, BasisError, checked
from worker.providers import SUPPORTED, Provider, provider, tokens_to_payload
from worker.revoke import revoke_grant
from worker.runtime import Runtime


class LinkError(Exception):
    """A link cannot be completed; the message says why and what to do, and names no secret."""


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


def start_link(
    runtime: Runtime, *, provider_name: str, teacher: str, tenant: str | None = None, basis: str = DEFAULT_BASIS
) -> str:
    if provider_name not in SUPPORTED:
        raise LinkError(f"linking {provider_name!r} is not supported yet (supported: {', '.join(SUPPORTED)})")
    try:
        basis = checked(basis)
    except BasisError as error:
        raise LinkError(str(error)) from None
    teacher = _platform_id("--teacher", teacher)
    tenant = _platform_id("--tenant", tenant) if tenant is not None else runtime.settings.default_tenant
    spec = provider(provider_name)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    links.remember(
        runtime.engine,
        state=state,
        provider=provider_name,
        tenant=tenant,
        linked_by=teacher,
        verifier_blob=runtime.vault.seal_text(verifier),
        consent_basis=basis,
    )
    return spec.consent_url(runtime.settings, state=state, code_challenge=_challenge(verifier))


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


def complete_link(runtime: Runtime, callback_url: str) -> int:
    """Exchange the code, check the granted scopes, store encrypted tokens; returns the integration id.

    Every grant this ends up not keeping is revoked at the provider: one that lacks a scope, and
    the one a re-link replaces (also when two links of the same teacher race).
    """
    query = _callback_parameters(callback_url)
    try:
        pending = links.claim(runtime.engine, query["state"], runtime.settings.link_state_ttl_seconds)
    except links.LinkStateError as error:
        raise LinkError(str(error)) from None
    if "error" in query:
        raise LinkError(f"the teacher did not grant access at the provider ({query['error'][:40]})")
    spec = provider(pending.provider)
    verifier = runtime.vault.open_text(pending.verifier_blob)
    try:
        tokens = spec.exchange_code(runtime.settings, code=query["code"], code_verifier=verifier)
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
        account = spec.account_id(runtime.settings, tokens)
    except ConnectorError as error:
        raise _refuse(runtime, spec, tokens, f"cannot tell which account granted access: {error}") from None
    actor = f"teacher:{pending.linked_by}"
    saved = integrations.save_link(
        runtime.engine,
        provider=pending.provider,
        tenant=pending.tenant,
        linked_by=pending.linked_by,
        account_key=runtime.pseudonymiser.pseudonym(pending.provider, pending.tenant, account),
        scopes=tokens.scopes,
        token_blob=runtime.vault.seal(tokens_to_payload(tokens)),
        actor=actor,
        consent_basis=pending.consent_basis,
    )
    if saved.replaced_token_blob is not None:
        revoke_grant(runtime, pending.provider, saved.integration_id, saved.replaced_token_blob, actor=actor)
    return saved.integration_id
