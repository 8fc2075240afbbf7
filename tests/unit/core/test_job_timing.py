"""The job poll schedule: the fixed one until jobs are seen, then around their duration."""

from __future__ import annotations

from itertools import islice

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.job_timing import WINDOW, JobTiming


def poll_until_done(timing: JobTiming, duration_s: float) -> tuple[int, float]:
    """One job of `duration_s`: the polls it took and when it was found done."""
    elapsed = 0.0
    for polls, delay in enumerate(timing.delays(), start=1):
        elapsed += delay
        if elapsed >= duration_s:
            timing.found_done(elapsed)
            return polls, elapsed
    raise AssertionError("unreachable")


def test_before_any_job_the_configured_first_poll_and_backoff() -> None:
    timing = JobTiming(first_s=0.1, cap_s=2.0)
    assert timing.typical_s is None
    delays = list(islice(timing.delays(), 12))
    assert delays[:3] == [0.1, 0.1 * 1.5, 0.1 * 1.5 * 1.5]
    assert delays[-1] == 2.0


@settings(max_examples=200)
@given(
    duration=st.floats(0.02, 20.0),
    first=st.floats(0.001, 1.0),
)
def test_steady_jobs_are_found_soon_after_they_finish_in_two_or_three_polls(
    duration: float, first: float
) -> None:
    timing = JobTiming(first_s=first, cap_s=30.0)
    for _ in range(30 * WINDOW):  # long enough for the median to settle from any start
        poll_until_done(timing, duration)
    polls, found_at = poll_until_done(timing, duration)
    assert polls <= 3
    assert found_at - duration <= 0.12 * duration + 0.01


def test_the_fixed_schedule_found_a_200_ms_job_at_250_ms_and_this_finds_it_sooner() -> None:
    timing = JobTiming(first_s=0.1, cap_s=2.0)
    assert poll_until_done(timing, 0.2) == (2, 0.25)
    for _ in range(WINDOW):
        poll_until_done(timing, 0.2)
    polls, found_at = poll_until_done(timing, 0.2)
    assert polls <= 2
    assert found_at < 0.225


def test_jobs_getting_quicker_are_noticed() -> None:
    timing = JobTiming(first_s=0.1, cap_s=2.0)
    for _ in range(2 * WINDOW):
        poll_until_done(timing, 1.0)
    for _ in range(20 * WINDOW):
        poll_until_done(timing, 0.1)
    typical = timing.typical_s
    assert typical is not None and typical < 0.12


def test_a_few_long_jobs_do_not_move_the_schedule() -> None:
    timing = JobTiming(first_s=0.1, cap_s=2.0)
    for index in range(4 * WINDOW):
        timing.found_done(30.0 if index % 4 == 0 else 0.2)
    assert timing.typical_s == 0.2


@given(
    seen=st.lists(st.floats(0.0, 100.0), max_size=3 * WINDOW),
    first=st.floats(0.0, 5.0),
    cap=st.floats(0.01, 60.0),
)
def test_delays_are_never_negative_never_past_the_cap_and_reach_it(
    seen: list[float], first: float, cap: float
) -> None:
    timing = JobTiming(first_s=first, cap_s=cap)
    for after in seen:
        timing.found_done(after)
    delays = list(islice(timing.delays(), 2000))
    assert all(0.0 <= delay <= cap for delay in delays)
    if first > 0 or seen:
        assert delays[-1] == cap or sum(delays) >= 2 * max(seen, default=0.0)
