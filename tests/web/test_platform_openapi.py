"""Schemathesis over the /v1 operations of /openapi.json (issue 20, item 6), with a platform token.

Every answer must be a status the document lists for that operation, with a body of the documented
schema and content type, and never a 5xx; valid and invalid inputs both (positive and negative
generation). Each case is also sent with the real integration's id, so the 200 answers are checked
too, not only the 404s a random id gets. Same programmatic API as test_openapi_fuzz.py.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from emulators.google import GoogleEmulator
from store.runtime import build_runtime, set_runtime
from sync.cycle import run_sync
from tests.conftest import link_teacher
from tests.feedkit import forget, write_events
from tests.webkit import PLATFORM, web_settings
from web.app import create_app
from worker import broker as brokers

EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


def test_v1_answers_only_documented_statuses_and_schemas(emulator: GoogleEmulator, pg_url: str) -> None:
    rt = build_runtime(web_settings(emulator, pg_url, admin_failures_per_minute=0))
    try:
        app = create_app(rt)
        integration_id = link_teacher(rt, emulator, 0)
        assert run_sync(rt, integration_id).outcome == "ok"
        seqs = write_events(rt.engine, [("member.removed", integration_id, {"class": "c", "person": "p"})] * 30)
        forget(rt.engine, seqs[9])  # some positions are 410 now
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [op.ok() for op in schema.get_all_operations() if op.ok().path.startswith("/v1/")]
        assert len(operations) == 6
        statuses: set[tuple[str, int]] = set()
        for operation in operations:
            for mode in GenerationMode:

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
                def conforms(case: Any) -> None:
                    if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int):
                        case.query["wait"] = 0  # the long poll is tested in test_platform.py, not waited for here
                    statuses.add((case.path, case.call_and_validate(headers=PLATFORM, checks=CHECKS).status_code))
                    if case.path_parameters and "integration_id" in case.path_parameters:
                        case.path_parameters["integration_id"] = integration_id
                        statuses.add((case.path, case.call_and_validate(headers=PLATFORM, checks=CHECKS).status_code))

                conforms()
        answered = {status for _, status in statuses}
        assert {200, 404, 410, 422} <= answered, answered
    finally:
        set_runtime(None)
        brokers.shutdown()
        rt.engine.dispose()
