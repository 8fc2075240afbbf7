"""The dead-letter guard trips before the write that passes its share, and only then; records
that never decoded count only where nothing near them decodes."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.dlq import DlqReason
from consumer.core.guard import DlqGuard


def test_a_stream_of_dead_letters_trips_once_judged() -> None:
    guard = DlqGuard(window=100, max_share=0.5, min_events=10)
    first = guard.consume(20)
    admitted = [guard.admit(first + n) for n in range(20)]
    # 20 consumed, all dead: the 11th dead letter would pass one half of the 20.
    assert admitted == [True] * 10 + [False] * 10
    assert guard.tripped


def test_a_burst_consumed_at_once_cannot_slip_past_the_window() -> None:
    guard = DlqGuard(window=100, max_share=0.5, min_events=100)
    first = guard.consume(300)
    admitted = sum(guard.admit(first + n) for n in range(300))
    assert guard.tripped and admitted <= 50


def test_a_healthy_backlog_does_not_trip_although_invalid_events_finish_first() -> None:
    # 5000 consumed at once; the 1% invalid ones are dead-lettered before any other finishes.
    guard = DlqGuard(window=1000, max_share=0.5, min_events=100)
    first = guard.consume(5000)
    assert all(guard.admit(first + n) for n in range(0, 5000, 100))
    assert not guard.tripped


def test_old_dead_letters_leave_the_window() -> None:
    guard = DlqGuard(window=10, max_share=0.5, min_events=10)
    first = guard.consume(10)
    assert all(guard.admit(first + n) for n in range(5))
    assert guard.share == 0.5
    first = guard.consume(20)  # the five dead ones are far behind now
    assert guard.share == 0.0
    assert all(guard.admit(first + 15 + n) for n in range(5))
    assert not guard.admit(first + 10)  # a sixth within a window's reach would pass one half


@given(st.lists(st.booleans(), min_size=1, max_size=400), st.integers(1, 50), st.floats(0.05, 0.95))
def test_no_admitted_dead_letter_passes_the_share(
    outcomes: list[bool], window: int, max_share: float
) -> None:
    """Whatever order events finish in, the dead letters admitted among any `window`
    consecutive consumed events never pass the share once a verdict is due."""
    guard = DlqGuard(window=window, max_share=max_share, min_events=window)
    first = guard.consume(len(outcomes))
    order = [n for n, dead in enumerate(outcomes) if dead]
    random.Random(len(outcomes)).shuffle(order)
    written: set[int] = set()
    for n in order:
        if guard.admit(first + n):
            written.add(n)
        else:
            assert guard.tripped
            break
    if len(outcomes) >= window:
        for start in range(len(outcomes) - window + 1):
            inside = sum(1 for n in written if start <= n < start + window)
            assert inside / window <= max_share + 1e-9


def test_an_older_letter_finishing_late_is_still_judged() -> None:
    """Found by the property test below: events 10, 11 and 15 dead, finishing 10, 15, 11.
    Forgetting letters behind the newest one judged (15) let 11 pass unchecked."""
    guard = DlqGuard(window=2, max_share=0.5, min_events=2)
    first = guard.consume(16)
    assert guard.admit(first + 10)
    assert guard.admit(first + 15)
    assert not guard.admit(first + 11)


def test_letters_out_of_every_reach_are_forgotten() -> None:
    guard = DlqGuard(window=10, max_share=0.5, min_events=10, horizon=100)
    first = guard.consume(10)
    assert guard.admit(first)
    guard.consume(1000)
    assert guard.admit(first + 1005)
    assert guard._dead == [first + 1005]


# --- records that never decoded (issue 16) ------------------------------------------------------

JUNK = DlqReason.UNKNOWN_SCHEMA


def test_junk_among_events_that_decode_does_not_count() -> None:
    """Nine records in ten junk from one producer, the tenth a valid erasure: the decoder
    works, the junk is its producer's, and no share of it stops the consumer."""
    guard = DlqGuard(window=100, max_share=0.5, min_events=10)
    first = guard.consume(5000)
    guard.decoded([first + n for n in range(0, 5000, 10)])
    assert all(guard.admit(first + n, JUNK) for n in range(5000) if n % 10)
    assert all(guard.admit(first + n, DlqReason.DECODE_ERROR) for n in range(0, 5000, 10))
    assert not guard.tripped
    assert guard.share == 0.0  # none of it counted


def test_junk_where_nothing_decodes_counts_as_before() -> None:
    """Nothing decodes: the likelier cause is ours (a reader schema, the registry), so it stops."""
    guard = DlqGuard(window=100, max_share=0.5, min_events=10)
    first = guard.consume(300)
    admitted = sum(guard.admit(first + n, DlqReason.DECODE_ERROR) for n in range(300))
    assert guard.tripped and admitted <= 50


def test_junk_counts_once_decoded_events_are_out_of_its_window() -> None:
    guard = DlqGuard(window=10, max_share=0.5, min_events=10)
    first = guard.consume(100)
    guard.decoded([first + 50])
    assert guard.admit(first + 41, JUNK) and guard.admit(first + 59, JUNK)  # within 10: free
    assert guard._dead == []
    assert guard.admit(first + 40, JUNK)  # 10 away: counted
    assert guard._dead == [first + 40]


def test_decoded_events_do_not_excuse_events_that_decoded_and_failed() -> None:
    guard = DlqGuard(window=100, max_share=0.5, min_events=10)
    first = guard.consume(300)
    guard.decoded([first + n for n in range(300)])
    admitted = sum(guard.admit(first + n, DlqReason.REJECTED) for n in range(300))
    assert guard.tripped and admitted <= 50


@given(
    st.sets(st.integers(0, 400), max_size=60),
    st.integers(0, 400),
    st.integers(1, 60),
)
def test_decoding_near_is_exact(decoded: set[int], ordinal: int, window: int) -> None:
    """However the decoded ordinals fall into stretches, and in however many reports."""
    guard = DlqGuard(window=window)
    guard.consume(401)
    ordered = sorted(decoded)
    guard.decoded(ordered[::2])
    guard.decoded(ordered[1::2])
    expected = any(abs(o - ordinal) < window for o in decoded)
    assert guard._decoding_near(ordinal) is expected


def test_decoded_stretches_out_of_every_reach_are_forgotten() -> None:
    guard = DlqGuard(window=10, horizon=100)
    first = guard.consume(10)
    guard.decoded([first + 3])
    guard.consume(10_000)
    guard.decoded([first + 10_005])
    assert list(guard._decoded) == [(first + 10_005) // 10]
