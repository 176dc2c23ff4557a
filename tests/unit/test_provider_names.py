"""A new provider touches only its own files plus one registry line (issue 19, item 2).

Lists the files each provider's name appears in and fails when a shared module names one. A
provider's names: its own (google, clever, microsoft) and those of its products and APIs
(classroom, graph, entra, azure, msal, oneroster is a standard, not a provider, so it is not one).
Case-insensitive and word-bounded; ``_`` counts as a word break, so ``google_client_id`` counts
and ``graphql`` or ``paragraph`` do not. Comments and docstrings count too: a shared module that
explains itself by one provider's behaviour is a shared module that knows that provider. Citing a
provider's documentation belongs in its own glue module, connector, mapper or emulator.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("google", "classroom", "clever", "microsoft", "graph", "entra", "azure", "msal")
PATTERN = re.compile(r"(?<![a-z0-9])(" + "|".join(NAMES) + r")(?![a-z0-9])", re.IGNORECASE)

SHARED = ("sync", "services", "store", "web", "cli", "worker", "providers", "devtools")
"""The folders whose modules are shared by every provider, the generic parts of providers/ and devtools/ included."""

REGISTRIES = {
    "providers/registry.py",  # one line per provider: the one place a provider is added
    "devtools/providers/__init__.py",  # devtools' registry, keyed by the same names
}
PER_PROVIDER = re.compile(r"^(providers|devtools/providers)/(google|clever|microsoft)\.py$")

TODO_NOT_YET_MOVED = {
    # TODO(issue 19): the bench scenarios and the demo's chapters still live in the generic devtools modules;
    # they move to devtools/providers/<name>.py next, and these lines go.
    "devtools/bench.py",
    "devtools/demo.py",
    "devtools/fleet_bench.py",
    # TODO(issue 19): the command line's help texts and examples still name providers; they come from the registry next.
    "cli/dev.py",
    "cli/link.py",
    "cli/runs.py",
    "cli/serve.py",
    # TODO(issue 19): user-facing texts (a refused district token's outcome and retry reason, the OpenAPI example);
    # they move to the provider's row so that the texts stay word for word.
    "sync/outcomes.py",
    "worker/retry_policy.py",
    "web/linking.py",
}


def _shared_files() -> list[str]:
    files = []
    for folder in SHARED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in REGISTRIES or PER_PROVIDER.match(relative) or "/alembic/" in relative:
                continue
            files.append(relative)
    return files


def naming(relative: str) -> list[str]:
    """``line: name`` for every mention of a provider's name in the file."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    return [
        f"{number}: {match.group(0)}"
        for number, line in enumerate(text.splitlines(), start=1)
        for match in PATTERN.finditer(line)
    ]


def test_the_pattern_counts_what_it_should() -> None:
    said = "settings.google_client_id; Graph's $batch; ROSTERSYNC_CLEVER_API_BASE; MicrosoftRoster"
    assert [m.group(0).lower() for m in PATTERN.finditer(said)] == ["google", "graph", "clever"]
    assert not PATTERN.search("paragraph, graphql, googled, cleverly, microsoftonline")


def test_no_shared_module_names_a_provider() -> None:
    offenders = {
        relative: found
        for relative in _shared_files()
        if relative not in TODO_NOT_YET_MOVED and (found := naming(relative))
    }
    listing = "\n".join(f"{relative}: {', '.join(found[:6])}" for relative, found in sorted(offenders.items()))
    assert not offenders, f"{len(offenders)} shared modules name a provider:\n{listing}"
