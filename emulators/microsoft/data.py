"""The Microsoft emulator's state: tenants, educationUsers and classes with every documented property."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from emulators.core import EmulatorCore, Json, Request, Response, json_body
from emulators.district import GIVEN_NAMES, District, Person
from emulators.oauth import CodeBook, GrantBook, TokenLedger

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
REFRESH_IDLE_SECONDS = 90 * 24 * 3600.0
"""A refresh token unused this long is refused with AADSTS700082 (Entra's 90-day inactivity lifetime)."""
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
class _Access:
    tenant_id: str
    user_id: str | None  # None: an app-only token
    scopes: frozenset[str]  # ``scp`` of a delegated token, ``roles`` of an app token
    expires_at: float
    issued_at: float
    capable: bool = False  # the token request declared client capability cp1 (``xms_cc``): CAE challenges


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


def _address(rng: random.Random, kind: str) -> Json:
    street = f"{rng.randrange(100, 9999)} {rng.choice(_STREETS)} {kind}"
    return {
        "street": street,
        "city": rng.choice(_CITIES),
        "state": "WA",
        "postalCode": f"98{rng.randrange(100, 999)}",
        "countryOrRegion": "US",
    }


def _guardians(person: Person, rng: random.Random, given: str) -> list[Json]:
    """A student's ``relatedContacts``: one guardian sharing the family name (guardians are personal data)."""
    family, number = person.family_name, person.number
    return [
        {
            "id": _guid("contact", person.id),
            "displayName": f"{given} {family}",
            "emailAddress": f"{given.lower()}.{family.lower()}.g{number}@family.test",
            "mobilePhone": f"+1 555 04{rng.randrange(10, 99)} {number:04d}",
            "relationship": rng.choice(_RELATIONS),
            "accessConsent": True,
        }
    ]


def _directory_pii(tenant: _Tenant, person: Person, role: str) -> Json:
    """Directory bookkeeping (creator, licences, password policy) and one property no documentation names."""
    return {
        "createdBy": {"user": {"id": _guid("admin", tenant.id), "displayName": "Canary Admin Okonkwo-Vale"}},
        "assignedLicenses": [{"disabledPlans": [], "skuId": _guid("sku", role)}],
        "assignedPlans": [],
        "provisionedPlans": [],
        "passwordPolicies": "DisablePasswordExpiration",
        "passwordProfile": {"forceChangePasswordNextSignIn": False, "password": None},
        "showInAddressList": role == "teacher",
        "learnerWellbeingNote": f"canary-unknown-{_guid('note', person.id)[:12]}",  # a property no doc names
    }


def _role_pii(person: Person, rng: random.Random, role: str) -> Json:
    """``student`` (birth date, gender, grade, numbers) or ``teacher``; the other one is null."""
    if role != "student":
        teacher = {"externalId": f"EXT-T-{_guid('ext', person.id)[:10]}", "teacherNumber": f"T{person.number:05d}"}
        return {"student": None, "teacher": teacher}
    grade = rng.randrange(6, 13)
    student = {
        "birthDate": f"{2025 - grade - 6}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "externalId": f"EXT-S-{_guid('ext', person.id)[:10]}",
        "gender": rng.choice(("female", "male", "other")),
        "grade": str(grade),
        "graduationYear": str(2025 + 12 - grade),
        "studentNumber": f"SN{rng.randrange(10**6, 10**7)}",
    }
    return {"student": student, "teacher": None}


# ------------------------------------------------------------------------------------ the emulator

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


class MicrosoftState(EmulatorCore):
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
        super().__init__(host=host, port=port, cert_dir=cert_dir, client_id=client_id, client_secret=client_secret)
        self._seed = seed
        self._secret_expired = False
        self._delta_reports_removed = delta_reports_removed
        self._delta_reports_removed_classes = False
        self._counter = itertools.count(1)
        self._tenants: dict[str, _Tenant] = {}
        self._users: dict[str, _User] = {}
        self._classes: dict[str, _Class] = {}
        self._past_strings: set[str] = set()
        self._codes = CodeBook()
        self._access: dict[str, _Access] = {}
        self._ledger = TokenLedger()
        self._grants = GrantBook(self._ledger)
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
        """An ``educationUser`` holding every documented property, drawn from one seeded generator per person
        (the draws keep their order, so a seed always yields the same canaries)."""
        rng = random.Random(f"{self._seed}|{person.id}")
        role = "teacher" if person.is_teacher else "student"
        address = _address(rng, "Way")
        guardian_given = rng.choice(GIVEN_NAMES)
        pii = self._contact_pii(tenant, person, rng, address)
        pii["relatedContacts"] = _guardians(person, rng, guardian_given) if role == "student" else []
        pii.update(_directory_pii(tenant, person, role))
        pii.update(_role_pii(person, rng, role))
        user = _User(id=_guid("user", self._seed, person.id), tenant_id=tenant.id, person=person, role=role, pii=pii)
        user.changed = self._tick()
        self._users[user.id] = user
        return user

    def _contact_pii(self, tenant: _Tenant, person: Person, rng: random.Random, address: Json) -> Json:
        """Sign-in names, mail, phones and both addresses (the school's domain is the tenant's place)."""
        number = person.number
        domain = f"school{list(self._tenants).index(tenant.id) + 1}.example-school.test"
        nickname = f"{person.given_name.lower()}.{person.family_name.lower()}{number}"
        return {
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
        }

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
            return set(self._ledger.issued)

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
