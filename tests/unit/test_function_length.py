"""No product function over 60 lines (issue 19, item 6): a long function is split by step, and this keeps it so.

Counted from the ``def`` line to the last line of the body, nested functions and methods included.
Alembic revisions are left out: a migration that has shipped is a record of what ran, never edited.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("settings.py", "connectors", "mappers", "store", "providers", "sync", "services", "worker", "web")
PRODUCT += ("devtools", "cli", "emulators")
LIMIT = 60


def _product_files() -> list[Path]:
    files: list[Path] = []
    for name in PRODUCT:
        path = ROOT / name
        found = [path] if path.is_file() else sorted(path.rglob("*.py"))
        files.extend(file for file in found if "alembic" not in file.relative_to(ROOT).parts)
    return files


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function in ``source`` longer than the limit."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > LIMIT
    ]


def test_the_count_sees_a_long_method_and_spares_a_short_one() -> None:
    body = "\n".join(f"        x = {n}" for n in range(LIMIT))
    source = f"class A:\n    def long(self):\n{body}\n\n    def short(self):\n        return 1\n"
    assert long_functions(source) == [("long", LIMIT + 1)]


def test_the_product_is_read_whole() -> None:
    files = {file.relative_to(ROOT).as_posix() for file in _product_files()}
    assert {"sync/cycle.py", "cli/app.py", "emulators/oauth.py", "settings.py"} <= files
    assert not any("alembic/versions" in file for file in files)


def test_no_product_function_is_over_sixty_lines() -> None:
    offenders = [
        f"{file.relative_to(ROOT).as_posix()}: {name} ({lines} lines)"
        for file in _product_files()
        for name, lines in long_functions(file.read_text(encoding="utf-8"))
    ]
    assert not offenders, "split by step:\n" + "\n".join(offenders)
