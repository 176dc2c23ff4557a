"""Google Classroom's glue: its consent, code exchange, grant and connector, as one ``Provider`` row.

A teacher links with their own Google account (PKCE, providers.md 1); there is no organisation-wide
link and no change feed, so the sync lists everything each time.
"""

from __future__ import annotations

import connectors.google
import mappers.google
from connectors.base import TokenSet
from providers.base import Callback, Grant, Provider
from settings import GOOGLE_SCOPES, Settings


def _exchange(settings: Settings, callback: Callback) -> TokenSet:
    return connectors.google.exchange_code(settings, code=callback.code, code_verifier=callback.verifier)


def _grant(settings: Settings, tokens: TokenSet) -> Grant:
    return Grant(tokens, connectors.google.account_id(settings, tokens))



PROVIDER = Provider(
    name="google",
    display_name="Google Classroom",
    required_scopes=frozenset(GOOGLE_SCOPES),
    consent_url=connectors.google.consent_url,
    exchange_code=_exchange,
    grant=_grant,
    org_grant=None,
    connector=connectors.google.GoogleConnector,
    revoke_token=connectors.google.revoke_token,
    field_mask=mappers.google.field_mask,
    allowlist=mappers.google.ALLOWLIST,
    map_page=mappers.google.map_page,
    map_changes=None,
)
