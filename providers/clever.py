"""Clever's glue: sign-in, the teacher's or district's grant, the change feed, as one ``Provider`` row.

Clever's sign-in takes no PKCE challenge, a district-shared teacher is read with the district's app token,
and a Library teacher with their own (providers.md 2).
"""

from __future__ import annotations

from collections.abc import Iterator

import connectors.clever
import mappers.clever
from connectors.base import Page, ProviderDataError, RosterConnector, TokenSet
from providers.base import Callback, ErrorWords, Grant, Provider
from settings import Settings


def _consent_url(settings: Settings, *, state: str, code_challenge: str) -> str:
    """Clever's sign-in takes no PKCE challenge (its code exchange authenticates the client instead)."""
    return connectors.clever.authorization_url(settings, state=state)


def _exchange(settings: Settings, callback: Callback) -> TokenSet:
    return connectors.clever.exchange_code(settings, authorization_response=callback.url, state=callback.state)


CLEVER_ROLES = frozenset({"student", "staff", "district_admin", "school_admin", "contact"})
"""Clever's role words that a refusal may name; any other value is not echoed (it came off the wire)."""


def _identity(settings: Settings, sso_token: str) -> mappers.clever.CleverIdentity:
    """Who signed in and as what: ``/me``, and ``/userinfo`` when ``/me`` says only ``user`` (a Library sign-in,
    dev.clever.com/docs/classroom-rostering). Only a teacher links; any other role is refused by name."""
    with connectors.clever.CleverConnector(settings, sso_token) as reader:
        me = mappers.clever.identity(reader.me())
        if me is not None and me.user_type == mappers.clever.USER:
            me = mappers.clever.role_from_userinfo(me, reader.userinfo())
    if me is None:
        raise ProviderDataError("Clever's /me or /userinfo breaks the documented shape")
    if me.user_type != "teacher":
        role = me.user_type if me.user_type in CLEVER_ROLES else "user of another role"
        raise connectors.clever.LinkRefused(
            f"this Clever sign-in is a {role}, not a teacher: only a teacher links a class roster; nothing was stored"
        )
    return me


def _grant(settings: Settings, sso: TokenSet) -> Grant:
    """A teacher's sign-in -> what the sync reads with (providers.md 2.1, "Two kinds of teacher").

    A district-shared teacher's SSO token reaches only ``/me`` and a few records, so their roster is
    read with the district's app token (resolved by the district ``/me`` names); a district that has
    not connected the app is refused here, before anything is stored. A Library teacher (no
    district) is read with their own SSO token. The SSO token of a district teacher is not kept.
    """
    assert sso.access_token is not None
    me = _identity(settings, sso.access_token)
    if me.district_id is None:
        return Grant(TokenSet(sso.access_token, "", None, extra={"teacher_id": me.user_id}), me.user_id)
    token = connectors.clever.district_token(settings, me.district_id)
    if token is None:
        raise connectors.clever.LinkRefused(
            "the teacher's district has not connected rostersync in Clever; nothing was stored "
            "(the district connects the app in its Clever dashboard, or use `rostersync link org`)"
        )
    extra = {"district_id": me.district_id, "teacher_id": me.user_id}
    return Grant(TokenSet(token, "", None, extra=extra), me.user_id)


def _classes_of(connector: RosterConnector, user_id: str) -> Iterator[Page]:
    """Clever's events say "created" for a user whose id reappears but not which sections they are in again."""
    assert isinstance(connector, connectors.clever.CleverRoster)
    return connector.classes_of(user_id)


def _org_grant(settings: Settings, district_id: str) -> Grant | None:
    token = connectors.clever.district_token(settings, district_id)
    if token is None:
        return None
    return Grant(TokenSet(token, "", None, extra={"district_id": district_id}), f"district:{district_id}")


TOKEN_REFUSED = ErrorWords(
    meaning="Clever kept refusing the district's token although it still lists it: retries exhausted, "
    "integration marked failed (tokens and roster kept)",
    give_up="Clever kept refusing the district's token (401) although it still lists it, so the district "
    "has not disconnected; tokens and roster are kept (check the app in the district's Clever dashboard)",
    wait="Clever refused the district's token although it still lists it",
)
"""A district token refused while Clever still lists it (``TokenRefused``): retried, never taken for a disconnect."""


PROVIDER = Provider(
    name="clever",
    display_name="Clever",
    required_scopes=frozenset(),  # Clever's token response names no scopes; /me and the reads tell
    consent_url=_consent_url,
    exchange_code=_exchange,
    grant=_grant,
    org_grant=_org_grant,
    connector=connectors.clever.connector,
    revoke_token=connectors.clever.revoke_token,
    field_mask=mappers.clever.field_mask,
    allowlist=mappers.clever.ALLOWLIST,
    map_page=mappers.clever.map_page,
    map_changes=mappers.clever.map_changes,
    classes_of=_classes_of,
    whole_records="Clever: sections and teachers, never student records",
    organisation="a Clever district",
    disconnect="the district removes the app in its Clever dashboard",
    error_words={connectors.clever.TokenRefused.kind: TOKEN_REFUSED},
)
