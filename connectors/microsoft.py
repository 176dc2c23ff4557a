"""Microsoft Graph Education: MSAL for identity, plain requests for Graph, and nothing else.

Two kinds of link (providers.md 3.1, 3.5): a teacher signs in (authorization code with PKCE, the
least delegated scope ``EduRoster.ReadBasic``; MSAL adds ``openid profile offline_access``), or a
tenant admin consents to the application permission and the link reads the whole tenant with
client credentials (``.default``; the least permission its calls need is ``EduRoster.Read.All``,
because ``/education/classes`` and its ``members``/``teachers`` accept nothing less, and it also
covers delta). Each link's MSAL token cache is a string the caller seals in the vault; it is handed
back through ``on_token_cache`` only when MSAL changed it.

Minimisation happens on the wire: every Graph read carries the ``$select`` mask the caller derived
from the allowlist (students as ``id,primaryRole``, so no student's name ever crosses the wire), and
``@odata.nextLink`` is followed as given, only on ``GRAPH_ENDPOINT``'s host (a token is never sent
elsewhere). Per-class member lists go through JSON ``$batch``, 20 sub-requests a call, each
sub-response handled on its own. Every Entra or Graph failure goes through one of two tables,
``classify_token_error`` (MSAL's error dicts) and ``classify_graph_error``, into the taxonomy of
``connectors.base``. No token, code, response body or personal value goes into an exception text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import msal
import requests

from connectors.answers import has_header, header, json_or_none, retry_after
from connectors.base import (
    AccessBlocked,
    AccessRevoked,
    ChangesUnavailable,
    ConnectorError,
    Page,
    PageBound,
    ProviderDataError,
    RateLimited,
    Refusal,
    ScopeMissing,
    SetupRequired,
    TransientError,
    no_check,
)

# re-exported: callers name the refusal and the session through the provider's module
from connectors.base import LinkRefused as LinkRefused
from connectors.base import RecordUnavailable as RecordUnavailable
from connectors.batch import RetryRules, Round, resend_failed
from connectors.http import http_session as http_session
from connectors.paging import LinkWords, NextLinks, on_origin
from connectors.refresh import RefreshOnce
from settings import Settings

GRAPH_RESOURCE = "https://graph.microsoft.com"
DELEGATED_SCOPE = "EduRoster.ReadBasic"
"""The least delegated scope for a teacher's own classes, their members and teachers (providers.md 3.1)."""
APPLICATION_PERMISSION = "EduRoster.Read.All"
"""The least application permission for ``/education/classes`` with ``members`` and ``teachers``;
``EduRoster.ReadBasic.All`` is enough only for delta (providers.md 3.1)."""
APP_SCOPES = (GRAPH_RESOURCE + "/.default",)
PAGE_SIZE = 999
"""[U] Graph documents no maximum for education lists; 999 is directory ``/users``'s, and a larger
``$top`` may be clamped or refused, so the connector never asks for more and relies on nextLink."""
BATCH_LIMIT = 20
DELTA_LIFETIME_SECONDS = 7 * 86_400 - 3_600
"""Education delta links live 7 days (providers.md 3.3); one an hour younger is already treated as expired."""
MAX_INLINE_WAIT_SECONDS = 30.0
"""A throttled ``$batch`` sub-request is retried in place after at most this Retry-After; longer is RateLimited."""
SUB_REQUEST_ATTEMPTS = 4
SUB_REQUEST_RETRIES = RetryRules(attempts=SUB_REQUEST_ATTEMPTS, max_inline_wait=MAX_INLINE_WAIT_SECONDS)
DEFAULT_RETRY_AFTER = 10.0
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)
MASK_KEYS = ("class", "member", "teacher")
"""``$select`` masks by what is read: classes, a class's ``members`` (id and role only), its ``teachers``."""
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$")
_TENANT_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_TENANT_DOMAIN = re.compile(r"^(?=.{4,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
"""What Entra takes as a tenant in an authority URL: its id (a GUID) or one of its verified domains."""
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")
NO_EDUCATION = "this Microsoft 365 tenant has no education data; School Data Sync or an Education licence is needed"
"""Said to the admin when Graph answers an ``/education`` call as it does in a tenant that is not an Education one."""
_CURSOR_VERSION = 1
NEXT_LINK = LinkWords(link="a nextLink", links="nextLinks", host="Graph's host; not followed")

Masks = Mapping[str, str]

# What each token-endpoint code means (reference-error-codes, providers.md 3.6; docs/microsoft.md has the
# table with its reasons). Codes are looked up before ``error`` and ``suberror``: a 50079 arrives as
# ``invalid_grant``. The grant is gone: the teacher, the district or Entra withdrew it.
_REVOKED_REASONS: Mapping[int, str] = {
    50173: "sessions_revoked",
    65001: "consent_withdrawn",
    90094: "consent_withdrawn",
    700082: "refresh_token_expired",
    70008: "grant_expired",
    70000: "grant_invalid",
    50089: "grant_expired",
    50132: "sessions_revoked",
    50133: "sessions_revoked",
    700016: "app_removed_from_tenant",
    50034: "account_removed",
}

_CONDITIONAL_ACCESS = (
    "a Conditional Access policy of the school's Microsoft Entra tenant blocks rostersync's sign-in; "
    "a tenant admin can exclude rostersync from the policy (Entra admin center > Conditional Access), "
    "and syncing resumes by itself"
)
_INTERACTION = (
    "the school's Microsoft Entra tenant asks the teacher for an interactive step rostersync cannot take "
    "(multifactor authentication, its registration, or another security challenge); the teacher signs in "
    "again through rostersync's link page, or a tenant admin exempts rostersync from the policy"
)
_SIGN_IN_FREQUENCY = (
    "a Conditional Access sign-in frequency policy of the school wants the teacher to sign in again; "
    "the teacher signs in again through rostersync's link page, or a tenant admin exempts rostersync"
)
# Reversible settings of the school (docs/microsoft.md): tokens and roster are kept, the link waits.
_BLOCKED_REASONS: Mapping[int, tuple[str, str]] = {
    **dict.fromkeys(
        (53000, 53001, 53002, 53003, 530032, 50005, 50097, 50129, 50131), ("conditional_access", _CONDITIONAL_ACCESS)
    ),
    530035: (
        "security_defaults",
        "the security defaults of the school's Microsoft Entra tenant block this sign-in; a tenant admin can "
        "turn them off in favour of Conditional Access policies that exempt rostersync",
    ),
    **dict.fromkeys(
        (50076, 50079, 50078, 50072, 50074, 50158, 53004, 53010, 53011), ("interaction_required", _INTERACTION)
    ),
    70043: ("sign_in_frequency", _SIGN_IN_FREQUENCY),
    50105: (
        "user_not_assigned",
        "the teacher is not assigned to rostersync's enterprise application in the school's Microsoft Entra "
        "tenant; a tenant admin assigns them (Enterprise applications > rostersync > Users and groups)",
    ),
    50057: (
        "account_disabled",
        "the teacher's Microsoft account is disabled; a tenant admin can enable it again in the Entra admin center",
    ),
    50053: (
        "account_locked",
        "Microsoft Entra locked the teacher's sign-in (too many attempts, or a sign-in it judged risky); "
        "it unlocks after a while, or a tenant admin unlocks it",
    ),
    **dict.fromkeys(
        (50055, 50144),
        (
            "password_expired",
            "the teacher's Microsoft password has expired; once the teacher sets a new one and signs in again "
            "through rostersync's link page, syncing resumes",
        ),
    ),
    7000112: (
        "app_disabled",
        "a tenant admin turned off sign-in to rostersync's enterprise application; set \"Enabled for users to "
        'sign in" back to Yes (Entra admin center > Enterprise applications > rostersync > Properties)',
    ),
}
_TOKEN_ERRORS: Mapping[str, Refusal] = {
    # OAuth ``error`` values (RFC 6749 5.2; reference-error-codes) once no AADSTS code above decided. An
    # ``invalid_grant`` no code names stays a revocation: RFC 6749 gives it for a grant invalid, expired or revoked.
    **{
        error: Refusal(AccessRevoked, "Microsoft refused the link's grant ({error}, {label})", reason=error)
        for error in ("invalid_grant", "unauthorized_client", "consent_required")
    },
    **dict.fromkeys(
        ("temporarily_unavailable", "server_error"),
        Refusal(TransientError, "Microsoft's token endpoint is unavailable ({label})"),
    ),
}
_INTERACTION_SUBERRORS = frozenset({"basic_action", "additional_action", "message_only", "user_password_expired"})
"""``suberror`` values MSAL documents as resolvable by a person (UiRequiredExceptionClassification)."""
_CLAIMS_CHALLENGED = (
    "a Conditional Access policy of the school asks for something rostersync cannot provide (it answered "
    "with a claims challenge, which rostersync, a server without a signed-in user, cannot satisfy); a tenant "
    "admin can exempt rostersync from the policy, and syncing resumes by itself"
)
_FORBIDDEN = (
    "the school's Microsoft 365 denies rostersync's reads although the permission is granted: a missing "
    "Education licence (or School Data Sync plan) or a Conditional Access policy; a tenant admin can assign "
    "the licence or exempt rostersync, and syncing resumes by itself"
)
_SCOPE_REFUSALS = ("required scp claim values are not provided", "required roles claim values are not provided")
"""[O] the only text Graph education gives for a token without the permission (delegated ``scp``, app
``roles``); Graph documents no code for it, so this one message check is the hint (docs/microsoft.md)."""


# ------------------------------------------------------------------------------------- errors
class ClientRejected(TransientError):
    """Entra refused *our* client credentials (``invalid_client``: secret wrong or expired).

    An operator error, never a school's revocation: nothing is purged; the integration is left as
    it is and retried, and the message names the settings to fix.
    """

    kind = "client_config"


class CursorExpired(ChangesUnavailable):
    """The delta cursor cannot be continued: the worker runs a full sync instead (a ``ChangesUnavailable``).

    ``reason``: ``expired`` (older than 7 days, 400 ``syncStateNotFound``, 410 ``resyncRequired``)
    or ``invalid`` (unreadable, or a link off Graph's host).
    """

    kind = "cursor_expired"


class _Refused(ProviderDataError):
    """Graph refused the request itself (400, 404, other 4xx): what was asked for is wrong or gone."""


class NotEducationTenant(SetupRequired):
    """The tenant has no education data: Graph's education API is not provisioned for it.

    Graph's rostering APIs read "a school's Microsoft 365 tenant that has been provisioned with Microsoft
    School Data Sync" (education-overview); elsewhere an ``/education`` call answers 400
    ``Request_UnsupportedQuery`` about an ``..._Education_ObjectType`` extension property
    (microsoft-graph-docs#4964) or, on older deployments, "Resource not found for the segment
    'education'". No retry helps until the tenant's admin sets up School Data Sync.
    """

    def __init__(self) -> None:
        super().__init__(NO_EDUCATION)


def _not_education(status: int, body: Any) -> bool:
    """Graph's answer to an ``/education`` call in a tenant without education data (see ``NotEducationTenant``).

    The code decides (Graph asks clients to branch on codes, not messages); the "segment 'education'"
    text is the one message matched, because that older answer carries only a generic code.
    """
    if status != 400:
        return False
    if _graph_code(body) == "Request_UnsupportedQuery":
        return True
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return isinstance(message, str) and "segment 'education'" in message


@dataclass(frozen=True)
class LinkStart:
    """The sign-in URL for the teacher and MSAL's flow (PKCE verifier, state, nonce): seal the flow until completion."""

    auth_url: str
    flow: Mapping[str, Any]

    def __repr__(self) -> str:  # the flow holds the PKCE verifier
        return "LinkStart(auth_url=<hidden>, flow=<hidden>)"


@dataclass(frozen=True)
class Grant:
    """A finished link: the MSAL token cache (seal it), whose tenant and user, and what was granted."""

    token_cache: str
    tenant_id: str
    user_id: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def __repr__(self) -> str:
        return f"Grant(tenant_id={self.tenant_id!r}, scopes={sorted(self.scopes)!r}, token_cache=<hidden>)"


# ------------------------------------------------------------------------------------- plumbing
def _msal_app(
    settings: Settings, tenant: str, cache: msal.SerializableTokenCache, session: requests.Session
) -> msal.ConfidentialClientApplication:
    """One MSAL app per link and connector (its throttle cache must not outlive them, library-notes 2).

    Instance discovery would call login.microsoftonline.com for any other host, so it is off there.
    """
    host = urlsplit(settings.microsoft.authority_host).hostname or ""
    try:
        return msal.ConfidentialClientApplication(
            settings.microsoft.client_id,
            client_credential=settings.microsoft.client_secret.get_secret_value(),
            authority=f"{settings.microsoft.authority_host}/{tenant}",
            token_cache=cache,
            http_client=session,
            instance_discovery=None if host in MICROSOFT_AUTHORITY_HOSTS else False,
            # no ``timeout=``: MSAL drops it once given an http_client; the session itself carries the timeouts
        )
    except requests.RequestException as error:
        raise TransientError(f"Microsoft's identity platform unreachable ({type(error).__name__})") from None
    except ValueError:
        raise TransientError("Microsoft's identity platform served an unusable OpenID configuration") from None


def _graph_code(body: Any) -> str:
    """Graph's ``error.code``, only if it looks like an identifier (it goes into our messages)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and _IDENTIFIER.match(code) else ""


def scope_names(raw: Any) -> frozenset[str]:
    """Granted scopes without Graph's resource prefix (``https://graph.microsoft.com/X`` and ``X`` alike)."""
    if not isinstance(raw, str):
        return frozenset()
    prefix = GRAPH_RESOURCE + "/"
    return frozenset(s[len(prefix) :] if s.lower().startswith(prefix) else s for s in raw.split())


def classify_token_error(result: Mapping[str, Any]) -> ConnectorError:
    """The whole Entra token-endpoint error map (reference-error-codes; docs/microsoft.md); MSAL hands errors
    back as dicts.

    Classified on the AADSTS code first (tables above), then on ``suberror`` and ``error``, never on the
    description. An ``invalid_grant`` no table names stays a revocation: RFC 6749 gives it for a grant
    that is invalid, expired or revoked, and keeping pupils' data on a guess is the wrong way to err.
    Texts are ours.
    """
    error = result.get("error")
    raw_codes = result.get("error_codes")
    codes = [c for c in raw_codes if isinstance(c, int)] if isinstance(raw_codes, list) else []
    label = f"AADSTS{codes[0]}" if codes else "no AADSTS code"
    if error == "invalid_client":
        return ClientRejected(
            f"Microsoft refused our client credentials ({label}); "
            "check ROSTERSYNC_MICROSOFT_CLIENT_ID and ROSTERSYNC_MICROSOFT_CLIENT_SECRET"
        )
    known = _refusal_by_code(codes, error, label)
    if known is not None:
        return known
    suberror = result.get("suberror")
    if suberror == "consent_required":
        return AccessRevoked(f"Microsoft refused the link's grant ({error}, {label})", reason="consent_withdrawn")
    if suberror in _INTERACTION_SUBERRORS or error == "interaction_required":
        return AccessBlocked(f"{_INTERACTION} ({label})", reason="interaction_required")
    if error == "invalid_scope":
        return ScopeMissing([DELEGATED_SCOPE])
    if isinstance(error, str) and error in _TOKEN_ERRORS:
        return _TOKEN_ERRORS[error](error=error, label=label)
    if isinstance(error, str) and _IDENTIFIER.match(error):
        return TransientError(f"Microsoft's token endpoint answered {error} ({label})")
    return TransientError("Microsoft's token endpoint answered without a token or an error")


def _refusal_by_code(codes: Sequence[int], error: Any, label: str) -> ConnectorError | None:
    """A revocation or a block the AADSTS code documents, whatever ``error`` says; None for other codes."""
    for code in codes:
        if code in _REVOKED_REASONS:
            shown = error if isinstance(error, str) and _IDENTIFIER.match(error) else "refused"
            return AccessRevoked(
                f"Microsoft refused the link's grant ({shown}, {label})", reason=_REVOKED_REASONS[code]
            )
        if code in _BLOCKED_REASONS:
            reason, public = _BLOCKED_REASONS[code]
            return AccessBlocked(f"{public} (AADSTS{code})", reason=reason)
    return None


def claims_challenge(headers: Mapping[str, str]) -> str | None:
    """The claims a ``WWW-Authenticate`` ``insufficient_claims`` challenge asks for, as MSAL takes them
    (a JSON string); ``""`` for a challenge whose claims cannot be read; None when there is no challenge.

    Format and meaning: learn.microsoft.com/entra/identity-platform/claims-challenge.
    """
    found_header = header(headers, "www-authenticate") or ""
    if not isinstance(found_header, str) or "insufficient_claims" not in found_header:
        return None
    found = re.search(r'claims="([A-Za-z0-9+/=_-]*)"', found_header)
    if found is None:
        return ""
    try:
        raw = found.group(1)
        claims = json.loads(base64.urlsafe_b64decode(raw.replace("+", "-").replace("/", "_") + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        return ""
    return json.dumps(claims) if isinstance(claims, dict) else ""


# Graph's errors (learn.microsoft.com/graph/errors; providers.md 3.3, 3.4, 3.7) in the order they are tried:
# an ``/education`` call in a tenant without education data (``NotEducationTenant``), throttling (429, or 503/504
# with a Retry-After), a dead delta link, a 401 (or a challenged 403) that outlived the refresh, another 403
# (``_forbidden``), then these; any other 4xx is ``_Refused``.
_DELTA_GONE_CODES = frozenset({"syncstatenotfound", "resyncrequired"})
"""Delta's codes for a link it no longer keeps (410 ``resyncRequired``, 400 ``syncStateNotFound``), any case."""
_DELTA_GONE = Refusal(CursorExpired, "Graph says the delta link is no longer valid ({status} {code})", reason="expired")
_GRAPH_NOT_FOUND = Refusal(RecordUnavailable, "record unavailable at Graph (404 {code})")
_GRAPH_FAILED = Refusal(TransientError, "Graph answered {status}")  # every 5xx not throttling


def classify_graph_error(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    app_only: bool,
    granted: frozenset[str] | None = None,
) -> ConnectorError:
    """The whole Graph error map at a glance (providers.md 3.3, 3.4, 3.7), branching on status and ``code``.

    A 401 arrives here only after the connector's one token refresh has not helped: a claims challenge
    that survived it is ``AccessBlocked``, a plain 401 ``AccessRevoked``. ``granted``: the scopes the
    link's token holds, when known (delegated links), for telling a missing scope from other 403s.
    """
    code = _graph_code(body)
    if _not_education(status, body):
        return NotEducationTenant()
    if status == 429 or (status in (503, 504) and has_header(headers, "retry-after")):
        return RateLimited(retry_after(headers, DEFAULT_RETRY_AFTER))
    if status == 410 or code.lower() in _DELTA_GONE_CODES:
        return _DELTA_GONE(status=status, code=code)
    challenged = claims_challenge(headers) is not None
    if status == 401 or (status == 403 and challenged):
        return _unauthorized_again(challenged=challenged)
    if status == 403:
        return _forbidden(body, app_only=app_only, granted=granted)
    if status == 404:
        return _GRAPH_NOT_FOUND(code=code)
    if status >= 500:
        return _GRAPH_FAILED(status=status)
    return _Refused(f"Graph refused the request ({status} {code})".replace(" )", ")"))


def _unauthorized_again(*, challenged: bool) -> ConnectorError:
    """A 401 (or a challenged 403) that the one refresh did not cure: a claims challenge is a school's
    policy (``AccessBlocked``), a plain 401 a token Graph no longer accepts (``AccessRevoked``)."""
    if challenged:
        return AccessBlocked(_CLAIMS_CHALLENGED, reason="claims_challenge")
    return AccessRevoked("Graph rejected a freshly issued token (401)", reason="unauthorized")


def _forbidden(body: Any, *, app_only: bool, granted: frozenset[str] | None) -> ConnectorError:
    """A 403 (learn.microsoft.com/graph/errors: a missing permission, a missing licence, or Conditional Access).

    Only a missing permission is ``ScopeMissing`` (the link degrades and its data goes): the grant we
    hold lacks it, or Graph's "Required scp/roles claim values are not provided" says so. Any other
    403 is a setting the school can change: ``AccessBlocked``, roster kept.
    """
    needed = APPLICATION_PERMISSION if app_only else DELEGATED_SCOPE
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    named = isinstance(message, str) and any(text in message.lower() for text in _SCOPE_REFUSALS)
    if named or (granted is not None and needed not in granted):
        return ScopeMissing([needed])
    return AccessBlocked(_FORBIDDEN, reason="graph_forbidden")


def _quiet_flow(
    app: msal.ConfidentialClientApplication, redirect_uri: str, login_hint: str | None, state: str | None = None
) -> dict[str, Any]:
    """msal warns unless ``response_mode=form_post``; our callback is a query URL pasted into the CLI."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flow: dict[str, Any] = app.initiate_auth_code_flow(
            [DELEGATED_SCOPE], redirect_uri=redirect_uri, login_hint=login_hint, state=state
        )
    return flow


# ------------------------------------------------------------------------------------- linking
def start_teacher_link(settings: Settings, *, login_hint: str | None = None, state: str | None = None) -> LinkStart:
    """Begin a teacher's sign-in at ``{authority host}/organizations`` (auth code + PKCE + nonce).

    ``state``: the caller's own state (the link attempt's key); MSAL makes one up when None.
    """
    with http_session(settings) as session:
        app = _msal_app(settings, "organizations", msal.SerializableTokenCache(), session)
        try:
            flow = _quiet_flow(app, settings.microsoft.redirect_uri, login_hint, state)
        except requests.RequestException as error:
            raise TransientError(f"Microsoft's identity platform unreachable ({type(error).__name__})") from None
    return LinkStart(auth_url=str(flow["auth_uri"]), flow=flow)


def complete_teacher_link(settings: Settings, flow: Mapping[str, Any], callback_url: str) -> Grant:
    """Redeem the callback for tokens; a grant without ``EduRoster.ReadBasic``, or in a tenant without
    education data (probed at ``/education/me``), is refused and nothing kept."""
    params = {name: values[0] for name, values in parse_qs(urlsplit(callback_url).query).items() if values}
    if "error" in params:
        error = params["error"] if _IDENTIFIER.match(params["error"]) else "unknown"
        raise LinkRefused(f"the Microsoft sign-in was not completed ({error})")
    cache = msal.SerializableTokenCache()
    with http_session(settings) as session:
        app = _msal_app(settings, "organizations", cache, session)
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), params)
        except ValueError:
            raise LinkRefused("the sign-in callback does not belong to this link (state mismatch)") from None
        except RuntimeError:
            raise LinkRefused("the sign-in answer failed its nonce check") from None
        except requests.RequestException as error:
            raise TransientError(f"Microsoft's token endpoint unreachable ({type(error).__name__})") from None
    if "access_token" not in result:
        refusal = classify_token_error(result)
        if isinstance(refusal, TransientError):
            raise refusal
        raise LinkRefused(f"Microsoft refused the authorization code: {refusal.public}")
    granted = scope_names(result.get("scope"))
    if DELEGATED_SCOPE not in granted:
        raise LinkRefused(
            f"the grant lacks {DELEGATED_SCOPE}: a tenant admin must consent to it for this app (nothing stored)"
        )
    claims = result.get("id_token_claims") or {}
    tenant_id, user_id = claims.get("tid"), claims.get("oid")
    if not isinstance(tenant_id, str) or not isinstance(user_id, str):
        raise ProviderDataError("the id token names no tenant or user")
    _probe_teacher(settings, result["access_token"])
    return Grant(token_cache=cache.serialize(), tenant_id=tenant_id, user_id=user_id, scopes=granted)


def _probe_teacher(settings: Settings, access_token: str) -> None:
    """One read of ``/education/me`` (id and role only) before anything is stored.

    The scope check above cannot tell a tenant with no education data: its consent screen grants
    ``EduRoster.ReadBasic`` like any other, and only Graph's education API refuses. Checked here, the
    teacher hears it at once instead of linking a roster that every sync fails to read.
    """
    with http_session(settings) as session:
        probe = _probe(settings, session, access_token, "/education/me", {"$select": "id,primaryRole"})
    _refuse_unless_ok(probe, app_only=False)


def _probe(
    settings: Settings, session: requests.Session, access_token: str, path: str, params: Mapping[str, str]
) -> requests.Response:
    """A link-time Graph GET with a token just issued (nothing is stored yet, so no MSAL cache is involved)."""
    try:
        return session.get(
            settings.microsoft.graph_endpoint + path,
            params=params,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=settings.http_timeouts,
        )
    except requests.RequestException as error:
        raise TransientError(f"Graph unreachable ({type(error).__name__})") from None


def _refuse_unless_ok(probe: requests.Response, *, app_only: bool) -> None:
    """A link-time probe's failure, classified like any Graph answer; a tenant without education data is
    the link's refusal in the admin's words (``NO_EDUCATION``), and nothing is stored either way."""
    if probe.status_code == 200:
        return
    error = classify_graph_error(probe.status_code, json_or_none(probe), probe.headers, app_only=app_only)
    if isinstance(error, NotEducationTenant):
        raise LinkRefused(f"{NO_EDUCATION}; nothing was stored")
    raise error


def link_tenant(settings: Settings, tenant_id: str) -> Grant:
    """A tenant-wide link with client credentials; refused unless the tenant admin granted ``EduRoster.Read.All``.

    One probe (``/education/classes?$select=id&$top=1``) proves the permission, and that the tenant has
    education data at all (``NO_EDUCATION``), before anything is stored.
    """
    if not (_TENANT_GUID.match(tenant_id) or _TENANT_DOMAIN.match(tenant_id)):
        # Checked here, not left to Microsoft: its answer to a malformed id reads like a refusal of our app.
        raise LinkRefused(
            "the organisation id is not a valid Entra tenant id: give the school's tenant id (a GUID, "
            "8-4-4-4-12 hex digits) or one of its verified domains (school.onmicrosoft.com); nothing was asked "
            "of Microsoft"
        )
    cache = msal.SerializableTokenCache()
    with http_session(settings) as session:
        app = _msal_app(settings, tenant_id, cache, session)
        try:
            result = app.acquire_token_for_client(list(APP_SCOPES))
        except requests.RequestException as error:
            raise TransientError(f"Microsoft's token endpoint unreachable ({type(error).__name__})") from None
        if "access_token" not in result:
            refusal = classify_token_error(result)
            if isinstance(refusal, TransientError):
                raise refusal
            if isinstance(refusal, AccessBlocked):  # a school's policy, not a missing consent
                raise LinkRefused(f"Microsoft refused the tenant's sign-in: {refusal.public}")
            raise LinkRefused(f"the tenant has not admitted this app: {refusal.public}")
        probe = _probe(settings, session, result["access_token"], "/education/classes", {"$select": "id", "$top": "1"})
    if probe.status_code in (401, 403):
        raise _probe_refusal(probe)
    _refuse_unless_ok(probe, app_only=True)
    return Grant(
        token_cache=cache.serialize(), tenant_id=tenant_id, user_id=None, scopes=frozenset({APPLICATION_PERMISSION})
    )


def _probe_refusal(probe: requests.Response) -> LinkRefused:
    """A tenant link's probe refused: the permission is missing, or a setting of the school blocks it."""
    refusal = classify_graph_error(probe.status_code, json_or_none(probe), probe.headers, app_only=True)
    if isinstance(refusal, AccessBlocked):
        return LinkRefused(f"Graph refuses the tenant's reads: {refusal.public}")
    return LinkRefused(f"the tenant admin has not granted the application permission {APPLICATION_PERMISSION}")


# ------------------------------------------------------------------------------------- cursor
def _encode_cursor(classes_link: str, users_link: str, masks: Masks, issued: float) -> str:
    state = {"v": _CURSOR_VERSION, "issued": int(issued), "classes": classes_link, "users": users_link}
    state["masks"] = {key: masks[key] for key in MASK_KEYS}
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error):
        raise CursorExpired("the delta cursor is unreadable", reason="invalid") from None
    ok = (
        isinstance(state, dict)
        and state.get("v") == _CURSOR_VERSION
        and isinstance(state.get("issued"), int)
        and all(isinstance(state.get(k), str) for k in ("classes", "users"))
        and isinstance(state.get("masks"), dict)
        and all(isinstance(state["masks"].get(k), str) for k in MASK_KEYS)
    )
    if not ok:
        raise CursorExpired("the delta cursor is unreadable", reason="invalid")
    return dict(state)


# ------------------------------------------------------------------------------------- the reader
@dataclass
class _SubRequest:
    class_id: str
    kind: str  # "members" | "teachers"
    url: str  # relative to GRAPH_ENDPOINT, as $batch wants it


class MicrosoftConnector:
    """Reads for one link: a teacher's (delegated, ``tenant_id`` None) or a whole tenant's (application).

    ``token_cache`` is the link's serialised MSAL cache; whenever MSAL changes it (a refresh rotated
    the refresh token, a new access token) the new string goes to ``on_token_cache`` before the
    token is used, so a crash never loses a rotated refresh token. A Graph 401 forces one token
    refresh; a second 401 is ``AccessRevoked``. One instance per sync and thread.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        token_cache: str | None,
        tenant_id: str | None = None,
        on_token_cache: Callable[[str], None] | None = None,
        masks: Masks | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._app_only = tenant_id is not None
        self._on_token_cache = on_token_cache
        self._masks = dict(masks) if masks is not None else None
        self._sleep = sleep
        self._cache = msal.SerializableTokenCache()
        if token_cache:
            try:
                self._cache.deserialize(token_cache)
            except ValueError:
                raise AccessRevoked("the link's token cache is unreadable", reason="token_cache_unreadable") from None
        self._session = http_session(settings)
        self._authority_tenant = tenant_id or self._cached_realm() or "organizations"
        self._msal: msal.ConfidentialClientApplication | None = None
        self._token: str | None = None
        self._last_delta_links: dict[str, str] = {}
        self.requests_made = 0
        self.before_request: Callable[[], None] = no_check

    def _cached_realm(self) -> str | None:
        """A teacher's tenant, from the account in the cache: refreshes then go to that tenant's authority."""
        accounts = list(self._cache.search(msal.TokenCache.CredentialType.ACCOUNT))
        realm = accounts[0].get("realm") if accounts else None
        return realm if isinstance(realm, str) and _TENANT.match(realm) else None

    @property
    def _app(self) -> msal.ConfidentialClientApplication:
        """Built on first use: MSAL fetches the OpenID configuration when constructed."""
        if self._msal is None:
            self._msal = _msal_app(self._settings, self._authority_tenant, self._cache, self._session)
        return self._msal

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> MicrosoftConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------- reads
    def classes(self, masks: Masks) -> Iterator[Page]:
        """The teacher's classes (``/education/me/classes``) or the tenant's (``/education/classes``)."""
        path = "/education/classes" if self._app_only else "/education/me/classes"
        params = {"$select": _mask(masks, "class"), "$top": str(PAGE_SIZE)}
        for records, _ in self._pages(self._settings.microsoft.graph_endpoint + path, params):
            yield Page(kind="classes", parent_id=None, records=records)

    def members(self, class_ids: Iterable[str], masks: Masks) -> Iterator[Page]:
        """Each class's ``members`` (``$select`` of the ``member`` mask: ``id,primaryRole``) and ``teachers``.

        Pages are ``members`` and ``teachers`` with the class id as ``parent_id``; a class whose roster
        cannot be read (403, 404) is one ``unreadable`` marker page instead, and none of its other pages.
        Requests go in ``$batch``es of 20 (10 classes a call). Without a ``member`` mask (no consent
        basis for students) no ``members`` list is requested at all.
        """
        reads = [
            (kind, {"$select": _mask(masks, key), "$top": str(PAGE_SIZE)})
            for kind, key in (("members", "member"), ("teachers", "teacher"))
            if kind == "teachers" or key in masks
        ]
        subs: list[_SubRequest] = []
        for class_id in dict.fromkeys(class_ids):
            if not isinstance(class_id, str) or not class_id or "/" in class_id or "?" in class_id:
                raise ProviderDataError("a class id is not a plain Graph id")
            for kind, params in reads:
                query = urlencode(params, safe="$,")
                subs.append(_SubRequest(class_id, kind, f"/education/classes/{class_id}/{kind}?{query}"))
        for start in range(0, len(subs), BATCH_LIMIT):
            yield from self._batch(subs[start : start + BATCH_LIMIT])

    def change_cursor(self, masks: Masks | None = None) -> str | None:
        """A cursor to read changes from later (tenant links; None for a teacher link).

        Walks the initial rounds of ``/education/classes/delta`` and ``/education/users/delta``
        (ids and roles only) to the ``@odata.deltaLink`` of each. Take it *before* a full sync, so
        changes made during the sync are read again. The cursor is an opaque string holding both
        delta links, the ``$select`` masks they were made with, and when it was issued.
        """
        if not self._app_only:
            return None
        chosen = dict(masks) if masks is not None else self._masks
        if chosen is None:
            raise ValueError("change_cursor needs the $select masks (given here or to the constructor)")
        issued = time.time()
        links = []
        for path, mask in (("/education/classes/delta", "class"), ("/education/users/delta", "member")):
            url = self._settings.microsoft.graph_endpoint + path
            delta_link = ""
            # The largest page here too: the initial round lists every user of the tenant.
            params = {"$select": _mask(chosen, mask), "$top": str(PAGE_SIZE)}
            for _, link in self._pages(url, params, delta=True):
                delta_link = link or ""
            links.append(delta_link)
        return _encode_cursor(links[0], links[1], chosen, issued)

    def changes(self, cursor: str) -> Iterator[Page]:
        """What changed since ``cursor``: ``users`` delta pages (``id,primaryRole``; ``@removed`` entries
        where Graph sends them), ``classes`` delta pages, and fresh ``members``/``teachers`` pages of
        every changed class (a class's membership change is not in class delta's payload).

        Every page carries the cursor to store after applying it: the old one until the last page,
        which carries the new one (re-applying a page changes nothing). ``CursorExpired`` means: do a
        full sync. Deleted classes never appear in class delta; a periodic full sync removes them.
        """
        state = _decode_cursor(cursor)
        if time.time() - state["issued"] > DELTA_LIFETIME_SECONDS:
            raise CursorExpired("the delta cursor is older than Graph keeps delta state (7 days)", reason="expired")
        masks: dict[str, str] = dict(state["masks"])
        for key in ("classes", "users"):
            if not self._on_graph(state[key]):
                raise CursorExpired("the delta cursor points away from Graph's host", reason="invalid")

        def pages() -> Iterator[Page]:
            for records, _ in self._pages(state["users"], None, delta=True, stored=True):
                yield Page(kind="users", parent_id=None, records=records)
            changed: list[str] = []
            for records, _ in self._pages(state["classes"], None, delta=True, stored=True):
                changed += [r["id"] for r in records if isinstance(r, Mapping) and isinstance(r.get("id"), str)]
                yield Page(kind="classes", parent_id=None, records=records)
            yield from self.members(changed, masks)

        self._last_delta_links = {}
        held: Page | None = None
        for page in pages():  # one page held back: only the last one carries the new cursor
            if held is not None:
                yield replace(held, cursor=cursor)
            held = page
        users_link, classes_link = self._last_delta_links.get("users"), self._last_delta_links.get("classes")
        if held is None or not users_link or not classes_link:
            raise ProviderDataError("a delta round ended without a deltaLink")
        yield replace(held, cursor=_encode_cursor(classes_link, users_link, masks, time.time()))

    # ------------------------------------------------------------------------------- paging
    def _on_graph(self, url: str) -> bool:
        return on_origin(url, self._settings.microsoft.graph_endpoint)

    def _links(self, first: str | None = None) -> NextLinks:
        """``@odata.nextLink`` as given, only on Graph's host, never a loop, ``ROSTERSYNC_MAX_PAGES`` at most."""
        bound = PageBound(self._settings.max_pages, "a Graph listing")
        return NextLinks(self._settings.microsoft.graph_endpoint, NEXT_LINK, bound, first=first)

    def _pages(
        self, url: str, params: Mapping[str, str] | None, *, delta: bool = False, stored: bool = False
    ) -> Iterator[tuple[list[Any], str | None]]:
        """A collection page by page, following ``@odata.nextLink`` as given (Graph's host only, no loops).

        Yields each page's ``value`` and, on a delta round's last page, its ``@odata.deltaLink``.
        ``stored``: ``url`` is a delta link from our cursor; if Graph refuses it (a 400 or 404 of any
        code: expired, reset, or a token it does not know) the cursor is dead, so ``CursorExpired``.
        """
        links = self._links(first=None if params else url)  # a link that leads back to itself is a loop too
        current: str | None = url
        query = params
        while current is not None:
            links.next_page()
            try:
                body = self._get(current, query)
            except ProviderDataError as error:
                if stored and current == url and isinstance(error, (_Refused, RecordUnavailable)):
                    raise CursorExpired("Graph does not know the stored delta link", reason="invalid") from None
                raise
            records = body.get("value")
            if not isinstance(records, list):
                raise ProviderDataError("a Graph list response carries no value list")
            following = links.check(body.get("@odata.nextLink"))
            delta_link = body.get("@odata.deltaLink") if delta else None
            if delta and following is None:
                if not isinstance(delta_link, str) or not self._on_graph(delta_link):
                    raise ProviderDataError("a delta round ended without a deltaLink on Graph's host")
                kind = "classes" if "/classes/" in urlsplit(delta_link).path else "users"
                self._last_delta_links[kind] = delta_link
            yield records, delta_link if isinstance(delta_link, str) else None
            current, query = following, None

    # ------------------------------------------------------------------------------- $batch
    def _batch(self, subs: Sequence[_SubRequest]) -> Iterator[Page]:
        """One ``$batch`` of up to 20 sub-requests; each answer handled on its own.

        A throttled (429, 503/504) or failed (5xx) sub-request is sent again in a smaller batch after
        the longest Retry-After among them, without losing the answered ones; a 401 earns one token
        refresh first, as in ``_request``. A class with a 403 or 404 becomes one ``unreadable`` marker.
        """
        pages: dict[str, list[Page]] = {str(index): [] for index in range(len(subs))}
        unreadable: set[str] = set()
        refresh = RefreshOnce()

        def reauthorize(round_: Round[_SubRequest]) -> None:
            if not refresh.again(functools.partial(self._renew, round_.challenge)):
                raise _unauthorized_again(challenged=round_.challenge is not None)

        resend_failed(
            {str(index): sub for index, sub in enumerate(subs)},
            lambda pending: self._batch_round(pending, pages, unreadable),
            rules=SUB_REQUEST_RETRIES,
            reauthorize=reauthorize,
            give_up=_batch_gives_up,
            sleep=self._sleep,
        )
        yield from _batch_pages(subs, pages, unreadable)

    def _batch_round(
        self, pending: Mapping[str, _SubRequest], pages: dict[str, list[Page]], unreadable: set[str]
    ) -> Round[_SubRequest]:
        """One ``$batch`` of ``pending``; a sub-request Graph left out of its answer is asked for again."""
        round_: Round[_SubRequest] = Round()
        answered: set[str] = set()
        for answer in self._post_batch(pending):
            key = answer.get("id") if isinstance(answer, dict) else None
            if not isinstance(key, str) or key not in pending or key in answered:
                continue
            answered.add(key)
            self._sort_answer(key, pending[key], answer, round_, pages, unreadable)
        left_out = {key: sub for key, sub in pending.items() if key not in answered}
        round_.retry.update(left_out)
        round_.waits += [1.0] * len(left_out)
        return round_

    def _sort_answer(
        self,
        key: str,
        sub: _SubRequest,
        answer: Mapping[str, Any],
        round_: Round[_SubRequest],
        pages: dict[str, list[Page]],
        unreadable: set[str],
    ) -> None:
        """One sub-response: its pages in, its class unreadable (403, 404), sent again (401, 429, 5xx), or raised."""
        status = answer.get("status")
        headers: Mapping[str, str] = answer["headers"] if isinstance(answer.get("headers"), dict) else {}
        sub_body = answer.get("body")
        if status == 200:
            pages[key] = self._sub_pages(sub, sub_body)
        elif status in (403, 404):
            unreadable.add(sub.class_id)
        elif status == 401:
            round_.unauthorized = True
            round_.challenge = _first_challenge(round_.challenge, headers)
            round_.retry[key] = sub
        elif status == 429 or (isinstance(status, int) and status >= 500):
            round_.throttled = round_.throttled or status in (429, 503, 504)
            round_.waits.append(retry_after(headers, 1.0))
            round_.retry[key] = sub
        elif isinstance(status, int):
            raise classify_graph_error(status, sub_body, headers, app_only=self._app_only)
        else:
            raise ProviderDataError("a $batch sub-response carries no status")

    def _sub_pages(self, sub: _SubRequest, body: Any) -> list[Page]:
        """A sub-response's page plus any further pages its nextLink leads to (read directly, in order)."""
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise ProviderDataError("a $batch sub-response carries no value list")
        pages = [Page(kind=sub.kind, parent_id=sub.class_id, records=list(body["value"]))]
        following = self._links().check(body.get("@odata.nextLink"))
        if following is not None:
            for records, _ in self._pages(following, None):
                pages.append(Page(kind=sub.kind, parent_id=sub.class_id, records=records))
        return pages

    def _post_batch(self, pending: Mapping[str, _SubRequest]) -> list[Any]:
        """The sub-responses of one ``$batch`` call."""
        payload = {"requests": [{"id": key, "method": "GET", "url": sub.url} for key, sub in pending.items()]}
        body = self._request("POST", f"{self._settings.microsoft.graph_endpoint}/$batch", None, payload)
        answers = body.get("responses")
        if not isinstance(answers, list):
            raise ProviderDataError("a $batch response carries no responses list")
        return answers

    # ------------------------------------------------------------------------------- HTTP
    def _get(self, url: str, params: Mapping[str, str] | None) -> dict[str, Any]:
        return self._request("GET", url, params, None)

    def _request(self, method: str, url: str, params: Mapping[str, str] | None, payload: Any) -> dict[str, Any]:
        """One Graph call. A 401 earns one token refresh and a resend; a claims challenge (a 401 or 403 with
        ``insufficient_claims``) earns one refresh that carries its claims. What survives the refresh is
        classified: a challenge is ``AccessBlocked`` (we declare no client capabilities, so Entra sends
        none unless a policy wants what a server cannot give), a plain 401 ``AccessRevoked``.
        """
        refresh = RefreshOnce()
        while True:
            response = self._send(method, url, params, payload, self._access_token())
            challenge = claims_challenge(response.headers) if response.status_code in (401, 403) else None
            if (response.status_code == 401 or challenge is not None) and refresh.again(
                functools.partial(self._renew, challenge)
            ):
                continue
            body = json_or_none(response)
            if response.status_code != 200:
                raise classify_graph_error(
                    response.status_code, body, response.headers, app_only=self._app_only, granted=self._granted()
                )
            if not isinstance(body, dict):
                raise ProviderDataError("Graph answered 200 with a body that is not a JSON object")
            return body

    def _send(
        self, method: str, url: str, params: Mapping[str, str] | None, payload: Any, token: str
    ) -> requests.Response:
        self.before_request()
        self.requests_made += 1
        query = urlencode(params, safe="$,") if params else None
        target = f"{url}?{query}" if query else url
        try:
            return self._session.request(
                method,
                target,
                json=payload,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=self._settings.http_timeouts,
            )
        except requests.RequestException as error:
            raise TransientError(f"network error talking to Graph ({type(error).__name__})") from None

    # ------------------------------------------------------------------------------- tokens
    def _renew(self, challenge: str | None) -> str:
        """The one refresh a Graph 401 or claims challenge earns; a challenge's claims go to Entra with it
        (an empty challenge asks for nothing more than a fresh token)."""
        self._token = None
        return self._access_token(force=True, claims=challenge or None)

    def _granted(self) -> frozenset[str] | None:
        """The scopes Entra granted the delegated link, from the access tokens in its MSAL cache (None for
        a tenant link: app tokens carry ``roles`` inside the token, which a client must not read)."""
        if self._app_only:
            return None
        targets = [entry.get("target") for entry in self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)]
        scopes = [scope_names(target) for target in targets if isinstance(target, str)]
        return frozenset().union(*scopes) if scopes else None

    def _access_token(self, *, force: bool = False, claims: str | None = None) -> str:
        """An access token from MSAL (its cache first, then a refresh or client credentials).

        ``force`` skips cached access tokens: the one refresh a Graph 401 earns; ``claims``: a claims
        challenge's JSON, sent with that refresh.
        """
        if self._token is not None and not force:
            return self._token
        try:
            if self._app_only:
                if force:
                    self._app.remove_tokens_for_client()
                result = self._app.acquire_token_for_client(list(APP_SCOPES), claims_challenge=claims)
            else:
                accounts = self._app.get_accounts()
                if not accounts:
                    raise AccessRevoked("the link's token cache holds no Microsoft account", reason="no_account")
                result = self._app.acquire_token_silent_with_error(
                    [DELEGATED_SCOPE], accounts[0], force_refresh=force, claims_challenge=claims
                )
                if result is None:
                    raise AccessRevoked(
                        "the link's token cache holds no usable refresh token", reason="no_refresh_token"
                    )
        except requests.RequestException as error:
            raise TransientError(f"Microsoft's token endpoint unreachable ({type(error).__name__})") from None
        except ValueError:
            raise TransientError("Microsoft's token endpoint answered with an unreadable body") from None
        finally:
            self._persist_cache()
        token = result.get("access_token")
        if not isinstance(token, str) or not token:
            raise classify_token_error(result)
        self._token = token
        return token

    def _persist_cache(self) -> None:
        """Hand the cache to the caller only when MSAL changed it (``serialize`` clears the flag)."""
        if self._cache.has_state_changed and self._on_token_cache is not None:
            self._on_token_cache(self._cache.serialize())


