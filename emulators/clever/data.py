"""The Clever emulator's state: districts, users and sections with every published property, and their JSON."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from emulators.core import EmulatorCore, Json, Response, json_body
from emulators.district import GIVEN_NAMES, District, Person
from emulators.oauth import (
    CodeBook,
    TokenLedger,
)

AUTHORIZE_PATH = "/oauth/authorize"
TOKENS_PATH = "/oauth/tokens"
USERINFO_PATH = "/userinfo"
API_VERSIONS = ("v3.0", "v3.1")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
EVENT_WINDOW = timedelta(days=30)
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
    encoded: bytes = b""
    """The event's JSON as an events page carries it, written when it is recorded (``_record_event``)."""


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


class CleverState(EmulatorCore):
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
        super().__init__(host=host, port=port, cert_dir=cert_dir, client_id=client_id, client_secret=client_secret)
        self._seed = seed
        self._version = version
        self._rate_limit = rate_limit
        self._counter = itertools.count(1)
        self._users: dict[str, _CleverUser] = {}
        self._sections: dict[str, _Section] = {}
        self._districts: dict[str, _CleverDistrict] = {}
        self._sources: dict[str, District] = {}
        self._past_strings: set[str] = set()
        self._ledger = TokenLedger()
        self._codes = CodeBook()
        self._sso: dict[str, _SsoToken] = {}
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
        user.pii = _student_pii(person, rng, district.school_id) if role == "student" else _teacher_pii(person, rng)
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
        district.token = self._ledger.mint_hex(20)
        district.token_id = self._new_id()
        district.token_created = datetime.now(UTC)

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
            return set(self._ledger.issued)

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
        event = _Event(self._new_id(), kind, datetime.now(UTC), record, previous)
        event.encoded = json_body(self._event_json(event))  # an event never changes: a page joins these bytes
        district.events.append(event)

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


def _common_pii(person: Person, rng: random.Random) -> Json:
    """What every Clever user carries: SIS, state and legacy ids, the district username, free-form ``ext``."""
    number = person.number
    username = f"{person.given_name[:1].lower()}{person.family_name.lower()}{number}"
    return {
        "sis_id": f"SIS-{_digest('sis', person.id, length=10).upper()}",
        "state_id": f"ST{rng.randrange(10**9, 10**10)}",
        "legacy_id": f"legacy-{_digest('legacy', person.id, length=12)}",
        "credentials": {"district_username": username},
        "ext": {
            "locker_combination": f"{rng.randrange(10, 99)}-{rng.randrange(10, 99)}-{number}",
            "sis_note": f"canary-ext-{_digest('ext', person.id, length=10)}",
        },
    }


def _teacher_pii(person: Person, rng: random.Random) -> Json:
    common = _common_pii(person, rng)
    return {
        **common,
        "teacher_number": f"T{rng.randrange(10**5, 10**6)}",
        "title": rng.choice(("Ms.", "Mr.", "Mx.", "Dr.")),
    }


def _student_pii(person: Person, rng: random.Random, school_id: str) -> Json:
    """Every student property of v3.0 and (under ``v3.1``) v3.1, plus one no definition names."""
    common = _common_pii(person, rng)
    number = person.number
    grade = rng.randrange(6, 13)
    street = f"{rng.randrange(100, 9999)} {rng.choice(_STREETS)} Lane"
    language, code = rng.choice(_LANGUAGES)
    disability_code, disability_type = rng.choice(_DISABILITIES)
    return {
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
            {"school": school_id, "start_date": _iso(_EPOCH), "end_date": _iso(_EPOCH + timedelta(days=300))}
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
