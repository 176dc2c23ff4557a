"""Every way linking can fail, as the page a teacher reads: what happened and what to do, in their words.

Why apart from web.linking: the route decides *that* it failed; the words of each failure are one function
here, so that no operator's word (a command, a state, an internal id) reaches a teacher by accident, and
so that each failure is translated (web.i18n) in one place. The errors' own messages are ours and stable
(services.linking, store.links); they are read only to pick the page, never shown. A bad signature's page is
picked by its kind (web.signing.BadSignature).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from providers.registry import PROVIDERS
from store.links import ACCOUNT_DELETED_REFUSAL
from sync.grants import AtProvider
from web.i18n import Words
from web.pages import message, words_for
from web.signing import BadSignature


def _proper(provider: str) -> str:
    return PROVIDERS[provider].proper_name


def bad_signature(request: Request, error: BadSignature) -> HTMLResponse:
    """A ``/link`` request the platform did not sign, or signed for too long ago: the page by the error's kind."""
    words = words_for(request)
    if error.kind == "expired":
        title = words.gettext("This link has expired")
        said = words.gettext("Links from the platform work for ten minutes, and this one is older.")
    elif error.too_long:
        title = words.gettext("This link cannot be used")
        said = words.gettext(
            "The platform made this link in a way that is not accepted here. If it keeps happening, "
            "tell your school's administrator."
        )
    elif error.kind == "unsigned":
        title = words.gettext("This link did not come from the platform")
        said = words.gettext("For your safety, connecting has to start from the platform itself.")
    else:
        title = words.gettext("This link is incomplete or damaged")
        said = words.gettext("Part of the link is missing or was changed, so it cannot be used.")
    return message(
        request,
        title,
        [said, words.gettext("Nothing was changed. Go back to the platform and use its Connect button again.")],
        status=403,
    )


def replayed(request: Request) -> HTMLResponse:
    words = words_for(request)
    return message(
        request,
        words.gettext("This link was already used"),
        [
            words.gettext("Each link from the platform works once."),
            words.gettext("Nothing was changed. Go back to the platform and use its Connect button again."),
        ],
        status=403,
    )


def not_started(request: Request) -> HTMLResponse:
    """The platform's request was signed but could not start a link (an id too long, a provider turned off)."""
    words = words_for(request)
    return message(
        request,
        words.gettext("Connecting could not start"),
        [
            words.gettext("Nothing was changed."),
            words.gettext(
                "Go back to the platform and try again. If it keeps happening, tell your school's administrator."
            ),
        ],
        status=400,
    )


def wrong_browser(request: Request) -> HTMLResponse:
    """The callback reached a browser (or a path) that did not start this link: it is spent all the same."""
    words = words_for(request)
    return message(
        request,
        words.gettext("Connecting could not finish in this browser"),
        [
            words.gettext("Connecting has to finish in the same browser where it started. Nothing was linked."),
            words.gettext("Go back to the platform in this browser and use its Connect button again."),
        ],
        status=400,
    )


def our_side(request: Request) -> HTMLResponse:
    words = words_for(request)
    return message(
        request,
        words.gettext("Something went wrong on our side"),
        [
            words.gettext("Nothing was linked."),
            words.gettext(
                "Please try again from the platform in a few minutes. If it keeps happening, "
                "tell your school's administrator."
            ),
        ],
        status=500,
    )


def account_taken(request: Request, provider: str, given_back: AtProvider) -> HTMLResponse:
    """Another teacher of the school holds this provider account: refused, and the fresh grant handed back."""
    words = words_for(request)
    name = _proper(provider)
    return message(
        request,
        words.gettext("This %(provider)s account is linked by another teacher", provider=name),
        [
            words.gettext(
                "At your school, one %(provider)s account can be linked by one teacher at a time, and another "
                "teacher has linked this one. Nothing was linked for you.",
                provider=name,
            ),
            _given_back(request, name, given_back),
            words.gettext(
                "If the account is yours, ask your school's administrator to end the other link "
                "(or ask that teacher to unlink it), then connect again."
            ),
        ],
        status=409,
    )


