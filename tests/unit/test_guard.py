"""The dead-letter guard trips before the write that passes its share, and only then."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.guard import DlqGuard


def test_a_stream_of_dead_letters_trips_after_min_events() -> None:
    guard = DlqGuard(window=100, max_share=0.5, min_events=10)
    admitted = [guard.admit() for _ in range(20)]
    # Nine are let through while there is too little to judge; the tenth would make 10/10.
    assert admitted == [True] * 9 + [False] * 11
    assert guard.tripped


def test_a_healthy_mix_never_trips() -> None:
    guard = DlqGuard(window=100, max_share=0.5, min_events=10)
    for n in range(10_000):
        if n % 10 == 0:
            assert guard.admit()
        else:
            guard.deleted()
    assert not guard.tripped
    assert guard.share == 0.1


def test_old_outcomes_leave_the_window() -> None:
    guard = DlqGuard(window=10, max_share=0.5, min_events=10)
    for _ in range(5):
        assert guard.admit()
    for _ in range(5):
        guard.deleted()
    assert guard.share == 0.5
    for _ in range(5):
        guard.deleted()  # the five dead letters slide out
    assert guard.share == 0.0
    assert all(guard.admit() for _ in range(5))
    assert not guard.admit()  # 6 of 10 would pass one half


@given(st.lists(st.booleans(), max_size=400), st.integers(1, 50), st.floats(0.05, 0.95))
def test_no_admitted_dead_letter_passes_the_share_once_judged(
    outcomes: list[bool], window: int, max_share: float
) -> None:
    guard = DlqGuard(window=window, max_share=max_share, min_events=window)
    written: list[bool] = []
    for dead in outcomes:
        if not dead:
            guard.deleted()
            written.append(False)
            continue
        if not guard.admit():
            assert guard.tripped
            # Refused only when this one would have passed the share of a full window.
            last = [*written[-(window - 1) :], True] if window > 1 else [True]
            assert len(last) == window and sum(last) / window > max_share
            break
        written.append(True)
        last = written[-window:]
        # Admitted with a full window to judge by: the share holds.
        if len(last) == window:
            assert sum(last) / window <= max_share + 1e-9
