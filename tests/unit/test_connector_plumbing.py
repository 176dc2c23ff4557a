"""The plumbing every connector shares (connectors/answers, refresh, paging, batch), on its own."""

from __future__ import annotations

import pytest

from connectors.answers import header, json_object, rate_reset, retry_after, seconds
from connectors.base import PageBound, ProviderDataError, RateLimited, TransientError
from connectors.batch import RetryRules, Round, resend_failed
from connectors.paging import LinkWords, NextLinks, on_origin
from connectors.refresh import RefreshOnce

WORDS = LinkWords(link="a next link", links="next links", host="the API host")


def test_waits_are_read_without_trusting_them() -> None:
    assert seconds("7", 30.0) == 7 and seconds("soon", 30.0) == 30 and seconds(None, 30.0) == 30
    assert seconds("-5", 30.0) == 0
    assert retry_after({"retry-after": "3"}, 10.0) == 3 and retry_after({}, 10.0) == 10
    assert header({"Retry-After": "2"}, "retry-after") == "2"
    assert rate_reset({"X-RateLimit-Reset": "1060"}, 60.0, now=1000.0) == 60
    assert rate_reset({"X-RateLimit-Reset": "999"}, 60.0, now=1000.0) == 1
    assert rate_reset({"X-RateLimit-Reset": "x", "Retry-After": "4"}, 60.0, now=1000.0) == 4
    assert rate_reset({}, 60.0) == 60
    assert json_object(b"<html>") == {} and json_object("[1]") == {} and json_object('{"a": 1}') == {"a": 1}


def test_refresh_once_spends_its_budget_then_says_no() -> None:
    calls: list[int] = []
    budget = RefreshOnce()
    assert budget.again(lambda: calls.append(1)) and not budget.again(lambda: calls.append(2))
    assert calls == [1]
    assert not RefreshOnce(spent=True).again(lambda: calls.append(3))
    assert not RefreshOnce(limit=0).again(lambda: calls.append(4)) and calls == [1]


def test_next_links_stay_on_the_origin_never_loop_and_are_bounded() -> None:
    assert on_origin("https://api.test/v1/x", "https://API.test/v1") and not on_origin(
        "https://api.test/v2", "https://api.test/v1"
    )
    links = NextLinks("https://api.test/v1", WORDS, PageBound(2, "a listing"), first="https://api.test/v1/a")
    assert links.check(None) is None
    with pytest.raises(ProviderDataError, match="a next link points away from the API host"):
        links.check("https://evil.test/v1/b")
    with pytest.raises(ProviderDataError, match="next links loop"):
        links.check("https://api.test/v1/a")
    with pytest.raises(ProviderDataError, match="not a string"):
        links.check(3)
    links.next_page()
    links.next_page()
    with pytest.raises(ProviderDataError, match="more than 2 pages"):
        links.next_page()
    paths = NextLinks("https://api.test", WORDS, PageBound(5, "a listing"), paths=True)
    assert paths.check("https://api.test/v3.0/x?starting_after=1") == "/v3.0/x?starting_after=1"
    with pytest.raises(ProviderDataError, match="not a path"):
        paths.check("v3.0/y")


def test_only_the_failed_parts_are_sent_again() -> None:
    sent: list[list[str]] = []
    slept: list[float] = []

    def answer(pending: dict[str, str]) -> Round[str]:
        sent.append(sorted(pending))
        round_: Round[str] = Round()
        if len(sent) == 1:
            round_.retry["b"] = pending["b"]
            round_.waits.append(2.0)
        return round_

    rules = RetryRules(attempts=3, max_inline_wait=10.0)
    outcome = resend_failed(
        {"a": "A", "b": "B"},
        answer,
        rules=rules,
        reauthorize=lambda r: None,
        give_up=lambda r, w, last: w,
        sleep=slept.append,
    )
    assert outcome is None and sent == [["a", "b"], ["b"]] and slept == [2.0]


def test_a_batch_gives_up_after_its_attempts_or_on_a_long_wait() -> None:
    def failing(pending: dict[str, str]) -> Round[str]:
        return Round(retry=dict(pending), waits=[1.0], failures={key: TransientError("x") for key in pending})

    def give_up(round_: Round[str], wait: float, last: bool) -> RateLimited | TransientError:
        return TransientError("spent") if last else RateLimited(wait)

    rules = RetryRules(attempts=2, max_inline_wait=0.5)
    long_wait = resend_failed(
        {"a": "A"}, failing, rules=rules, reauthorize=lambda r: None, give_up=give_up, sleep=print
    )
    assert isinstance(long_wait, RateLimited) and long_wait.retry_after == 1.0
    rules = RetryRules(attempts=2, max_inline_wait=5.0)
    slept: list[float] = []
    spent = resend_failed(
        {"a": "A"}, failing, rules=rules, reauthorize=lambda r: None, give_up=give_up, sleep=slept.append
    )
    assert isinstance(spent, TransientError) and slept == [1.0]
