"""What every command group shares: one ``error:`` line and exit 2 for bad input, the runtime, the broker.

Light to import (``status`` starts in a fraction of a second): the provider clients, the broker, the linking
service, the ORM models, the token vault and Rich are imported by the commands that use them, and
``user_errors`` recognises their errors without importing them (a module that was never imported raised none
of its errors).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import pydantic
import sqlalchemy.exc
import typer

from cli.app import BIGGEST_ID
from settings import Settings
from store.db_errors import unusable_reason

if TYPE_CHECKING:
    from dramatiq.broker import Broker
    from sqlalchemy import Engine

    from store.runtime import Runtime

IntegrationId = Annotated[int, typer.Argument(min=1, max=BIGGEST_ID, help="Integration id.")]


RIGHTS_ACTOR = "admin:cli"


EXPECTED = (
    ("settings", "ConfigError"),
    ("services.linking", "LinkError"),
    ("store.vault", "VaultError"),
    ("store.integrations", "UnknownIntegration"),
    ("connectors.base", "ConnectorError"),
    ("worker.broker", "BrokerUnavailable"),
)
"""The failures a person can mend (module, class), each told in one line: looked up in ``sys.modules`` so that
catching them imports nothing (an error of a module that is not imported cannot have been raised)."""


def expected(error: Exception) -> bool:
    for module_name, class_name in EXPECTED:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(error, getattr(module, class_name)):
            return True
    return False


def error_line(message: str) -> None:
    """``error: ...`` on stderr; the message is printed literally (user and provider text is no markup)."""
    from rich.markup import escape  # lazy, with the console: a command that succeeds quietly need not load Rich

    from services.console import err

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
    except sqlalchemy.exc.OperationalError as error:
        fail(f"database unreachable: {unusable_reason(error)}; check ROSTERSYNC_DATABASE_URL")
    except sqlalchemy.exc.ArgumentError:
        fail("ROSTERSYNC_DATABASE_URL is not a valid database URL")
    except Exception as error:
        if not expected(error):
            raise
        fail(str(error))


def runtime() -> Runtime:
    """Settings, database, token vault and pseudonymiser: what a command that syncs, links or seals needs."""
    from store.runtime import build_runtime, set_runtime  # lazy: the vault's and pseudonymiser's cryptography

    settings = Settings()
    built = build_runtime(settings)
    set_runtime(built)
    return built


def database() -> Engine:
    """The database alone, checked like ``runtime`` (settings, secrets, schema), for a command that only reads:
    no vault or pseudonymiser is built, so it loads no cryptography (``status``)."""
    from store.db import make_engine, migrate

    settings = Settings()
    settings.require_secrets()
    engine = make_engine(settings.database_url)
    migrate(engine)
    return engine


def install_broker(settings: Settings) -> Broker:
    from worker import broker as brokers  # lazy: Dramatiq and Redis, for the commands that queue work

    return brokers.install(brokers.make_broker(settings))


def json_out(payload: object) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
