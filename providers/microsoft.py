"""Microsoft 365 Education's glue: MSAL's consent flow, teacher and tenant links, Graph, as one ``Provider`` row.

MSAL keeps its own PKCE pair and token cache; the cache is what the link seals (providers.md 3).
"""

from __future__ import annotations

import json
from dataclasses import replace

import connectors.microsoft
import mappers.microsoft
from connectors.base import RevokeVerdict, TokenSet, TokenSink
from connectors.microsoft_roster import MicrosoftRoster
from providers.base import Callback, ConsentStart, Grant, Provider
from settings import Settings

TEACHER_LINK, TENANT_LINK = "teacher", "tenant"
"""``TokenSet.extra["link"]``: a teacher's delegated link or a tenant's application link."""


def _consent_url(settings: Settings, *, state: str, code_challenge: str) -> ConsentStart:
    """MSAL makes its own PKCE pair and nonce; the whole flow is what the callback needs, so it is the secret."""
    start = connectors.microsoft.start_teacher_link(settings, state=state)
    return ConsentStart(url=start.auth_url, secret=json.dumps(dict(start.flow)))


def _exchange(settings: Settings, callback: Callback) -> TokenSet:
    try:
        flow = json.loads(callback.verifier)
    except ValueError:
        raise connectors.microsoft.LinkRefused("the link attempt holds no Microsoft sign-in flow") from None
    if not isinstance(flow, dict):
        raise connectors.microsoft.LinkRefused("the link attempt holds no Microsoft sign-in flow")
    grant = connectors.microsoft.complete_teacher_link(settings, flow, callback.url)
    assert grant.user_id is not None
    extra = {"link": TEACHER_LINK, "token_cache": grant.token_cache, "tenant_id": grant.tenant_id}
    return TokenSet(None, "", None, scopes=grant.scopes, extra=extra | {"user_id": grant.user_id})


def _grant(settings: Settings, tokens: TokenSet) -> Grant:
    return Grant(tokens, tokens.extra["user_id"])


def _org_grant(settings: Settings, tenant_id: str) -> Grant | None:
    """A tenant-wide link (client credentials); ``link_tenant`` refuses a tenant that has not consented."""
    grant = connectors.microsoft.link_tenant(settings, tenant_id)
    extra = {"link": TENANT_LINK, "token_cache": grant.token_cache, "tenant_id": grant.tenant_id}
    return Grant(TokenSet(None, "", None, scopes=grant.scopes, extra=extra), f"tenant:{grant.tenant_id}")


def _revoke(settings: Settings, token: str) -> RevokeVerdict:
    """Microsoft has no endpoint to revoke an app's grant: the tenant admin withdraws consent (docs/microsoft.md)."""
    return RevokeVerdict.UNSUPPORTED


def _connector(settings: Settings, tokens: TokenSet, on_tokens: TokenSink) -> MicrosoftRoster:
    """MSAL's changed cache goes to the fenced token sink, sealed with the rest of the link's ``extra``."""
    current = [tokens]

    def on_token_cache(cache: str) -> None:
        current[0] = replace(current[0], extra={**current[0].extra, "token_cache": cache})
        on_tokens(current[0])

    app_only = tokens.extra.get("link") == TENANT_LINK
    reader = connectors.microsoft.MicrosoftConnector(
        settings,
        token_cache=tokens.extra.get("token_cache"),
        tenant_id=tokens.extra["tenant_id"] if app_only else None,
        on_token_cache=on_token_cache,
        masks=mappers.microsoft.field_masks(tokens.scopes),
    )
    return MicrosoftRoster(reader)



PROVIDER = Provider(
    name="microsoft",
    display_name="Microsoft 365",
    required_scopes=frozenset({connectors.microsoft.DELEGATED_SCOPE}),  # a teacher's grant; a tenant's is probed
    consent_url=_consent_url,
    exchange_code=_exchange,
    grant=_grant,
    org_grant=_org_grant,
    connector=_connector,
    revoke_token=_revoke,
    field_mask=mappers.microsoft.field_mask,
    allowlist=mappers.microsoft.ALLOWLIST,
    map_page=mappers.microsoft.map_page,
    map_changes=mappers.microsoft.map_changes,
    organisation="an Entra tenant",
    disconnect="the tenant admin withdraws the app's consent or deletes its enterprise application in Entra",
)
