"""The FIFO call limit: never more than its size in flight, first come first served, and a
cancelled waiter neither keeps nor loses a slot."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.mem0.slots import Slots


def test_a_limit_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Slots(0)


@given(
    size=st.integers(1, 5),
    holds=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    cancel=st.sets(st.integers(0, 29), max_size=8),
)
@settings(max_examples=150, deadline=None)
def test_at_most_size_in_flight_in_order_and_no_slot_leaks(
    size: int, holds: list[int], cancel: set[int]
) -> None:
    async def main() -> None:
        slots = Slots(size)
        in_flight = 0
        peak = 0
        entered: list[int] = []

        async def call(index: int, ticks: int) -> None:
            nonlocal in_flight, peak
            async with slots:
                entered.append(index)
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    for _ in range(ticks):
                        await asyncio.sleep(0)
                finally:
                    in_flight -= 1

        tasks = [asyncio.create_task(call(i, ticks)) for i, ticks in enumerate(holds)]
        await asyncio.sleep(0)  # every task has started and queued
        for index in sorted(cancel):
            if index < len(tasks):
                tasks[index].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= size
        # First come, first served among those that entered.
        assert entered == sorted(entered)
        # Every task not cancelled got in and ended well; and all slots are free again.
        finished = {i for i, t in enumerate(tasks) if not t.cancelled()}
        assert all(tasks[i].exception() is None for i in finished)
        assert finished <= set(entered)
        assert (slots.free, slots.waiting) == (size, 0)

    asyncio.run(main())


def test_a_slot_handed_to_a_waiter_cancelled_at_that_moment_is_passed_on() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # handed to `first`...
        first.cancel()  # ...which is cancelled before it runs
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1)  # the slot went on to `second`
        slots.release()
        assert (slots.free, slots.waiting) == (1, 0)

    asyncio.run(main())
