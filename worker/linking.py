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

from connectors.base import ConnectorError
from connectors.google import consent_url, exchange_code, revoke_token
from store import integrations, links
from worker.providers import provider, tokens_to_payload
from worker.runtime import Runtime

SUPPORTED = ("google",)


class LinkError(Exception):
    """A link cannot be completed; the message says why and what to do, and names no secret."""


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def start_link(runtime: Runtime, *, provider_name: str, teacher: str, tenant: str | None = None) -> str:
    if provider_name not in SUPPORTED:
        raise LinkError(f"linking {provider_name!r} is not supported yet (supported: {', '.join(SUPPORTED)})")
    if not teacher.strip():
        raise LinkError("--teacher must name the platform's teacher id")
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    links.remember(
        runtime.engine,
        state=state,
        provider=provider_name,
        tenant=tenant or runtime.settings.default_tenant,
        linked_by=teacher,
        verifier_blob=runtime.vault.seal_text(verifier),
    )
    return consent_url(runtime.settings, state=state, code_challenge=_challenge(verifier))


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


def complete_link(runtime: Runtime, callback_url: str) -> int:
    """Exchange the code, check the granted scopes, store encrypted tokens; returns the integration id."""
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
        tokens = exchange_code(runtime.settings, code=query["code"], code_verifier=verifier)
    except ConnectorError as error:
        raise LinkError(str(error)) from None
    missing = spec.required_scopes - tokens.scopes
    if missing:
        with contextlib.suppress(ConnectorError):  # best effort: the grant is refused either way
            revoke_token(runtime.settings, tokens.refresh_token)
        names = ", ".join(sorted(scope.rsplit("/", 1)[-1] for scope in missing))
        raise LinkError(
            f"the grant lacks required scope(s): {names}; ask the teacher to link again and allow every "
            "requested permission"
        )
    return integrations.save_link(
        runtime.engine,
        provider=pending.provider,
        tenant=pending.tenant,
        linked_by=pending.linked_by,
        scopes=tokens.scopes,
        token_blob=runtime.vault.seal(tokens_to_payload(tokens)),
        actor=f"teacher:{pending.linked_by}",
    )
