"""The repeat limiter logs a kind's first line, then at most one reminder per window, and
accounts for every occurrence it did not log."""

from __future__ import annotations

from itertools import accumulate, pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.repeats import Logged, RepeatLimiter

WINDOW = 60.0

# Occurrences: (kind, seconds after the previous one). Small gaps make repeats within a
# window; the occasional long one makes quiet periods.
gaps = st.one_of(
    st.floats(min_value=0, max_value=5, allow_nan=False),
    st.floats(min_value=0, max_value=200, allow_nan=False),
)
occurrences = st.lists(st.tuples(st.integers(0, 4), gaps), max_size=300)


def _offer_all(
    limiter: RepeatLimiter[int], seq: list[tuple[int, float]]
) -> list[tuple[int, float, Logged]]:
    """Offer each occurrence at its time; the lines logged as (kind, time, verdict)."""
    times = list(accumulate(gap for _, gap in seq))
    logged = []
    for (kind, _), now in zip(seq, times, strict=True):
        verdict = limiter.offer(kind, now)
        if verdict is not None:
            logged.append((kind, now, verdict))
    return logged


def test_a_steady_repeat_is_one_line_then_a_reminder_per_window() -> None:
    limiter: RepeatLimiter[str] = RepeatLimiter(WINDOW)
    lines = [(t / 20, limiter.offer("fail", t / 20)) for t in range(20 * 150)]  # 20/s, 150 s
    logged = [(now, verdict) for now, verdict in lines if verdict is not None]
    assert [now for now, _ in logged] == [0.0, 60.0, 120.0]
    first, reminder, second = (verdict for _, verdict in logged)
    assert first == Logged(first=True, unlogged=0, since_s=0.0)
    assert not reminder.first and reminder.occurrences == 20 * 60  # every one since line 1
    assert second.occurrences == 20 * 60
    assert limiter.pending() == 20 * 30 - 1


def test_a_kind_back_after_a_quiet_window_is_a_state_change_with_its_remainder() -> None:
    limiter: RepeatLimiter[str] = RepeatLimiter(WINDOW)
    assert limiter.offer("fail", 0.0) is not None
    assert limiter.offer("fail", 1.0) is None
    assert limiter.offer("fail", 2.0) is None
    back = limiter.offer("fail", 62.0)  # 60 s after it was last seen
    assert back == Logged(first=True, unlogged=2, since_s=62.0)
    assert limiter.pending() == 0


def test_the_table_forgets_the_kind_seen_least_recently() -> None:
    limiter: RepeatLimiter[str] = RepeatLimiter(WINDOW, capacity=2)
    limiter.offer("a", 0.0)
    limiter.offer("a", 1.0)  # counted
    limiter.offer("b", 2.0)
    limiter.offer("c", 3.0)  # pushes "a" out, with its repeat
    assert len(limiter) == 2
    assert limiter.dropped == 1
    assert limiter.offer("a", 4.0) == Logged(first=True, unlogged=0, since_s=0.0)


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        RepeatLimiter(0.0)
    with pytest.raises(ValueError, match="one kind"):
        RepeatLimiter(WINDOW, capacity=0)


@given(occurrences)
def test_never_more_than_one_line_per_kind_per_window(seq: list[tuple[int, float]]) -> None:
    logged = _offer_all(RepeatLimiter(WINDOW), seq)
    for kind in {kind for kind, _, _ in logged}:
        times = [now for k, now, _ in logged if k == kind]
        assert all(later - earlier >= WINDOW for earlier, later in pairwise(times))
    # Hence at most K lines in any window, K the number of kinds (5 here).
    times = [now for _, now, _ in logged]
    for i, start in enumerate(times):
        assert sum(1 for now in times[i:] if now < start + WINDOW) <= 5


@given(occurrences)
def test_a_new_kind_always_gets_through(seq: list[tuple[int, float]]) -> None:
    limiter: RepeatLimiter[int] = RepeatLimiter(WINDOW)
    seen: dict[int, float] = {}
    now = 0.0
    for kind, gap in seq:
        now += gap
        verdict = limiter.offer(kind, now)
        if kind not in seen or now - seen[kind] >= WINDOW:
            assert verdict is not None and verdict.first
        else:
            assert verdict is None or not verdict.first
        seen[kind] = now


@given(occurrences, st.integers(1, 6))
def test_every_occurrence_is_logged_or_counted(seq: list[tuple[int, float]], capacity: int) -> None:
    limiter: RepeatLimiter[int] = RepeatLimiter(WINDOW, capacity)
    logged = _offer_all(limiter, seq)
    reported = sum(verdict.unlogged for _, _, verdict in logged)
    assert len(seq) == len(logged) + reported + limiter.pending() + limiter.dropped
    assert len(limiter) <= capacity
