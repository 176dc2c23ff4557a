"""Local stand-in for Clever (OAuth, the v3.0/v3.1 Data API and the Events API), served over HTTPS.

Clever carries the most sensitive roster records of our providers (date of birth, race, ethnicity,
English-learner status, home address, district usernames, free-form ``ext``; v3.1 adds disability,
IEP, 504 and free-lunch status). Minimisation can only be tested against records that really carry
all of that, so every record here holds every property of the published definitions
(``shared/specs/clever-v3.*.yml``), filled with distinctive synthetic canary values, plus one field
no definition names yet. The behaviour a connector depends on follows providers.md section 2:
list wrappers with relative ``links``, ascending ids, ``limit`` over 10,000 answered 413, district
tokens listable, rotatable and removed on disconnect, SSO tokens refused outside their few
endpoints, events with ``previous_attributes`` in a 30-day window, unsharing (404 plus a
``*.deleted`` event), and 429 with an empty body and ``X-RateLimit-Reset`` instead of Retry-After.

Where providers.md marks a behaviour as unconfirmed ([U]) the choice made here is named in the
docstring of the code that makes it, so a test failing against the real Clever points at it.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from emulators.core import EmulatorCore, Failure, Json, Request, Response, json_body
from emulators.district import GIVEN_NAMES, District, Person

__all__ = ["MSG_NOT_IN_SCOPE", "CleverEmulator"]

AUTHORIZE_PATH = "/oauth/authorize"
TOKENS_PATH = "/oauth/tokens"
USERINFO_PATH = "/userinfo"
API_VERSIONS = ("v3.0", "v3.1")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
EVENT_WINDOW = timedelta(days=30)
CODE_TTL_SECONDS = 60.0
MSG_NOT_IN_SCOPE = "Resource not in token's scopes"
_JSON_TYPE = "application/json; charset=utf-8"
_PAGING_PARAMS = ("limit", "starting_after", "ending_before")
_ID_BASE = 0x5F3C0000
_EPOCH = datetime(2025, 8, 18, 7, 0, 0, tzinfo=UTC)

_RACES = (
    "Caucasian", "Asian", "Black or African American", "American Indian",
    "Hawaiian or Other Pacific Islander", "Two or More Races", "Unknown",
)  # fmt: skip
_SUBJECTS = ("english/language arts", "math", "science", "social studies", "language", "arts and music")
_STREETS = ("Larkspur", "Wendover", "Quillon", "Marrowby", "Tessellate", "Orrery", "Vantablue", "Brindlewick")
_CITIES = ("Port Ellisandre", "New Carrowmore", "Vexhollow", "Saint Ambrel")
_LANGUAGES = (("Welsh", "cym"), ("Tagalog", "tgl"), ("Somali", "som"), ("Hmong", "hmn"), ("English", "eng"))
_DISABILITIES = (
    ("sld", "Specific learning disability"),
    ("sli", "Speech or language impairment"),
    ("ohi", "Other health impairment"),
)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _digest(*parts: object, length: int = 16) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:length]


# ------------------------------------------------------------------------------------------ records
@dataclass
class _CleverUser:
    """A Clever user wrapping a synthetic person; ``pii`` holds the role's personal fields."""

    id: str
    district_id: str | None
    person: Person
    role: str  # "student" | "teacher"
    school_id: str
    created: datetime
    modified: datetime
    middle: str
    pii: dict[str, Any] = field(default_factory=dict)
    shared: bool = True


@dataclass
class _Section:
    id: str
    district_id: str | None
    school_id: str
    name: str
    period: str
    section_number: str
    subject: str
    grade: str
    course_id: str
    term_id: str
    teachers: list[str]
    students: list[str]
    created: datetime
    modified: datetime
    shared: bool = True


@dataclass
class _Event:
    id: str
    type: str
    created: datetime
    record: Json
    previous: Json | None


@dataclass
class _CleverDistrict:
    id: str
    name: str
    school_id: str
    school_name: str
    library: bool
    connected: bool = True
    events_enabled: bool = True
    refusing: bool = False  # answer 401 to the listed token's API calls (refuse_calls)
    token: str | None = None
    token_id: str | None = None
    token_created: datetime = _EPOCH
    events: list[_Event] = field(default_factory=list)
    expired_event_ids: set[str] = field(default_factory=set)


@dataclass
class _Code:
    user_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class _SsoToken:
    user_id: str
    revoked: bool = False


@dataclass
class _Window:
    """Clever's fixed one-minute rate-limit window for one bearer token."""

    minute: int
    used: int


# --------------------------------------------------------------------------------- small builders
def _json(status: int, value: Any, headers: Iterable[tuple[str, str]] = (), user_id: str | None = None) -> Response:
    return Response(status, json_body(value), [("Content-Type", _JSON_TYPE), *headers], user_id=user_id)


