"""Platform jobs are polled when jobs like them have been finishing (core/job_timing.py), on
the executor's own clock: a scripted Mem0 whose jobs take 200 ms of that clock."""

from __future__ import annotations

import asyncio

import pytest

from consumer.core.capabilities import PLATFORM
from consumer.core.events import Scope
from consumer.core.planner import DeleteAll
from consumer.core.retry import RetryPolicy
from consumer.core.verification import OFF
from consumer.mem0.client import JobStatus
from consumer.mem0.downstream import Downstream
from consumer.pipeline.executor import Executor

JOB_S = 0.2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class TimedJobs:
    """Every delete_all starts a job that succeeds JOB_S after it was asked."""

    caps = PLATFORM

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started: dict[str, float] = {}
        self.polls: dict[str, int] = {}

    async def delete_all(self, scope: Scope) -> str | None:
        job = f"job-{len(self.started)}"
        self.started[job] = self.clock()
        return job

    async def job_status(self, job_id: str) -> JobStatus:
        self.polls[job_id] = self.polls.get(job_id, 0) + 1
        done = self.clock() - self.started[job_id] >= JOB_S
        return JobStatus("SUCCEEDED" if done else "PENDING")

    async def probe(self, *, admin: bool = False) -> None:
        return None


def test_jobs_are_found_soon_after_they_finish_once_their_time_is_known() -> None:
    clock = Clock()
    mem0 = TimedJobs(clock)

    async def main() -> list[float]:
        executor = Executor(
            mem0,  # type: ignore[arg-type]
            Downstream(mem0),  # type: ignore[arg-type]
            RetryPolicy(),
            job_poll_s=0.1,
            verify=OFF,
            clock=clock,
            sleep=clock.sleep,
        )
        found_after = []
        for index in range(40):
            started = clock()
            outcome = await executor.run(DeleteAll(Scope.of(user_id=f"u{index}"), (0,)))
            assert outcome.failures == {}
            found_after.append(clock() - started)
        return found_after

    found_after = asyncio.run(main())
    # Before any job was seen, the configured schedule: 100 ms, then 150 more.
    assert found_after[0] == pytest.approx(0.25) and mem0.polls["job-0"] == 2
    # Then around 200 ms: found within a tenth of it, in two polls at most.
    assert all(JOB_S <= after <= 1.1 * JOB_S + 1e-9 for after in found_after[20:])
    assert all(mem0.polls[f"job-{n}"] <= 2 for n in range(20, 40))
