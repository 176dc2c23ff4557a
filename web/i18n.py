"""The teacher pages' languages: gettext catalogues through Babel, the language from ``Accept-Language``.

Why gettext: translators know its ``.po`` files and tools, and Babel extracts the messages from our Python
and Jinja2 templates alike (``make messages``, see docs/web.md "Languages"). English is the source language;
every other language is one ``web/locale/<lang>/LC_MESSAGES/messages.po``. The ``.po`` sources are what is
committed: each is compiled in memory the first time a page in that language is rendered (a few
milliseconds, once per process), so there is no compiled ``.mo`` file to forget to rebuild.
"""

from __future__ import annotations

import gettext
import io
import re
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
LOCALE_DIR = HERE / "locale"
TEMPLATES = HERE / "templates"
DEFAULT = "en"
LANGUAGES = ("en", "uk")
"""English (the source) and Ukrainian; a language is added by its ``.po`` file and its code here."""
NAMES = {"en": "English", "uk": "Українська"}
_QUALITY = re.compile(r"^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$")
_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$|^\*$")


def language(accept_language: str | None) -> str:
    """The best of ``LANGUAGES`` for an ``Accept-Language`` header (its q-values honoured), else English.

    ``uk-UA`` matches ``uk``; a malformed entry is skipped, never an error: the header is the browser's.
    """
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "")[:512].split(",")):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not _TAG.match(tag):
            continue
        quality = _quality(params)
        if quality is not None and quality > 0:
            choices.append((-quality, position, tag.lower()))
    for _, _, tag in sorted(choices):
        primary = tag.split("-")[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT


def _quality(params: str) -> float | None:
    """The ``q`` of one entry (1 when absent); None when it is malformed, and the entry is skipped."""
    name, _, value = params.strip().partition("=")
    if name.strip().lower() != "q":
        return 1.0
    value = value.strip()
    if not _QUALITY.match(value):
        return None
    return float(value)


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalogue of ``lang``, compiled from its ``.po`` on first use; English is the messages themselves."""
    if lang == DEFAULT:
        return gettext.NullTranslations()
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale=lang)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled)


class Words:
    """One language's messages, for the Python side of a page (the templates use the same catalogue).

    ``words.gettext("Wait %(num)d seconds", num=3)``: the message is translated first, then filled in, so a
    translation may move the placeholders. Babel extracts the calls (``gettext``, ``ngettext``) from source.
    """

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._catalogue = translations(lang)

    def gettext(self, message: str, **params: Any) -> str:
        text = self._catalogue.gettext(message)
        return text % params if params else text

    def ngettext(self, singular: str, plural: str, num: int, **params: Any) -> str:
        return self._catalogue.ngettext(singular, plural, num) % ({"num": num} | params)


@cache
def environment(lang: str) -> Environment:
    """The Jinja2 environment of one language (one each, so that no request swaps another's catalogue)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env