def _given_back(request: Request, name: str, verdict: AtProvider) -> str:
    """What became of the access the teacher just granted: nothing of it may stay live unseen."""
    words = words_for(request)
    if verdict is AtProvider.REVOKED:
        return words.gettext("The access you just gave was handed back: %(provider)s confirmed it.", provider=name)
    if verdict is AtProvider.PENDING:
        return words.gettext(
            "The access you just gave is being handed back: %(provider)s has not confirmed yet, and we keep trying.",
            provider=name,
        )
    if verdict is AtProvider.UNSUPPORTED:
        return words.gettext(
            "We did not keep the access you just gave, but %(provider)s cannot take it back for us: remove "
            "rostersync from the apps allowed in your %(provider)s account's settings.",
            provider=name,
        )
    return words.gettext(
        "We did not keep the access you just gave, but %(provider)s did not confirm it was handed back: to be "
        "sure, remove rostersync from the apps allowed in your %(provider)s account's settings.",
        provider=name,
    )


def not_linked(request: Request, provider: str, reason: str, state_ttl_seconds: int) -> HTMLResponse:
    """A callback refused by the link itself: the reason picks the page, and is never shown."""
    words = words_for(request)
    name = _proper(provider)
    if "did not grant access" in reason:
        title = words.gettext("You did not allow access")
        said = [
            words.gettext("%(provider)s says access was not allowed, so nothing was linked.", provider=name),
            words.gettext(
                "If that was a mistake, go back to the platform, use its Connect button again and choose Allow."
            ),
        ]
    elif "lacks required scope" in reason:
        title = words.gettext("Some permissions were left out")
        said = [
            words.gettext(
                "To copy your classes, rostersync needs every permission it asks %(provider)s for. Nothing was "
                "linked, and the permissions you did give were handed back.",
                provider=name,
            ),
            words.gettext("Go back to the platform, connect again and leave every permission ticked."),
        ]
    else:
        title, said = _refused(words, name, reason, state_ttl_seconds)
    return message(request, title, said, status=400)


def _refused(words: Words, name: str, reason: str, state_ttl_seconds: int) -> tuple[str, list[str]]:
    if "already used" in reason:
        return words.gettext("This page was already used"), [
            words.gettext("Nothing more was linked."),
            words.gettext("If your classes do not appear in the platform, go back to it and connect again."),
        ]
    if "expired" in reason:
        minutes = max(1, state_ttl_seconds // 60)
        return words.gettext("This page has expired"), [
            words.ngettext(
                "Connecting has to be finished within %(num)d minute of starting it. Nothing was linked.",
                "Connecting has to be finished within %(num)d minutes of starting it. Nothing was linked.",
                minutes,
            ),
            words.gettext("Go back to the platform and use its Connect button again."),
        ]
    if "unknown state" in reason or "malformed callback" in reason:
        return words.gettext("This page cannot be used"), [
            words.gettext(
                "It did not come from a connection started here, or part of it is missing. Nothing was linked."
            ),
            words.gettext("Go back to the platform and use its Connect button again."),
        ]
    if reason == ACCOUNT_DELETED_REFUSAL:
        return words.gettext("This account cannot link classes"), [
            words.gettext("Your platform account is being deleted, so nothing can be linked to it."),
            words.gettext("If this is a mistake, tell your school's administrator."),
        ]
    if reason.startswith("cannot link this account"):
        return words.gettext("This %(provider)s account could not be linked", provider=name), [
            words.gettext(
                "%(provider)s did not let rostersync read classes for this account. Nothing was linked, and the "
                "access you gave was handed back.",
                provider=name,
            ),
            words.gettext(
                "Check that you signed in with your school account. If you did, tell your school's administrator."
            ),
        ]
    return words.gettext("Something went wrong while connecting"), [
        words.gettext("Nothing was linked."),
        words.gettext(
            "Please try again from the platform in a few minutes. If it keeps happening, "
            "tell your school's administrator."
        ),
    ]
