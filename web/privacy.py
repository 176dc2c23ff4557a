"""``/privacy/{provider}``: what rostersync reads from a provider, what it keeps and for how long, in plain words.

Generated from the data inventory (services.inventory) that ``rostersync inventory`` prints for a privacy
officer: the fields kept come from the provider's allowlist, the retention from the settings, so the page a
teacher opens from the consent screen cannot drift from what the code does. Only the words are written
here: one plain phrase per kept field and per retention rule (a field or rule without one is shown by its
name, and a test fails until it has words).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse

from providers.registry import PROVIDERS
from services.inventory import provider_inventory
from settings import Settings
from web.context import WebContext, context
from web.i18n import Words
from web.pages import not_found, render, words_for

router = APIRouter(tags=["linking"])
NAME_FIELDS = frozenset({"display_name", "given_name", "family_name", "email_address"})
"""Fields that say who a person is: a role keeping none of them keeps people by pseudonym only."""


def field_words(words: Words, field: str, provider: str) -> str | None:
    """The plain phrase of one kept field (None: no words yet, the page shows its name)."""
    phrases = {
        "external_id": words.gettext("the id %(provider)s gives it", provider=provider),
        "name": words.gettext("its name"),
        "section": words.gettext("its section or period"),
        "state": words.gettext("whether it is active or archived"),
        "section_number": words.gettext("its section number"),
        "student_ids": words.gettext("which students are in it (each by pseudonym)"),
        "teacher_ids": words.gettext("which teachers teach it (each by pseudonym)"),
        "pseudonym": words.gettext(
            "a pseudonym made from their %(provider)s id (the id itself is never stored)", provider=provider
        ),
        "display_name": words.gettext("their name"),
        "given_name": words.gettext("their first name"),
        "family_name": words.gettext("their last name"),
        "email_address": words.gettext("their email address"),
        "role": words.gettext("their role in the class"),
    }
    return phrases.get(field)


def role_heading(words: Words, role: str) -> str:
    headings = {
        "class": words.gettext("About each of your classes"),
        "teacher": words.gettext("About each teacher of your classes"),
        "student": words.gettext("About each student of your classes"),
    }
    return headings.get(role, role)


def retention_words(words: Words, rule: str, settings: Settings, provider: str) -> str | None:
    """The plain sentence of one retention rule of the inventory (None: no words yet)."""
    grace_minutes = math.ceil(settings.revoked_grace_seconds / 60)
    ended = words.gettext("When you or your school end the link, your classes and the access you gave are deleted.")
    if grace_minutes:
        ended += " " + words.ngettext(
            "Anything left is removed within %(num)d minute.",
            "Anything left is removed within %(num)d minutes.",
            grace_minutes,
        )
    sentences = {
        "ended_integrations": ended,
        "blocked_integrations": words.ngettext(
            "If your school pauses rostersync's access, your classes are kept for up to %(num)d day, then deleted.",
            "If your school pauses rostersync's access, your classes are kept for up to %(num)d days, then deleted.",
            settings.blocked_grace_days,
        ),
        "rows_the_provider_no_longer_lists": words.ngettext(
            "A class or person %(provider)s no longer lists is hidden at once and deleted after %(num)d day.",
            "A class or person %(provider)s no longer lists is hidden at once and deleted after %(num)d days.",
            settings.removed_retention_days,
            provider=provider,
        ),
        "deleted_platform_accounts": words.ngettext(
            "If your platform account is deleted, everything it linked is deleted %(num)d month later.",
            "If your platform account is deleted, everything it linked is deleted %(num)d months later.",
            settings.deleted_account_retention_months,
        ),
        "consents_in_flight": words.ngettext(
            "A connection you start but do not finish is forgotten after %(num)d minute.",
            "A connection you start but do not finish is forgotten after %(num)d minutes.",
            max(1, math.ceil(settings.link_state_ttl_seconds / 60)),
        ),
        "change_feed": words.ngettext(
            "What the platform is told about your classes is kept for %(num)d day, and forgotten at once when a "
            "student is erased or the link ends.",
            "What the platform is told about your classes is kept for %(num)d days, and forgotten at once when a "
            "student is erased or the link ends.",
            settings.change_feed_retention_days,
        ),
        "audit_log": words.gettext(
            "A record of what was done and when is kept, with counts and pseudonyms, never names."
        ),
    }
    return sentences.get(rule)


def students_sentence(words: Words, provider: str, with_students: bool) -> str:
    """What of the students a link keeps, from the inventory (a teacher reads it on the linked page)."""
    if not with_students:
        return words.gettext("Students are not copied: no consent for them was recorded.")
    kept = {rule.canonical for rule in PROVIDERS[provider].allowlist.get("student", ())}
    if kept & NAME_FIELDS:
        return words.gettext("Your class lists include your students.")
    return words.gettext(
        "Your class lists include your students, each kept only as a pseudonym: no student's name or email "
        "address is stored."
    )


def privacy_view(words: Words, settings: Settings, provider: str) -> dict[str, Any]:
    """The page's parts, from the provider's inventory."""
    inventory = provider_inventory(settings, provider)
    name = PROVIDERS[provider].proper_name
    roles = []
    whole = False
    for role, entry in inventory["roles"].items():
        whole = whole or not PROVIDERS[provider].field_mask(role, PROVIDERS[provider].required_scopes)
        kept = []
        for rule in entry["kept"]:
            phrase = field_words(words, rule["field"], name) or rule["field"].replace("_", " ")
            if rule["only_with_scope"]:
                phrase = words.gettext(
                    "%(field)s, only if your school has granted the extra permission “%(scope)s”",
                    field=phrase,
                    scope=rule["only_with_scope"],
                )
            kept.append(phrase)
        roles.append({"heading": role_heading(words, role), "kept": kept})
    retention = [
        retention_words(words, rule, settings, name) or f"{rule.replace('_', ' ')}: {text}"
        for rule, text in inventory["retention"].items()
    ]
    wire = (
        words.gettext(
            "%(provider)s cannot send only some fields of a record, so rostersync receives more than this: "
            "everything not listed here is dropped as it arrives and never stored.",
            provider=name,
        )
        if whole
        else words.gettext("rostersync asks %(provider)s for these fields only.", provider=name)
    )
    return {
        "intro": [
            words.gettext(
                "rostersync copies your class lists from %(provider)s into your school's platform. This page says "
                "what it reads there, what it keeps and for how long.",
                provider=name,
            ),
        ],
        "reads": [
            words.gettext(
                "It asks %(provider)s only for permission to read your classes and who is in them, and it never "
                "changes anything in %(provider)s.",
                provider=name,
            ),
            wire,
        ],
        "roles": roles,
        "retention": retention,
        "scopes": ", ".join(inventory["scopes_asked"]) or words.gettext("none named"),
        "provider_name": name,
    }


@router.get(
    "/privacy/{provider}",
    response_class=HTMLResponse,
    responses={404: {}},
    summary="What rostersync reads from a provider, what it keeps and for how long, for teachers",
)
def privacy(
    provider: Annotated[str, Path(max_length=32)],
    request: Request,
    ctx: Annotated[WebContext, Depends(context)],
) -> HTMLResponse:
    if provider not in PROVIDERS:
        return not_found(request, status=404)
    words = words_for(request)
    view = privacy_view(words, ctx.runtime.settings, provider)
    title = words.gettext("What rostersync keeps from %(provider)s", provider=view["provider_name"])
    return render(request, "privacy.html", title=title, **view)
