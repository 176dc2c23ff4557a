"""What every command group shares: one ``error:`` line and exit 2 for bad input, the runtime, the broker."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import pydantic
import sqlalchemy.exc
import typer
from dramatiq.broker import Broker
from rich.markup import escape

from connectors.base import ConnectorError
from services.console import err
from services.linking import LinkError
from settings import ConfigError, Settings
from store import integrations
from store.db_errors import unusable_reason
from store.models import MAX_ID
from store.runtime import Runtime, build_runtime, set_runtime
from store.vault import VaultError
from worker import broker as brokers

IntegrationId = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="Integration id.")]


RIGHTS_ACTOR = "admin:cli"


def error_line(message: str) -> None:
    """``error: ...`` on stderr; the message is printed literally (user and provider text is no markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def fail(message: str) -> NoReturn:
    error_line(message)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn every expected failure into one clear line; nothing personal or secret is printed."""
    try:
        yield
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        name = "ROSTERSYNC_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        fail(f"setting {name}: {first['msg']}")
    except (
        ConfigError,
        LinkError,
        VaultError,
        integrations.UnknownIntegration,
        ConnectorError,
        brokers.BrokerUnavailable,
    ) as error:
        fail(str(error))
    except sqlalchemy.exc.OperationalError as error:
        fail(f"database unreachable: {unusable_reason(error)}; check ROSTERSYNC_DATABASE_URL")
    except sqlalchemy.exc.ArgumentError:
        fail("ROSTERSYNC_DATABASE_URL is not a valid database URL")


def runtime() -> Runtime:
    settings = Settings()
    built = build_runtime(settings)
    set_runtime(built)
    return built


def install_broker(settings: Settings) -> Broker:
    return brokers.install(brokers.make_broker(settings))


def json_out(payload: object) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
