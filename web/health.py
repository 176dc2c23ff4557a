"""``/healthz`` (database and broker reachable), ``/metrics`` (Prometheus) and ``/providers``.

``/metrics`` needs an admin token unless ``METRICS_ACCESS=open`` (docs/web.md, "HTTP hygiene").

Metric labels are fixed words only: provider names, statuses, results. No id, no name.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from providers.config import browser_problems
from providers.registry import SUPPORTED
from store import overview, pending_revokes, webhooks
from web.context import WebContext, context
from web.schemas import ProviderOut
from worker import broker as brokers

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])
"""``/metrics`` apart, so the app can leave it out (``METRICS_ACCESS=off``)."""
Ctx = Annotated[WebContext, Depends(context)]


@router.get("/healthz", summary="200 when the database and the broker are reachable, else 503")
def healthz(ctx: Ctx) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with ctx.runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as error:
        checks["database"] = f"unreachable ({type(error).__name__})"
    try:
        brokers.check(ctx.broker)
        checks["broker"] = "in-memory" if brokers.is_in_memory(ctx.broker) else "ok"
    except brokers.BrokerUnavailable:
        checks["broker"] = "unreachable"
    healthy = checks["database"] == "ok" and checks["broker"] in ("ok", "in-memory")
    return JSONResponse({"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503)


@router.get(
    "/providers",
    response_model=list[ProviderOut],
    summary="Providers this server can link in the browser; for each one it cannot, the settings that stop it",
)
def providers(ctx: Ctx) -> list[ProviderOut]:
    listed = []
    for name in SUPPORTED:
        problems = browser_problems(ctx.runtime.settings, name)
        listed.append(ProviderOut(name=name, configured=not problems, problems=problems))
    return listed


class StoreCollector(Collector):
    """Gauges read from the database at scrape time, so every web replica reports the same truth."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self.ctx.runtime.engine
        by_status = GaugeMetricFamily(
            "rostersync_integrations", "Integrations by provider and status.", labels=["provider", "status"]
        )
        for (provider, status), count in sorted(overview.status_counts(engine).items()):
            by_status.add_metric([provider, status], count)
        yield by_status
        queued, running = overview.queue_counts(engine)
        yield GaugeMetricFamily("rostersync_syncs_queued", "Syncs queued or running.", value=queued)
        yield GaugeMetricFamily("rostersync_syncs_running", "Sync runs not finished.", value=running)
        yield GaugeMetricFamily(
            "rostersync_pending_revokes",
            "Provider revokes still being retried.",
            value=len(pending_revokes.summaries(engine)),
        )
        if self.ctx.runtime.settings.webhooks_enabled:
            yield from webhook_gauges(webhooks.read(engine))


def webhook_gauges(position: webhooks.Position) -> Iterator[GaugeMetricFamily]:
    """Delivery to WEBHOOK_URL, from the cursor row every process shares: what an alert on the push reads."""
    yield GaugeMetricFamily(
        "rostersync_webhook_lag_events",
        "Change events written but not yet delivered to WEBHOOK_URL.",
        value=position.lag,
    )
    yield GaugeMetricFamily(
        "rostersync_webhook_failures",
        "Failed webhook delivery attempts since the last success (0 after a 2xx).",
        value=position.failures,
    )
    if position.last_success_at is not None:
        yield GaugeMetricFamily(
            "rostersync_webhook_last_success_timestamp_seconds",
            "Unix time of the last batch the receiver acknowledged.",
            value=position.last_success_at.replace(tzinfo=UTC).timestamp(),
        )


def metrics_registry(ctx: WebContext) -> CollectorRegistry:
    ctx.metrics.registry.register(StoreCollector(ctx))
    return ctx.metrics.registry


@metrics_router.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
