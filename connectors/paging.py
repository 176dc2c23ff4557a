"""The next-page links of one listing, each checked before it is followed.

Why: a listing is paged by following the link the provider hands out, with our bearer token on the
request. A link to another host (a hostile payload, a proxy in between) would carry that token
away, so a link must stay on the API's own origin, under its path; one seen before is a listing that
would never end; and ``PageBound`` caps the pages whatever the links say (``ROSTERSYNC_MAX_PAGES``).
Each refusal is a ``ProviderDataError`` worded with the provider's own name for the link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connectors.base import PageBound, ProviderDataError


def on_origin(url: str, base: str) -> bool:
    """``url`` is on ``base``'s scheme and host (a host's case aside) and under ``base``'s path."""
    split, origin = urlsplit(url), urlsplit(base)
    root = origin.path.rstrip("/")
    return (split.scheme, split.netloc.lower()) == (origin.scheme, origin.netloc.lower()) and (
        split.path == root or split.path.startswith(root + "/")
    )


@dataclass(frozen=True)
class LinkWords:
    """How a provider names its next links in our errors (``a nextLink``/``nextLinks``) and its host."""

    link: str
    links: str
    host: str


class NextLinks:
    """The guard of one listing: ``next_page()`` before each page is fetched, ``check(link)`` on each link.

    ``paths``: the provider's links are paths on the API host (Clever); an absolute one on that host
    is cut to its path, and what is returned is a path. Otherwise a link is followed as given (Graph),
    and ``first`` is the URL the listing started from (a link back to it is a loop too).
    """

    def __init__(
        self, api_base: str, words: LinkWords, bound: PageBound, *, paths: bool = False, first: str | None = None
    ) -> None:
        self._api_base = api_base
        self._words = words
        self._bound = bound
        self._paths = paths
        self._seen: set[str] = {first} if first else set()

    def next_page(self) -> None:
        self._bound.next_page()

    def check(self, link: Any) -> str | None:
        """``link`` as it may be followed, or None for no link (the last page)."""
        if link is None:
            return None
        if not isinstance(link, str):
            raise ProviderDataError(f"{self._words.link} is not a string")
        checked = self._as_path(link) if self._paths else self._on_host(link)
        if checked in self._seen:
            raise ProviderDataError(f"{self._words.links} loop")
        self._seen.add(checked)
        return checked

    def _on_host(self, link: str) -> str:
        if not on_origin(link, self._api_base):
            raise ProviderDataError(f"{self._words.link} points away from {self._words.host}")
        return link

    def _as_path(self, link: str) -> str:
        split = urlsplit(link)
        if split.scheme or split.netloc:
            link = self._on_host(link)[len(f"{split.scheme}://{split.netloc}") :]
        if not link.startswith("/"):
            raise ProviderDataError(f"{self._words.link} is not a path")
        return link
