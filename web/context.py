"""What every route needs: the process runtime, the broker, and the app's own metrics."""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq.broker import Broker
from fastapi import Request
from prometheus_client import CollectorRegistry, Counter

from store.runtime import Runtime


@dataclass
class WebMetrics:
    """Counters of this web process. Labels are fixed words (provider, result), never an id or a name."""

    registry: CollectorRegistry
    links: Counter
    admin_refused: Counter
    admin_revokes: Counter
    platform_refused: Counter
    platform_resolves: Counter


def new_metrics() -> WebMetrics:
    registry = CollectorRegistry()
    return WebMetrics(
        registry=registry,
        links=Counter(
            "rostersync_web_links", "Link callbacks, by provider and result.", ["provider", "result"], registry=registry
        ),
        admin_refused=Counter(
            "rostersync_admin_unauthorized",
            "Admin API requests refused for a missing or wrong token.",
            registry=registry,
        ),
        admin_revokes=Counter(
            "rostersync_admin_revokes",
            "Integrations revoked through the admin API.",
            ["at_provider"],
            registry=registry,
        ),
        platform_refused=Counter(
            "rostersync_platform_unauthorized",
            "Platform API (/v1) requests refused for a missing or wrong token.",
            registry=registry,
        ),
        platform_resolves=Counter(
            "rostersync_platform_resolves",
            "Pseudonyms resolved for the platform (POST /v1/people/resolve), by provider; never the id itself.",
            ["provider"],
            registry=registry,
        ),
    )


@dataclass
class WebContext:
    runtime: Runtime
    broker: Broker
    metrics: WebMetrics


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.rostersync
    return ctx
