"""The ASGI app: ``create_app(runtime)``; ``rostersync web`` serves it with uvicorn (web.serving).

It starts with only the database URL, the keys and the admin tokens set: a provider without
client credentials is listed as not configured, its link page says so, nothing else fails.
With the in-memory broker (one machine), the syncs it asks for run in a worker thread of this
process; with Redis they go to the workers.

The edge (docs/web.md, "HTTP hygiene"): security headers on every response; no trailing-slash
redirect (its Location would echo the Host header) and, with ``ALLOWED_HOSTS``, only those
hosts answered; per-client limits on wrong admin tokens and on linking; ``/openapi.json``,
``/docs`` and ``/metrics`` each behind a setting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dramatiq
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from settings import Settings
from store.runtime import Runtime, set_runtime
from web import admin, apidocs, health, holds, linking, platform, rights
from web.auth import ADMIN_PREFIX, PLATFORM_PREFIX, AdminAuth
from web.context import WebContext, new_metrics
from web.headers import SecurityHeaders
from web.ratelimit import Limiter, LinkRateLimit
from web.validation import validation_failed
from worker import broker as brokers

LINK_PREFIXES = ("/link/", "/oauth/")


def create_app(runtime: Runtime) -> FastAPI:
    set_runtime(runtime)  # the in-process actors use the same runtime
    settings = runtime.settings
    broker = brokers.install(brokers.make_broker(settings))
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
        description=(
            "Teachers link their rosters; admins see and revoke integrations (docs/web.md); "
            "the platform reads rosters and their changes under /v1 (docs/platform.md)."
        ),
        lifespan=lifespan,
        openapi_url="/openapi.json" if settings.openapi_enabled else None,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; see web.apidocs
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.rostersync = ctx
    app.add_exception_handler(RequestValidationError, validation_failed)
    _routes(app, settings)
    _middleware(app, ctx)
    return app


def _routes(app: FastAPI, settings: Settings) -> None:
    app.include_router(linking.router)
    app.include_router(admin.router)
    app.include_router(rights.router)
    app.include_router(holds.router)
    app.include_router(platform.router)
    app.include_router(health.router)
    if settings.metrics_access != "off":
        app.include_router(health.metrics_router)
    if settings.docs_enabled:

        @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
        def docs() -> HTMLResponse:
            return apidocs.docs_page(app.openapi())


def _middleware(app: FastAPI, ctx: WebContext) -> None:
    """Added inside out: the last one added sees a request first (host check, headers, limits, tokens)."""
    settings = ctx.runtime.settings
    metrics_guarded = settings.metrics_access == "admin"

    def guarded(path: str) -> bool:
        return path.startswith(ADMIN_PREFIX) or (metrics_guarded and path == "/metrics")

    wrong_tokens = Limiter(settings.admin_failures_per_minute)  # one count per client, whichever API it tries
    app.add_middleware(
        AdminAuth,
        tokens=settings.admin_token_list(),
        on_refused=ctx.metrics.admin_refused.inc,
        limiter=wrong_tokens,
        guarded=guarded,
    )
    app.add_middleware(
        AdminAuth,
        tokens=settings.platform_token_list(),
        on_refused=ctx.metrics.platform_refused.inc,
        limiter=wrong_tokens,
        guarded=lambda path: path.startswith(PLATFORM_PREFIX) or path == PLATFORM_PREFIX.rstrip("/"),
        realm="rostersync-platform",
    )
    app.add_middleware(LinkRateLimit, limiter=Limiter(settings.link_requests_per_minute), prefixes=LINK_PREFIXES)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_host_list(), www_redirect=False)
