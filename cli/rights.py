"""Data-subject rights, retention, audit and inventory (issue 9): export, erase, suppressions, accounts, purge."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from cli.common import RIGHTS_ACTOR, fail, json_out, runtime, user_errors
from providers.registry import PROVIDERS
from services import export_file
from services import inventory as inv
from services import rights as rights_ops
from services.console import err
from services.retention import mark_account_deleted, purge_expired
from services.rights import RightsError
from settings import Settings
from store import audit, suppressions
from store.models import MAX_ID
from store.retention import AlreadyDeleted
from store.rights import PersonNotFound, StillActive

suppressions_app = typer.Typer(no_args_is_help=True, help="Suppressed (erased) people kept out of syncs.")


account_app = typer.Typer(no_args_is_help=True, help="Platform accounts and their retention.")


@contextmanager
def rights_errors() -> Iterator[None]:
    """``user_errors`` plus the rights commands' own expected failures: one line, exit 2."""
    with user_errors():
        try:
            yield
        except (RightsError, PersonNotFound, StillActive, AlreadyDeleted) as error:
            fail(str(error))


def export(
    person: Annotated[str | None, typer.Option(help="Pseudonym of the person to export (JSON).")] = None,
    integration: Annotated[int | None, typer.Option(min=1, max=MAX_ID, help="Integration to export.")] = None,
    format_: Annotated[
        str, typer.Option("--format", help="json, or oneroster (a zip of OneRoster 1.2 CSV files; needs --out).")
    ] = "json",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Export what is stored about one person or one integration (P9: access, portability); audited."""
    if (person is None) == (integration is None):
        fail("give --person PSEUDONYM or --integration ID (one of them)")
    if format_ not in ("json", "oneroster"):
        fail("--format is json or oneroster")
    if format_ == "oneroster" and (integration is None or out_file is None):
        fail("--format oneroster exports an integration to a zip file: give --integration ID and --out FILE")
    if out_file is None:
        sys.stdout.write(_export_payload(person, integration, oneroster=False).decode())
        return
    try:  # the file is created first, so an export is never audited as done when it cannot be delivered
        with export_file.replacing(out_file) as handle:
            handle.write(_export_payload(person, integration, oneroster=format_ == "oneroster"))
    except OSError as error:
        fail(f"cannot write {out_file}: {error.strerror or type(error).__name__}")
    err.print(f"export written to {out_file}")


def _export_payload(person: str | None, integration: int | None, *, oneroster: bool) -> bytes:
    with rights_errors():
        rt = runtime()
        if person is not None:
            export = rights_ops.export_person(rt, person, actor=RIGHTS_ACTOR)
            return (json.dumps(export, indent=2) + "\n").encode()
        return rights_ops.export_integration(rt, integration or 0, actor=RIGHTS_ACTOR, oneroster=oneroster)


def erase(
    pseudonym: Annotated[str | None, typer.Argument(help="Pseudonym of the person to erase.")] = None,
    integration: Annotated[
        int | None, typer.Option(min=1, max=MAX_ID, help="Erase a whole integration instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The result as one JSON object on stdout.")] = False,
) -> None:
    """Erase a person (rows and enrolments at once, then suppressed) or an integration (P8, P9); audited."""
    if (pseudonym is None) == (integration is None):
        fail("give a PSEUDONYM or --integration ID (one of them)")
    with rights_errors():
        rt = runtime()
        if pseudonym is not None:
            person = rights_ops.erase_person(rt, pseudonym, actor=RIGHTS_ACTOR)
            result: dict[str, object] = {
                "erased": "person",
                "integrations": person.integrations,
                "revoked_first": person.revoked,
                "people": person.people,
                "enrollments": person.enrollments,
                "suppressed": True,
            }
            where = ", ".join(map(str, person.integrations))
            line = (
                f"erased from integration(s) {where}: {person.people} person row(s), "
                f"{person.enrollments} enrolment(s); suppressed until `rostersync suppressions lift`"
            )
            if person.revoked:
                line += f"; owned integration(s) revoked first: {', '.join(map(str, person.revoked))}"
        else:
            erased = rights_ops.erase_integration(rt, integration or 0, actor=RIGHTS_ACTOR)
            result = {
                "erased": "integration",
                "integrations": [erased.integration_id],
                "revoked_first": [erased.integration_id] if erased.revoked_first else [],
                "rows": erased.rows,
            }
            line = f"integration {erased.integration_id} erased ({erased.rows} rows)" + (
                "; revoked first" if erased.revoked_first else ""
            )
    if as_json:
        json_out(result)
    else:
        err.print(line, markup=False)


@suppressions_app.command("list")
def suppressions_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Every suppression: provider, tenant, pseudonym, since when, by whom."""
    with rights_errors():
        entries = suppressions.entries(runtime().engine)
    rows = [
        {
            "provider": e.provider,
            "tenant": e.tenant,
            "pseudonym": e.pseudonym,
            "since": e.created_at.isoformat() + "Z",
            "by": e.created_by,
        }
        for e in entries
    ]
    if as_json:
        json_out({"suppressions": rows})
        return
    for row in rows:
        sys.stdout.write("\t".join(str(row[key]) for key in ("provider", "tenant", "pseudonym", "since", "by")) + "\n")


@suppressions_app.command("lift")
def suppressions_lift(pseudonym: Annotated[str, typer.Argument(help="Pseudonym to let back in.")]) -> None:
    """Lift a suppression: the next sync brings the person back if the provider still lists them; audited."""
    with rights_errors():
        lifted = rights_ops.lift_suppression(runtime(), pseudonym, actor=RIGHTS_ACTOR)
    err.print(f"suppression lifted ({lifted} entr{'y' if lifted == 1 else 'ies'}); the next sync may bring them back")


@account_app.command("mark-deleted")
def account_mark_deleted(
    account: Annotated[str, typer.Argument(help="The platform's account id (what `link start --teacher` took).")],
) -> None:
    """Record that the platform deleted this account: what it linked is purged 6 months from now (P10)."""
    if not account.strip() or len(account) > 128:
        fail("an account id is 1 to 128 characters")
    with rights_errors():
        rt = runtime()
        linked = mark_account_deleted(rt, account, actor=RIGHTS_ACTOR)
    months = rt.settings.deleted_account_retention_months
    err.print(
        f"account marked deleted; the {len(linked)} integration(s) it linked stop syncing now "
        f"and are revoked and purged in {months} months"
    )


def purge_expired_command(
    as_json: Annotated[bool, typer.Option("--json", help="The counts as one JSON object on stdout.")] = False,
) -> None:
    """Run the retention job now (P10): expired rows, ended integrations, deleted accounts; one audit event."""
    with rights_errors():
        report = purge_expired(runtime())
    payload = report.as_json()
    if as_json:
        json_out(payload)
        return
    err.print(
        f"purged: {report.removed_rows} soft-deleted row(s), {report.ended_rows} row(s) of ended integrations, "
        f"{report.link_attempts} consent(s) in flight, {report.feed_events} change-feed event(s), "
        f"{report.accounts} deleted account(s) "
        f"({report.account_rows} row(s), {len(report.revoked)} grant(s) revoked)"
    )


def audit_command(
    integration: Annotated[
        int | None, typer.Option(min=1, max=MAX_ID, help="Only events touching this integration.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """The audit log: time, actor, action, integration, consent basis, ids and counts."""
    with rights_errors():
        events = audit.events(runtime().engine, integration)
    if as_json:
        json_out({"events": [event.as_json() for event in events]})
        return
    for event in events:
        fields = [
            event.at.isoformat(timespec="seconds") + "Z",
            event.action,
            event.actor,
            f"integration {event.integration_id}" if event.integration_id is not None else "-",
            f"consent basis: {event.consent_basis}" if event.consent_basis else "",
            json.dumps(event.details, sort_keys=True) if event.details else "",
            event.reason,
        ]
        sys.stdout.write("\t".join(fields).rstrip("\t") + "\n")


def inventory(
    integration_id: Annotated[
        int | None, typer.Argument(min=1, max=MAX_ID, help="One integration; every provider if left out.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """What is asked, fetched, kept and for how long, generated from the allowlist, field masks and settings."""
    with rights_errors():
        if integration_id is None:
            settings = Settings()
            inventories = [inv.provider_inventory(settings, name) for name in sorted(PROVIDERS)]
            payload: dict[str, object] = {"providers": inventories}
        else:
            one = inv.integration_inventory(runtime(), integration_id)
            inventories = [one]
            payload = one
    if as_json:
        json_out(payload)
        return
    sys.stdout.write("\n".join(inv.render(one) for one in inventories))
