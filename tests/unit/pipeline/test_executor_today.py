"""The executor against the Mem0 of today: entity records, linked deletes, a self-hosted 502
`unknown`, jobs not readable at once, and a key without the admin role (a scripted fake)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from consumer.core.capabilities import OSS, PLATFORM, Capabilities
from consumer.core.events import Scope
from consumer.core.outcome import Outcome
from consumer.core.planner import DeleteAll, DeleteEntity, DeleteIds
from consumer.core.retry import RetryPolicy
from consumer.core.verification import VerifyPolicy
from consumer.mem0.client import JobStatus
from consumer.mem0.downstream import Downstream, DownstreamState
from consumer.mem0.errors import AdminRoleError, JobNotFound, UncertainError
from consumer.pipeline.executor import Executor

UUIDS = [f"3f2b7c1e-{n:04x}-4c3a-9d59-0f1c6e4b2a{n:02x}" for n in range(8)]


class Scripted:
    """A Mem0 whose answers the test sets; it counts every call."""

    def __init__(self, caps: Capabilities = PLATFORM) -> None:
        self.caps = caps
        self.calls: Counter[str] = Counter()
        self.entities = {"alice"}
        self.entity_survives = 0  # entity deletes that leave the entity in place
        self.unknown_502 = 0  # calls answered 502 `unknown` (-1: all)
        self.hidden_jobs = 0  # job polls answered 404
        self.cascade = {UUIDS[0]: 2, UUIDS[1]: 1}
        self.memories = set(UUIDS)
        self.probes: list[bool] = []

    async def delete_all(self, scope: Scope) -> str | None:
        self.calls["delete_all"] += 1
        if self.unknown_502:
            self.unknown_502 -= 1
            raise UncertainError("HTTP 502 on delete_all: unknown", operation="delete_all")
        return f"job-{self.calls['delete_all']}"

    async def job_status(self, job_id: str) -> JobStatus:
        self.calls["job_status"] += 1
        if self.hidden_jobs:
            self.hidden_jobs -= 1
            raise JobNotFound("HTTP 404 on job_status", operation="job_status", status=404)
        return JobStatus("SUCCEEDED")

    async def list_ids(self, scope: Scope, limit: int) -> list[str]:
        self.calls["list"] += 1
        return []

    async def delete_entity(self, entity_type: str, entity_id: str) -> str | None:
        self.calls["entity_delete"] += 1
        assert entity_type == "user"
        if entity_id not in self.entities:
            return None
        if self.entity_survives:
            self.entity_survives -= 1
        else:
            self.entities.discard(entity_id)
        return f"entity-job-{self.calls['entity_delete']}"

    async def entity_exists(self, entity_type: str, entity_id: str) -> bool:
        self.calls["entity_get"] += 1
        return entity_id in self.entities

    async def delete_linked(self, memory_id: str) -> int:
        self.calls["delete_linked"] += 1
        self.memories.discard(memory_id)
        return self.cascade.get(memory_id, 0)

    async def exists(self, memory_id: str) -> bool:
        self.calls["get"] += 1
        return memory_id in self.memories

    async def probe(self, *, admin: bool = False) -> None:
        self.probes.append(admin)


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def run(
    client: Any,
    operation: Any,
    *,
    verify: VerifyPolicy | None = None,
    clock: Any = None,
    **options: Any,
) -> Outcome:
    async def go() -> Outcome:
        executor = Executor(
            client,
            Downstream(client),
            RetryPolicy(),
            job_poll_s=0.0,
            verify=verify or VerifyPolicy(sample_share=1.0),
            draw=lambda: 0.0,
            sleep=_no_sleep,
            **({"clock": clock} if clock is not None else {}),
            **options,
        )
        return await asyncio.wait_for(executor.run(operation), 10)

    return asyncio.run(go())


ALICE = Scope.of(user_id="alice")


def test_an_entity_is_deleted_its_job_watched_and_read_back() -> None:
    client = Scripted()
    outcome = run(client, DeleteEntity(ALICE, (0, 1)))
    assert outcome.failures == {} and outcome.verified
    assert client.entities == set()
    assert outcome.job_id == "entity-job-1"
    assert client.calls == Counter(entity_delete=1, job_status=1, entity_get=1)
    assert outcome.calls == 3


def test_an_entity_that_is_not_there_is_already_deleted() -> None:
    client = Scripted()
    client.entities = set()
    outcome = run(client, DeleteEntity(ALICE, (0,)))
    assert outcome.failures == {} and outcome.verified and outcome.job_id is None
    # The 404 of the delete is the check: no job to watch, nothing to read back.
    assert client.calls == Counter(entity_delete=1)


def test_an_entity_left_after_its_job_is_deleted_again_then_given_up_on() -> None:
    client = Scripted()
    client.entity_survives = 1
    assert run(client, DeleteEntity(ALICE, (0,))).failures == {}
    assert client.calls["entity_delete"] == 2

    stubborn = Scripted()
    stubborn.entity_survives = 100
    outcome = run(stubborn, DeleteEntity(ALICE, (0,)), verify=VerifyPolicy(max_rounds=2))
    assert outcome.failures[0].reason == "verification_failed"
    assert "entity is still there" in outcome.failures[0].message
    assert stubborn.calls["entity_delete"] == 3


def test_linked_ids_are_one_call_each_and_each_event_gets_its_cascade() -> None:
    client = Scripted()
    operation = DeleteIds.of((UUIDS[0], UUIDS[1], UUIDS[2]), ((0,), (0, 1), (2,)), linked=True)
    outcome = run(client, operation)
    assert outcome.failures == {}
    assert client.calls["delete_linked"] == 3 and client.calls["batch_delete"] == 0
    assert outcome.cascades == {0: 3, 1: 1, 2: 0}
    assert outcome.verified


def test_plain_ids_report_no_cascade() -> None:
    client = Scripted(OSS)
    client.delete = client.delete_linked  # type: ignore[attr-defined]
    outcome = run(client, DeleteIds.of((UUIDS[2],), ((0,),)))
    assert outcome.cascades is None


def test_a_502_unknown_is_retried_a_bounded_number_of_times_even_without_a_time_budget() -> None:
    client = Scripted()
    client.unknown_502 = 3
    assert run(client, DeleteAll(ALICE, (0,)), uncertain_retries=5).failures == {}
    assert client.calls["delete_all"] == 4

    always = Scripted()
    always.unknown_502 = -1
    outcome = run(always, DeleteAll(ALICE, (0,)), uncertain_retries=2)
    assert outcome.failures[0].reason == "retries_exhausted"
    assert always.calls["delete_all"] == 3  # the first try and two retries


class _Clock:
    """Each reading advances a second: the grace period passes in a known number of polls."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_job_not_found_at_first_is_polled_again_not_dead_lettered() -> None:
    client = Scripted()
    client.hidden_jobs = 2
    outcome = run(client, DeleteAll(ALICE, (0,)), clock=_Clock(), job_not_found_grace_s=10.0)
    assert outcome.failures == {}
    assert client.calls["delete_all"] == 1 and client.calls["job_status"] == 3


