"""Outcome classification, backoff with jitter, the retry budget and Retry-After parsing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.retry import RetryPolicy, Verdict, classify, parse_retry_after

NOW = 1_700_000_000.0

# classify


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
@pytest.mark.parametrize("missing_is_success", [False, True])
def test_2xx_is_success(status: int, missing_is_success: bool) -> None:
    assert classify(status, missing_is_success=missing_is_success) is Verdict.SUCCESS


def test_404_is_success_only_where_a_missing_memory_means_done() -> None:
    assert classify(404, missing_is_success=True) is Verdict.SUCCESS
    assert classify(404, missing_is_success=False) is Verdict.REJECT
    assert classify(404) is Verdict.REJECT


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("missing_is_success", [False, True])
def test_401_and_403_halt(status: int, missing_is_success: bool) -> None:
    assert classify(status, missing_is_success=missing_is_success) is Verdict.HALT


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504, 599])
@pytest.mark.parametrize("missing_is_success", [False, True])
def test_transient_outcomes_are_retried(status: int | None, missing_is_success: bool) -> None:
    assert classify(status, missing_is_success=missing_is_success) is Verdict.RETRY


@given(st.integers(400, 499).filter(lambda s: s not in {401, 403, 404, 408, 425, 429}))
def test_any_other_4xx_rejects_the_request(status: int) -> None:
    assert classify(status) is Verdict.REJECT
    assert classify(status, missing_is_success=True) is Verdict.REJECT


@pytest.mark.parametrize("status", [400, 405, 409, 410, 413, 422])
def test_common_rejections(status: int) -> None:
    assert classify(status) is Verdict.REJECT


@given(st.integers(500, 599))
def test_every_5xx_is_retried(status: int) -> None:
    assert classify(status) is Verdict.RETRY


# delay


POLICIES = st.builds(
    RetryPolicy,
    base_s=st.floats(0.001, 10.0),
    cap_s=st.floats(0.0, 120.0),
    retry_after_cap_s=st.floats(0.0, 600.0),
)
DRAW = st.floats(0.0, 1.0, exclude_max=True)


@given(POLICIES, st.integers(0, 10**6), DRAW)
@settings(max_examples=300)
def test_backoff_is_jittered_within_its_ceiling(
    policy: RetryPolicy, attempt: int, draw: float
) -> None:
    delay = policy.delay(attempt, draw)
    ceiling = min(policy.cap_s, policy.base_s * 2.0 ** min(attempt, 1000))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= ceiling
    assert delay <= policy.cap_s


@given(POLICIES, st.integers(0, 10**6))
def test_full_jitter_spans_zero_to_the_ceiling(policy: RetryPolicy, attempt: int) -> None:
    assert policy.delay(attempt, 0.0) == 0.0
    ceiling = min(policy.cap_s, policy.base_s * 2.0 ** min(attempt, 1000))
    assert policy.delay(attempt, 0.5) == pytest.approx(ceiling / 2)


def test_backoff_doubles_until_the_cap() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=10.0)
    almost_one = math.nextafter(1.0, 0.0)
    ceilings = [policy.delay(attempt, almost_one) for attempt in range(8)]
    assert ceilings == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0])
    assert policy.delay(10**18, almost_one) == pytest.approx(10.0)


@given(POLICIES, st.integers(0, 10**6), DRAW, st.floats(-1e9, 1e9))
def test_retry_after_wins_but_is_capped_and_never_negative(
    policy: RetryPolicy, attempt: int, draw: float, retry_after: float
) -> None:
    delay = policy.delay(attempt, draw, retry_after)
    assert 0.0 <= delay <= policy.retry_after_cap_s
    assert delay == min(max(retry_after, 0.0), policy.retry_after_cap_s)


def test_retry_after_beyond_the_backoff_cap_is_honoured() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0, retry_after_cap_s=60.0)
    assert policy.delay(0, 0.0, 42.0) == 42.0
    assert policy.delay(0, 0.0, 3600.0) == 60.0
    assert policy.delay(0, 0.9, 0.0) == 0.0
    assert policy.delay(0, 0.9, -5.0) == 0.0


# gives_up


@given(st.floats(0, 1e9), st.floats(0, 1e9), st.floats(0, 1e6))
def test_without_a_budget_it_never_gives_up(started: float, elapsed: float, delay: float) -> None:
    assert not RetryPolicy(max_duration_s=None).gives_up(started, started + elapsed, delay)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**4), st.integers(0, 10**6))
def test_with_a_budget_it_gives_up_exactly_past_it(
    started: int, elapsed: int, delay: int, budget: int
) -> None:
    # Whole seconds, so the comparison below is exact.
    policy = RetryPolicy(max_duration_s=float(budget))
    gives_up = policy.gives_up(float(started), float(started + elapsed), float(delay))
    assert gives_up == (elapsed + delay > budget)


def test_the_budget_boundary() -> None:
    policy = RetryPolicy(max_duration_s=60.0)
    assert not policy.gives_up(100.0, 150.0, 10.0)  # exactly at the budget: one more try
    assert policy.gives_up(100.0, 150.0, 10.5)
    assert policy.gives_up(100.0, 161.0, 0.0)
    assert not policy.gives_up(100.0, 100.0, 0.0)


# parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0.0), ("5", 5.0), (" 120 ", 120.0), ("007", 7.0)]
)
def test_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_an_http_date_in_the_future() -> None:
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:00 GMT", NOW) == pytest.approx(100.0)


def test_an_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "-5",
        "1.5",
        "5s",
        "1e3",
        "inf",
        "nan",
        "\u00b2",  # a digit to str.isdigit, not to float
        "\u0661\u0662",  # Arabic-Indic digits: not the ASCII DIGIT of RFC 9110
        "Tue, 14 Nov 2023 25:99:00 GMT",
        "Tue, 14 Nov 2023 22:15:00 -0000",  # no known zone: no usable instant
    ],
)
def test_garbage_is_no_hint(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@given(st.text(max_size=40))
@settings(max_examples=150)
def test_any_text_parses_to_none_or_a_non_negative_delay(value: str) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or seconds >= 0.0


@given(st.integers(0, 10**9))
def test_any_delta_seconds_round_trips(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == float(seconds)


def test_what_must_be_waited_out_doubles_from_half_a_second_to_thirty() -> None:
    from itertools import islice

    from consumer.core.retry import wait_out_delays

    assert list(islice(wait_out_delays(), 9)) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
