"""The provider side of the platform model test (tests/features/test_platform_model.py): roster changes.

Each provider's emulator changes a roster in its own words (Google suspends and renames courses, Clever
unshares sections, Microsoft deletes and restores classes); ``Changes`` puts them behind one set of
moves a seeded walk can pick from: a class leaves or comes back, is renamed, a student joins, leaves or
rejoins a class, a teacher is renamed. Every choice comes from the walk's ``random.Random``, and every
list it chooses from is sorted, so one seed is one walk.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from emulators.clever import CleverEmulator
from emulators.google import GoogleEmulator
from emulators.microsoft import MicrosoftEmulator
from tests.provider_worlds import World


@dataclass
class Changes:
    """Roster moves at one provider; ``gone`` are the classes taken away (to bring back)."""

    classes: Callable[[], list[str]]
    """The classes the provider lists now, of the organisation the walk links."""
    students: Callable[[str], list[str]]
    add_student: Callable[[str], str]
    remove: Callable[[str], None]
    restore: Callable[[str], None]
    rename: Callable[[str, int], None]
    teachers: Callable[[], list[str]]
    rename_teacher: Callable[[str, int], None]
    world: World
    gone: set[str] = field(default_factory=set)

    def move(self, rng: random.Random, step: int) -> str:
        """One roster change chosen by ``rng``; returns its name (the walk counts what it did)."""
        kinds = ["add_student", "unenrol", "enrol", "rename_class", "remove_class", "restore_class", "rename_teacher"]
        kind = rng.choice(kinds)
        classes = sorted(self.classes())
        if not classes and self.gone:
            kind = "restore_class"  # nothing listed: the only roster change there is to make is bringing one back
        if kind == "remove_class" and len(classes) > 1:
            klass = rng.choice(classes)
            self.remove(klass)
            self.gone.add(klass)
        elif kind == "restore_class" and self.gone:
            klass = rng.choice(sorted(self.gone))
            self.restore(klass)
            self.gone.discard(klass)
        elif kind == "rename_class" and classes:
            self.rename(rng.choice(classes), step)
        elif kind == "rename_teacher":
            self.rename_teacher(rng.choice(sorted(self.teachers())), step)
        elif kind in ("add_student", "unenrol", "enrol") and classes:
            return self._student_move(kind, rng, rng.choice(classes))
        else:
            return "nothing"
        return kind

    def _student_move(self, kind: str, rng: random.Random, klass: str) -> str:
        members = sorted(self.students(klass))
        others = sorted({s for c in self.classes() for s in self.students(c)} - set(members))
        if kind == "add_student":
            self.add_student(klass)
        elif kind == "unenrol" and members:
            assert self.world.unenrol is not None
            self.world.unenrol(klass, rng.choice(members))
        elif kind == "enrol" and others:
            assert self.world.enrol is not None
            self.world.enrol(klass, rng.choice(others))
        else:
            return "nothing"
        return kind

    def mass_removal(self) -> None:
        """Every class of the link leaves the listing with no word why: what the breaker holds."""
        before = set(self.classes())
        self.world.empty_listing()
        self.gone.update(before - set(self.classes()))


def changes_of(world: World) -> Changes:
    emulator = world.emulator
    if isinstance(emulator, GoogleEmulator):
        return _google(world, emulator)
    if isinstance(emulator, CleverEmulator):
        return _clever(world, emulator)
    assert isinstance(emulator, MicrosoftEmulator)
    return _microsoft(world, emulator)


def _google(world: World, emu: GoogleEmulator) -> Changes:
    def classes() -> list[str]:
        return [c for t in emu.teacher_ids for c in emu.course_ids_of(t, states=["ACTIVE"])]

    def rename(course: str, step: int) -> None:
        emu.rename_course(course, name=f"Course {step}", section=f"Period {step % 7}")

    return Changes(
        classes,
        emu.student_ids_of,
        emu.add_student,
        lambda course: emu.set_course_state(course, "SUSPENDED"),
        lambda course: emu.set_course_state(course, "ACTIVE"),
        rename,
        lambda: list(emu.teacher_ids),
        lambda teacher, step: emu.name_user(teacher, "Teacher", f"Renamed {step}"),
        world,
    )


def _clever(world: World, emu: CleverEmulator) -> Changes:
    district = emu.district_ids[0]
    return Changes(
        lambda: emu.section_ids(district),
        emu.students_of,
        emu.add_student,
        emu.unshare_section,
        emu.reshare_section,
        lambda section, step: emu.rename_section(section, f"Section {step}"),
        lambda: emu.teacher_ids(district),
        lambda teacher, _step: emu.rename_user(teacher),
        world,
    )


def _microsoft(world: World, emu: MicrosoftEmulator) -> Changes:
    tenant = emu.tenant_ids[0]

    def members(klass: str) -> list[str]:
        teachers = set(emu.teacher_ids(tenant))
        return [m for m in emu.members_of(klass) if m not in teachers]

    def remove(klass: str) -> None:
        emu.delete_class(klass)
        emu.expire_delta_tokens(tenant)  # class delta never reports a deleted class: the next sync lists in full

    return Changes(
        lambda: emu.class_ids(tenant),
        members,
        emu.add_student,
        remove,
        emu.recreate_class,
        lambda klass, step: emu.rename_class(klass, f"Class {step}"),
        lambda: emu.teacher_ids(tenant),
        lambda teacher, _step: emu.rename_user(teacher),
        world,
    )