def _batch_gives_up(round_: Round[_SubRequest], wait: float, last: bool) -> None:
    """Sub-requests still failing: after the last attempt, RateLimited if Graph throttled them (its longest
    Retry-After), else a transient failure; before it, a Retry-After too long to wait in place is RateLimited."""
    if not last:
        raise RateLimited(wait)
    if round_.throttled:
        raise RateLimited(wait if round_.waits else DEFAULT_RETRY_AFTER)
    raise TransientError("Graph kept failing sub-requests of a $batch")


def _first_challenge(seen: str | None, headers: Mapping[str, str]) -> str | None:
    """A $batch round's claims challenge: the first one its 401 sub-responses carry."""
    return seen if seen is not None else claims_challenge(headers)


def _batch_pages(subs: Sequence[_SubRequest], pages: Mapping[str, list[Page]], unreadable: set[str]) -> Iterator[Page]:
    """A $batch's pages in request order, then one ``unreadable`` marker per class that could not be read."""
    for key, sub in enumerate(subs):
        if sub.class_id not in unreadable:
            yield from pages[str(key)]
    for class_id in dict.fromkeys(sub.class_id for sub in subs if sub.class_id in unreadable):
        yield Page(kind="unreadable", parent_id=class_id, records=())


def _mask(masks: Masks, key: str) -> str:
    """A ``$select`` mask from the caller; a missing or empty one is refused rather than reading everything."""
    mask = masks.get(key)
    if not isinstance(mask, str) or not mask or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(,[A-Za-z][A-Za-z0-9]*)*", mask):
        raise ValueError(f"a $select mask for {key!r} is required (comma-separated property names)")
    return mask
