"""Carries out planned operations against Mem0: retries, job watching, exact scope resolution,
entity records, ids with their history, and splitting of rejected batches.

An operation either succeeds for all the events it serves, or reports, per event, why it could
not (`Failure`). Transient errors are retried with the policy's backoff until its budget runs out;
an auth failure parks every call until the downstream answers again; a rejected batch is split
in halves until the offending ids are isolated, so only their events fail. A self-hosted 502
`unknown` is retried a bounded number of times whatever the time budget, and a job the API does
not know yet is polled again for a grace period before its delete is issued again.

With a `VerifyPolicy` (see `verification`), a delete is checked afterwards and what is left is
deleted again, a bounded number of times, before its events fail as `verification_failed`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from consumer.core.dlq import DlqReason
from consumer.core.events import Scope
from consumer.core.outcome import Failure, Outcome
from consumer.core.planner import DeleteAll, DeleteEntity, DeleteIds, Operation, Ref, ResolveScope
from consumer.core.retry import RetryPolicy
from consumer.core.verification import FAILED, OFF, VerifyPolicy, passed, pick_sample, progressed
from consumer.mem0.client import JobStatus, Mem0Client
from consumer.mem0.downstream import Downstream
from consumer.mem0.errors import (
    AuthError,
    JobNotFound,
    RejectedError,
    TransientError,
    UncertainError,
)
from consumer.pipeline.scope_check import AnyMatch, GroupedEmptinessCheck

__all__ = ["Executor"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Compound scopes are resolved this many ids at a time (the Platform's batch limit).
_RESOLVE_CHUNK = 1000
# A scope whose listing stops shrinking for this many rounds is not being deleted.
_STALLED_ROUNDS = 3


@dataclass(slots=True)
class _Tally:
    calls: int = 0
    last_status: int | None = None
    job_id: str | None = None
    verified: bool = False
    cascades: dict[str, int] | None = None  # memory id -> cascade_count, for linked deletes


class _GaveUp(Exception):
    def __init__(self, reason: DlqReason, message: str, status: int | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class Executor:
    """Runs one operation at a time per call to `run`; many `run`s may be in flight at once."""

    def __init__(
        self,
        client: Mem0Client,
        downstream: Downstream,
        policy: RetryPolicy,
        *,
        job_poll_s: float = 0.1,
        job_poll_cap_s: float = 2.0,
        job_not_found_grace_s: float = 10.0,
        uncertain_retries: int = 5,
        on_retry: Callable[[str, int | None], None] | None = None,
        verify: VerifyPolicy = OFF,
        on_verify: Callable[[str], None] | None = None,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._caps = client.caps
        self._downstream = downstream
        self._policy = policy
        self._job_poll_s = job_poll_s
        self._job_poll_cap_s = job_poll_cap_s
        self._job_not_found_grace_s = job_not_found_grace_s
        self._uncertain_retries = uncertain_retries
        self._on_retry = on_retry or (lambda _op, _reason: None)
        self._verify = verify
        self._on_verify = on_verify or (lambda _result: None)
        self._draw = draw
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        # The Platform can check many scopes' emptiness in one listing (an OR filter).
        any_match = getattr(client, "any_match", None)
        self._grouped = (
            GroupedEmptinessCheck(self._gated(any_match)) if any_match is not None else None
        )

    def _gated(self, any_match: AnyMatch) -> AnyMatch:
        """The grouped listing, sent only when the downstream is open, through its trial gate."""

        async def gated(scopes: Sequence[Scope]) -> bool:
            await self._downstream.wait_open()
            async with self._downstream.turn():
                return await any_match(scopes)

        return gated

    async def run(self, operation: Operation) -> Outcome:
        tally = _Tally()
        outcome = Outcome()
        try:
            if isinstance(operation, DeleteIds):
                outcome.failures = await self._delete_ids(operation, tally)
                if operation.linked:
                    outcome.cascades = _cascades_by_event(operation, tally.cascades or {})
            elif isinstance(operation, DeleteAll):
                await self._delete_all(operation.scope, tally)
            elif isinstance(operation, DeleteEntity):
                await self._delete_entity(operation, tally)
            else:
                failure = await self._resolve(operation, tally)
                if failure is not None:
                    outcome.failures = dict.fromkeys(operation.refs, failure)
        except _GaveUp as exc:
            failure = Failure(exc.reason, str(exc), tally.calls, exc.status)
            outcome.failures = dict.fromkeys(operation.refs, failure)
        except RejectedError as exc:
            # A listing or job check refused outright: this request cannot be carried out.
            failure = Failure(DlqReason.REJECTED, str(exc), tally.calls, exc.status)
            outcome.failures = dict.fromkeys(operation.refs, failure)
        outcome.calls = tally.calls
        outcome.finished_at = self._wall()
        outcome.last_status = tally.last_status
        outcome.job_id = tally.job_id
        outcome.verified = tally.verified
        return outcome

    async def _retrying(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        tally: _Tally,
        *,
        counted: bool = True,
    ) -> T:
        """One logical call, retried until it succeeds, is rejected, or the budget runs out.

        `counted` is False for a step made of calls that count themselves (start and watch);
        such a step does not take a turn either: its calls take theirs (the turn is not
        reentrant, and a step holding it would wait on its own calls forever).
        """
        started = self._clock()
        attempt = uncertain = 0
        while True:
            await self._downstream.wait_open()
            if counted:
                tally.calls += 1
            try:
                if counted:
                    async with self._downstream.turn():
                        result = await call()
                else:
                    result = await call()
            except AuthError as exc:
                # Nothing is dead-lettered for a credentials problem: wait for it to be fixed.
                tally.last_status = exc.status
                self._downstream.halt(exc)
                continue
            except TransientError as exc:
                tally.last_status = exc.status
                delay = self._policy.delay(attempt, self._draw(), exc.retry_after_s)
                if isinstance(exc, UncertainError):
                    # Whatever the time budget (RETRY_MAX_DURATION_S 0 is for ever): an error
                    # that may be deterministic must not be retried for ever.
                    uncertain += 1
                    if uncertain > self._uncertain_retries:
                        raise _GaveUp(DlqReason.RETRIES_EXHAUSTED, str(exc), exc.status) from exc
                if self._policy.gives_up(started, self._clock(), delay):
                    raise _GaveUp(DlqReason.RETRIES_EXHAUSTED, str(exc), exc.status) from exc
                self._on_retry(operation, exc.status)
                self._downstream.backing_off()
                attempt += 1
                await self._sleep(delay)
                continue
            except RejectedError as exc:
                tally.last_status = exc.status
                raise
            tally.last_status = 200
            self._downstream.succeeded()
            return result

    async def _delete_all(self, scope: Scope, tally: _Tally) -> None:
        async def start_and_watch() -> None:
            job_id = await self._retrying(
                "delete_all", lambda: self._client.delete_all(scope), tally
            )
            if job_id is None:
                await self._verify_empty(scope, tally)
                return
            await self._job_succeeded(job_id, "delete_all", tally)

        async def delete() -> None:
            await self._retrying("delete_all", start_and_watch, tally, counted=False)

        try:
            await delete()
            if tally.job_id is not None and self._verify.enabled:
                await self._verify_scope(scope, delete, tally)
        except RejectedError as exc:
            raise _GaveUp(DlqReason.REJECTED, str(exc), exc.status) from exc

    async def _job_succeeded(self, job_id: str, operation: str, tally: _Tally) -> None:
        """Watch a Platform job to its end; a FAILED one is raised like a failed call, so the
        step that started it is retried."""
        tally.job_id = job_id
        status = await self._watch(job_id, tally)
        if status.status != "SUCCEEDED":
            raise TransientError(
                f"{operation} job FAILED: {status.error or 'no reason given'}",
                operation=operation,
            )

    async def _verify_scope(
        self, scope: Scope, delete: Callable[[], Awaitable[None]], tally: _Tally
    ) -> None:
        """After a job SUCCEEDED: list the scope and expect nothing; delete again while not."""
        if self._grouped is not None and await self._grouped.empty(scope):
            tally.calls += 1  # a listing shared with other scopes: it served this one too
            self._passed(tally, 0)
            return

        async def left() -> bool:
            return bool(
                await self._retrying("list", lambda: self._client.list_ids(scope, 1), tally)
            )

        await self._redelete_while(
            left, delete, tally, "memories still match the scope", "delete_all"
        )

    async def _redelete_while(
        self,
        left: Callable[[], Awaitable[bool]],
        delete: Callable[[], Awaitable[None]],
        tally: _Tally,
        what: str,
        redo: str,
    ) -> None:
        """After a job SUCCEEDED: while `left()` finds something, delete again, at most
        `max_rounds` times; then the operation fails as `verification_failed`."""
        redeletes = 0
        while await left():
            if redeletes >= self._verify.max_rounds:
                self._on_verify(FAILED)
                raise _GaveUp(
                    DlqReason.VERIFICATION_FAILED,
                    f"{what} after its delete job SUCCEEDED and {redeletes} more {redo}",
                    tally.last_status,
                )
            redeletes += 1
            await delete()
        self._passed(tally, redeletes)

    async def _delete_entity(self, operation: DeleteEntity, tally: _Tally) -> None:
        """An erased user's entity record: a Platform job like a delete_all, then read back."""
        user_id = operation.entity_id

        async def start_and_watch() -> None:
            job_id = await self._retrying(
                "entity_delete", lambda: self._client.delete_entity("user", user_id), tally
            )
            if job_id is None:
                return  # no such entity: nothing to delete
            await self._job_succeeded(job_id, "entity_delete", tally)

        async def delete() -> None:
            await self._retrying("entity_delete", start_and_watch, tally, counted=False)

        async def left() -> bool:
            return await self._retrying(
                "entity_get", lambda: self._client.entity_exists("user", user_id), tally
            )

        try:
            await delete()
            if not self._verify.enabled:
                return
            if tally.job_id is None:
                # The delete itself answered that there is no such entity: reading it back
                # would ask the same question again (two calls of four in a burst of users
                # who never had one).
                self._passed(tally, 0)
                return
            await self._redelete_while(
                left, delete, tally, "the user's entity is still there", "entity deletes"
            )
        except RejectedError as exc:
            raise _GaveUp(DlqReason.REJECTED, str(exc), exc.status) from exc

    def _passed(self, tally: _Tally, redeletes: int) -> None:
        tally.verified = True
        self._on_verify(passed(redeletes))

    async def _watch(self, job_id: str, tally: _Tally) -> JobStatus:
        """Poll a job until it finishes. A job the API does not know is taken for one not yet
        readable for a grace period (nothing documents how soon a new one is); past it, the
        delete is issued again (it is idempotent) rather than dead-lettered."""
        interval = self._job_poll_s
        started = self._clock()
        while True:
            await self._sleep(interval)
            try:
                status = await self._retrying(
                    "job_status", lambda: self._client.job_status(job_id), tally
                )
            except JobNotFound as exc:
                if self._clock() - started >= self._job_not_found_grace_s:
                    raise TransientError(
                        f"delete job not found for {self._job_not_found_grace_s:g}s: {exc}",
                        operation="job_status",
                        status=404,
                    ) from exc
                self._on_retry("job_status", 404)
            else:
                if status.finished:
                    return status
            interval = min(interval * 1.5, self._job_poll_cap_s)

    async def _verify_empty(self, scope: Scope, tally: _Tally) -> None:
        """After a synchronous delete_all: list, and delete again until nothing is left.

        Older self-hosted servers deleted only the first 100 matches while reporting success,
        so a re-delete that removes something is progress; `max_rounds` re-deletes in a row that
        remove nothing end it. This is the contract's procedure, so it runs whatever the policy.
        """
        remaining = await self._retrying(
            "list", lambda: self._client.list_ids(scope, _RESOLVE_CHUNK), tally
        )
        redeletes = stalled = 0
        while remaining:
            if stalled >= self._verify.max_rounds:
                self._on_verify(FAILED)
                raise _GaveUp(
                    DlqReason.VERIFICATION_FAILED,
                    f"memories still match after delete_all and {redeletes} more",
                    tally.last_status,
                )
            before = remaining
            await self._retrying("delete_all", lambda: self._client.delete_all(scope), tally)
            redeletes += 1
            remaining = await self._retrying(
                "list", lambda: self._client.list_ids(scope, _RESOLVE_CHUNK), tally
            )
            stalled = 0 if progressed(before, remaining) else stalled + 1
        self._passed(tally, redeletes)

    async def _resolve(self, operation: ResolveScope, tally: _Tally) -> Failure | None:
        """A compound scope: list with the AND filter, delete those ids, until none is left.

        The empty listing it ends on is its verification. Ids listed again after a delete that
        succeeded are deleted again, at most `max_rounds` times: then `verification_failed`.
        """
        scope = operation.scope
        refused: set[str] = set()
        deleted: set[str] = set()
        last_refusal: RejectedError | None = None
        stalled = redeletes = 0
        while True:
            listed = await self._retrying(
                "list", lambda: self._client.list_ids(scope, _RESOLVE_CHUNK + len(refused)), tally
            )
            todo = [memory_id for memory_id in listed if memory_id not in refused]
            if not todo:
                break
            if not deleted.isdisjoint(todo):
                if redeletes >= self._verify.max_rounds:
                    self._on_verify(FAILED)
                    message = f"memories still listed after {redeletes} re-deletes"
                    return Failure(
                        DlqReason.VERIFICATION_FAILED, message, tally.calls, tally.last_status
                    )
                redeletes += 1
            bad = await self._delete_chunk(todo, tally)
            for memory_id, error in bad:
                refused.add(memory_id)
                last_refusal = error
            deleted.update(todo)
            deleted -= refused
            stalled = stalled + 1 if len(bad) == len(todo) else 0
            if stalled >= _STALLED_ROUNDS:
                break
        if last_refusal is not None:
            return Failure(DlqReason.REJECTED, str(last_refusal), tally.calls, last_refusal.status)
        self._passed(tally, redeletes)
        return None

    async def _delete_ids(self, operation: DeleteIds, tally: _Tally) -> dict[Ref, Failure]:
        linked = operation.linked
        if linked:
            tally.cascades = {}
        bad = await self._delete_chunk(list(operation.ids), tally, linked=linked)
        refused = {memory_id for memory_id, _ in bad}
        left = await self._verify_ids(
            [i for i in operation.ids if i not in refused], tally, linked=linked
        )
        if not bad and not left:
            return {}
        owners = dict(zip(operation.ids, operation.owners, strict=True))
        failures: dict[Ref, Failure] = {}
        for memory_id, error in bad:
            for ref in owners[memory_id]:
                failures.setdefault(
                    ref, Failure(DlqReason.REJECTED, str(error), tally.calls, error.status)
                )
        for memory_id in left:
            message = f"memory still there after {self._verify.max_rounds} re-deletes"
            for ref in owners[memory_id]:
                failures.setdefault(
                    ref,
                    Failure(DlqReason.VERIFICATION_FAILED, message, tally.calls, tally.last_status),
                )
        return failures

    async def _verify_ids(self, ids: list[str], tally: _Tally, *, linked: bool) -> list[str]:
        """Read a sample of deleted ids back; the ids still there after the re-deletes.

        A sample that finds one left makes the whole batch suspect: every id is read back.
        A read that Mem0 refuses leaves the batch unverified, not failed.
        """
        size = self._verify.sample_size(len(ids))
        if size == 0:
            return []
        present = await self._present(pick_sample(ids, size, self._draw), tally)
        if present and size < len(ids):
            present = await self._present(ids, tally)
        redeletes = 0
        while present:
            if redeletes >= self._verify.max_rounds:
                self._on_verify(FAILED)
                return present
            redeletes += 1
            await self._delete_chunk(present, tally, linked=linked)
            present = await self._present(present, tally)
        if present is not None:
            self._passed(tally, redeletes)
        return []

    async def _present(self, ids: list[str], tally: _Tally) -> list[str] | None:
        """The ids that are still there; None when Mem0 refused a read (no verdict)."""

        async def there(memory_id: str) -> bool:
            return await self._retrying("get", lambda: self._client.exists(memory_id), tally)

        found = await asyncio.gather(*(there(i) for i in ids), return_exceptions=True)
        present: list[str] = []
        for memory_id, answer in zip(ids, found, strict=True):
            if isinstance(answer, RejectedError):
                log.warning("verification read refused", extra={"status": answer.status})
                return None
            if isinstance(answer, BaseException):
                raise answer
            if answer:
                present.append(memory_id)
        return present

    async def _delete_chunk(
        self, ids: list[str], tally: _Tally, *, linked: bool = False
    ) -> list[tuple[str, RejectedError]]:
        """Delete ids (with what they superseded, when `linked`: one call each, as the batch
        endpoint cannot); the ones refused, each with its rejection."""
        if linked or not self._caps.batch_endpoint:
            one = self._delete_one_linked if linked else self._delete_one
            results = await asyncio.gather(*(one(i, tally) for i in ids))
            return [(i, error) for i, error in zip(ids, results, strict=True) if error is not None]
        return await self._delete_batch(ids, tally)

    async def _delete_one(self, memory_id: str, tally: _Tally) -> RejectedError | None:
        try:
            await self._retrying("delete", lambda: self._client.delete(memory_id), tally)
        except RejectedError as exc:
            return exc
        return None

    async def _delete_one_linked(self, memory_id: str, tally: _Tally) -> RejectedError | None:
        try:
            count = await self._retrying(
                "delete", lambda: self._client.delete_linked(memory_id), tally
            )
        except RejectedError as exc:
            return exc
        if tally.cascades is not None:
            tally.cascades[memory_id] = tally.cascades.get(memory_id, 0) + count
        return None

    async def _delete_batch(self, ids: list[str], tally: _Tally) -> list[tuple[str, RejectedError]]:
        """A rejected batch is split in halves until the offending ids stand alone."""
        try:
            await self._retrying("batch_delete", lambda: self._client.batch_delete(ids), tally)
        except RejectedError as exc:
            if len(ids) == 1:
                # A lone id that is not there is already deleted.
                return [] if exc.status == 404 else [(ids[0], exc)]
            middle = len(ids) // 2
            halves = await asyncio.gather(
                self._delete_batch(ids[:middle], tally), self._delete_batch(ids[middle:], tally)
            )
            return halves[0] + halves[1]
        return []


def _cascades_by_event(operation: DeleteIds, by_id: dict[str, int]) -> dict[Ref, int]:
    """Each event's share of a linked delete: the cascade counts of the ids it asked for."""
    totals: dict[Ref, int] = dict.fromkeys(operation.refs, 0)
    for memory_id, owners in zip(operation.ids, operation.owners, strict=True):
        count = by_id.get(memory_id, 0)
        if count:
            for ref in owners:
                totals[ref] += count
    return totals
