"""The bounded cache forgets the least recently used and the expired; the token bucket lets a
burst through, then its rate, in the order booked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.bounded import TokenBucket, TtlCache


def test_the_least_recently_used_goes_first() -> None:
    cache: TtlCache[int, str] = TtlCache(2)
    cache.put(1, "a")
    cache.put(2, "b")
    assert cache.get(1) == "a"  # 1 used: 2 is now the oldest
    cache.put(3, "c")
    assert (cache.get(1), cache.get(2), cache.get(3)) == ("a", None, "c")
    assert len(cache) == 2


def test_an_entry_expires_its_ttl_after_it_was_put() -> None:
    now = [0.0]
    cache: TtlCache[int, bool] = TtlCache(10, ttl=60.0, clock=lambda: now[0])
    cache.put(1, True)
    now[0] = 59.9
    assert cache.get(1) is True  # a hit does not extend it
    now[0] = 60.0
    assert cache.get(1) is None
    assert len(cache) == 0


def test_pop_forgets_and_ignores_what_is_not_there() -> None:
    cache: TtlCache[int, str] = TtlCache(2)
    cache.put(1, "a")
    cache.pop(1)
    cache.pop(7)
    assert cache.get(1) is None


@given(st.lists(st.integers(0, 50), max_size=500), st.integers(1, 20))
def test_never_more_than_its_capacity(keys: list[int], capacity: int) -> None:
    cache: TtlCache[int, int] = TtlCache(capacity)
    for key in keys:
        cache.put(key, key)
        assert len(cache) <= capacity
    for key in keys[-capacity:]:
        # The most recent `capacity` puts are all there unless repeats made room for older ones.
        assert cache.get(key) == key


def test_a_cache_holds_at_least_one() -> None:
    with pytest.raises(ValueError):
        TtlCache(0)


def test_the_burst_goes_at_once_then_the_rate_queues_in_order() -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    waits = [bucket.reserve(0.0) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3])


def test_tokens_come_back_with_time_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2)
    assert [bucket.reserve(0.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve(0.1) == 0.0  # one token back after a tenth of a second
    assert bucket.reserve(0.1) == pytest.approx(0.1)
    # A long calm saves up no more than the burst.
    assert [bucket.reserve(100.0) for _ in range(3)][2] == pytest.approx(0.1)


@given(
    st.lists(st.floats(0.0, 0.5), min_size=1, max_size=200),
    st.floats(1.0, 100.0),
    st.integers(1, 20),
)
def test_no_more_than_the_burst_plus_the_rate_start_in_any_span(
    gaps: list[float], rate: float, burst: int
) -> None:
    """Whatever the booking times, the start times (booking + wait) fit the bucket: at most
    burst + rate * span of them in any span of time."""
    bucket = TokenBucket(rate=rate, burst=burst)
    now, starts = 0.0, []
    for gap in gaps:
        now += gap
        starts.append(now + bucket.reserve(now))
    starts.sort()
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + rate * (starts[j] - first) + 1e-6


def test_a_bucket_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0.0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1.0, burst=0)
