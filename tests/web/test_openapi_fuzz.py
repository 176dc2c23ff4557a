"""Schemathesis against /openapi.json, in process, with an admin token: no operation answers 5xx.

Driven through schemathesis' programmatic API (one Hypothesis run per operation) rather than its
pytest plugin's lazy fixtures, which do not work with pytest 9 yet.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from emulators.google import GoogleEmulator
from store.runtime import build_runtime, set_runtime
from tests.conftest import link_teacher
from tests.webkit import AUTH, web_settings
from web.app import create_app
from worker import broker as brokers

EXAMPLES = 25


def test_no_operation_answers_5xx(emulator: GoogleEmulator, pg_url: str) -> None:
    # Thousands of calls from one client: the per-client limits (tested in test_hygiene.py) are off here.
    rt = build_runtime(web_settings(emulator, pg_url, admin_failures_per_minute=0, link_requests_per_minute=0))
    try:
        app = create_app(rt)
        link_teacher(rt, emulator, 0)  # something real to look at, revoke and sync
        link_teacher(rt, emulator, 1)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        seen: list[tuple[str, str, int]] = []

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def no_5xx(case: Any) -> None:
                response = case.call(headers=AUTH)
                seen.append((case.method, case.path, response.status_code))
                assert response.status_code < 500, (case.method, case.formatted_path, response.text[:200])
                if case.path.startswith("/admin/"):
                    assert case.call().status_code == 401

            no_5xx()
        assert len({(method, path) for method, path, _ in seen}) == len(operations)
    finally:
        set_runtime(None)
        brokers.shutdown()
        rt.engine.dispose()
