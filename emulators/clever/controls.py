"""The Clever emulator's test controls: what a test does to districts, tokens, sections and users."""

from __future__ import annotations

from datetime import UTC, datetime

from emulators.clever.api import CleverApi
from emulators.clever.data import (
    _digest,
)


class CleverEmulator(CleverApi):
    """Clever for ``districts`` synthetic districts plus Library (teacher-shared) teachers."""

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
