"""The providers' own schemas as hypothesis strategies of raw records (tests only).

hypothesis-jsonschema no longer runs on the Hypothesis this project pins (its object strategy calls a
Hypothesis internal that is gone), so the strategies come from schemathesis, already a dev dependency:
each schema is the JSON body of one synthetic ``POST /<name>`` operation of a small API document, and
``APIOperation.as_strategy`` draws bodies that fit it (``POSITIVE``) or break it (``NEGATIVE``).

- Clever: the Swagger 2.0 ``definitions`` of ``tests/specs`` (copies of the shared specs), v3.0, v3.1 and
  the v3.0 events document, used as they are (schemathesis reads ``x-nullable`` and resolves the
  ``$ref``s). Events get one conversion: each event definition's ``type`` is pinned to its definition
  name, which is what the events document's ``discriminator`` means. A v3.1 district's events carry
  v3.1 records, so the v3.1 variant swaps v3.1's record definitions into the events document.
- Google: the Classroom discovery document shipped inside google-api-python-client. Discovery schemas
  name a ``$ref`` by bare id and use Google-only formats (``google-datetime``, ``int64`` on strings);
  the conversion points the refs at ``components/schemas``, drops those formats, and ``type: any``
  becomes the empty schema (OpenAPI 3.1, so JSON Schema 2020-12 semantics).
- Microsoft: Graph publishes CSDL, not JSON Schema, so ``educationClass`` and ``educationUser`` are
  written out below from providers.md 3.2 and what ``emulators/microsoft.py`` serves.

Objects keep JSON Schema's default of allowing properties nobody documented yet: a field a provider
adds tomorrow is generated too, and must be dropped by the mappers' allowlist. None of these schemas
marks anything required, so a drawn record would rarely hold an id, a name and a role at once; the
properties every live record carries (providers.md 1.4, 2.4, 3.2) are marked ``required`` in
``LIVE_REQUIRED``, and the ``NEGATIVE`` draws still leave them out or break them.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import googleapiclient
import schemathesis
import yaml
from hypothesis import strategies as st
from schemathesis import GenerationMode

SPECS = Path(__file__).parent / "specs"
Schema = dict[str, Any]
_DISCOVERY_ONLY = ("id", "description", "enumDescriptions", "readOnly", "deprecated", "annotations", "format")


LIVE_REQUIRED: dict[str, list[str]] = {
    # Clever (both versions; events carry the same records)
    "Section": ["id", "name", "students", "teachers"],
    "User": ["id", "name", "email", "roles"],
    "Name": ["first", "last"],
    # Google Classroom
    "Course": ["id", "name", "courseState"],
    "Student": ["userId", "profile"],
    "Teacher": ["userId", "profile"],
    "UserProfile": ["id", "name", "emailAddress"],
    # Microsoft Graph
    "educationClass": ["id", "displayName"],
    "educationUser": ["id", "primaryRole", "displayName", "mail"],
}


def _require(definitions: dict[str, Any]) -> dict[str, Any]:
    for name, required in LIVE_REQUIRED.items():
        if name in definitions:
            target = definitions[name]
            target = next((part for part in target.get("allOf", []) if "properties" in part), target)
            target["required"] = sorted({*target.get("required", []), *required})
    return definitions


def _reachable(definitions: dict[str, Any], names: list[str], prefix: str) -> dict[str, Any]:
    """Only the definitions ``names`` refer to, directly or not: a smaller document loads faster."""
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted or name not in definitions:
            continue
        wanted.add(name)
        text = json.dumps(definitions[name])
        todo += [ref.split('"')[0] for ref in text.split(f'"$ref": "{prefix}')[1:]]
    return {name: definitions[name] for name in sorted(wanted)}


def _operations(names: list[str], ref_prefix: str) -> dict[str, Any]:
    return {f"/{name}": {"post": _body_operation(name, ref_prefix)} for name in names}


def _body_operation(name: str, ref_prefix: str) -> dict[str, Any]:
    ref = {"$ref": f"{ref_prefix}{name}"}
    if ref_prefix.startswith("#/definitions/"):  # Swagger 2.0: a body parameter
        return {
            "parameters": [{"in": "body", "name": "body", "required": True, "schema": ref}],
            "responses": {"200": {"description": "ok"}},
        }
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
        "responses": {"200": {"description": "ok"}},
    }


@functools.cache
def _loaded(document: str) -> Any:
    return schemathesis.openapi.from_dict(json.loads(document))


def _records(document: Schema, name: str, mode: GenerationMode) -> st.SearchStrategy[Any]:
    operation = _loaded(json.dumps(document, sort_keys=True))[f"/{name}"]["POST"]
    return operation.as_strategy(generation_mode=mode).map(lambda case: case.body)


def records(document: Schema, name: str, *, breaking: bool = True) -> st.SearchStrategy[Any]:
    """Raw records of schema ``name``: mostly fitting it, and (``breaking``) some that break it."""
    fitting = _records(document, name, GenerationMode.POSITIVE)
    if not breaking:
        return fitting
    return st.one_of(fitting, fitting, fitting, _records(document, name, GenerationMode.NEGATIVE))


# ------------------------------------------------------------------------------------------ Clever
@functools.cache
def _swagger(name: str) -> Schema:
    document: Schema = yaml.safe_load((SPECS / name).read_text())
    return document


def clever_document(names: list[str], version: str = "v3.0") -> Schema:
    """A Swagger 2.0 document of the Clever spec of ``version`` with one body operation per definition name."""
    definitions = _require(copy.deepcopy(_swagger(f"clever-{version}.yml")["definitions"]))
    return {
        "swagger": "2.0",
        "info": {"title": f"clever {version} records", "version": version},
        "basePath": "/",
        "consumes": ["application/json"],
        "paths": _operations(names, "#/definitions/"),
        "definitions": _reachable(definitions, names, "#/definitions/"),
    }


def clever_event_types() -> list[str]:
    return sorted(key for key in _swagger("clever-v3.0-events.yml")["definitions"] if "." in key)


def clever_events_document(version: str = "v3.0") -> Schema:
    """The events document, each event's ``type`` pinned to its name; ``v3.1``: with v3.1's records inside."""
    definitions = copy.deepcopy(_swagger("clever-v3.0-events.yml")["definitions"])
    if version != "v3.0":
        definitions.update(copy.deepcopy(_swagger(f"clever-{version}.yml")["definitions"]))
    _require(definitions)
    for event_type in clever_event_types():
        definitions[event_type]["allOf"].append(
            {"properties": {"type": {"type": "string", "enum": [event_type]}}, "required": ["type", "data"]}
        )
    return {
        "swagger": "2.0",
        "info": {"title": f"clever {version} events", "version": version},
        "basePath": "/",
        "consumes": ["application/json"],
        "paths": _operations(clever_event_types(), "#/definitions/"),
        "definitions": _reachable(definitions, clever_event_types(), "#/definitions/"),
    }


# ------------------------------------------------------------------------------------------ Google
def _from_discovery(node: Any) -> Any:
    if isinstance(node, list):
        return [_from_discovery(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": f"#/components/schemas/{node['$ref']}"}
    converted: Schema = {}
    for key, value in node.items():
        if key in _DISCOVERY_ONLY:
            continue
        if key == "properties":
            converted[key] = {name: _from_discovery(sub) for name, sub in value.items()}
        elif key == "enum":
            converted[key] = value
        else:
            converted[key] = _from_discovery(value)
    if converted.get("type") == "any":
        del converted["type"]
    return converted


@functools.cache
def _discovery_schemas() -> str:
    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "classroom.v1.json"
    document = json.loads(path.read_text())
    return json.dumps({name: _from_discovery(schema) for name, schema in document["schemas"].items()})


def _openapi31(title: str, names: list[str], schemas: Schema) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": _operations(names, "#/components/schemas/"),
        "components": {"schemas": _reachable(schemas, names, "#/components/schemas/")},
    }


def google_document(names: list[str]) -> Schema:
    """The Classroom schemas (``Course``, ``Student``, ``Teacher``, ``UserProfile``) as body operations."""
    return _openapi31("classroom v1 records", names, _require(json.loads(_discovery_schemas())))


# --------------------------------------------------------------------------------------- Microsoft
_TEXT: Schema = {"type": ["string", "null"]}
_ADDRESS: Schema = {
    "type": ["object", "null"],
    "properties": {key: _TEXT for key in ("street", "city", "state", "postalCode", "countryOrRegion")},
}
_IDENTITY_SET: Schema = {
    "type": ["object", "null"],
    "properties": {"user": {"type": ["object", "null"], "properties": {"id": _TEXT, "displayName": _TEXT}}},
}
GRAPH_DEFINITIONS: dict[str, Schema] = {
    "educationClass": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "displayName": {"type": "string"},
            "description": _TEXT,
            "classCode": _TEXT,
            "externalId": _TEXT,
            "externalName": _TEXT,
            "externalSource": {"enum": ["sis", "manual", "unknownFutureValue", None]},
            "externalSourceDetail": _TEXT,
            "grade": _TEXT,
            "mailNickname": _TEXT,
            "term": {
                "type": ["object", "null"],
                "properties": {
                    "externalId": _TEXT,
                    "displayName": _TEXT,
                    "startDate": {"type": ["string", "null"], "format": "date"},
                    "endDate": {"type": ["string", "null"], "format": "date"},
                },
            },
            "createdBy": _IDENTITY_SET,
        },
    },
    "educationUser": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "primaryRole": {"enum": ["student", "teacher", "none", "unknownFutureValue"]},
            "accountEnabled": {"type": ["boolean", "null"]},
            "userType": _TEXT,
            "externalSource": {"enum": ["sis", "manual", "unknownFutureValue", None]},
            "externalSourceDetail": _TEXT,
            "onPremisesInfo": {"type": ["object", "null"], "properties": {"immutableId": _TEXT}},
            "displayName": _TEXT,
            "givenName": _TEXT,
            "middleName": _TEXT,
            "surname": _TEXT,
            "mail": _TEXT,
            "mailNickname": _TEXT,
            "userPrincipalName": _TEXT,
            "mobilePhone": _TEXT,
            "businessPhones": {"type": "array", "items": {"type": "string"}},
            "mailingAddress": _ADDRESS,
            "residenceAddress": _ADDRESS,
            "preferredLanguage": _TEXT,
            "usageLocation": _TEXT,
            "department": _TEXT,
            "student": {
                "type": ["object", "null"],
                "properties": {
                    "birthDate": {"type": ["string", "null"], "format": "date"},
                    "externalId": _TEXT,
                    "gender": {"enum": ["female", "male", "other", "unknownFutureValue", None]},
                    "grade": _TEXT,
                    "graduationYear": _TEXT,
                    "studentNumber": _TEXT,
                },
            },
            "teacher": {"type": ["object", "null"], "properties": {"externalId": _TEXT, "teacherNumber": _TEXT}},
            "relatedContacts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "displayName": _TEXT,
                        "emailAddress": _TEXT,
                        "mobilePhone": _TEXT,
                        "relationship": {
                            "enum": ["parent", "relative", "aide", "doctor", "guardian", "child", "other"]
                        },
                        "accessConsent": {"type": ["boolean", "null"]},
                    },
                },
            },
            "createdBy": _IDENTITY_SET,
            "showInAddressList": {"type": ["boolean", "null"]},
            "passwordPolicies": _TEXT,
        },
    },
}


def graph_document(names: list[str]) -> Schema:
    """``educationClass`` / ``educationUser`` as body operations."""
    return _openapi31("graph education records", names, _require(copy.deepcopy(GRAPH_DEFINITIONS)))
