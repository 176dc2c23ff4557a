"""The ASGI app: ``create_app(runtime)``; ``rostersync web`` serves it with uvicorn.

It starts with only the database URL, the keys and the admin tokens set: a provider without
client credentials is listed as not configured, its link page says so, nothing else fails.
With the in-memory broker (one machine), the syncs it asks for run in a worker thread of this
process; with Redis they go to the workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dramatiq
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from web import admin, health, holds, linking, rights
from web.auth import AdminAuth
from web.context import WebContext, new_metrics
from web.validation import validation_failed
from worker import broker as brokers
from worker.runtime import Runtime, set_runtime


def create_app(runtime: Runtime) -> FastAPI:
    set_runtime(runtime)  # the in-process actors use the same runtime
    broker = brokers.install(brokers.make_broker(runtime.settings))
    ctx = WebContext(runtime=runtime, broker=broker, metrics=new_metrics())
    health.metrics_registry(ctx)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker: dramatiq.Worker | None = None
        if brokers.is_in_memory(broker):
            broker.emit_after("process_boot")
            worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="rostersync",
        version="0.1.0",
        description="Teachers link their rosters; admins see and revoke integrations. See docs/web.md.",
        lifespan=lifespan,
    )
    app.state.rostersync = ctx
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.include_router(linking.router)
    app.include_router(admin.router)
    app.include_router(rights.router)
    app.include_router(holds.router)
    app.include_router(health.router)
    app.add_middleware(AdminAuth, tokens=runtime.settings.admin_token_list(), on_refused=ctx.metrics.admin_refused.inc)
    return app
