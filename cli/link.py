"""``rostersync link``: a teacher's headless OAuth (start, complete), a signed browser link (url), an organisation."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.choices import ORGANISATIONS, PROVIDER_CHOICES, either, provider_name
from cli.common import fail, install_broker, runtime, user_errors
from cli.runs import report, wait_in_memory
from providers.config import browser_problems
from services.console import err, out
from services.linking import checked_request, complete_link, link_org, start_link
from settings import Settings
from sync.consent import DEFAULT_BASIS
from web import signing
from worker import broker as brokers
from worker.actors import sync_integration
from worker.sync_requests import sync_after_link

link_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Link a teacher's provider account (headless OAuth), or a whole organisation.",
)


ProviderOption = Annotated[str, typer.Option(help=f"Provider to link: {PROVIDER_CHOICES}.", callback=provider_name)]


TeacherOption = Annotated[str, typer.Option(help="The platform's id of the teacher who links.")]


TenantOption = Annotated[str | None, typer.Option(help="The platform's school; the default tenant if left out.")]


TeacherBasisOption = Annotated[
    str, typer.Option(help="Consent basis (COPPA): school (the school's licence, a teacher acting for it) or parent.")
]


@link_app.command("start")
def link_start(
    provider: ProviderOption,
    teacher: TeacherOption,
    tenant: TenantOption = None,
    basis: TeacherBasisOption = DEFAULT_BASIS,
) -> None:
    """Print the consent URL (on a line of its own) for the teacher to open."""
    with user_errors():
        url = start_link(runtime(), provider_name=provider, teacher=teacher, tenant=tenant, basis=basis)
    err.print("Open this URL, grant access, then pass the URL you are sent back to to `rostersync link complete`:")
    sys.stdout.write(url + "\n")


@link_app.command("url")
def link_url(
    provider: ProviderOption,
    teacher: TeacherOption,
    tenant: TenantOption = None,
    basis: TeacherBasisOption = DEFAULT_BASIS,
) -> None:
    """Print a signed, single-use /link URL exactly as the platform makes one (valid ten minutes).

    For an operator helping a teacher: the teacher opens it in the browser they will finish in. Its
    host is the one of the provider's redirect URI (the web app's callback).
    """
    with user_errors():
        settings = Settings()
        basis = checked_request(provider_name=provider, teacher=teacher, tenant=tenant, basis=basis)
        if problems := browser_problems(settings, provider):
            fail(f"{provider} does not link in the browser on this server: {'; '.join(problems)}")
        assert settings.link_signing_key is not None  # browser_problems names a missing one
        url = signing.link_url(
            settings.link_signing_key.get_secret_value(),
            str(settings.provider(provider).redirect_uri),
            provider=provider,
            teacher=teacher,
            tenant=tenant,
            basis=basis,
            lifetime=signing.MAX_LIFETIME,
        )
    err.print("Give this link to the teacher; it works once, for ten minutes, in the browser that opens it:")
    sys.stdout.write(url + "\n")


@link_app.command("complete")
def link_complete(
    callback_url: Annotated[str, typer.Argument(help="The full URL the browser was sent back to.")],
) -> None:
    """Finish a link: exchange the code, check the scopes, store the tokens encrypted, enqueue the first sync."""
    with user_errors():
        rt = runtime()
        broker = install_broker(rt.settings)
        brokers.check(broker)  # before the single-use state is spent: a down broker leaves nothing half-done
        integration_id = complete_link(rt, callback_url)
        try:
            queued = sync_after_link(rt, integration_id)  # False: the scheduler has queued it already
        except brokers.BrokerUnavailable as error:
            fail(
                f"linked integration {integration_id}, but its first sync could not be queued: {error}; "
                f"run `rostersync sync {integration_id}` once the broker is back"
            )
        err.print(f"linked: integration {integration_id}; first sync {'enqueued' if queued else 'already queued'}")
        verdicts = wait_in_memory(rt, broker, [integration_id]) if queued else []
    out.print(f"integration {integration_id}")
    report(verdicts)


ORG_PROVIDER_HELP = f"Provider to link: {either(f'{name} ({what})' for name, what in ORGANISATIONS.items())}."
ORG_ID_HELP = f"The provider's id of the organisation ({', '.join(f'{what} id' for what in ORGANISATIONS.values())})."


@link_app.command("org")
def link_org_command(
    provider: Annotated[str, typer.Option(help=ORG_PROVIDER_HELP, callback=provider_name)],
    org: Annotated[str, typer.Option(help=ORG_ID_HELP)],
    tenant: Annotated[str | None, typer.Option(help="The platform's school; the default tenant if left out.")] = None,
    basis: Annotated[
        str, typer.Option(help="Consent basis (COPPA): school (the institution's own link, the default) or parent.")
    ] = "school",
) -> None:
    """Link a whole organisation with the app token it granted at the provider, and enqueue the first sync."""
    with user_errors():
        rt = runtime()
        broker = install_broker(rt.settings)
        brokers.check(broker)  # before anything is stored: a down broker leaves nothing half-done
        integration_id = link_org(rt, provider_name=provider, org=org, tenant=tenant, basis=basis)
        try:
            brokers.enqueue(sync_integration, integration_id)
        except brokers.BrokerUnavailable as error:
            fail(
                f"linked integration {integration_id}, but its first sync could not be queued: {error}; "
                f"run `rostersync sync {integration_id}` once the broker is back"
            )
        err.print(f"linked: integration {integration_id}; first sync enqueued")
        verdicts = wait_in_memory(rt, broker, [integration_id])
    out.print(f"integration {integration_id}")
    report(verdicts)