def _message(status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Clever's documented error body (``{"message": ...}`` in the v3.0 swagger)."""
    return _json(status, {"message": message}, headers)


def _oauth_error(status: int, error: str, description: str) -> Response:
    return _json(status, {"error": error, "error_description": description})


def _cannot(method: str, path: str) -> Response:
    """An unknown route: Express's HTML page, as live recordings show for /v3.0/resources."""
    text = (
        f"<!DOCTYPE html><html><head><title>Error</title></head><body><pre>Cannot {method} {path}</pre></body></html>"
    )
    return Response(404, text.encode(), [("Content-Type", "text/html; charset=utf-8")])


# ------------------------------------------------------------------------------------ the emulator
class CleverEmulator(EmulatorCore):
    """Clever for ``districts`` synthetic districts plus Library (teacher-shared) teachers.

    District ``k`` is built from ``District(seed=seed + 1000 * (k + 1))``; the Library teachers from
    ``seed + 999``. District-shared teachers sign in with an SSO token that reaches only ``/me``,
    their own record, school and district; Library teachers' SSO tokens also read their own
    sections and the users of those sections, without paging.

    ``/v3.1/...`` always answers with the v3.1 properties; ``version="v3.1"`` makes ``/v3.0/...``
    carry them too, so a v3.0 client can be tested against the most sensitive payload Clever has.
    """

    name = "clever-emulator"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        districts: int = 2,
        teachers: int = 3,
        courses_per_teacher: int = 2,
        students_per_course: int = 12,
        library_teachers: int = 1,
        seed: int = 7,
        cert_dir: Path | None = None,
        client_id: str = "rostersync-clever-emulator",
        client_secret: str = "clever-emulator-secret",  # noqa: S107 - a synthetic test client
        version: str = "v3.0",
        rate_limit: int = 1200,
    ) -> None:
        if version not in API_VERSIONS:
            raise ValueError(f"version must be one of {API_VERSIONS}")
        super().__init__(host=host, port=port, cert_dir=cert_dir)
        self._seed = seed
        self._client_id = client_id
        self._client_secret = client_secret
        self._version = version
        self._rate_limit = rate_limit
        self._counter = itertools.count(1)
        self._users: dict[str, _CleverUser] = {}
        self._sections: dict[str, _Section] = {}
        self._districts: dict[str, _CleverDistrict] = {}
        self._sources: dict[str, District] = {}
        self._past_strings: set[str] = set()
        self._codes: dict[str, _Code] = {}
        self._sso: dict[str, _SsoToken] = {}
        self._issued: set[str] = set()
        self._retired: dict[str, str] = {}  # rotated-out or removed district token -> its district, for the log
        self._windows: dict[str, _Window] = {}
        self._consent_user: str | None = None
        for index in range(districts):
            self._build_district(
                District(
                    seed=seed + 1000 * (index + 1),
                    teachers=teachers,
                    courses_per_teacher=courses_per_teacher,
                    students_per_course=students_per_course,
                ),
                library=False,
                index=index,
            )
        if library_teachers > 0:
            self._build_district(
                District(
                    seed=seed + 999,
                    teachers=library_teachers,
                    courses_per_teacher=1,
                    students_per_course=max(1, students_per_course // 2),
                ),
                library=True,
                index=districts,
            )

    # ------------------------------------------------------------------------------- building
    def _new_id(self) -> str:
        """Ascending 24-hex ids (like Mongo ObjectIds, which follow creation time), one counter for all."""
        number = next(self._counter)
        return f"{_ID_BASE + number:08x}{_digest(self._seed, number)}"

    def _moment(self) -> datetime:
        return _EPOCH + timedelta(minutes=next(self._counter))

    def _build_district(self, source: District, *, library: bool, index: int) -> None:
        district_id = self._new_id()
        school_id = self._new_id()
        name = "Library" if library else f"{_CITIES[index % len(_CITIES)]} Unified School District {index + 1}"
        district = _CleverDistrict(
            id=district_id,
            name=name,
            school_id=school_id,
            school_name=f"{name} Academy" if not library else "Library",
            library=library,
        )
        self._districts[district_id] = district
        self._sources[district_id] = source
        if not library:
            self._mint_district_token(district)
        for person in sorted(source.people.values(), key=lambda p: p.number):
            self._add_user(district, person, "teacher" if person.is_teacher else "student")
        by_person = {
            u.person.id: u.id for u in self._users.values() if u.district_id == self._record_district(district)
        }
        for course in sorted(source.courses.values(), key=lambda c: c.seq):
            self._add_section(
                district,
                name=course.name,
                period=course.section.removeprefix("Period "),
                teachers=[by_person[t] for t in course.teachers],
                students=[by_person[s] for s in course.students],
            )

    @staticmethod
    def _record_district(district: _CleverDistrict) -> str | None:
        """Library records carry no district ([U]: Clever's "teacher-shared" sign-ups have none in /me)."""
        return None if district.library else district.id

    def _add_user(self, district: _CleverDistrict, person: Person, role: str) -> _CleverUser:
        rng = random.Random(f"{self._seed}|{person.id}")
        created = self._moment()
        number = person.number
        username = f"{person.given_name[:1].lower()}{person.family_name.lower()}{number}"
        user = _CleverUser(
            id=self._new_id(),
            district_id=self._record_district(district),
            person=person,
            role=role,
            school_id=district.school_id,
            created=created,
            modified=created,
            middle=rng.choice(GIVEN_NAMES),
        )
        common = {
            "sis_id": f"SIS-{_digest('sis', person.id, length=10).upper()}",
            "state_id": f"ST{rng.randrange(10**9, 10**10)}",
            "legacy_id": f"legacy-{_digest('legacy', person.id, length=12)}",
            "credentials": {"district_username": username},
            "ext": {
                "locker_combination": f"{rng.randrange(10, 99)}-{rng.randrange(10, 99)}-{number}",
                "sis_note": f"canary-ext-{_digest('ext', person.id, length=10)}",
            },
        }
        if role == "student":
            grade = rng.randrange(6, 13)
            street = f"{rng.randrange(100, 9999)} {rng.choice(_STREETS)} Lane"
            language, code = rng.choice(_LANGUAGES)
            disability_code, disability_type = rng.choice(_DISABILITIES)
            user.pii = {
                **common,
                "student_number": f"SN{rng.randrange(10**6, 10**7)}",
                "dob": f"{rng.randrange(1, 13)}/{rng.randrange(1, 29)}/{2025 - grade - 6}",
                "gender": rng.choice(("M", "F", "X")),
                "grade": str(grade),
                "graduation_year": str(2025 + 12 - grade),
                "race": rng.choice(_RACES),
                "hispanic_ethnicity": rng.choice(("Y", "N")),
                "ell_status": rng.choice(("Y", "N")),
                "location": {
                    "address": street,
                    "city": rng.choice(_CITIES),
                    "state": "CA",
                    "zip": f"9{rng.randrange(1000, 9999)}",
                    "lat": f"{rng.uniform(32, 41):.6f}",
                    "lon": f"{-rng.uniform(114, 124):.6f}",
                },
                "enrollments": [
                    {
                        "school": district.school_id,
                        "start_date": _iso(_EPOCH),
                        "end_date": _iso(_EPOCH + timedelta(days=300)),
                    }
                ],
                "guardian_phone": f"+1-555-01{rng.randrange(10, 99)}-{number:04d}",  # a field no definition names
                "v3.1": {
                    "frl_status": rng.choice(("Free", "Reduced", "Paid")),
                    "iep_status": rng.choice(("Y", "N")),
                    "section_504_status": rng.choice(("Y", "N")),
                    "gifted_status": rng.choice(("Y", "N")),
                    "disability": {
                        "disability_code": disability_code,
                        "disability_status": "Y",
                        "disability_type": disability_type,
                    },
                    "home_language": language,
                    "home_language_code": code,
                    "preferred_name": {"first": f"Pref{person.given_name}", "middle": None, "last": person.family_name},
                },
            }
        else:
            user.pii = {
                **common,
                "teacher_number": f"T{rng.randrange(10**5, 10**6)}",
                "title": rng.choice(("Ms.", "Mr.", "Mx.", "Dr.")),
            }
        self._users[user.id] = user
        return user

    def _add_section(
        self, district: _CleverDistrict, *, name: str, period: str, teachers: list[str], students: list[str]
    ) -> _Section:
        created = self._moment()
        section_id = self._new_id()
        rng = random.Random(f"{self._seed}|{section_id}")
        section = _Section(
            id=section_id,
            district_id=self._record_district(district),
            school_id=district.school_id,
            name=name,
            period=period,
            section_number=f"{rng.randrange(1, 40):02d}",
            subject=rng.choice(_SUBJECTS),
            grade=str(rng.randrange(6, 13)),
            course_id=_digest("course", name, length=24),
            term_id=_digest("term", district.id, length=24),
            teachers=list(teachers),
            students=list(students),
            created=created,
            modified=created,
        )
        self._sections[section.id] = section
        return section

    def _mint_district_token(self, district: _CleverDistrict) -> None:
        self._retire(district)
        district.token = secrets.token_hex(20)
        district.token_id = self._new_id()
        district.token_created = datetime.now(UTC)
        self._issued.add(district.token)

    def _retire(self, district: _CleverDistrict) -> None:
        if district.token is not None:
            self._retired[district.token] = district.id
        district.token = None
        district.token_id = None

    # ------------------------------------------------------------------------------- addresses
    @property
    def authorize_url(self) -> str:
        return self.base_url + AUTHORIZE_PATH

    @property
    def token_url(self) -> str:
        return self.base_url + TOKENS_PATH

    @property
    def api_base(self) -> str:
        return self.base_url

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def client_secret(self) -> str:
        return self._client_secret

    # ------------------------------------------------------------------------------- seeded data
    @property
    def district_ids(self) -> list[str]:
        """The real (non-Library) districts, in creation order."""
        with self._lock:
            return [d.id for d in self._districts.values() if not d.library]

    def teacher_ids(self, district_id: str | None = None) -> list[str]:
        """Teachers of one district, or the Library teachers when ``district_id`` is None."""
        with self._lock:
            return [u.id for u in self._users.values() if u.role == "teacher" and u.district_id == district_id]

    def student_ids(self, district_id: str | None = None) -> list[str]:
        with self._lock:
            return [u.id for u in self._users.values() if u.role == "student" and u.district_id == district_id]

    def section_ids(self, district_id: str | None = None, *, teacher_id: str | None = None) -> list[str]:
        with self._lock:
            return [
                s.id
                for s in self._sections.values()
                if s.shared
                and (teacher_id is None or teacher_id in s.teachers)
                and (teacher_id is not None or s.district_id == district_id)
            ]

    def students_of(self, section_id: str) -> list[str]:
        with self._lock:
            return list(self._sections[section_id].students)

    def district_token(self, district_id: str) -> str | None:
        """The district's current app token (None once disconnected)."""
        with self._lock:
            return self._districts[district_id].token

    def newest_event_id(self, district_id: str) -> str | None:
        with self._lock:
            events = self._districts[district_id].events
            return events[-1].id if events else None

    def person_ids(self) -> set[str]:
        """Every user id this emulator ever issued (teachers and students), for tests that grep logs for them."""
        with self._lock:
            return set(self._users)

    def issued_tokens(self) -> set[str]:
        with self._lock:
            return set(self._issued)

    def personal_strings(self) -> set[str]:
        """Every distinctive personal value ever served (names, e-mails, usernames, ids, addresses,
        ext values, the unknown field), for tests that grep tables, logs and messages for leaks.
        Short enum values (gender ``M``, grade ``9``) are left out: they would match everywhere."""
        with self._lock:
            strings = set(self._past_strings)
            for source in self._sources.values():
                strings |= source.personal_strings()
            for user in self._users.values():
                strings |= self._strings_of(user)
            return strings

    @staticmethod
    def _strings_of(user: _CleverUser) -> set[str]:
        pii = user.pii
        strings = {user.person.full_name, user.person.email, pii["sis_id"], pii["state_id"], pii["legacy_id"]}
        strings.add(pii["credentials"]["district_username"])
        strings |= {str(v) for v in pii["ext"].values()}
        if user.role == "student":
            strings |= {pii["student_number"], pii["dob"], pii["location"]["address"], pii["guardian_phone"]}
            strings |= {pii["location"]["lat"], pii["location"]["lon"], pii["v3.1"]["preferred_name"]["first"]}
        else:
            strings.add(pii["teacher_number"])
        return strings

    # ------------------------------------------------------------------------------- controls
    def set_consent_user(self, user_id: str | None) -> None:
        """Who approves the following /oauth/authorize (None: the first teacher of the first district)."""
        with self._lock:
            if user_id is not None and user_id not in self._users:
                raise KeyError(f"unknown user {user_id}")
            self._consent_user = user_id

    def disconnect_district(self, district_id: str) -> None:
        """The district removes the app: its token vanishes from /oauth/tokens and answers 401 ([U] 2.7)."""
        with self._lock:
            district = self._districts[district_id]
            district.connected = False
            self._retire(district)

    def connect_district(self, district_id: str) -> str:
        with self._lock:
            district = self._districts[district_id]
            district.connected = True
            self._mint_district_token(district)
            assert district.token is not None
            return district.token

    def rotate_district_token(self, district_id: str) -> str:
        """Clever rotates district tokens: the old one answers 401, the new one is listed."""
        with self._lock:
            district = self._districts[district_id]
            if not district.connected:
                raise ValueError("district is not connected")
            self._mint_district_token(district)
            assert district.token is not None
            return district.token

    def revoke_token(self, token: str) -> None:
        """Invalidate one SSO token, or a district's app token (the district stays connected but tokenless)."""
        with self._lock:
            if token in self._sso:
                self._sso[token].revoked = True
                return
            for district in self._districts.values():
                if district.token == token:
                    self._retire(district)
                    return
            raise KeyError("unknown token")

    def refuse_calls(self, district_id: str, refusing: bool = True) -> None:
        """The district's token stays listed at /oauth/tokens but every API call with it is answered 401
        (a fault at Clever's side, not a disconnect: Clever's disconnect is the token leaving the list)."""
        with self._lock:
            self._districts[district_id].refusing = refusing

    def delete_user(self, user_id: str) -> None:
        """The user is deleted at Clever: 404 from now on and a ``users.deleted`` event. Their sections keep
        listing them ([U]: Clever names no section change for a deleted user; a full listing still finds them)."""
        self.unshare_user(user_id)

    def recreate_user(self, user_id: str) -> None:
        """The user comes back with the same id (Clever keeps ids unless removed 300+ days or the sis_id changed,
        dev.clever.com/docs/users): readable again and a ``users.created`` event with the whole record."""
        with self._lock:
            user = self._users[user_id]
            user.shared = True
            user.modified = datetime.now(UTC)
            district = self._district_of(user.school_id)
            self._record_event(district, "users.created", self._user_json(user, self._version))

    def set_events_enabled(self, district_id: str, enabled: bool) -> None:
        with self._lock:
            self._districts[district_id].events_enabled = enabled

    def expire_events(self, district_id: str) -> None:
        """Every event recorded so far falls out of the 30-day window."""
        with self._lock:
            district = self._districts[district_id]
            district.expired_event_ids |= {e.id for e in district.events}
            district.events = []

    def add_student(self, section_id: str) -> str:
        """A new student joins a section: ``users.created`` and ``sections.updated`` events."""
        with self._lock:
            section = self._sections[section_id]
            district = self._district_of(section.school_id)
            person = self._sources[district.id].new_person(is_teacher=False)
            user = self._add_user(district, person, "student")
            self._record_event(district, "users.created", self._user_json(user, self._version))
            self._change_section(section, students=[*section.students, user.id])
            return user.id

    def remove_student(self, section_id: str, user_id: str) -> None:
        with self._lock:
            section = self._sections[section_id]
            if user_id not in section.students:
                raise KeyError(f"user {user_id} is not a student of section {section_id}")
            self._change_section(section, students=[s for s in section.students if s != user_id])

    def enroll_student(self, section_id: str, user_id: str) -> None:
        with self._lock:
            section = self._sections[section_id]
            if user_id not in section.students:
                self._change_section(section, students=[*section.students, user_id])

    def rename_section(self, section_id: str, name: str) -> None:
        with self._lock:
            self._change_section(self._sections[section_id], name=name)

    def rename_user(self, user_id: str) -> None:
        """New names for a person (the old ones stay in personal_strings): a ``users.updated`` event."""
        with self._lock:
            user = self._users[user_id]
            district = self._district_of(user.school_id)
            old = self._user_json(user, self._version)
            self._past_strings |= self._strings_of(user)
            self._sources[district.id].rename(user.person.id)
            user.modified = datetime.now(UTC)
            new = self._user_json(user, self._version)
            previous = {"name": old["name"], "email": old["email"], "last_modified": old["last_modified"]}
            self._record_event(district, "users.updated", new, previous)

    def unshare_section(self, section_id: str) -> None:
        """The district stops sharing a section: 404 from now on, and a ``sections.deleted`` event."""
        with self._lock:
            section = self._sections[section_id]
            section.shared = False
            district = self._district_of(section.school_id)
            self._record_event(district, "sections.deleted", self._section_json(section, self._version))

    def reshare_section(self, section_id: str) -> None:
        with self._lock:
            section = self._sections[section_id]
            section.shared = True
            district = self._district_of(section.school_id)
            self._record_event(district, "sections.created", self._section_json(section, self._version))

    def rollover(self, district_id: str) -> tuple[list[str], list[str]]:
        """The district's new school year, once it approved the rollover at Clever; returns (old, new) section ids.

        Clever holds an SIS sync whose enrolments change this much until the district clicks "Approve"
        (support.clever.com/hc/en-us/articles/204059586); what an app sees afterwards is modelled
        here: every section of the district ends (``sections.deleted``, gone from listings) and the
        new year's sections appear with new ids (``sections.created``), same teachers and students.
        """
        with self._lock:
            district = self._districts[district_id]
            old = [s for s in self._sections.values() if s.shared and s.school_id == district.school_id]
            new: list[str] = []
            for section in old:
                section.shared = False
                self._record_event(district, "sections.deleted", self._section_json(section, self._version))
            for section in old:
                successor = self._add_section(
                    district,
                    name=section.name,
                    period=section.period,
                    teachers=section.teachers,
                    students=section.students,
                )
                successor.term_id = _digest("term", district.id, "next", length=24)
                self._record_event(district, "sections.created", self._section_json(successor, self._version))
                new.append(successor.id)
            return [section.id for section in old], new

    def unshare_user(self, user_id: str) -> None:
        with self._lock:
            user = self._users[user_id]
            user.shared = False
            district = self._district_of(user.school_id)
            self._record_event(district, "users.deleted", self._user_json(user, self._version))

    # ------------------------------------------------------------------------------- mutations
    def _district_of(self, school_id: str) -> _CleverDistrict:
        """Library records carry no district id, so records find their district through their school."""
        return next(d for d in self._districts.values() if d.school_id == school_id)

    def _change_section(self, section: _Section, **changes: Any) -> None:
        district = self._district_of(section.school_id)
        old = self._section_json(section, self._version)
        for key, value in changes.items():
            setattr(section, key, value)
        section.modified = datetime.now(UTC)
        new = self._section_json(section, self._version)
        previous = {key: old[key] for key in (*changes, "last_modified")}
        self._record_event(district, "sections.updated", new, previous)

    def _record_event(self, district: _CleverDistrict, kind: str, record: Json, previous: Json | None = None) -> None:
        if district.library:
            return  # events exist for district-app tokens only
        district.events.append(_Event(self._new_id(), kind, datetime.now(UTC), record, previous))

    # ------------------------------------------------------------------------------- JSON shapes
    def _name(self, user: _CleverUser) -> Json:
        return {"first": user.person.given_name, "middle": user.middle, "last": user.person.family_name}

    def _user_json(self, user: _CleverUser, version: str) -> Json:
        pii = {key: value for key, value in user.pii.items() if key != "v3.1"}
        role: Json = {**pii, "created": _iso(user.created), "last_modified": _iso(user.modified)}
        role["school"] = user.school_id
        role["schools"] = [user.school_id]
        if user.role == "teacher":
            role["district"] = user.district_id
            role["name"] = self._name(user)
        elif "v3.1" in (version, self._version):
            role.update(user.pii["v3.1"])
        body: Json = {
            "id": user.id,
            "district": user.district_id,
            "email": user.person.email,
            "name": self._name(user),
            "roles": {user.role: role},
            "created": _iso(user.created),
            "last_modified": _iso(user.modified),
        }
        if "v3.1" in (version, self._version):
            body["lms_status"] = {"synced_in_lms": False}
        return body

    def _section_json(self, section: _Section, version: str) -> Json:
        body: Json = {
            "id": section.id,
            "name": section.name,
            "district": section.district_id,
            "school": section.school_id,
            "course": section.course_id,
            "term_id": section.term_id,
            "teacher": section.teachers[0] if section.teachers else None,
            "teachers": list(section.teachers),
            "students": list(section.students),
            "grade": section.grade,
            "subject": section.subject,
            "period": section.period,
            "section_number": section.section_number,
            "sis_id": f"SEC-{_digest('sec', section.id, length=8).upper()}",
            "ext": {"room": f"Room {int(section.section_number) + 100}"},
            "created": _iso(section.created),
            "last_modified": _iso(section.modified),
        }
        if "v3.1" in (version, self._version):
            body["lms_status"] = {"synced_in_lms": False}
        return body

    def _district_json(self, district: _CleverDistrict) -> Json:
        contact_id = _digest("contact", district.id, length=24)
        return {
            "id": district.id,
            "name": district.name,
            "state": "success",
            "last_sync": _iso(_EPOCH),
            "launch_date": _EPOCH.date().isoformat(),
            "pause_start": None,
            "pause_end": None,
            "error": "",
            "login_methods": ["google", "clever_badge"],
            "mdr_number": None,
            "nces_id": f"06{_digest('nces', district.id, length=5)}",
            "portal_url": f"https://clever.test/in/{_digest('portal', district.id, length=8)}",
            "sis_type": "SFTP",
            "district_contact": {
                "id": contact_id,
                "district": district.id,
                "email": f"it-admin.{_digest('mail', district.id, length=6)}@district.test",
                "name": {"first": "District", "middle": None, "last": "Administrator"},
                "title": "Technology Director",
            },
        }

    def _school_json(self, district: _CleverDistrict) -> Json:
        return {
            "id": district.school_id,
            "district": self._record_district(district),
            "name": district.school_name,
            "location": {
                "address": "1 School Way",
                "city": "Vexhollow",
                "state": "CA",
                "zip": "90001",
                "lat": None,
                "lon": None,
            },
            "low_grade": "6",
            "high_grade": "12",
            "principal": {"name": "Principal Skinner", "email": "principal@district.test"},
            "phone": "555-0100",
            "school_number": "001",
            "sis_id": "SCH-1",
            "state_id": None,
            "nces_id": None,
            "mdr_number": None,
            "ext": {},
            "created": _iso(_EPOCH),
            "last_modified": _iso(_EPOCH),
        }

    def _event_json(self, event: _Event) -> Json:
        data: Json = {"object": event.record}
        if event.previous is not None:
            data["previous_attributes"] = event.previous
        return {"id": event.id, "type": event.type, "created": _iso(event.created), "data": data}

    # ------------------------------------------------------------------------------- core hooks
    def _error_response(self, status: int, message: str) -> Response:
        return _message(status, message)

    def _failure_response(self, request: Request, failure: Failure) -> Response:
        """429 is answered like Clever's rate limiter: empty body, ``X-RateLimit-*`` headers, no Retry-After;
        ``retry_after`` (default: the end of the minute) sets ``X-RateLimit-Reset``."""
        if failure.status == 429:
            reset = int(time.time()) + (
                failure.retry_after if failure.retry_after is not None else 60 - int(time.time()) % 60
            )
            headers = [
                ("X-Ratelimit-Bucket", "bearer"),
                ("X-Ratelimit-Limit", str(self._rate_limit)),
                ("X-Ratelimit-Remaining", "0"),
                ("X-Ratelimit-Reset", str(reset)),
            ]
            return Response(429, b"", headers)
        if request.path.startswith("/oauth/"):
            return _oauth_error(
                failure.status, "server_error" if failure.status >= 500 else "invalid_request", "injected failure"
            )
        return _message(failure.status, "Internal Error" if failure.status >= 500 else "injected failure")

    def _identify(self, request: Request, *, before: bool) -> str | None:
        if request.path == AUTHORIZE_PATH and before:
            return self._consenting_user()
        if request.path == TOKENS_PATH:
            code = self._codes.get(request.form_value("code"))
            return code.user_id if code else (request.param("district") or None)
        token = request.bearer()
        if token is None:
            return None
        sso = self._sso.get(token)
        if sso is not None:
            return sso.user_id
        district = next((d for d in self._districts.values() if d.token == token), None)
        return district.id if district else self._retired.get(token)

    def _dispatch(self, request: Request) -> Response:
        if request.path == AUTHORIZE_PATH and request.method == "GET":
            return self._authorize(request)
        if request.path == TOKENS_PATH and request.method == "POST":
            return self._exchange(request)
        if request.path == TOKENS_PATH and request.method == "GET":
            return self._list_tokens(request)
        if request.path == USERINFO_PATH and request.method == "GET":
            return self._userinfo(request)
        parts = [p for p in request.path.split("/") if p]
        if parts and parts[0] in API_VERSIONS and request.method == "GET":
            return self._api(request, parts[0], parts[1:])
        return _cannot(request.method, request.path)

    # ------------------------------------------------------------------------------- OAuth
    def _consenting_user(self) -> str | None:
        if self._consent_user is not None:
            return self._consent_user
        first = next((d for d in self._districts.values() if not d.library), None)
        teachers = [u.id for u in self._users.values() if u.role == "teacher" and first and u.district_id == first.id]
        return teachers[0] if teachers else None

    def _authorize(self, request: Request) -> Response:
        if request.param("client_id") != self._client_id:
            return _message(400, "invalid client_id")
        if request.param("response_type") != "code":
            return _message(400, "response_type must be code")
        redirect_uri = request.param("redirect_uri")
        if not redirect_uri:
            return _message(400, "missing redirect_uri")
        user_id = self._consenting_user()
        if user_id is None:
            return _message(400, "nobody is there to approve the request")
        code = secrets.token_hex(10)
        self._codes[code] = _Code(user_id, redirect_uri, time.time() + CODE_TTL_SECONDS)
        params = [("code", code)]
        if "state" in request.query:
            params.append(("state", request.param("state")))
        separator = "&" if "?" in redirect_uri else "?"
        location = redirect_uri + separator + urlencode(params, quote_via=quote)
        return Response(
            302, b"Found", [("Location", location), ("Content-Type", "text/plain; charset=utf-8")], user_id=user_id
        )

    def _client_ok(self, request: Request) -> bool:
        """Clever wants the client credentials in HTTP Basic (providers.md 2.1), never in the form."""
        credentials = request.basic_auth()
        if credentials is None:
            return False
        client_id, client_secret = credentials
        return client_id == self._client_id and secrets.compare_digest(
            client_secret.encode(), self._client_secret.encode()
        )

    def _exchange(self, request: Request) -> Response:
        if not self._client_ok(request):
            return _oauth_error(401, "invalid_client", "Invalid client credentials")
        if request.form_value("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
        entry = self._codes.get(request.form_value("code"))
        if entry is None or entry.used or time.time() > entry.expires_at:
            return _oauth_error(400, "invalid_grant", "Invalid grant: invalid code")
        entry.used = True  # single use, even when the redirect_uri below does not match
        if request.form_value("redirect_uri") != entry.redirect_uri:
            return _oauth_error(400, "invalid_grant", "Invalid grant: redirect_uri mismatch")
        token = secrets.token_hex(20)
        self._sso[token] = _SsoToken(entry.user_id)
        self._issued.add(token)
        return _json(200, {"access_token": token, "token_type": "bearer"}, user_id=entry.user_id)

    def _list_tokens(self, request: Request) -> Response:
        if not self._client_ok(request):
            return _oauth_error(401, "invalid_client", "Invalid client credentials")
        if request.param("owner_type") != "district":
            return _oauth_error(400, "invalid_request", "owner_type must be district")
        wanted = request.param("district")
        data = [
            {
                "id": d.token_id,
                "created": _iso(d.token_created),
                "owner": {"type": "district", "id": d.id},
                "access_token": d.token,
                "scopes": [
                    "read:district_admins",
                    "read:school_admins",
                    "read:sections",
                    "read:students",
                    "read:teachers",
                    "read:user_id",
                ],
            }
            for d in self._districts.values()
            if d.connected and d.token is not None and (not wanted or d.id == wanted)
        ]
        self_uri = TOKENS_PATH + "?" + urlencode(sorted((k, v[0]) for k, v in request.query.items()))
        return _json(200, {"data": data, "links": [{"rel": "self", "uri": self_uri}]})

    # ------------------------------------------------------------------------------- API
    def _rate_headers(self, token: str) -> tuple[bool, list[tuple[str, str]]]:
        """Fixed one-minute window per bearer token; True when this request is over the limit."""
        now = time.time()
        minute = int(now // 60)
        window = self._windows.get(token)
        if window is None or window.minute != minute:
            window = self._windows[token] = _Window(minute, 0)
        window.used += 1
        headers = [
            ("X-Ratelimit-Bucket", "bearer"),
            ("X-Ratelimit-Limit", str(self._rate_limit)),
            ("X-Ratelimit-Remaining", str(max(0, self._rate_limit - window.used))),
            ("X-Ratelimit-Reset", str((minute + 1) * 60)),
        ]
        return window.used > self._rate_limit, headers

    def _api(self, request: Request, version: str, parts: list[str]) -> Response:
        token = request.bearer()
        if token is None:
            return _message(401, "Unauthorized")
        sso = self._sso.get(token)
        district = next((d for d in self._districts.values() if d.token == token and d.connected), None)
        if (sso is None or sso.revoked) and (district is None or district.refusing):
            return _message(401, "Unauthorized")
        over, headers = self._rate_headers(token)
        if over:
            return Response(429, b"", headers)
        if sso is not None and not sso.revoked:
            result = self._sso_api(request, version, parts, self._users[sso.user_id])
            user_id: str | None = sso.user_id
        else:
            assert district is not None
            result = self._district_api(request, version, parts, district)
            user_id = district.id
        result.headers.extend(headers)
        result.user_id = user_id
        return result

    def _sso_api(self, request: Request, version: str, parts: list[str], user: _CleverUser) -> Response:
        """An SSO token reaches /me, the user's own record, school and district (providers.md 2.1);
        a Library teacher's also reads their own sections and those sections' users, never paged."""
        district = self._district_of(user.school_id)
        if parts == ["me"]:
            return self._me(user)
        if parts == ["users", user.id]:
            return self._one(version, "users", self._user_json(user, version))
        if parts == ["schools", user.school_id]:
            return self._one(version, "schools", self._school_json(district))
        if not district.library and parts == ["districts", district.id]:
            return self._one(version, "districts", self._district_json(district))
        own = [s for s in self._sections.values() if s.shared and user.id in s.teachers]
        if district.library and len(parts) >= 2:
            if any(name in request.query for name in _PAGING_PARAMS):
                return _message(400, "Paging parameters are not supported with user tokens")
            if parts == ["users", user.id, "sections"]:
                return self._unpaged(version, "sections", [self._section_json(s, version) for s in own])
            section = next((s for s in own if len(parts) >= 2 and parts[:2] == ["sections", s.id]), None)
            if section is not None and parts[2:] == []:
                return self._one(version, "sections", self._section_json(section, version))
            if section is not None and parts[2:] == ["users"]:
                role = request.param("role")
                ids = [*section.teachers, *section.students]
                members = [
                    self._users[i] for i in ids if (not role or self._users[i].role == role) and self._users[i].shared
                ]
                return self._unpaged(version, "users", [self._user_json(u, version) for u in members])
        return _message(403, MSG_NOT_IN_SCOPE)

    def _me(self, user: _CleverUser) -> Response:
        """/me as Clever shows it: a district teacher as a live Instant Login recording shows it
        (``type`` the role, ``district`` set, ``authorized_by`` district); a Library sign-in as the v3.0
        Library page documents it (dev.clever.com/docs/classroom-rostering): ``{"id": ..., "type": "user"}``
        and no district, the role being told by ``/userinfo`` alone."""
        links = [{"rel": "self", "uri": "/me"}, {"rel": "canonical", "uri": f"/v3.0/users/{user.id}"}]
        if user.district_id is None:
            return _json(200, {"data": {"id": user.id, "type": "user"}, "links": links})
        links.append({"rel": "district", "uri": f"/v3.0/districts/{user.district_id}"})
        data = {"id": user.id, "district": user.district_id, "type": user.role, "authorized_by": "district"}
        return _json(200, {"type": "user", "data": data, "links": links})

    def _userinfo(self, request: Request) -> Response:
        """``GET /userinfo`` with an SSO token (dev.clever.com/docs/the-userinfo-endpoint): the user's role in
        this login (``user_type``), the district for a district-shared user; no version prefix, no wrapper.
        A Library sign-in carries no district ([U]: the page's sample is a district teacher)."""
        token = request.bearer()
        sso = self._sso.get(token) if token is not None else None
        if sso is None or sso.revoked:
            return _message(401, "Unauthorized")
        user = self._users[sso.user_id]
        body: Json = {
            "sub": user.id,
            "user_id": user.id,
            "multi_role_user_id": user.id,
            "user_type": user.role,
            "email": user.person.email,
            "name": self._name(user),
            "given_name": user.person.given_name,
            "family_name": user.person.family_name,
            "schools": [user.school_id],
            "email_verified": False,
            "authorized_by": "district" if user.district_id is not None else "teacher",
        }
        if user.district_id is not None:
            body |= {"district_id": user.district_id, "district": user.district_id}
        return _json(200, body, user_id=user.id)

    def _one(self, version: str, collection: str, record: Json) -> Response:
        uri = f"/{version}/{collection}/{record['id']}"
        return _json(200, {"data": record, "links": [{"rel": "self", "uri": uri}]})

    def _unpaged(self, version: str, collection: str, records: list[Json]) -> Response:
        return _json(
            200, {"data": [{"data": r, "uri": f"/{version}/{collection}/{r['id']}"} for r in records], "links": []}
        )

    def _district_api(self, request: Request, version: str, parts: list[str], district: _CleverDistrict) -> Response:
        if parts == ["me"]:
            body = {
                "type": "district",
                "data": {"id": district.id, "type": "district"},
                "links": [{"rel": "self", "uri": "/me"}, {"rel": "canonical", "uri": f"/v3.0/districts/{district.id}"}],
            }
            return _json(200, body)
        sections = {s.id: s for s in self._sections.values() if s.district_id == district.id and s.shared}
        users = {u.id: u for u in self._users.values() if u.district_id == district.id and u.shared}
        role = request.param("role")
        if role and role not in ("student", "teacher", "staff", "district_admin", "contact"):
            return _message(400, f"invalid role {role}")

        def user_list(ids: Iterable[str]) -> list[Json]:
            chosen = [users[i] for i in ids if i in users and (not role or users[i].role == role)]
            return [self._user_json(u, version) for u in chosen]

        match parts:
            case ["districts"]:
                return self._page(request, version, "districts", [self._district_json(district)])
            case ["districts", district_id] if district_id == district.id:
                return self._one(version, "districts", self._district_json(district))
            case ["schools"]:
                return self._page(request, version, "schools", [self._school_json(district)])
            case ["schools", school_id] if school_id == district.school_id:
                return self._one(version, "schools", self._school_json(district))
            case ["sections"]:
                return self._page(
                    request, version, "sections", [self._section_json(s, version) for s in sections.values()]
                )
            case ["sections", section_id] if section_id in sections:
                return self._one(version, "sections", self._section_json(sections[section_id], version))
            case ["sections", section_id, "users"] if section_id in sections:
                section = sections[section_id]
                return self._page(request, version, "users", user_list([*section.teachers, *section.students]))
            case ["users"]:
                return self._page(request, version, "users", user_list(users))
            case ["users", user_id] if user_id in users:
                return self._one(version, "users", self._user_json(users[user_id], version))
            case ["users", user_id, "sections"] if user_id in users:
                own = [
                    self._section_json(s, version)
                    for s in sections.values()
                    if user_id in s.teachers or user_id in s.students
                ]
                return self._page(request, version, "sections", own)
            case ["events"]:
                return self._events(request, version, district)
            case ["events", event_id]:
                event = next((e for e in district.events if e.id == event_id), None)
                if event is not None and district.events_enabled:
                    return self._one(version, "events", self._event_json(event))
            case [("districts" | "schools" | "sections" | "users"), *_]:
                pass
            case _:
                return _cannot(request.method, request.path)
        return _message(404, "Resource not found")

    def _events(self, request: Request, version: str, district: _CleverDistrict) -> Response:
        """Events need the district to have enabled them ([U] status: 403 here); a ``starting_after`` that
        fell out of the 30-day window is answered 400 ([U]: providers.md names no exact error)."""
        if not district.events_enabled:
            return _message(403, "Events are not enabled for this district")
        after = request.param("starting_after")
        if after and after not in {e.id for e in district.events}:
            return _message(400, "starting_after is not an event in the 30-day window")
        types = set(request.query.get("record_type", []))
        events = [self._event_json(e) for e in district.events if not types or e.type.split(".", 1)[0] in types]
        return self._page(request, version, "events", events)

    def _page(self, request: Request, version: str, collection: str, records: list[Json]) -> Response:
        """Clever paging: ascending ids, ``limit`` (default 100, above 10,000 -> 413), ``starting_after``,
        ``ending_before`` (``last`` meaning the newest), relative ``self``/``prev``/``next`` links."""
        raw_limit = request.param("limit")
        try:
            limit = int(raw_limit) if raw_limit else DEFAULT_LIMIT
        except ValueError:
            return _message(400, "limit must be an integer")
        if limit > MAX_LIMIT:
            return _message(413, f"limit must be at most {MAX_LIMIT}")
        if limit < 1:
            return _message(400, "limit must be positive")
        ordered = sorted(records, key=lambda r: str(r["id"]))
        after, before = request.param("starting_after"), request.param("ending_before")
        if after:
            ordered = [r for r in ordered if str(r["id"]) > after]
            page = ordered[:limit]
        elif before:
            if before != "last":
                ordered = [r for r in ordered if str(r["id"]) < before]
            page = ordered[-limit:]
        else:
            page = ordered[:limit]
        path = f"/{version}/{collection}"
        kept = [(k, v) for k, vs in request.query.items() if k not in ("starting_after", "ending_before") for v in vs]

        def uri(extra: list[tuple[str, str]]) -> str:
            """prev/next continue the listing asked for: a nested list (``/sections/{id}/users``) pages itself."""
            query = urlencode([*kept, *extra])
            return f"{request.path}?{query}" if query else request.path

        links = [
            {
                "rel": "self",
                "uri": request.path
                + ("?" + urlencode([(k, v) for k, vs in request.query.items() for v in vs]) if request.query else ""),
            }
        ]
        all_ids = [str(r["id"]) for r in sorted(records, key=lambda r: str(r["id"]))]
        if page and all_ids and str(page[0]["id"]) > all_ids[0]:
            links.append({"rel": "prev", "uri": uri([("ending_before", str(page[0]["id"]))])})
        if page and str(page[-1]["id"]) < all_ids[-1]:
            links.append({"rel": "next", "uri": uri([("starting_after", str(page[-1]["id"]))])})
        items = [{"data": r, "uri": f"{path}/{r['id']}"} for r in page]
        return _json(200, {"data": items, "links": links})
