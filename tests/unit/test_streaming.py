"""A JSON list answer read as a stream (connectors/streaming.py): the same items as a whole parse, in parts,
whatever the order of the top-level keys; a broken answer is a ProviderDataError after the parts before it."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from connectors.base import ProviderDataError
from connectors.streaming import ChunkReader, StreamedList


def body(items: list[Any], links: Any, *, links_first: bool = False) -> bytes:
    document = {"links": links, "data": items} if links_first else {"data": items, "links": links}
    return json.dumps(document).encode()


ITEMS = [{"data": {"id": f"s{n}", "students": [f"u{n}-{k}" for k in range(3)], "score": n / 2}} for n in range(23)]
LINKS = [{"rel": "self", "uri": "/v3.0/sections"}, {"rel": "next", "uri": "/v3.0/sections?starting_after=s22"}]


@pytest.mark.parametrize("links_first", [False, True])
def test_parts_hold_every_item_in_order_and_the_links_are_kept(links_first: bool) -> None:
    listing = StreamedList(io.BytesIO(body(ITEMS, LINKS, links_first=links_first)))
    parts = list(listing.parts(size=5))
    assert [len(part) for part in parts] == [5, 5, 5, 5, 3]
    assert [item for part in parts for item in part] == ITEMS  # floats stay floats (no Decimal)
    assert listing.kept == {"links": LINKS}


def test_a_socket_that_hands_out_small_reads_gives_the_same_items() -> None:
    raw = body(ITEMS, LINKS)
    chunks = iter([raw[start : start + 7] for start in range(0, len(raw), 7)])
    listing = StreamedList(ChunkReader(chunks))
    assert [item for part in listing.parts(size=4) for item in part] == ITEMS
    assert listing.kept["links"] == LINKS


def test_an_empty_list_is_one_empty_part() -> None:
    listing = StreamedList(io.BytesIO(body([], [])))
    assert list(listing.parts()) == [[]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not readable JSON"),
        (b"[]", "not a JSON object"),
        (b'{"links": []}', "carries no 'data' list"),
        (b'{"data": {"id": "s1"}}', "is not a list"),
        (b'{"data": null}', "is not a list"),
    ],
)
def test_an_answer_of_the_wrong_shape_is_provider_data(raw: bytes, message: str) -> None:
    with pytest.raises(ProviderDataError, match=message):
        list(StreamedList(io.BytesIO(raw)).parts())


def test_an_answer_cut_short_yields_the_parts_before_the_cut_then_fails() -> None:
    raw = body(ITEMS, LINKS)
    listing = StreamedList(io.BytesIO(raw[: len(raw) // 2]))
    parts = listing.parts(size=5)
    received = [next(parts), next(parts)]
    assert [item for part in received for item in part] == ITEMS[:10]
    with pytest.raises(ProviderDataError, match="cut short"):
        list(parts)
    assert listing.kept == {}, "no links are taken from an answer that did not arrive whole"
