"""The one re-delete loop and its stop rule: progress resets the count, `max_rounds` rounds in
a row without it end the loop with what is left."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from hypothesis import given
from hypothesis import strategies as st

from consumer.pipeline.redelete import Redeleted, redelete_until_gone


class Store:
    """Ids that a re-delete removes `per_round` of at a time (an old server's first 100)."""

    def __init__(self, ids: set[str], per_round: int, refuse_reads_after: int = -1) -> None:
        self.ids = ids
        self.per_round = per_round
        self.deletes = 0
        self.refuse_reads_after = refuse_reads_after

    async def find(self, _left: Collection[str]) -> Collection[str] | None:
        if self.refuse_reads_after == self.deletes:
            return None
        return sorted(self.ids)

    async def redelete(self, left: Collection[str]) -> None:
        self.deletes += 1
        for memory_id in sorted(left)[: self.per_round]:
            self.ids.discard(memory_id)


def _run(store: Store, max_rounds: int) -> Redeleted:
    async def go() -> Redeleted:
        return await redelete_until_gone(
            sorted(store.ids), store.find, store.redelete, max_rounds=max_rounds
        )

    return asyncio.run(go())


@given(st.integers(0, 30), st.integers(1, 10), st.integers(0, 4))
def test_progress_never_counts_against_the_rounds(size: int, per_round: int, rounds: int) -> None:
    store = Store({f"m{i:02d}" for i in range(size)}, per_round)
    result = _run(store, rounds)
    if size and rounds == 0:
        assert result.left and store.deletes == 0
    else:
        assert not result.left and store.ids == set()
        assert result.redeletes == store.deletes == -(-size // per_round)


@given(st.integers(1, 5), st.integers(0, 5))
def test_rounds_without_progress_end_it_with_what_is_left(size: int, rounds: int) -> None:
    store = Store({f"m{i}" for i in range(size)}, per_round=0)
    result = _run(store, rounds)
    assert sorted(result.left) == sorted(store.ids) and len(store.ids) == size
    assert result.redeletes == store.deletes == rounds and result.verdict


def test_a_refused_read_is_no_verdict_not_a_failure() -> None:
    store = Store({"a", "b"}, per_round=0, refuse_reads_after=1)
    result = _run(store, 3)
    assert result == Redeleted((), 1, verdict=False)


def test_nothing_left_is_passed_at_once() -> None:
    store = Store(set(), per_round=1)
    assert _run(store, 3) == Redeleted((), 0)
