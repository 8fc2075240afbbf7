"""A FIFO limit on calls in flight, O(1) per call however many wait.

`asyncio.Semaphore` (Python 3.11) checks `locked()` on every acquire, and `locked()` walks
every waiter. A flush of scopes queues thousands of calls behind 64 slots, so each acquire
walked thousands of futures: a few percent of the consumer's CPU in an erasure burst, growing
with the queue. Here a released slot is handed straight to the first waiter; nothing is walked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

__all__ = ["Slots"]


class Slots:
    """`async with slots:` holds one of `size` slots; waiters are served first come, first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a limit needs at least one slot")
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            elif waiter in self._waiters:  # (a release may have dropped it already)
                self._waiters.remove(waiter)  # O(n), but only on cancellation
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to it directly: `_free` stays as is
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
