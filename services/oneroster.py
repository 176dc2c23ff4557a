"""An integration's current roster as OneRoster 1.2-style bulk CSV files, zipped (P9, portability).

Built from the integration export (store.rights), so it can only hold what is stored: every column
of the OneRoster files is present so a district's tools can read them, and a column we do not store
stays empty rather than being guessed. People, teachers included, are identified by their pseudonym
``sourcedId``: no provider id is stored for anyone (P1). a provider may keep a teacher's full name only, so
it goes whole into ``givenName``. Soft-deleted rows are left out (a bulk file lists what is current);
the JSON export has them.

Every cell is made safe to open in a spreadsheet (OWASP, CSV injection): a class title, a section
or a teacher's name comes from the provider, where anyone who can name a class can write
``=HYPERLINK(..)`` or ``+cmd|..``. A cell a spreadsheet would read as a formula starts with a
single quote, which it shows as text; the value is the rest of the cell, unchanged.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

CLASSES_COLUMNS = (
    "sourcedId",
    "status",
    "dateLastModified",
    "title",
    "grades",
    "courseSourcedId",
    "classCode",
    "classType",
    "location",
    "schoolSourcedId",
    "termSourcedIds",
    "subjects",
    "subjectCodes",
    "periods",
)
USERS_COLUMNS = (
    "sourcedId",
    "status",
    "dateLastModified",
    "enabledUser",
    "username",
    "userIds",
    "givenName",
    "familyName",
    "middleName",
    "identifier",
    "email",
    "sms",
    "phone",
    "agentSourcedIds",
    "grades",
    "password",
    "userMasterIdentifier",
    "resourceSourcedIds",
    "preferredGivenName",
    "preferredMiddleName",
    "preferredFamilyName",
    "primaryOrgSourcedId",
    "pronouns",
)
ROLES_COLUMNS = (
    "sourcedId",
    "status",
    "dateLastModified",
    "userSourcedId",
    "roleType",
    "role",
    "orgSourcedId",
    "userProfileSourcedId",
    "beginDate",
    "endDate",
)
ENROLLMENTS_COLUMNS = (
    "sourcedId",
    "status",
    "dateLastModified",
    "classSourcedId",
    "schoolSourcedId",
    "userSourcedId",
    "role",
    "primary",
    "beginDate",
    "endDate",
)
FILES = ("classes.csv", "users.csv", "roles.csv", "enrollments.csv")


_FORMULA_START = re.compile(r"""(^|[;\t\r\n])(?=[\s"]*[=+\-@]|[\t\r])""")
"""Where a spreadsheet could start a cell that runs: the value's start, or after a separator that a
reader of another locale splits on (``;``, tab) or a line break (the comma is the file's own
separator: a cell holding one is quoted whole). It runs when it starts with ``= + - @``, after
blanks or a double quote too, or with a tab or a carriage return (OWASP's list)."""


def spreadsheet_safe(value: str) -> str:
    """The value, with a single quote where a spreadsheet would otherwise start a formula."""
    return _FORMULA_START.sub(lambda start: start.group(1) + "'", value)


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: spreadsheet_safe(value) if isinstance(value, str) else value
                for key, value in row.items()
                if value is not None
            }
        )
    return buffer.getvalue()


def _manifest() -> str:
    rows = [
        {"propertyName": "manifest.version", "value": "1.0"},
        {"propertyName": "oneroster.version", "value": "1.2"},
        *({"propertyName": f"file.{name[:-4]}", "value": "bulk"} for name in FILES),
        {"propertyName": "source.systemName", "value": "rostersync"},
    ]
    return _csv(("propertyName", "value"), rows)


def csv_files(export: dict[str, Any]) -> dict[str, str]:
    """File name -> CSV text, from one integration export."""
    school = export["integration"]["tenant"]
    classes = [c for c in export["classes"] if c["removed_at"] is None]
    people = [p for p in export["people"] if p["removed_at"] is None]
    users: dict[str, dict[str, Any]] = {}
    for person in people:  # one user per pseudonym, even when it holds two roles (a teacher's row has the name)
        if person["pseudonym"] not in users or person["role"] == "teacher":
            users[person["pseudonym"]] = person
    current_classes = {c["external_id"] for c in classes}
    enrollments = [
        e for e in export["enrollments"] if e["removed_at"] is None and e["class_external_id"] in current_classes
    ]
    return {
        "manifest.csv": _manifest(),
        "classes.csv": _csv(
            CLASSES_COLUMNS,
            (
                {
                    "sourcedId": c["external_id"],
                    "title": c["name"],
                    "classCode": c["section"],
                    "classType": "scheduled",
                    "schoolSourcedId": school,
                }
                for c in classes
            ),
        ),
        "users.csv": _csv(
            USERS_COLUMNS,
            (
                {
                    "sourcedId": p["pseudonym"],
                    "enabledUser": "true",
                    "givenName": p["display_name"],
                    "email": p["email_address"],
                    "primaryOrgSourcedId": school,
                }
                for p in users.values()
            ),
        ),
        "roles.csv": _csv(
            ROLES_COLUMNS,
            (
                {
                    "sourcedId": f"{p['pseudonym']}-{p['role']}",
                    "userSourcedId": p["pseudonym"],
                    "roleType": "primary",
                    "role": p["role"],
                    "orgSourcedId": school,
                }
                for p in people
            ),
        ),
        "enrollments.csv": _csv(
            ENROLLMENTS_COLUMNS,
            (
                {
                    "sourcedId": f"{e['class_external_id']}-{e['pseudonym']}",
                    "classSourcedId": e["class_external_id"],
                    "schoolSourcedId": school,
                    "userSourcedId": e["pseudonym"],
                    "role": e["role"],
                }
                for e in enrollments
            ),
        ),
    }


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
