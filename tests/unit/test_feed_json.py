"""The change feed's one JSON writer (store.feed): the bytes /v1/changes serves and the bytes a webhook signs.

Pinned byte for byte: a receiver verifies the signature over the exact body, and docs/platform.md shows it.
"""

from __future__ import annotations

import json
from datetime import datetime

from services.webhooks import batch_body
from store.feed import Event

EVENTS = [
    Event(41, datetime(2026, 12, 6, 21, 40, 0, 123456), "member.added", 7, '{"class":"c-101","person":"Jx9"}'),
    # PostgreSQL's json_build_object(..)::text spaces its separators; a class name may be any text
    Event(
        42,
        datetime(2026, 12, 6, 21, 40, 1),
        "class.updated",
        7,
        '{"class" : "c-1", "name" : "Fran\u00e7ais 3e"}',
    ),
]


def test_a_webhook_batch_is_compact_json_with_the_text_kept_as_it_is() -> None:
    assert (
        batch_body(EVENTS)
        == (
            '{"type":"changes","data":['
            '{"seq":41,"at":"2026-12-06T21:40:00.123456+00:00","type":"member.added","integration_id":7,'
            '"data":{"class":"c-101","person":"Jx9"}},'
            '{"seq":42,"at":"2026-12-06T21:40:01+00:00","type":"class.updated","integration_id":7,'
            '"data":{"class":"c-1","name":"Fran\u00e7ais 3e"}}]}'
        ).encode()
    )


def test_a_webhook_batch_carries_the_events_as_the_feed_serves_them() -> None:
    from store.feed import event_items

    served = json.loads(f"[{event_items(EVENTS)}]")
    assert json.loads(batch_body(EVENTS))["data"] == served


def test_a_feed_page_splices_the_stored_data_as_it_is() -> None:
    from store.feed import event_items

    assert event_items(EVENTS[1:]) == (
        '{"seq":42,"at":"2026-12-06T21:40:01+00:00","type":"class.updated","integration_id":7,'
        '"data":{"class" : "c-1", "name" : "Fran\u00e7ais 3e"}}'
    )
