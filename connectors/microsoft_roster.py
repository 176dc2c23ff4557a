"""``MicrosoftConnector`` behind the worker's connector protocol (``connectors.base.RosterConnector``).

Why apart from ``connectors.microsoft``: the Graph reader speaks in Graph's reads (a class's ``members``,
its ``teachers``), the sync in roles (``student``, ``teacher``); this adapter is the one place that
turns one into the other. Building it from a link's tokens (the mask allowlist, the sealed MSAL cache)
stays with the provider table, which may read the mappers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from connectors.base import Page
from connectors.microsoft import MicrosoftConnector


def _graph_masks(masks: Mapping[str, str]) -> dict[str, str]:
    """The sync's masks by role -> the connector's by read: a class's ``members`` are read with the student mask."""
    graph = {"class": masks["class"], "teacher": masks["teacher"]}
    if "student" in masks:
        graph["member"] = masks["student"]
    return graph


class MicrosoftRoster:
    """``MicrosoftConnector`` as a ``RosterConnector``: masks keyed by role, and the token cache as tokens."""

    def __init__(self, reader: MicrosoftConnector) -> None:
        self.reader = reader

    def classes(self, masks: Mapping[str, str]) -> Iterator[Page]:
        return self.reader.classes(_graph_masks(masks))

    def members(self, class_ids: Iterable[str], masks: Mapping[str, str]) -> Iterator[Page]:
        return self.reader.members(class_ids, _graph_masks(masks))

    def change_cursor(self) -> str | None:
        return self.reader.change_cursor()

    def changes(self, cursor: str) -> Iterator[Page]:
        return self.reader.changes(cursor)

    @property
    def requests_made(self) -> int:
        return self.reader.requests_made

    @property
    def before_request(self) -> Callable[[], None]:
        return self.reader.before_request

    @before_request.setter
    def before_request(self, check: Callable[[], None]) -> None:
        self.reader.before_request = check

    def close(self) -> None:
        self.reader.close()
