"""Local stand-in for Microsoft Entra ID (v2.0 endpoints) and Graph v1.0 Education, served over HTTPS.

A fully read ``educationUser`` carries birth date, gender, both addresses, phones, guardians
(``relatedContacts``), student numbers and more (providers.md 3.2). Minimisation can only be tested
against records that really carry all of that, so every user here holds every documented property,
filled with distinctive synthetic canary values, plus one property no documentation names yet.
What a token may see follows the permission it carries: delegated tokens get the documented
minimal property set, ``EduRoster.ReadBasic.All`` a basic one, ``EduRoster.Read.All`` everything.

Identity follows what MSAL Python needs (library-notes 2): an https OpenID configuration per tenant
(``organizations`` is an alias for "the signing-in user's tenant"), ``/authorize`` that auto-approves
with PKCE and echoes the nonce into an unsigned id_token, and ``/token`` for authorization codes,
rotating refresh tokens and client credentials (``.default`` only), answering with the AADSTS error
bodies of providers.md 3.6. Graph answers with absolute ``@odata.nextLink``s, ``$select``, ``$top``
(clamped, never refused), delta with ``@odata.deltaLink`` and 7-day expiry, and JSON ``$batch``.

Where providers.md marks a behaviour as unconfirmed ([U]/[O]) the choice made here is named in the
docstring of the code that makes it, so a test failing against the real Graph points at it.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from emulators.core import EmulatorCore, Failure, Json, Request, RequestRecord, Response, json_body
from emulators.district import GIVEN_NAMES, District, Person

__all__ = ["APP_ROLES", "DELEGATED_SCOPES", "GRAPH_RESOURCE", "MicrosoftEmulator"]

GRAPH_RESOURCE = "https://graph.microsoft.com"
DELEGATED_SCOPES = ("EduRoster.ReadBasic", "EduRoster.Read", "EduRoster.ReadWrite")
APP_ROLES = ("EduRoster.ReadBasic.All", "EduRoster.Read.All", "EduRoster.ReadWrite.All")
OIDC_SCOPES = ("openid", "profile", "offline_access", "email")
DEFAULT_PAGE = 100
MAX_PAGE = 999
"""[U] Graph documents no maximum for education lists; directory ``/users`` allows 999. Larger ``$top`` is clamped."""
MAX_BATCH = 20
DELTA_TTL = timedelta(days=7)
ACCESS_TOKEN_SECONDS = 3599
CODE_TTL_SECONDS = 600.0
_JSON_TYPE = "application/json; charset=utf-8"
CORRUPTIONS = ("malformed_json", "html_page", "missing_value", "next_link_loop", "foreign_next_link")
"""The bad answers ``corrupt_next`` can inject."""
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service unavailable</title></head>"
    b"<body><h1>The gateway could not reach the server.</h1></body></html>"
)
_EPOCH = datetime(2025, 8, 18, 7, 0, 0, tzinfo=UTC)

# Which educationUser properties a token sees (providers.md 3.1: delegated tokens get a minimal set;
# ReadBasic covers "name, status, education role, email address and photo").
_DELEGATED_USER_PROPS = frozenset(
    {"id", "primaryRole", "accountEnabled", "displayName", "givenName", "surname", "userPrincipalName",
     "userType", "onPremisesInfo", "student", "teacher"}
)  # fmt: skip
_BASIC_USER_PROPS = frozenset({"id", "primaryRole", "accountEnabled", "displayName", "givenName", "surname", "mail"})
_ROLE_BLOCK_DELEGATED = {"student": ("externalId",), "teacher": ("externalId",)}

_STREETS = ("Larkspur", "Wendover", "Quillon", "Marrowby", "Tessellate", "Orrery", "Vantablue", "Brindlewick")
_CITIES = ("Port Ellisandre", "New Carrowmore", "Vexhollow", "Saint Ambrel")
_RELATIONS = ("parent", "guardian", "relative", "aide", "other")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _guid(*parts: object) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:16], version=4))


def _b64(value: Json) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(text: str) -> Json | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------------------ records
@dataclass
class _User:
    id: str
    tenant_id: str
    person: Person
    role: str  # "student" | "teacher"
    pii: Json
    changed: int = 0
    deleted: bool = False
    former_classes: list[str] = field(default_factory=list)  # what ``recreate_user`` gives back


@dataclass
class _Class:
    id: str
    tenant_id: str
    display_name: str
    extra: Json
    members: list[str]
    teachers: list[str]
    changed: int = 0
    deleted: bool = False


@dataclass
class _Tenant:
    id: str
    name: str
    source: District
    delegated_consent: set[str] = field(default_factory=lambda: {"EduRoster.ReadBasic"})
    app_roles: set[str] = field(default_factory=lambda: {"EduRoster.Read.All"})
    app_enabled: bool = True
    service_principal: bool = True
    delta_epoch: float = 0.0
    delta_expiry_status: int = 400
    education: str = ""  # "": an Education tenant; else how Graph refuses its education calls (``set_education``)


@dataclass
class _Corruption:
    """An injected bad answer (see ``corrupt_next``)."""

    path_contains: str
    kind: str
    remaining: int
    link: str = ""
    status: int = 200


@dataclass
class _Code:
    tenant_id: str
    user_id: str
    scopes: tuple[str, ...]
    nonce: str
    challenge: str
    method: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class _Access:
    tenant_id: str
    user_id: str | None  # None: an app-only token
    scopes: frozenset[str]  # ``scp`` of a delegated token, ``roles`` of an app token
    expires_at: float
    issued_at: float
    capable: bool = False  # the token request declared client capability cp1 (``xms_cc``): CAE challenges


@dataclass
class _Refresh:
    tenant_id: str
    user_id: str
    scopes: tuple[str, ...]
    issued_at: float
    active: bool = True


# --------------------------------------------------------------------------------- small builders
def _json(status: int, value: Any, headers: Iterable[tuple[str, str]] = (), user_id: str | None = None) -> Response:
    return Response(status, json_body(value), [("Content-Type", _JSON_TYPE), *headers], user_id=user_id)


def _graph_error_body(code: str, message: str) -> Json:
    """Graph's error shape (providers.md 3.4): branch on ``code``, never on ``message``."""
    inner = {"date": _iso(datetime.now(UTC)), "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
    return {"error": {"code": code, "message": message, "innerError": inner}}


def _graph_error(status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return _json(status, _graph_error_body(code, message), headers)


_AADSTS = {
    50173: ("invalid_grant", "The provided grant has expired due to it being revoked, a fresh auth token is needed."),
    65001: ("invalid_grant", "The user or administrator has not consented to use the application."),
    700082: ("invalid_grant", "The refresh token has expired due to inactivity."),
    70008: ("invalid_grant", "The provided authorization code or refresh token has expired or was revoked."),
    70000: ("invalid_grant", "Provided grant is invalid or malformed."),
    700016: ("unauthorized_client", "Application was not found in the directory."),
    7000112: ("unauthorized_client", "Application is disabled."),
    7000215: ("invalid_client", "Invalid client secret provided."),
    7000222: ("invalid_client", "The provided client secret keys are expired."),
    70011: ("invalid_scope", "The provided request must include a 'scope' input parameter."),
    1002012: ("invalid_scope", "The provided value for scope is not valid."),
    90002: ("invalid_request", "Tenant not found."),
    501481: ("invalid_grant", "The Code_Verifier does not match the code_challenge supplied in the request."),
    900144: ("invalid_request", "The request body must contain the following parameter."),
    # Policy and interaction codes (reference-error-codes); the ``error`` each carries is [O]/[I]: 53003
    # observed with interaction_required + message_only, 50079 with invalid_grant + basic_action.
    53000: ("interaction_required", "Device is not in required device state: compliant."),
    53001: ("interaction_required", "Device is not in required device state: domain_joined."),
    53002: ("interaction_required", "Application used is not an approved application."),
    53003: ("interaction_required", "Access has been blocked by Conditional Access policies."),
    53004: ("interaction_required", "User needs to complete Multi-factor authentication registration process."),
    530032: ("interaction_required", "User blocked due to conditional access on security policy."),
    530035: ("invalid_grant", "Access has been blocked by security defaults."),
    50005: ("interaction_required", "User tried to log in to a device from a platform that's not supported."),
    50131: ("interaction_required", "Used in various conditional access errors."),
    50076: ("invalid_grant", "Due to a configuration change made by your administrator, you must use MFA."),
    50079: ("invalid_grant", "Due to a configuration change made by your administrator, you must enroll in MFA."),
    50078: ("invalid_grant", "Presented multi-factor authentication has expired due to policies."),
    50158: ("interaction_required", "External security challenge was not satisfied."),
    50097: ("interaction_required", "Device authentication is required."),
    50105: ("invalid_grant", "The signed in user is not assigned to a role for the application."),
    50057: ("invalid_grant", "The user account is disabled."),
    50053: ("invalid_grant", "Account is locked because user tried to sign in too many times."),
    50055: ("invalid_grant", "The password is expired."),
    70043: ("invalid_grant", "The refresh token has expired or is invalid due to sign-in frequency checks."),
    90094: ("invalid_grant", "The grant requires admin permission."),
    50132: ("invalid_grant", "The session is not valid due to password expiration or recent password change."),
    50034: ("invalid_grant", "The user account does not exist in the directory."),
    50089: ("invalid_grant", "Flow token expired."),
}
_DEFAULT_SUBERROR = {
    53003: "message_only",
    50076: "basic_action",
    50079: "basic_action",
    50055: "user_password_expired",
}
"""The ``suberror`` Entra sends with a code when a control gives none ([O], research notes section 2)."""


def _aadsts(code: int, *, suberror: str | None = None) -> Response:
    """A token-endpoint error as Entra sends it (providers.md 3.6): HTTP 400 (401 for a bad client)."""
    error, text = _AADSTS[code]
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body: Json = {
        "error": error,
        "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if suberror:
        body["suberror"] = suberror
    return _json(401 if error == "invalid_client" else 400, body)


def _declares_cp1(request: Request) -> bool:
    """Whether a token request's ``claims`` declare the client capability ``cp1`` (``xms_cc``), as MSAL's
    ``client_capabilities`` sends it (learn.microsoft.com/entra/identity-platform/claims-challenge)."""
    try:
        claims = json.loads(request.form_value("claims") or "null")
    except ValueError:
        return False
    access = claims.get("access_token") if isinstance(claims, dict) else None
    xms_cc = access.get("xms_cc") if isinstance(access, dict) else None
    values = xms_cc.get("values") if isinstance(xms_cc, dict) else None
    return isinstance(values, list) and "cp1" in values


def _challenge(status: int, message: str) -> Response:
    """A claims challenge as Graph sends it (claims-challenge page; 403 ``insufficient_claims``, graph/errors)."""
    claims = _b64({"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}})
    header = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
        f'error="insufficient_claims", claims="{claims}"'
    )
    code = "InvalidAuthenticationToken" if status == 401 else "AccessDenied"
    return _graph_error(status, code, message, [("WWW-Authenticate", header)])


def _jwt(claims: Json) -> str:
    """An unsigned JWT (``alg: none``): MSAL does not verify id_token signatures (library-notes 2)."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _scope_names(raw: str) -> list[str]:
    """Requested scopes with Graph's resource prefix removed (bare names resolve to Graph, providers.md 3.5)."""
    names = []
    for scope in raw.split():
        if scope.lower().startswith(GRAPH_RESOURCE + "/"):
            scope = scope[len(GRAPH_RESOURCE) + 1 :]
        names.append(scope)
    return names


# ------------------------------------------------------------------------------------ the emulator
class MicrosoftEmulator(EmulatorCore):
    """Entra ID and Graph Education for ``tenants`` synthetic school tenants.

    Tenant ``k`` is built from ``District(seed=seed + 2000 * (k + 1))`` (Google and Clever build theirs
    from other seeds; the district generator itself is untouched). Each tenant starts with admin
    consent for the delegated ``EduRoster.ReadBasic`` and the application ``EduRoster.Read.All``.
    """

    name = "microsoft-emulator"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tenants: int = 2,
        teachers: int = 3,
        courses_per_teacher: int = 2,
        students_per_course: int = 12,
        seed: int = 7,
        cert_dir: Path | None = None,
        client_id: str = "5f0c3e51-7a21-4c1e-9d3b-0e5a1c2b3d4f",
        client_secret: str = "microsoft-emulator-secret",  # noqa: S107 - a synthetic test client
        delta_reports_removed: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, cert_dir=cert_dir)
        self._seed = seed
        self._client_id = client_id
        self._client_secret = client_secret
        self._secret_expired = False
        self._delta_reports_removed = delta_reports_removed
        self._delta_reports_removed_classes = False
        self._counter = itertools.count(1)
        self._tenants: dict[str, _Tenant] = {}
        self._users: dict[str, _User] = {}
        self._classes: dict[str, _Class] = {}
        self._past_strings: set[str] = set()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._issued: set[str] = set()
        self._signin_user: str | None = None
        self._sessions_revoked: dict[str, float] = {}
        self._batch_depth = 0
        self._corruptions: list[_Corruption] = []
        self._signin_blocks: dict[str, tuple[int, str | None]] = {}  # user or tenant id -> AADSTS code, suberror
        self._graph_denials: dict[str, str] = {}  # tenant id -> scope | licence | ca
        self._forced_challenges: set[str] = set()  # user or tenant ids whose tokens Graph challenges
        for index in range(tenants):
            source = District(
                seed=seed + 2000 * (index + 1),
                teachers=teachers,
                courses_per_teacher=courses_per_teacher,
                students_per_course=students_per_course,
            )
            self._build_tenant(source, index)

    # ------------------------------------------------------------------------------- building
    def _tick(self) -> int:
        return next(self._counter)

    def _build_tenant(self, source: District, index: int) -> None:
        tenant = _Tenant(
            id=_guid("tenant", self._seed, index),
            name=f"{_CITIES[index % len(_CITIES)]} Schools {index + 1}",
            source=source,
        )
        self._tenants[tenant.id] = tenant
        by_person: dict[str, str] = {}
        for person in sorted(source.people.values(), key=lambda p: p.number):
            by_person[person.id] = self._add_user(tenant, person).id
        for course in sorted(source.courses.values(), key=lambda c: c.seq):
            if course.state != "ACTIVE":
                continue
            teachers = [by_person[t] for t in course.teachers]
            students = [by_person[s] for s in course.students]
            self._add_class(tenant, course.name, course.section, teachers, students)

    def _add_user(self, tenant: _Tenant, person: Person) -> _User:
        rng = random.Random(f"{self._seed}|{person.id}")
        role = "teacher" if person.is_teacher else "student"
        number = person.number
        domain = f"school{list(self._tenants).index(tenant.id) + 1}.example-school.test"
        nickname = f"{person.given_name.lower()}.{person.family_name.lower()}{number}"
        street = f"{rng.randrange(100, 9999)} {rng.choice(_STREETS)} Way"
        address = {
            "street": street,
            "city": rng.choice(_CITIES),
            "state": "WA",
            "postalCode": f"98{rng.randrange(100, 999)}",
            "countryOrRegion": "US",
        }
        guardian_given, guardian_family = rng.choice(GIVEN_NAMES), person.family_name
        pii: Json = {
            "accountEnabled": True,
            "userType": "Member",
            "externalSource": "sis",
            "externalSourceDetail": "Canary SIS",
            "onPremisesInfo": {"immutableId": f"imm-{_guid('imm', person.id)[:18]}"},
            "middleName": rng.choice(GIVEN_NAMES),
            "mail": person.email,
            "mailNickname": nickname,
            "userPrincipalName": f"{nickname}@{domain}",
            "mobilePhone": f"+1 555 02{rng.randrange(10, 99)} {number:04d}",
            "businessPhones": [f"+1 555 03{rng.randrange(10, 99)} {number:04d}"],
            "mailingAddress": address,
            "residenceAddress": dict(address, street=f"{rng.randrange(100, 9999)} {rng.choice(_STREETS)} Court"),
            "preferredLanguage": "en-US",
            "usageLocation": "US",
            "department": f"Dept {rng.randrange(1, 40)}",
            "relatedContacts": [
                {
                    "id": _guid("contact", person.id),
                    "displayName": f"{guardian_given} {guardian_family}",
                    "emailAddress": f"{guardian_given.lower()}.{guardian_family.lower()}.g{number}@family.test",
                    "mobilePhone": f"+1 555 04{rng.randrange(10, 99)} {number:04d}",
                    "relationship": rng.choice(_RELATIONS),
                    "accessConsent": True,
                }
            ]
            if role == "student"
            else [],
            "createdBy": {"user": {"id": _guid("admin", tenant.id), "displayName": "Canary Admin Okonkwo-Vale"}},
            "assignedLicenses": [{"disabledPlans": [], "skuId": _guid("sku", role)}],
            "assignedPlans": [],
            "provisionedPlans": [],
            "passwordPolicies": "DisablePasswordExpiration",
            "passwordProfile": {"forceChangePasswordNextSignIn": False, "password": None},
            "showInAddressList": role == "teacher",
            "learnerWellbeingNote": f"canary-unknown-{_guid('note', person.id)[:12]}",  # a property no doc names
        }
        if role == "student":
            grade = rng.randrange(6, 13)
            pii["student"] = {
                "birthDate": f"{2025 - grade - 6}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                "externalId": f"EXT-S-{_guid('ext', person.id)[:10]}",
                "gender": rng.choice(("female", "male", "other")),
                "grade": str(grade),
                "graduationYear": str(2025 + 12 - grade),
                "studentNumber": f"SN{rng.randrange(10**6, 10**7)}",
            }
            pii["teacher"] = None
        else:
            pii["student"] = None
            pii["teacher"] = {"externalId": f"EXT-T-{_guid('ext', person.id)[:10]}", "teacherNumber": f"T{number:05d}"}
        user = _User(id=_guid("user", self._seed, person.id), tenant_id=tenant.id, person=person, role=role, pii=pii)
        user.changed = self._tick()
        self._users[user.id] = user
        return user

    def _add_class(self, tenant: _Tenant, name: str, section: str, teachers: list[str], students: list[str]) -> _Class:
        class_id = _guid("class", self._seed, tenant.id, len(self._classes))
        rng = random.Random(f"{self._seed}|{class_id}")
        owner = self._users[teachers[0]] if teachers else None
        extra: Json = {
            "description": f"{name}, taught by {owner.person.full_name}" if owner else name,
            "classCode": f"{rng.randrange(100, 999)}-{section.removeprefix('Period ')}",
            "externalId": f"SIS-CLS-{class_id[:8]}",
            "externalName": f"{name} ({section})",
            "externalSource": "sis",
            "externalSourceDetail": "Canary SIS",
            "grade": str(rng.randrange(6, 13)),
            "mailNickname": f"class-{class_id[:8]}",
            "term": {
                "externalId": f"T-{tenant.id[:4]}",
                "displayName": "Fall 2025",
                "startDate": "2025-08-18",
                "endDate": "2025-12-19",
            },
            "createdBy": {
                "user": {"id": owner.id if owner else None, "displayName": owner.person.full_name if owner else None}
            },
        }
        klass = _Class(
            id=class_id,
            tenant_id=tenant.id,
            display_name=name,
            extra=extra,
            members=[*teachers, *students],  # Graph lists a class's teachers among its members too
            teachers=list(teachers),
        )
        klass.changed = self._tick()
        self._classes[klass.id] = klass
        return klass

    # ------------------------------------------------------------------------------- addresses
    @property
    def authority_host(self) -> str:
        return self.base_url

    @property
    def graph_endpoint(self) -> str:
        return self.base_url + "/v1.0"

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def client_secret(self) -> str:
        return self._client_secret

    def authority(self, tenant: str = "organizations") -> str:
        return f"{self.base_url}/{tenant}"

    # ------------------------------------------------------------------------------- seeded data
    @property
    def tenant_ids(self) -> list[str]:
        with self._lock:
            return list(self._tenants)

    def teacher_ids(self, tenant_id: str) -> list[str]:
        with self._lock:
            return [u.id for u in self._users.values() if u.tenant_id == tenant_id and u.role == "teacher"]

    def student_ids(self, tenant_id: str) -> list[str]:
        with self._lock:
            return [
                u.id for u in self._users.values() if u.tenant_id == tenant_id and u.role == "student" and not u.deleted
            ]

    def class_ids(self, tenant_id: str, *, teacher_id: str | None = None) -> list[str]:
        with self._lock:
            return [
                c.id
                for c in self._classes.values()
                if c.tenant_id == tenant_id and not c.deleted and (teacher_id is None or teacher_id in c.members)
            ]

    def members_of(self, class_id: str) -> list[str]:
        with self._lock:
            return list(self._classes[class_id].members)

    def teachers_of(self, class_id: str) -> list[str]:
        with self._lock:
            return list(self._classes[class_id].teachers)

    def user_record(self, user_id: str) -> Json:
        """The fully read educationUser (what an ``EduRoster.Read.All`` token gets without ``$select``)."""
        with self._lock:
            return self._user_json(self._users[user_id])

    def class_record(self, class_id: str) -> Json:
        with self._lock:
            return self._class_json(self._classes[class_id])

    def person_ids(self) -> set[str]:
        """Every user id this emulator ever issued (teachers and students), for tests that grep logs for them."""
        with self._lock:
            return set(self._users)

    def issued_tokens(self) -> set[str]:
        """Every access and refresh token ever handed out, for leak checks."""
        with self._lock:
            return set(self._issued)

    def personal_strings(self) -> set[str]:
        """Every distinctive personal value ever served (names, addresses, phones, numbers, guardians,
        the unknown property), for tests that grep tables, logs and messages for leaks. Short enum
        values (gender, grade) are left out: they would match everywhere."""
        with self._lock:
            strings = set(self._past_strings)
            for tenant in self._tenants.values():
                strings |= tenant.source.personal_strings()
            for user in self._users.values():
                strings |= self._strings_of(user)
            return strings

    @staticmethod
    def _strings_of(user: _User) -> set[str]:
        pii = user.pii
        strings = {user.person.full_name, user.person.email, pii["mailNickname"], pii["userPrincipalName"]}
        strings |= {pii["mobilePhone"], *pii["businessPhones"], pii["middleName"], pii["learnerWellbeingNote"]}
        strings |= {pii["mailingAddress"]["street"], pii["residenceAddress"]["street"]}
        strings.add(pii["onPremisesInfo"]["immutableId"])
        for contact in pii["relatedContacts"]:
            strings |= {contact["displayName"], contact["emailAddress"], contact["mobilePhone"]}
        block = pii["student"] or pii["teacher"]
        strings |= {str(v) for k, v in block.items() if k not in ("gender", "grade", "graduationYear")}
        return strings

    # ------------------------------------------------------------------------------- controls
    def set_signin_user(self, user_id: str | None) -> None:
        """Who signs in at the next ``/authorize`` (None: the first teacher of the first tenant)."""
        with self._lock:
            if user_id is not None and user_id not in self._users:
                raise KeyError(f"unknown user {user_id}")
            self._signin_user = user_id

    def withdraw_consent(self, tenant_id: str, *, cae: bool = True) -> None:
        """The tenant admin revokes the app's permissions (providers.md 3.7).

        Delegated refresh then fails with ``invalid_grant`` AADSTS65001 (``consent_required``); client
        credentials still succeed but the token carries no ``roles``, so Graph answers 403 [O].
        ``cae`` (default): access tokens already issued are cut short too and answer 401
        ``InvalidAuthenticationToken`` with a claims challenge, as continuous access evaluation does;
        without it they keep working until they expire, as without CAE.
        """
        with self._lock:
            tenant = self._tenants[tenant_id]
            tenant.delegated_consent = set()
            tenant.app_roles = set()
            if cae:
                self._cut_access(lambda a: a.tenant_id == tenant_id)

    def grant_consent(
        self, tenant_id: str, *, delegated: Iterable[str] = ("EduRoster.ReadBasic",), application: Iterable[str] = ()
    ) -> None:
        """Set what the tenant admin has consented to; fewer permissions than the app needs is a valid state."""
        with self._lock:
            tenant = self._tenants[tenant_id]
            tenant.delegated_consent = set(delegated)
            tenant.app_roles = set(application)

    def revoke_sessions(self, user_id: str) -> None:
        """``POST /users/{id}/revokeSignInSessions``: the user's refresh tokens fail with AADSTS50173 and
        their access tokens answer 401 (CAE)."""
        with self._lock:
            user = self._users[user_id]
            self._sessions_revoked[user.id] = time.time()
            for refresh in self._refresh.values():
                if refresh.user_id == user.id:
                    refresh.active = False
            self._cut_access(lambda a: a.user_id == user.id)

    def disable_app(self, tenant_id: str) -> None:
        """Enterprise app "enabled for users to sign in" = No: every grant fails with AADSTS7000112."""
        with self._lock:
            self._tenants[tenant_id].app_enabled = False
            self._cut_access(lambda a: a.tenant_id == tenant_id)

    def enable_app(self, tenant_id: str) -> None:
        """The tenant admin turns sign-in to the enterprise app back on: grants are issued again."""
        with self._lock:
            self._tenants[tenant_id].app_enabled = True

    def delete_service_principal(self, tenant_id: str) -> None:
        """The tenant deletes the app: every grant fails with AADSTS700016."""
        with self._lock:
            self._tenants[tenant_id].service_principal = False
            self._cut_access(lambda a: a.tenant_id == tenant_id)

    def expire_client_secret(self) -> None:
        """Our own secret expired: AADSTS7000222 (an operator error, not a revocation)."""
        with self._lock:
            self._secret_expired = True

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is past its lifetime (401 on Graph, refresh needed)."""
        with self._lock:
            for access in self._access.values():
                access.expires_at = 0.0

    def expire_refresh_tokens(self, user_id: str) -> None:
        """90 days of inactivity: AADSTS700082 on the next refresh."""
        with self._lock:
            for refresh in self._refresh.values():
                if refresh.user_id == user_id:
                    refresh.issued_at = 0.0

    def block_signin(self, principal: str, code: int, *, suberror: str | None = None) -> None:
        """Entra refuses every token request of a user, or of every user and the app in a tenant, with an
        AADSTS ``code`` (53003 Conditional Access, 50076 MFA, ...) and ``suberror`` (the code's usual one
        when None; ``""`` for none). Tokens already issued keep working until they expire, as without CAE.
        """
        with self._lock:
            if principal not in self._users and principal not in self._tenants:
                raise KeyError(f"unknown user or tenant {principal}")
            if code not in _AADSTS:
                raise ValueError(f"no text for AADSTS{code}")
            self._signin_blocks[principal] = (code, _DEFAULT_SUBERROR.get(code) if suberror is None else suberror)

    def unblock_signin(self, principal: str) -> None:
        """The school lifted the policy: token requests of ``principal`` are answered again."""
        with self._lock:
            self._signin_blocks.pop(principal, None)

    def deny_graph(self, tenant_id: str, kind: str) -> None:
        """Graph answers 403 to every read of the tenant's tokens: ``scope`` ("Required scp/roles claim values
        are not provided." [O]), ``licence`` (a bare ``Forbidden`` [O], as for a missing Education licence) or
        ``ca`` (403 with an ``insufficient_claims`` challenge, learn.microsoft.com/graph/errors)."""
        if kind not in ("scope", "licence", "ca"):
            raise ValueError("deny_graph kind is scope, licence or ca")
        with self._lock:
            self._graph_denials[self._tenants[tenant_id].id] = kind

    def allow_graph(self, tenant_id: str) -> None:
        with self._lock:
            self._graph_denials.pop(tenant_id, None)

    def force_claims_challenge(self, principal: str, *, on: bool = True) -> None:
        """Graph answers every call of a user's (or a tenant's) tokens with a 401 claims challenge, whatever
        the client declared: the unexpected challenge of a policy that wants an interactive step."""
        with self._lock:
            if on:
                self._forced_challenges.add(principal)
            else:
                self._forced_challenges.discard(principal)

    def expire_delta_tokens(self, tenant_id: str, *, status: int = 400) -> None:
        """Every delta link issued so far for the tenant expires: 400 ``syncStateNotFound`` (the 7-day expiry)
        or 410 ``resyncRequired`` with a ``Location`` (a synchronization reset; providers.md 3.3)."""
        if status not in (400, 410):
            raise ValueError("delta expiry is answered 400 or 410")
        with self._lock:
            tenant = self._tenants[tenant_id]
            tenant.delta_epoch = time.time() + 0.001
            tenant.delta_expiry_status = status
        time.sleep(0.002)

    def add_student(self, class_id: str) -> str:
        """A new student joins a class: visible in users delta and (membership) in class delta."""
        with self._lock:
            klass = self._classes[class_id]
            tenant = self._tenants[klass.tenant_id]
            user = self._add_user(tenant, tenant.source.new_person(is_teacher=False))
            klass.members.append(user.id)
            klass.changed = self._tick()
            return user.id

    def add_member(self, class_id: str, user_id: str) -> None:
        with self._lock:
            klass = self._classes[class_id]
            if user_id not in klass.members:
                klass.members.append(user_id)
                if self._users[user_id].role == "teacher":
                    klass.teachers.append(user_id)
                klass.changed = self._tick()

    def remove_member(self, class_id: str, user_id: str) -> None:
        with self._lock:
            klass = self._classes[class_id]
            if user_id not in klass.members:
                raise KeyError(f"user {user_id} is not a member of class {class_id}")
            klass.members.remove(user_id)
            if user_id in klass.teachers:
                klass.teachers.remove(user_id)
            klass.changed = self._tick()

    def rename_user(self, user_id: str) -> None:
        """New names for a person (the old ones stay in personal_strings); visible in users delta."""
        with self._lock:
            user = self._users[user_id]
            self._past_strings |= self._strings_of(user)
            self._tenants[user.tenant_id].source.rename(user.person.id)
            user.pii["mail"] = user.person.email
            user.changed = self._tick()

    def rename_class(self, class_id: str, name: str) -> None:
        with self._lock:
            klass = self._classes[class_id]
            klass.display_name = name
            klass.changed = self._tick()

    def sds_expire(self, tenant_id: str, *, tag: str = "Exp0626", remove_students: bool = False) -> list[str]:
        """School Data Sync's year-end clean-up ("expire and archive") of every class of a tenant; returns their ids.

        As Graph shows it: each class stays listed with the same id, its display name, mail nickname and
        SIS id tagged (``Exp0626_...``), so class delta reports it. Archiving the class Team changes
        nothing Graph's education API shows (a Team's archive state is on ``/teams``). SDS does not
        remove students unless asked (``remove_students``, Classic's "Remove Students for Classes").
        """
        with self._lock:
            expired = []
            for klass in self._classes.values():
                if klass.tenant_id != tenant_id or klass.deleted or klass.display_name.startswith(tag):
                    continue
                klass.display_name = f"{tag}_{klass.display_name}"
                for key in ("externalId", "mailNickname"):
                    if isinstance(klass.extra.get(key), str):
                        klass.extra[key] = f"{tag}_{klass.extra[key]}"
                if remove_students:
                    klass.members = [m for m in klass.members if m in klass.teachers]
                klass.changed = self._tick()
                expired.append(klass.id)
            return expired

    def delete_class(self, class_id: str) -> None:
        """The class is deleted: 404 from now on, and (as Graph documents) never reported by class delta."""
        with self._lock:
            self._classes[class_id].deleted = True
            self._classes[class_id].changed = self._tick()  # reported only with ``report_removed_classes``

    def delete_user(self, user_id: str) -> None:
        """The user is deleted: gone from member lists; in users delta only with ``delta_reports_removed``."""
        with self._lock:
            user = self._users[user_id]
            user.deleted = True
            user.changed = self._tick()
            for klass in self._classes.values():
                if user_id in klass.members:
                    user.former_classes.append(klass.id)
                    klass.members.remove(user_id)
                    if user_id in klass.teachers:
                        klass.teachers.remove(user_id)
                    klass.changed = self._tick()

    def recreate_user(self, user_id: str) -> None:
        """A deleted user comes back with the same id and the class memberships it had.

        Entra keeps a deleted user 30 days and restores it in full, same object id (Graph's
        directory-deleteditems-restore); its classes' memberships change, which class delta reports
        ("newly created or updated classes, including membership changes", educationclass-delta),
        and users delta lists the user again, without ``@removed``.
        """
        with self._lock:
            user = self._users[user_id]
            if not user.deleted:
                raise ValueError(f"user {user_id} is not deleted")
            user.deleted = False
            user.changed = self._tick()
            for class_id in dict.fromkeys(user.former_classes):
                klass = self._classes[class_id]
                if user_id not in klass.members:
                    klass.members.append(user_id)
                if user.role == "teacher" and user_id not in klass.teachers:
                    klass.teachers.append(user_id)
                klass.changed = self._tick()
            user.former_classes.clear()

    def recreate_class(self, class_id: str) -> None:
        """A deleted class (a Microsoft 365 group) comes back with the same id, its members and teachers.

        A restored group keeps its id (directory-deleteditems-restore); class delta reports it as
        updated, and its ``members``/``teachers`` answer again.
        """
        with self._lock:
            klass = self._classes[class_id]
            if not klass.deleted:
                raise ValueError(f"class {class_id} is not deleted")
            klass.deleted = False
            klass.changed = self._tick()

    def report_removed_classes(self, report: bool = True) -> None:
        """Class delta reports a deleted class as ``@removed`` (Graph documents that it does not; [U] for
        restores), so the round trip ``@removed`` then present again can be tested."""
        with self._lock:
            self._delta_reports_removed_classes = report

    def set_education(self, tenant_id: str, education: bool = True, *, answer: str = "unsupported_query") -> None:
        """Make a tenant an Education tenant or not. Without education data (no School Data Sync, no
        Education licence) Graph refuses every ``/education`` call with 400: ``unsupported_query`` is
        the ``Request_UnsupportedQuery`` about ``..._Education_ObjectType`` seen on v1.0
        (microsoft-graph-docs#4964); ``segment`` the older "Resource not found for the segment
        'education'" (O365-EDU-Tools#13)."""
        if answer not in ("unsupported_query", "segment"):
            raise ValueError("answer is 'unsupported_query' or 'segment'")
        with self._lock:
            self._tenants[tenant_id].education = "" if education else answer

    def _education_refusal(self, tenant_id: str, parts: list[str]) -> Response | None:
        tenant = self._tenants.get(tenant_id)
        if tenant is None or not tenant.education or not parts or parts[0] != "education":
            return None
        if tenant.education == "segment":
            return _graph_error(400, "BadRequest", "Resource not found for the segment 'education'.")
        return _graph_error(
            400,
            "Request_UnsupportedQuery",
            "Property 'extension_fe2174665583431c953114ff7268b7b3_Education_ObjectType' does not exist as a "
            "declared property or extension property.",
        )

    def corrupt_next(self, path_contains: str, kind: str, count: int = 1, *, link: str = "", status: int = 200) -> None:
        """The next ``count`` Graph answers whose path contains ``path_contains`` come back broken, the way
        proxies and half-deployed services break them (a ``$batch`` sub-request is matched on its own path):

        ``malformed_json`` (a 200 cut off mid-body), ``html_page`` (an HTML error page with ``status``,
        as a gateway sends), ``missing_value`` (a 200 object without ``value``/``responses``),
        ``next_link_loop`` (``@odata.nextLink`` pointing at the page itself, so a client sees the same
        link twice), ``foreign_next_link`` (``@odata.nextLink``, or the ``@odata.deltaLink`` of a delta
        round's last page, replaced by ``link``, e.g. a URL on another host).
        """
        if kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {kind!r}; one of {', '.join(CORRUPTIONS)}")
        if kind == "foreign_next_link" and not link:
            raise ValueError("foreign_next_link needs the link to serve")
        with self._lock:
            self._corruptions.append(_Corruption(path_contains, kind, count, link, status))

    def clear_corruptions(self) -> None:
        """Forget every corruption not yet served (a loop injected for longer than the client followed it)."""
        with self._lock:
            self._corruptions = []

    def _corrupted(self, request: Request, response: Response) -> Response:
        """``response`` as the next matching corruption breaks it (unchanged when none matches)."""
        entry = next((c for c in self._corruptions if c.remaining > 0 and c.path_contains in request.path), None)
        if entry is None:
            return response
        entry.remaining -= 1
        self._corruptions = [c for c in self._corruptions if c.remaining > 0]
        if entry.kind == "html_page":
            return Response(entry.status, _HTML_PAGE, [("Content-Type", "text/html")], user_id=response.user_id)
        if entry.kind == "malformed_json":
            return Response(200, response.body[: max(1, len(response.body) // 2)], response.headers, response.user_id)
        body = json.loads(response.body or b"null")
        if not isinstance(body, dict):
            return response
        if entry.kind == "missing_value":
            body.pop("value", None)
            body.pop("responses", None)
        else:
            own = f"{self.base_url}{request.path}"
            if request.query:
                own += "?" + urlencode([(k, v) for k, vs in request.query.items() for v in vs], safe="$,")
            target = own if entry.kind == "next_link_loop" else entry.link
            if "@odata.deltaLink" in body and entry.kind == "foreign_next_link":
                body["@odata.deltaLink"] = target
            else:
                body.pop("@odata.deltaLink", None)
                body["@odata.nextLink"] = target
        return Response(response.status, json_body(body), response.headers, response.user_id)

    def _cut_access(self, predicate: Any) -> None:
        for access in self._access.values():
            if predicate(access):
                access.expires_at = -1.0  # -1: revoked (a claims challenge for a cp1 client, else a plain 401)

    def _signin_block(self, tenant_id: str, user_id: str | None) -> Response | None:
        """The refusal ``block_signin`` set for this user or tenant, if any."""
        block = self._signin_blocks.get(user_id or "") or self._signin_blocks.get(tenant_id)
        if block is None:
            return None
        code, suberror = block
        return _aadsts(code, suberror=suberror or None)

    def _denial(self, access: _Access) -> Response | None:
        kind = self._graph_denials.get(access.tenant_id)
        if kind == "scope":
            claim = "scp" if access.user_id is not None else "roles"
            return _graph_error(403, "AccessDenied", f"Required {claim} claim values are not provided.")
        if kind == "licence":
            return _graph_error(403, "Forbidden", "")
        if kind == "ca":
            return _challenge(403, "Access denied by a Conditional Access policy.")
        return None

    # ------------------------------------------------------------------------------- subclass API
    def _identify(self, request: Request, *, before: bool) -> str | None:
        token = request.bearer()
        access = self._access.get(token) if token else None
        if access is None:
            return None
        return access.user_id or access.tenant_id

    def _failure_response(self, request: Request, failure: Failure) -> Response:
        headers = [("Retry-After", str(failure.retry_after))] if failure.retry_after is not None else []
        if "/oauth2/" in request.path:
            body = {
                "error": "temporarily_unavailable",
                "error_description": "AADSTS90033: injected",
                "error_codes": [90033],
            }
            return _json(failure.status, body, headers)
        codes = {
            401: "InvalidAuthenticationToken",
            403: "AccessDenied",
            429: "TooManyRequests",
            503: "serviceNotAvailable",
            504: "gatewayTimeout",
        }
        code = codes.get(failure.status, "generalException" if failure.status >= 500 else "badRequest")
        return _graph_error(failure.status, code, "injected failure", headers)

    def _error_response(self, status: int, message: str) -> Response:
        return _graph_error(status, "generalException" if status >= 500 else "BadRequest", message)

    def _dispatch(self, request: Request) -> Response:
        response = self._route(request)
        return self._corrupted(request, response) if request.path.startswith("/v1.0/") else response

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] == ["v1.0"]:
            if request.method == "POST" and parts == ["v1.0", "$batch"]:
                return self._batch(request)
            if request.method != "GET":
                return _graph_error(405, "Request_BadRequest", "Only GET is served by this emulator.")
            return self._graph(request, parts[1:])
        if len(parts) >= 2:
            tenant_key, rest = parts[0], parts[1:]
            if rest == ["v2.0", ".well-known", "openid-configuration"] and request.method == "GET":
                return self._openid_configuration(tenant_key)
            if rest == ["oauth2", "v2.0", "authorize"] and request.method == "GET":
                return self._authorize(request, tenant_key)
            if rest == ["oauth2", "v2.0", "token"] and request.method == "POST":
                return self._token(request, tenant_key)
        return _graph_error(404, "UnknownError", "No route.")

    # ------------------------------------------------------------------------------- identity
    def _tenant_known(self, key: str) -> bool:
        return key in ("organizations", "common") or key in self._tenants

    def _openid_configuration(self, tenant_key: str) -> Response:
        if not self._tenant_known(tenant_key):
            return _aadsts(90002)
        base = f"{self.base_url}/{tenant_key}"
        issuer_tenant = "{tenantid}" if tenant_key in ("organizations", "common") else tenant_key
        return _json(
            200,
            {
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
                "tenant_region_scope": "NA",
            },
        )

    def _signing_in(self) -> _User | None:
        if self._signin_user is not None:
            return self._users[self._signin_user]
        first = next(iter(self._tenants), None)
        return next((u for u in self._users.values() if u.tenant_id == first and u.role == "teacher"), None)

    def _authorize(self, request: Request, tenant_key: str) -> Response:
        """Auto-approves for the sign-in user and redirects with a code; PKCE and the nonce are kept for /token.

        Only scopes the tenant admin consented to are granted (EduRoster scopes need admin consent,
        providers.md 3.1): a narrower grant than asked shows in the token response's ``scope``.
        """
        if request.param("client_id") != self._client_id:
            return _aadsts(700016)
        redirect_uri = request.param("redirect_uri")
        if not redirect_uri or request.param("response_type") != "code":
            return _aadsts(900144)
        user = self._signing_in()
        if user is None or (tenant_key not in ("organizations", "common") and user.tenant_id != tenant_key):
            return _aadsts(90002)
        tenant = self._tenants[user.tenant_id]
        if not tenant.service_principal:
            return _aadsts(700016)
        if not tenant.app_enabled:
            return _aadsts(7000112)
        asked = _scope_names(request.param("scope"))
        granted = tuple(s for s in asked if s in OIDC_SCOPES or s in tenant.delegated_consent)
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            tenant_id=tenant.id,
            user_id=user.id,
            scopes=granted,
            nonce=request.param("nonce"),
            challenge=request.param("code_challenge"),
            method=request.param("code_challenge_method") or "plain",
            redirect_uri=redirect_uri,
            expires_at=time.time() + CODE_TTL_SECONDS,
        )
        params = [("code", code), ("client_info", self._client_info(user)), ("session_state", str(uuid.uuid4()))]
        if "state" in request.query:
            params.append(("state", request.param("state")))
        separator = "&" if "?" in redirect_uri else "?"
        location = redirect_uri + separator + urlencode(params, quote_via=quote)
        return Response(302, b"", [("Location", location)], user_id=user.id)

    @staticmethod
    def _client_info(user: _User) -> str:
        return _b64({"uid": user.id, "utid": user.tenant_id})

    def _token(self, request: Request, tenant_key: str) -> Response:
        if not self._tenant_known(tenant_key):
            return _aadsts(90002)
        if request.form_value("client_id") != self._client_id:
            return _aadsts(700016)
        if not secrets.compare_digest(request.form_value("client_secret").encode(), self._client_secret.encode()):
            return _aadsts(7000215)
        if self._secret_expired:
            return _aadsts(7000222)
        grant = request.form_value("grant_type")
        if grant == "authorization_code":
            return self._code_grant(request, tenant_key)
        if grant == "refresh_token":
            return self._refresh_grant(request, tenant_key)
        if grant == "client_credentials":
            return self._client_grant(request, tenant_key)
        return _json(
            400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003", "error_codes": [70003]}
        )

    def _app_state_error(self, tenant: _Tenant) -> Response | None:
        if not tenant.service_principal:
            return _aadsts(700016)
        if not tenant.app_enabled:
            return _aadsts(7000112)
        return None

    def _code_grant(self, request: Request, tenant_key: str) -> Response:
        entry = self._codes.get(request.form_value("code"))
        if entry is None or entry.used or time.time() > entry.expires_at:
            return _aadsts(70008)
        entry.used = True
        if request.form_value("redirect_uri") != entry.redirect_uri:
            return _aadsts(70000)
        if tenant_key not in ("organizations", "common") and tenant_key != entry.tenant_id:
            return _aadsts(70000)
        verifier = request.form_value("code_verifier")
        if entry.challenge:
            if entry.method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            else:
                expected = verifier
            if not verifier or not secrets.compare_digest(expected, entry.challenge):
                return _aadsts(501481)
        error = self._app_state_error(self._tenants[entry.tenant_id]) or self._signin_block(
            entry.tenant_id, entry.user_id
        )
        if error is not None:
            return error
        return self._delegated_tokens(
            entry.tenant_id, entry.user_id, entry.scopes, nonce=entry.nonce, capable=_declares_cp1(request)
        )

    def _refresh_grant(self, request: Request, tenant_key: str) -> Response:
        refresh = self._refresh.get(request.form_value("refresh_token"))
        if refresh is None:
            return _aadsts(70000)
        if tenant_key not in ("organizations", "common") and tenant_key != refresh.tenant_id:
            return _aadsts(70000)
        tenant = self._tenants[refresh.tenant_id]
        error = self._app_state_error(tenant) or self._signin_block(tenant.id, refresh.user_id)
        if error is not None:
            return error
        if not refresh.active:
            return _aadsts(50173)
        if refresh.issued_at == 0.0:
            return _aadsts(700082)
        granted = tuple(s for s in refresh.scopes if s in OIDC_SCOPES or s in tenant.delegated_consent)
        if not any(s in DELEGATED_SCOPES for s in granted):
            return _aadsts(65001, suberror="consent_required")
        refresh.active = False  # rotation: the old refresh token is spent (providers.md 3.5 [O])
        return self._delegated_tokens(
            refresh.tenant_id, refresh.user_id, granted, nonce=None, capable=_declares_cp1(request)
        )

    def _delegated_tokens(
        self, tenant_id: str, user_id: str, scopes: tuple[str, ...], *, nonce: str | None, capable: bool = False
    ) -> Response:
        user = self._users[user_id]
        now = time.time()
        access_token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(32)
        refresh_token = "0.AXEA" + secrets.token_urlsafe(48)
        resource = [s for s in scopes if s not in OIDC_SCOPES]
        self._access[access_token] = _Access(
            tenant_id, user_id, frozenset(resource), now + ACCESS_TOKEN_SECONDS, now, capable=capable
        )
        self._refresh[refresh_token] = _Refresh(tenant_id, user_id, scopes, now)
        self._issued |= {access_token, refresh_token}
        claims: Json = {
            "aud": self._client_id,
            "iss": f"{self.base_url}/{tenant_id}/v2.0",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + ACCESS_TOKEN_SECONDS,
            "name": user.person.full_name,
            "oid": user.id,
            "preferred_username": user.pii["userPrincipalName"],
            "sub": _guid("sub", user.id, self._client_id),
            "tid": tenant_id,
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        body = {
            "token_type": "Bearer",
            "scope": " ".join([*resource, *(s for s in scopes if s in OIDC_SCOPES and s != "offline_access")]),
            "expires_in": ACCESS_TOKEN_SECONDS,
            "ext_expires_in": ACCESS_TOKEN_SECONDS,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "id_token": _jwt(claims),
            "client_info": self._client_info(user),
        }
        return _json(200, body, user_id=user_id)

    def _client_grant(self, request: Request, tenant_key: str) -> Response:
        """Client credentials take exactly ``https://graph.microsoft.com/.default`` on a real tenant id."""
        tenant = self._tenants.get(tenant_key)
        if tenant is None:
            return _aadsts(90002)
        error = self._app_state_error(tenant) or self._signin_block(tenant.id, None)
        if error is not None:
            return error
        if request.form_value("scope").split() != [GRAPH_RESOURCE + "/.default"]:
            return _aadsts(1002012)
        now = time.time()
        access_token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(32)
        self._access[access_token] = _Access(
            tenant.id,
            None,
            frozenset(tenant.app_roles),
            now + ACCESS_TOKEN_SECONDS,
            now,
            capable=_declares_cp1(request),
        )
        self._issued.add(access_token)
        body = {
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "ext_expires_in": ACCESS_TOKEN_SECONDS,
            "access_token": access_token,
        }
        return _json(200, body, user_id=tenant.id)

    # ------------------------------------------------------------------------------- Graph
    def _auth(self, request: Request) -> _Access | Response:
        token = request.bearer()
        if token is None:
            return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        access = self._access.get(token)
        if access is None:
            return _graph_error(
                401, "InvalidAuthenticationToken", "CompactToken parsing failed with error code: 80049217"
            )
        if access.expires_at == -1.0:
            # Entra sends claims challenges only to a client that declared cp1 (claims-challenge page);
            # any other client's cut token just fails, and its refresh meets the revocation.
            if access.capable:
                return _challenge(
                    401,
                    "Continuous access evaluation resulted in challenge with result: InteractionRequired "
                    "and code: TokenIssuedBeforeRevocationTimestamp",
                )
            return _graph_error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if time.time() > access.expires_at:
            return _graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if {access.user_id, access.tenant_id} & self._forced_challenges:
            return _challenge(
                401, "Continuous access evaluation resulted in challenge with result: InteractionRequired"
            )
        return access

    def _graph(self, request: Request, parts: list[str]) -> Response:
        access = self._auth(request)
        if isinstance(access, Response):
            return access
        response = self._denial(access) or self._graph_route(request, parts, access)
        response.user_id = access.user_id or access.tenant_id
        return response

    @staticmethod
    def _permission(access: _Access, *, delta: bool = False, app_only: bool = False) -> Response | None:
        """The least permissions of providers.md 3.1: delegated ReadBasic (not for /education/users);
        application Read.All, or ReadBasic.All for delta. Refusals as observed [O]."""
        if access.user_id is not None:
            if app_only:
                return _graph_error(403, "AccessDenied", "Required roles claim values are not provided.")
            if not access.scopes & set(DELEGATED_SCOPES):
                return _graph_error(403, "AccessDenied", "Required scp claim values are not provided.")
            return None
        needed = set(APP_ROLES) if delta else {"EduRoster.Read.All", "EduRoster.ReadWrite.All"}
        if not access.scopes & needed:
            return _graph_error(403, "AccessDenied", "Required roles claim values are not provided.")
        return None

    def _graph_route(self, request: Request, parts: list[str], access: _Access) -> Response:
        tenant_id = access.tenant_id
        refusal = self._education_refusal(tenant_id, parts)
        if refusal is not None:
            return refusal
        classes = {c.id: c for c in self._classes.values() if c.tenant_id == tenant_id and not c.deleted}
        if access.user_id is not None:  # delegated callers see only their own classes
            classes = {k: c for k, c in classes.items() if access.user_id in c.members}
        match parts:
            case ["education", "me"]:
                if access.user_id is None:
                    return _graph_error(
                        400, "BadRequest", "/me request is only valid with delegated authentication flow."
                    )
                denied = self._permission(access)
                return denied or self._one(request, self._visible_user(self._users[access.user_id], access))
            case ["education", "me", "classes"]:
                if access.user_id is None:
                    return _graph_error(
                        400, "BadRequest", "/me request is only valid with delegated authentication flow."
                    )
                return self._permission(access) or self._list(request, [self._class_json(c) for c in classes.values()])
            case ["education", "classes"]:
                return self._permission(access) or self._list(request, [self._class_json(c) for c in classes.values()])
            case ["education", "classes", "delta"]:
                return self._permission(access, delta=True) or self._delta(request, "classes", access)
            case ["education", "users", "delta"]:
                return self._permission(access, delta=True) or self._delta(request, "users", access)
            case ["education", "users"]:
                denied = self._permission(access, app_only=True)
                users = [u for u in self._users.values() if u.tenant_id == tenant_id and not u.deleted]
                return denied or self._list(request, [self._visible_user(u, access) for u in users])
            case ["education", "users", user_id]:
                user = self._users.get(user_id)
                denied = self._permission(access, app_only=True)
                if denied:
                    return denied
                if user is None or user.deleted or user.tenant_id != tenant_id:
                    return _graph_error(404, "Request_ResourceNotFound", "Resource does not exist.")
                return self._one(request, self._visible_user(user, access))
            case ["education", "classes", class_id, *rest] if rest in ([], ["members"], ["teachers"]):
                denied = self._permission(access)
                if denied:
                    return denied
                klass = classes.get(class_id)
                if klass is None:
                    return _graph_error(404, "Request_ResourceNotFound", f"Resource '{class_id}' does not exist.")
                if not rest:
                    return self._one(request, self._class_json(klass))
                ids = klass.members if rest == ["members"] else klass.teachers
                users = [self._users[i] for i in ids if not self._users[i].deleted]
                return self._list(request, [self._visible_user(u, access) for u in users])
        return _graph_error(400, "BadRequest", f"Resource not found for the segment '{parts[-1] if parts else ''}'.")

    # ------------------------------------------------------------------------------- shapes
    def _class_json(self, klass: _Class) -> Json:
        return {"id": klass.id, "displayName": klass.display_name, **klass.extra}

    def _user_json(self, user: _User) -> Json:
        person = user.person
        return {
            "id": user.id,
            "primaryRole": user.role,
            "displayName": person.full_name,
            "givenName": person.given_name,
            "surname": person.family_name,
            **user.pii,
        }

    def _visible_user(self, user: _User, access: _Access) -> Json:
        """What the token's permission lets Graph return of a user (providers.md 3.1)."""
        full = self._user_json(user)
        if access.user_id is not None:
            visible = {k: v for k, v in full.items() if k in _DELEGATED_USER_PROPS}
            for block, keys in _ROLE_BLOCK_DELEGATED.items():
                if isinstance(visible.get(block), dict):
                    visible[block] = {k: visible[block][k] for k in keys}
            return visible
        if access.scopes & {"EduRoster.Read.All", "EduRoster.ReadWrite.All"}:
            return full
        return {k: v for k, v in full.items() if k in _BASIC_USER_PROPS}

    @staticmethod
    def _selected(request: Request, record: Json) -> Json | Response:
        """``$select``: a comma list of top-level properties; an unknown one is a 400, as in Graph."""
        raw = request.param("$select")
        if not raw:
            return record
        names = [n.strip() for n in raw.split(",") if n.strip()]
        return {n: record[n] for n in names if n in record}

    @staticmethod
    def _bad_select(request: Request, kind: str) -> Response | None:
        raw = request.param("$select")
        known = _USER_PROPS if kind == "users" else _CLASS_PROPS
        for name in (n.strip() for n in raw.split(",") if n.strip()):
            if name not in known:
                return _graph_error(
                    400,
                    "BadRequest",
                    f"Could not find a property named '{name}' on type 'microsoft.graph.{_ENTITY[kind]}'.",
                )
        return None

    def _one(self, request: Request, record: Json) -> Response:
        kind = "users" if "primaryRole" in record else "classes"
        bad = self._bad_select(request, kind)
        if bad:
            return bad
        selected = self._selected(request, record)
        assert isinstance(selected, dict)
        context = f"{self.graph_endpoint}/$metadata#education/{kind}/$entity"
        return _json(200, {"@odata.context": context, **selected})

    def _list(self, request: Request, records: list[Json]) -> Response:
        """One page of a collection: ``$top`` (default 100, clamped to 999), ``$skiptoken`` from our own
        absolute ``@odata.nextLink``."""
        kind = (
            "users"
            if "/members" in request.path or "/teachers" in request.path or "users" in request.path
            else "classes"
        )
        bad = self._bad_select(request, kind)
        if bad:
            return bad
        offset = 0
        skiptoken = request.param("$skiptoken")
        if skiptoken:
            state = _unb64(skiptoken)
            if state is None or not isinstance(state.get("o"), int):
                return _graph_error(400, "BadRequest", "The skip token is invalid.")
            offset = int(state["o"])
        top = self._top(request)
        if isinstance(top, Response):
            return top
        page = records[offset : offset + top]
        body: Json = {
            "@odata.context": self._collection_context(kind),
            "value": [self._selected(request, r) for r in page],
        }
        if offset + top < len(records):
            kept = [(k, v) for k, vs in request.query.items() if k != "$skiptoken" for v in vs]
            kept.append(("$skiptoken", _b64({"o": offset + top})))
            body["@odata.nextLink"] = f"{self.base_url}{request.path}?{urlencode(kept, safe='$,')}"
        return _json(200, body)

    @staticmethod
    def _top(request: Request) -> int | Response:
        raw = request.param("$top")
        if not raw:
            return DEFAULT_PAGE
        try:
            top = int(raw)
        except ValueError:
            return _graph_error(400, "BadRequest", "Invalid value for $top.")
        if top < 1:
            return _graph_error(400, "BadRequest", "Invalid value for $top.")
        return min(top, MAX_PAGE)

    def _collection_context(self, kind: str) -> str:
        return f"{self.graph_endpoint}/$metadata#Collection(microsoft.graph.{_ENTITY[kind]})"

    # ------------------------------------------------------------------------------- delta
    def _delta(self, request: Request, kind: str, access: _Access) -> Response:
        """Delta rounds: pages linked by ``@odata.nextLink``, the last with ``@odata.deltaLink``.

        A token remembers the change counter it was issued at, its ``$select`` and the time it was
        issued; one older than 7 days, or issued before ``expire_delta_tokens``, is answered 400
        ``syncStateNotFound`` (or 410 ``resyncRequired`` with a ``Location``). Class delta reports a
        class whose membership changed, with class properties only ([U]: the docs say class delta
        covers membership changes, but show no ``members@delta``). Deleted classes are never reported;
        deleted users only with ``delta_reports_removed`` ([U], providers.md 3.3).
        """
        tenant = self._tenants[access.tenant_id]
        raw_token = request.param("$deltatoken") or request.param("$skiptoken")
        state: Json | None = None
        since, offset, select, top = 0, 0, request.param("$select"), request.param("$top")
        if raw_token:
            state = _unb64(raw_token)
            if state is None or state.get("t") != tenant.id or state.get("k") != kind:
                return _graph_error(400, "BadRequest", "The delta token is invalid.")
            issued = float(state.get("i", 0))
            if issued < tenant.delta_epoch or time.time() - issued > DELTA_TTL.total_seconds():
                if tenant.delta_expiry_status == 410:
                    location = f"{self.graph_endpoint}/education/{kind}/delta?$deltatoken="
                    return _graph_error(410, "resyncRequired", "Resync required.", [("Location", location)])
                return _graph_error(
                    400,
                    "syncStateNotFound",
                    "The sync state generation is not found. "
                    "The delta token is expired and data must be synchronized again.",
                )
            since, offset = int(state.get("s", 0)), int(state.get("o", 0))
            select, top = str(state.get("sel", "")), str(state.get("top", ""))
        bad = self._bad_select(Request("GET", request.path, {"$select": [select]}, {}, {}), kind)
        if bad:
            return bad
        horizon = int(state["h"]) if state is not None and "h" in state else self._peek()
        changed: list[Json] = []
        if kind == "classes":
            for klass in self._classes.values():
                if klass.tenant_id != tenant.id or not since < klass.changed <= horizon:
                    continue
                if not klass.deleted:
                    changed.append(self._class_json(klass))
                elif self._delta_reports_removed_classes and since > 0:
                    changed.append({"id": klass.id, "@removed": {"reason": "deleted"}})
        else:
            for user in self._users.values():
                if user.tenant_id != tenant.id or not since < user.changed <= horizon:
                    continue
                if user.deleted:
                    if self._delta_reports_removed and since > 0:
                        changed.append({"id": user.id, "@removed": {"reason": "deleted"}})
                    continue
                changed.append(self._visible_user(user, access))
        try:
            size = min(max(int(top), 1), MAX_PAGE) if top else DEFAULT_PAGE
        except ValueError:
            return _graph_error(400, "BadRequest", "Invalid value for $top.")
        page = changed[offset : offset + size]
        fake = Request("GET", request.path, {"$select": [select]} if select else {}, {}, {})
        values = [r if "@removed" in r else self._selected(fake, r) for r in page]
        base: Json = {"t": tenant.id, "k": kind, "sel": select, "top": top}
        body: Json = {
            "@odata.context": self._collection_context(kind),
            "value": values,
        }
        if offset + size < len(changed):
            token = _b64({**base, "s": since, "o": offset + size, "h": horizon, "i": time.time()})
            body["@odata.nextLink"] = f"{self.graph_endpoint}/education/{kind}/delta?$skiptoken={token}"
        else:
            token = _b64({**base, "s": horizon, "o": 0, "i": time.time()})
            body["@odata.deltaLink"] = f"{self.graph_endpoint}/education/{kind}/delta?$deltatoken={token}"
        return _json(200, body)

    def _peek(self) -> int:
        """A fresh change counter value: every change so far is at or below it, every later one above."""
        return self._tick()

    # ------------------------------------------------------------------------------- $batch
    def _batch(self, request: Request) -> Response:
        """JSON batching (up to 20 GETs); each sub-request is authorised, logged and failure-injected on its own,
        so a throttled sub-request comes back 429 with its own Retry-After while its siblings succeed."""
        try:
            payload = json.loads(request.body or b"null")
        except ValueError:
            return _graph_error(400, "BadRequest", "Invalid batch payload format.")
        items = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            return _graph_error(400, "BadRequest", "Invalid batch payload format.")
        if len(items) > MAX_BATCH:
            return _graph_error(400, "BadRequest", f"Number of batch requests exceeds the limit of {MAX_BATCH}.")
        responses: list[Json] = []
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("id"), str)
                or not isinstance(item.get("url"), str)
            ):
                return _graph_error(400, "BadRequest", "Invalid batch payload format.")
            url = urlsplit(item["url"])
            path = "/v1.0/" + url.path.lstrip("/")
            sub = Request(
                str(item.get("method", "GET")).upper(),
                path,
                parse_qs(url.query, keep_blank_values=True),
                {},
                request.headers,
            )
            result = self._injected_failure(sub)
            if result is None:
                if sub.method != "GET":
                    result = _graph_error(405, "Request_BadRequest", "Only GET is served by this emulator.")
                else:
                    result = self._graph(sub, [p for p in path.split("/") if p][1:])
            result = self._corrupted(sub, result)
            user_id = result.user_id if result.user_id is not None else self._identify(sub, before=False)
            self._log.append(
                RequestRecord(sub.method, sub.path, {k: list(v) for k, v in sub.query.items()}, user_id, result.status)
            )
            headers = {name: value for name, value in result.headers}
            try:
                sub_body: Any = json.loads(result.body or b"null")
            except ValueError:  # Graph hands a non-JSON sub-response body back base64-encoded
                sub_body = base64.b64encode(result.body).decode()
            responses.append({"id": item["id"], "status": result.status, "headers": headers, "body": sub_body})
        responses.reverse()  # Graph answers sub-requests in any order; clients must match them by id
        return _json(200, {"responses": responses}, user_id=self._identify(request, before=False))


_ENTITY = {"users": "educationUser", "classes": "educationClass"}
_USER_PROPS = frozenset(
    {"id", "primaryRole", "displayName", "givenName", "surname", "accountEnabled", "userType", "externalSource",
     "externalSourceDetail", "onPremisesInfo", "middleName", "mail", "mailNickname", "userPrincipalName", "mobilePhone",
     "businessPhones", "mailingAddress", "residenceAddress", "preferredLanguage", "usageLocation", "department",
     "student", "teacher", "relatedContacts", "createdBy", "assignedLicenses", "assignedPlans", "provisionedPlans",
     "passwordPolicies", "passwordProfile", "showInAddressList", "learnerWellbeingNote"}
)  # fmt: skip
_CLASS_PROPS = frozenset(
    {"id", "displayName", "description", "classCode", "externalId", "externalName", "externalSource",
     "externalSourceDetail", "grade", "mailNickname", "term", "createdBy"}
)  # fmt: skip
