"""The adaptive client-side rate: halves on 429, creeps back, spaces requests while limited."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.pacing import AdaptiveRate


def test_unlimited_until_the_first_throttle() -> None:
    pace = AdaptiveRate()
    assert all(pace.reserve(t / 1000) == 0.0 for t in range(5000))
    assert pace.rate is None


def test_a_stray_429_is_left_to_the_retry() -> None:
    pace = AdaptiveRate(max_share=0.1)
    for t in range(2000):  # 1000 requests per second, one in twenty throttled
        pace.reserve(t / 1000)
        if t % 20 == 0:
            pace.throttled(t / 1000)
    assert pace.rate is None


def throttle_heavily(pace: AdaptiveRate, until: float) -> None:
    """1000 requests per second until `until`, the last 700 of them all throttled."""
    steps = round(until * 1000)
    for t in range(steps):
        pace.reserve(t / 1000)
        if t >= steps - 700:
            pace.throttled(t / 1000)


def test_a_throttled_share_halves_the_observed_rate_and_spaces_requests() -> None:
    pace = AdaptiveRate(floor=1.0)
    throttle_heavily(pace, 2.0)
    assert pace.rate == pytest.approx(500, rel=0.01)
    waits = [pace.reserve(3.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.002, 0.004, 0.006, 0.008], abs=1e-4)


def test_throttles_of_one_burst_cut_once() -> None:
    pace = AdaptiveRate(rate=100.0, min_requests=1, max_share=0.0)
    pace._throttled_rate = 100.0
    pace.reserve(10.0)
    pace.throttled(10.0)
    pace.throttled(10.2)
    assert pace.rate == 50.0
    pace.throttled(11.5)
    assert pace.rate == 25.0


def test_it_never_goes_below_the_floor() -> None:
    pace = AdaptiveRate(floor=2.0, rate=3.0, min_requests=1, max_share=0.0)
    for n in range(10):
        pace.reserve(float(n * 2))
        pace.throttled(float(n * 2))
    assert pace.rate == 2.0


def test_calm_restores_the_rate_then_lifts_the_limit() -> None:
    pace = AdaptiveRate(recovery_per_s=10.0, rate=None)
    throttle_heavily(pace, 1.0)
    assert pace.rate == pytest.approx(500, rel=0.01)
    cut_rate, cut_at = pace.rate, pace._last_cut
    pace.succeeded(11.0)
    # 10 requests per second regained per second since the cut.
    assert pace.rate == pytest.approx(cut_rate + 10.0 * (11.0 - cut_at))
    pace.succeeded(200.0)  # 189 s calm: past twice the throttled rate
    assert pace.rate is None


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=2.0),
            st.sampled_from(["reserve", "throttled", "succeeded"]),
        ),
        max_size=300,
    ),
    st.floats(min_value=0.5, max_value=20.0),
)
def test_invariants_under_any_sequence(steps: list[tuple[float, str]], floor: float) -> None:
    pace = AdaptiveRate(floor=floor)
    now = 0.0
    last_slot = float("-inf")
    for dt, action in steps:
        now += dt
        if action == "reserve":
            rate = pace.rate
            wait = pace.reserve(now)
            assert wait >= 0.0
            if rate is None:
                assert wait == 0.0
            else:
                slot = now + wait
                # Booked slots never go back, and are at least 1/rate apart.
                assert slot >= last_slot + 1.0 / rate - 1e-9 or last_slot == float("-inf")
                last_slot = slot
        elif action == "throttled":
            pace.throttled(now)
        else:
            pace.succeeded(now)
        if pace.rate is None:
            last_slot = float("-inf")
        else:
            assert pace.rate >= floor
