"""The trial gate during an outage: one call at a time, never a deadlock, all free on recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from consumer.core.capabilities import PLATFORM
from consumer.core.events import Scope
from consumer.core.outcome import Outcome
from consumer.core.planner import DeleteAll
from consumer.core.retry import RetryPolicy
from consumer.mem0.client import JobStatus
from consumer.mem0.downstream import Downstream
from consumer.mem0.errors import TransientError
from consumer.pipeline.executor import Executor


async def _retrying(downstream: Downstream, call: Callable[[], Awaitable[None]]) -> None:
    """The executor's retry loop, in short: a turn per call, back off on a transient error."""
    while True:
        try:
            async with downstream.turn():
                await call()
            downstream.succeeded()
            return
        except TransientError:
            downstream.backing_off()
            await asyncio.sleep(0.01)


def test_an_outage_lets_one_trial_through_at_a_time_then_everyone_on_recovery() -> None:
    sent: list[float] = []
    up = asyncio.Event()

    async def call() -> None:
        sent.append(time.monotonic())
        await asyncio.sleep(0.001)
        if not up.is_set():
            raise TransientError("HTTP 503", operation="delete_all", status=503)

    async def main() -> None:
        downstream = Downstream(None, struggle_after_s=0.1)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(_retrying(downstream, call)) for _ in range(100)]
        await asyncio.sleep(1.0)
        started = sent[0]
        late = [t for t in sent if t > started + 0.3]
        # Struggling from 0.1 s: trials 0.25 s then 0.5 s apart, not 100 tasks every 10 ms.
        assert len(late) <= 3, len(late)
        up.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)

    asyncio.run(main())


class _FlakyPlatform:
    """delete_all fails three times with a 503, then starts a job that succeeds at once."""

    caps = PLATFORM

    def __init__(self) -> None:
        self.attempts = 0

    async def delete_all(self, scope: Scope) -> str:
        self.attempts += 1
        if self.attempts < 4:
            raise TransientError("HTTP 503", operation="delete_all", status=503)
        return "job-1"

    async def job_status(self, job_id: str) -> JobStatus:
        return JobStatus("SUCCEEDED", None)


def test_a_delete_all_during_an_outage_does_not_wait_on_its_own_turn() -> None:
    """The delete_all step (start the job, then watch it) is made of calls that take their own
    turns; the step must not hold the turn they need (it is not reentrant)."""
    client = _FlakyPlatform()

    async def no_sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    async def main() -> Outcome:
        downstream = Downstream(client, struggle_after_s=0.0)  # type: ignore[arg-type]
        downstream.backing_off()  # struggling from the start: every call takes the turn
        executor = Executor(
            client,  # type: ignore[arg-type]
            downstream,
            RetryPolicy(),
            job_poll_s=0.0,
            sleep=no_sleep,
        )
        return await asyncio.wait_for(executor.run(DeleteAll(Scope.of(user_id="u"), (0,))), 20)

    outcome = asyncio.run(main())
    assert outcome.failures == {} and client.attempts == 4
