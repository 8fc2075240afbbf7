"""Verification: the pure policy and sampling, and the executor's checks against a fake Mem0."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from consumer.core.capabilities import OSS, PLATFORM, Capabilities
from consumer.core.events import Scope
from consumer.core.outcome import Outcome
from consumer.core.planner import DeleteAll, DeleteIds, ResolveScope
from consumer.core.retry import RetryPolicy
from consumer.core.verification import OFF, VerifyPolicy, pick_sample, progressed
from consumer.mem0.client import JobStatus
from consumer.mem0.downstream import Downstream
from consumer.mem0.errors import RejectedError
from consumer.pipeline.executor import Executor

# --- the pure part --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "ids", "size"),
    [
        (VerifyPolicy(sample_share=0.1), 1000, 100),
        (VerifyPolicy(sample_share=0.1), 11, 2),  # rounded up
        (VerifyPolicy(sample_share=0.1), 3, 1),  # at least one
        (VerifyPolicy(sample_share=1.0), 7, 7),
        (VerifyPolicy(sample_share=0.0), 7, 0),
        (VerifyPolicy(enabled=False, sample_share=1.0), 7, 0),
        (VerifyPolicy(), 0, 0),
    ],
)
def test_sample_size(policy: VerifyPolicy, ids: int, size: int) -> None:
    assert policy.sample_size(ids) == size


def test_pick_sample_is_distinct_and_follows_the_draw() -> None:
    ids = [f"m{n}" for n in range(10)]
    assert pick_sample(ids, 3, lambda: 0.0) == ["m0", "m1", "m2"]
    assert pick_sample(ids, 2, lambda: 0.999999) == ["m9", "m0"]
    draws = iter([0.5, 0.1, 0.99, 0.3] * 5)
    chosen = pick_sample(ids, 4, lambda: next(draws))
    assert len(set(chosen)) == 4 and set(chosen) <= set(ids)
    assert pick_sample(ids, 20, lambda: 0.0) == ids and pick_sample(ids, 0, lambda: 0.0) == []


def test_progress_is_an_id_that_went_away_not_a_count() -> None:
    assert progressed(["a", "b"], ["b"])
    assert not progressed(["a", "b"], ["a", "b"])
    # A listing capped at two shows two again, but other ones: the first two went.
    assert progressed(["a", "b"], ["c", "d"])
    assert not progressed([], [])


# --- the executor ---------------------------------------------------------------------------


class FakeMem0:
    """Memories in a dict; some ids survive their first deletes, some never go."""

    def __init__(
        self,
        caps: Capabilities,
        memories: dict[str, dict[str, str]],
        *,
        survive: dict[str, int] | None = None,
        listing_cap: int = 10_000,
        delete_all_limit: int | None = None,
        refuse_reads: bool = False,
    ) -> None:
        self.caps = caps
        self.memories = memories
        self.calls: Counter[str] = Counter()
        self._survive = dict(survive or {})  # id -> deletes it survives (-1: all of them)
        self._listing_cap = listing_cap
        self._delete_all_limit = delete_all_limit
        self._refuse_reads = refuse_reads
        self._jobs = 0

    def _delete(self, ids: Sequence[str]) -> None:
        for memory_id in ids:
            left = self._survive.get(memory_id, 0)
            if left:
                self._survive[memory_id] = left - 1 if left > 0 else left
                continue
            self.memories.pop(memory_id, None)

    def _matching(self, scope: Scope) -> list[str]:
        return [i for i, m in self.memories.items() if scope.matches(m)]

    async def delete_all(self, scope: Scope) -> str | None:
        self.calls["delete_all"] += 1
        self._delete(self._matching(scope)[: self._delete_all_limit])
        if not self.caps.batch_endpoint:
            return None
        self._jobs += 1
        return f"job-{self._jobs}"

    async def job_status(self, job_id: str) -> JobStatus:
        self.calls["job_status"] += 1
        return JobStatus("SUCCEEDED")

    async def batch_delete(self, memory_ids: Sequence[str]) -> None:
        self.calls["batch_delete"] += 1
        self._delete(memory_ids)

    async def delete(self, memory_id: str) -> None:
        self.calls["delete"] += 1
        self._delete([memory_id])

    async def list_ids(self, scope: Scope, limit: int) -> list[str]:
        self.calls["list"] += 1
        return self._matching(scope)[: min(limit, self._listing_cap)]

    async def exists(self, memory_id: str) -> bool:
        self.calls["get"] += 1
        if self._refuse_reads:
            raise RejectedError("HTTP 400 on get: no", operation="get", status=400)
        return memory_id in self.memories

    async def probe(self) -> None:
        return None


async def _no_sleep(_seconds: float) -> None:
    return None


ON = VerifyPolicy()


def run(client: FakeMem0, operation: Any, policy: VerifyPolicy = ON) -> tuple[Outcome, list[str]]:
    results: list[str] = []

    async def go() -> Outcome:
        executor = Executor(
            client,  # type: ignore[arg-type]
            Downstream(client),  # type: ignore[arg-type]
            RetryPolicy(),
            job_poll_s=0.0,
            verify=policy,
            on_verify=results.append,
            draw=lambda: 0.0,  # the sample is the first ids
            sleep=_no_sleep,
        )
        return await executor.run(operation)

    return asyncio.run(go()), results


USER = Scope.of(user_id="u")


def users(n: int, user: str = "u") -> dict[str, dict[str, str]]:
    return {f"{user}-{i}": {"user_id": user} for i in range(n)}


def test_a_clean_job_is_listed_once_and_verified() -> None:
    client = FakeMem0(PLATFORM, users(3))
    outcome, results = run(client, DeleteAll(USER, (0, 1)))
    assert results == ["passed"] and outcome.verified and not outcome.failures
    assert client.calls == {"delete_all": 1, "job_status": 1, "list": 1}
    assert outcome.job_id == "job-1" and outcome.last_status == 200
    assert outcome.calls == 3  # the HTTP calls made, no more


def test_a_job_that_left_memories_is_deleted_again() -> None:
    client = FakeMem0(PLATFORM, users(3), survive={"u-1": 1})
    outcome, results = run(client, DeleteAll(USER, (0,)))
    assert results == ["redeleted"] and outcome.verified and not outcome.failures
    assert client.calls["delete_all"] == 2 and client.calls["list"] == 2
    assert outcome.job_id == "job-2" and not client.memories


def test_a_job_that_always_leaves_memories_fails_verification_after_the_bound() -> None:
    client = FakeMem0(PLATFORM, users(2), survive={"u-0": -1})
    outcome, results = run(client, DeleteAll(USER, (0, 1)), VerifyPolicy(max_rounds=2))
    assert results == ["failed"] and not outcome.verified
    assert client.calls["delete_all"] == 3 and client.calls["list"] == 3
    assert {ref: f.reason for ref, f in outcome.failures.items()} == {
        0: "verification_failed",
        1: "verification_failed",
    }
    assert "2 more delete_all" in outcome.failures[0].message


def test_without_verification_a_job_is_trusted() -> None:
    client = FakeMem0(PLATFORM, users(2), survive={"u-0": -1})
    outcome, results = run(client, DeleteAll(USER, (0,)), OFF)
    assert results == [] and not outcome.verified and not outcome.failures
    assert client.calls == {"delete_all": 1, "job_status": 1}


def test_self_hosted_delete_all_goes_on_while_it_makes_progress() -> None:
    # An old server deletes 2 matches per call, and lists at most 3: seven memories take four
    # delete_alls, more than the bound, and still pass, since every round removed some.
    client = FakeMem0(OSS, users(7), listing_cap=3, delete_all_limit=2)
    outcome, results = run(client, DeleteAll(USER, (0,)), VerifyPolicy(max_rounds=1))
    assert results == ["redeleted"] and outcome.verified and not client.memories
    assert client.calls["delete_all"] == 4 and outcome.job_id is None


def test_self_hosted_delete_all_that_stalls_fails_verification() -> None:
    client = FakeMem0(OSS, users(3), survive={"u-2": -1})
    outcome, results = run(client, DeleteAll(USER, (0,)), VerifyPolicy(max_rounds=2))
    assert results == ["failed"] and outcome.failures[0].reason == "verification_failed"
    assert client.calls["delete_all"] == 3  # the delete, then two re-deletes that changed nothing


def test_self_hosted_delete_all_is_listed_even_without_verification() -> None:
    # The contract's repeat-until-empty is the delete itself there, not an optional check.
    client = FakeMem0(OSS, users(2))
    outcome, _ = run(client, DeleteAll(USER, (0,)), OFF)
    assert client.calls["list"] == 1 and outcome.verified


def test_a_batch_is_checked_by_a_sample() -> None:
    ids = users(20)
    client = FakeMem0(PLATFORM, ids)
    outcome, results = run(client, DeleteIds.of(tuple(ids), tuple((0,) for _ in ids)))
    assert results == ["passed"] and outcome.verified
    assert client.calls == {"batch_delete": 1, "get": 1}  # by default, one id per batch


def test_a_failed_sample_checks_the_whole_batch_and_deletes_again() -> None:
    ids = users(10)
    client = FakeMem0(PLATFORM, ids, survive={"u-0": 1, "u-5": 1})
    outcome, results = run(client, DeleteIds.of(tuple(ids), tuple((0,) for _ in ids)))
    assert results == ["redeleted"] and outcome.verified and not outcome.failures
    # One sampled read, then all ten, then the two found read again after their re-delete.
    assert client.calls == {"batch_delete": 2, "get": 1 + 10 + 2}
    assert not client.memories


def test_ids_that_stay_fail_only_their_own_events() -> None:
    ids = users(4)
    owners = ((0,), (0,), (1,), (0, 2))
    client = FakeMem0(OSS, ids, survive={"u-2": -1})
    policy = VerifyPolicy(sample_share=1.0, max_rounds=1)
    outcome, results = run(client, DeleteIds.of(tuple(ids), owners), policy)
    assert results == ["failed"] and not outcome.verified
    assert {ref: f.reason for ref, f in outcome.failures.items()} == {1: "verification_failed"}


def test_a_refused_read_leaves_the_batch_unverified_not_failed() -> None:
    ids = users(3)
    client = FakeMem0(PLATFORM, ids, refuse_reads=True)
    outcome, results = run(client, DeleteIds.of(tuple(ids), tuple((0,) for _ in ids)))
    assert results == [] and not outcome.verified and not outcome.failures


def test_no_read_back_without_verification_or_without_a_share() -> None:
    for policy in (OFF, VerifyPolicy(sample_share=0.0)):
        ids = users(3)
        client = FakeMem0(PLATFORM, ids)
        outcome, results = run(client, DeleteIds.of(tuple(ids), tuple((0,) for _ in ids)), policy)
        assert client.calls == {"batch_delete": 1} and results == [] and not outcome.verified


COMPOUND = Scope.of(user_id="u", run_id="r")


def test_a_compound_scope_ends_on_an_empty_listing_which_verifies_it() -> None:
    memories = {f"m{i}": {"user_id": "u", "run_id": "r"} for i in range(3)}
    client = FakeMem0(PLATFORM, memories | {"other": {"user_id": "u", "run_id": "s"}})
    outcome, results = run(client, ResolveScope(COMPOUND, (0,)), OFF)
    assert results == ["passed"] and outcome.verified and set(client.memories) == {"other"}


def test_a_compound_scope_whose_ids_stay_fails_verification() -> None:
    memories = {f"m{i}": {"user_id": "u", "run_id": "r"} for i in range(3)}
    client = FakeMem0(PLATFORM, memories, survive={"m1": -1})
    outcome, results = run(client, ResolveScope(COMPOUND, (0, 1)), VerifyPolicy(max_rounds=2))
    assert results == ["failed"] and not outcome.verified
    assert {f.reason for f in outcome.failures.values()} == {"verification_failed"}
    assert client.calls["batch_delete"] == 3 and client.calls["list"] == 4