def test_a_job_still_not_found_after_the_grace_is_deleted_again() -> None:
    client = Scripted()
    client.hidden_jobs = 6
    outcome = run(client, DeleteAll(ALICE, (0,)), clock=_Clock(), job_not_found_grace_s=3.0)
    assert outcome.failures == {}
    # The first job was never found within its grace: the delete_all went out again.
    assert client.calls["delete_all"] >= 2


def test_a_missing_admin_role_halts_and_is_probed_with_the_permission_itself() -> None:
    client = Scripted(OSS)
    causes: list[str | None] = []

    async def go() -> tuple[DownstreamState, str]:
        downstream = Downstream(client, probe_interval_s=0.01, on_halt_cause=causes.append)
        downstream.halt(AdminRoleError("HTTP 403: Admin role required.", operation="delete_all"))
        halted = downstream.state, downstream.describe_halt()
        await asyncio.wait_for(downstream.wait_open(), 5)
        return halted

    state, words = asyncio.run(go())
    assert state is DownstreamState.HALTED
    assert "admin role" in words and "MEM0_API_KEY" in words
    assert client.probes == [True]
    assert causes == ["admin_role_required", None]


def test_probes_after_a_refused_key_are_plain_reads() -> None:
    from consumer.mem0.errors import AuthError

    client = Scripted()

    async def go() -> None:
        downstream = Downstream(client, probe_interval_s=0.01)
        downstream.halt(AuthError("HTTP 401", operation="delete_all", status=401))
        assert downstream.describe_halt() == "downstream halted (authentication refused)"
        await asyncio.wait_for(downstream.wait_open(), 5)

    asyncio.run(go())
    assert client.probes == [False]


def test_an_answer_nested_past_the_parsers_depth_is_no_answer_not_a_crash() -> None:
    """A hostile or broken server's `[[[[...` makes json.loads raise RecursionError; the call
    must fail as a call (here: a job status without a status, retried), never raise it."""
    import httpx

    from consumer.mem0.client import make_http_client
    from consumer.mem0.errors import TransientError
    from consumer.mem0.platform_client import PlatformClient

    deep = b"[" * 100_000 + b"]" * 100_000

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep, headers={"content-type": "application/json"})

    async def go() -> None:
        http = make_http_client(
            "http://mem0.invalid",
            {},
            timeout_s=5,
            max_connections=1,
            transport=httpx.MockTransport(answer),
        )
        client = PlatformClient(http)
        try:
            await client.job_status("job-1")
        finally:
            await client.aclose()

    try:
        asyncio.run(go())
    except TransientError as exc:
        assert "without a status" in str(exc)
    else:
        raise AssertionError("a status was read out of nothing")
