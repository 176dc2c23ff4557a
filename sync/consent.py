"""Consent bases (COPPA, promise P7): who consented to a link, and what that allows us to sync.

``school``: an institution's licence, or a teacher acting for the school (the default of a
teacher's link). ``parent``: a parent's direct consent. Either allows the class roster with its
students; an integration with no recorded basis (one linked before bases were recorded) syncs
teachers and classes only, never a student.
"""

from __future__ import annotations

from mappers.records import ROLES, Role

BASES = ("school", "parent")
DEFAULT_BASIS = "school"


class BasisError(ValueError):
    """Not one of the bases we record."""


def checked(basis: str) -> str:
    if basis not in BASES:
        raise BasisError(f"unknown consent basis {basis[:40]!r} (one of: {', '.join(BASES)})")
    return basis


def roles_to_sync(basis: str | None) -> tuple[Role, ...]:
    """The roster roles a sync may fetch under ``basis``: students only with a recorded basis."""
    if basis in BASES:
        return ROLES
    return tuple(role for role in ROLES if role != "student")
