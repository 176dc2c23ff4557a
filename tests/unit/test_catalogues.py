"""The teacher pages' languages: every message translated, placeholders kept, the language negotiated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from web.i18n import LANGUAGES, LOCALE_DIR, Words, language

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def extracted() -> set[str | tuple[str, str]]:
    """Every message of the teacher pages, extracted from source as ``make messages`` does (babel.cfg)."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: set[str | tuple[str, str]] = set()
    for _name, _line, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options_map):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def catalogue(lang: str) -> dict[str | tuple[str, str], object]:
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return {message.id: message for message in read_po(source, locale=lang) if message.id}


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_every_message_of_the_pages_is_translated_with_its_placeholders(lang: str) -> None:
    messages = catalogue(lang)
    sources = extracted()
    assert sources, "nothing extracted: babel.cfg no longer finds the pages"
    missing = sorted(str(source) for source in sources if source not in messages)
    assert not missing, f"{lang}: run `make messages` and translate: {missing}"
    for source in sources:
        entry = messages[source]
        assert not entry.fuzzy, f"{lang}: fuzzy {source!r}"  # type: ignore[attr-defined]
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)  # type: ignore[attr-defined]
        assert all(strings), f"{lang}: untranslated {source!r}"
        wanted = set(PLACEHOLDER.findall(" ".join(source if isinstance(source, tuple) else (source,))))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) <= wanted | {"num"}, f"{lang}: unknown placeholder in {text!r}"
            assert wanted - {"num"} <= set(PLACEHOLDER.findall(text)), f"{lang}: a placeholder lost in {text!r}"


def test_the_committed_template_is_what_the_source_says() -> None:
    with (LOCALE_DIR / "messages.pot").open("rb") as source:
        template = {message.id for message in read_po(source) if message.id}
    assert template == extracted(), "web/locale/messages.pot is stale: run `make messages`"


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, "en"),
        ("", "en"),
        ("uk-UA,uk;q=0.9,en;q=0.8", "uk"),
        ("UK", "uk"),
        ("de-DE,uk;q=0.5,en;q=0.4", "uk"),
        ("en-GB,uk;q=0.9", "en"),
        ("uk;q=0,en;q=0.1", "en"),
        ("fr, de", "en"),
        ("*", "en"),
        ("uk;q=abc, en;q=0.2", "en"),
        ("<script>, uk", "uk"),
    ],
)
def test_the_language_comes_from_accept_language(header: str | None, chosen: str) -> None:
    assert language(header) == chosen


def test_ukrainian_plurals_follow_the_number() -> None:
    words = Words("uk")
    forms = {
        n: words.ngettext("Wait %(num)d second, then try again.", "Wait %(num)d seconds, then try again.", n)
        for n in (1, 3, 5, 11, 21, 22, 25)
    }
    assert forms[1].startswith("Зачекайте 1 секунду,") and forms[21].startswith("Зачекайте 21 секунду,")
    assert forms[3].startswith("Зачекайте 3 секунди,") and forms[22].startswith("Зачекайте 22 секунди,")
    assert all(forms[n].startswith(f"Зачекайте {n} секунд,") for n in (5, 11, 25))
    assert (
        Words("en").ngettext("This class will sync:", "These %(num)d classes will sync:", 2)
        == "These 2 classes will sync:"
    )
