"""Google's ``fields`` partial responses: the selector grammar, the schemas it is checked against, trimming."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

from emulators.core import Json

# ------------------------------------------------------------------------------ resource schemas
# Field names per message type, as the server knows them (the discovery document plus the two
# fields clients do not know about). A value names the message type of a nested field, None marks
# a scalar. Repeated fields are listed like singular ones: a selector applies to every element.
_SCHEMAS: dict[str, dict[str, str | None]] = {
    "ListCoursesResponse": {"courses": "Course", "nextPageToken": None},
    "ListStudentsResponse": {"students": "Student", "nextPageToken": None},
    "ListTeachersResponse": {"teachers": "Teacher", "nextPageToken": None},
    "Course": {
        "id": None,
        "name": None,
        "section": None,
        "descriptionHeading": None,
        "description": None,
        "room": None,
        "ownerId": None,
        "creationTime": None,
        "updateTime": None,
        "enrollmentCode": None,
        "courseState": None,
        "alternateLink": None,
        "teacherGroupEmail": None,
        "courseGroupEmail": None,
        "teacherFolder": "DriveFolder",
        "courseMaterialSets": "CourseMaterialSet",
        "guardiansEnabled": None,
        "calendarId": None,
        "gradebookSettings": "GradebookSettings",
        "subject": None,
        "levels": None,
        "aiTutorNotes": None,
    },
    "DriveFolder": {"id": None, "title": None, "alternateLink": None},
    "CourseMaterialSet": {"title": None, "materials": "CourseMaterial"},
    "CourseMaterial": {"driveFile": None, "youTubeVideo": None, "link": None, "form": None},
    "GradebookSettings": {
        "calculationType": None,
        "displaySetting": None,
        "gradeCategories": "GradeCategory",
    },
    "GradeCategory": {"id": None, "name": None, "weight": None, "defaultGradeDenominator": None},
    "Student": {
        "courseId": None,
        "userId": None,
        "profile": "UserProfile",
        "studentWorkFolder": "DriveFolder",
    },
    "Teacher": {"courseId": None, "userId": None, "profile": "UserProfile"},
    "UserProfile": {
        "id": None,
        "name": "Name",
        "emailAddress": None,
        "photoUrl": None,
        "permissions": "GlobalPermission",
        "verifiedTeacher": None,
        "nickname": None,
    },
    "Name": {"givenName": None, "familyName": None, "fullName": None},
    "GlobalPermission": {"permission": None},
}

# ------------------------------------------------------------------------- fields partial response
FieldTree: TypeAlias = dict[str, "FieldTree | None"]
"""Parsed `fields` selector: name -> sub-selection, None meaning the whole sub-tree."""

_NAME_RE = re.compile(r"\s*(\*|[A-Za-z_][A-Za-z0-9_]*)\s*")


class FieldsError(ValueError):
    """A `fields` selector that is malformed or names an unknown field: Google answers 400."""


class _FieldsParser:
    """Recursive descent over `a,b`, `a/b`, `a(b,c)` and `*`, nested to any depth."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def parse(self) -> FieldTree:
        tree = self._list()
        if self._pos != len(self._text):
            raise FieldsError(f"Invalid field selection {self._text[self._pos :]!r}")
        return tree

    def _peek(self) -> str:
        while self._pos < len(self._text) and self._text[self._pos].isspace():
            self._pos += 1
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _list(self) -> FieldTree:
        tree: FieldTree = {}
        self._selector(tree)
        while self._peek() == ",":
            self._pos += 1
            self._selector(tree)
        return tree

    def _name(self) -> str:
        match = _NAME_RE.match(self._text, self._pos)
        if match is None:
            raise FieldsError(f"Invalid field selection near {self._text[self._pos :]!r}")
        self._pos = match.end()
        return match.group(1)

    def _selector(self, tree: FieldTree) -> None:
        names = [self._name()]
        while self._peek() == "/":
            self._pos += 1
            names.append(self._name())
        node: FieldTree | None = None
        if self._peek() == "(":
            self._pos += 1
            node = self._list()
            if self._peek() != ")":
                raise FieldsError(f"Invalid field selection: missing ')' in {self._text!r}")
            self._pos += 1
        for name in reversed(names[1:]):
            node = {name: node}
        _merge_into(tree, names[0], node)


def _merge_into(tree: FieldTree, key: str, node: FieldTree | None) -> None:
    if key not in tree:
        tree[key] = node
        return
    existing = tree[key]
    if existing is None or node is None:
        tree[key] = None
        return
    for sub_key, sub_node in node.items():
        _merge_into(existing, sub_key, sub_node)


def _merged(first: FieldTree | None, second: FieldTree | None) -> FieldTree | None:
    if first is None or second is None:
        return None
    out: FieldTree = {}
    for tree in (first, second):
        for key, node in tree.items():
            _merge_into(out, key, node)
    return out


def parse_fields(text: str) -> FieldTree:
    """Parse a `fields` query value; raises FieldsError when it is malformed."""
    if not text.strip():
        raise FieldsError("Invalid field selection: empty")
    return _FieldsParser(text).parse()


def validate_fields(tree: FieldTree, schema: str, prefix: str = "") -> None:
    """Check every selected name against the resource schema (not the data: optional fields may be absent)."""
    known = _SCHEMAS[schema]
    for key, node in tree.items():
        where = f"{prefix}{key}"
        if key == "*":
            if node is not None:
                targets = [t for t in known.values() if t is not None]
                if not any(_fits(node, t) for t in targets):
                    raise FieldsError(f"Invalid field selection {where}")
            continue
        if key not in known:
            raise FieldsError(f"Invalid field selection {where}")
        target = known[key]
        if node is not None:
            if target is None:
                raise FieldsError(f"Invalid field selection {where}: the field has no sub-fields")
            validate_fields(node, target, where + "/")


def _fits(tree: FieldTree, schema: str) -> bool:
    try:
        validate_fields(tree, schema)
    except FieldsError:
        return False
    return True


def apply_fields(value: Any, tree: FieldTree) -> Any:
    """Trim a JSON value to the selection; lists are trimmed element by element."""
    if isinstance(value, list):
        return [apply_fields(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    out: Json = {}
    for key, item in value.items():
        if key in tree and "*" in tree:
            node = _merged(tree[key], tree["*"])
        elif key in tree:
            node = tree[key]
        elif "*" in tree:
            node = tree["*"]
        else:
            continue
        out[key] = item if node is None else apply_fields(item, node)
    return out
