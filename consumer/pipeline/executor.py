"""Carries out planned operations against Mem0: filter deletes and their jobs, exact scope
resolution, entity records, and ids (with their history).

An operation either succeeds for all the events it serves, or reports, per event, why it could
not (`Failure`). Each call goes through `Caller` (retries, backoff, the downstream's halt on
auth failures); ids through `IdDeleter` (batches split until the refused ids stand alone). A
Platform job is watched to its end, and one the API does not know yet is polled again for a
grace period before its delete is issued again.

With a `VerifyPolicy` (see `verification`), a delete is checked afterwards and what is left is
deleted again (`redelete_until_gone`, one loop and one stop rule for every check) before its
events fail as `verification_failed`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

from consumer.core.dlq import DlqReason
from consumer.core.events import Scope
from consumer.core.job_timing import JobTiming
from consumer.core.outcome import Failure, Outcome
from consumer.core.planner import DeleteAll, DeleteEntity, DeleteIds, Operation, ResolveScope
from consumer.core.retry import RetryPolicy
from consumer.core.verification import FAILED, OFF, VerifyPolicy, passed
from consumer.mem0.client import JobStatus, Mem0Client
from consumer.mem0.downstream import Downstream
from consumer.mem0.errors import JobNotFound, RejectedError, TransientError
from consumer.pipeline.calls import Caller, GaveUp, Tally
from consumer.pipeline.id_deletes import IdDeleter, cascades_by_event
from consumer.pipeline.redelete import Redeleted, redelete_until_gone
from consumer.pipeline.scope_check import AnyMatch, GroupedEmptinessCheck

__all__ = ["Executor"]

# Compound scopes are resolved this many ids at a time (the Platform's batch limit).
_RESOLVE_CHUNK = 1000
# A compound scope whose every listed id is refused this many rounds running is not deletable.
_STALLED_ROUNDS = 3
# What a yes/no check ("anything left in the scope?", "is the entity there?") finds: one thing
# that is never removed in part, so its re-deletes never count as progress.
_SOMETHING = ("something",)


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
        self._downstream = downstream
        # One per kind of job: a user's memories and an entity record need not take as long.
        self._job_timing = {
            kind: JobTiming(first_s=job_poll_s, cap_s=job_poll_cap_s)
            for kind in ("delete_all", "entity_delete")
        }
        self._job_not_found_grace_s = job_not_found_grace_s
        self._verify = verify
        self._on_verify = on_verify or (lambda _result: None)
        self._clock = clock
        self._wall = wall
        self._calls = Caller(
            downstream,
            policy,
            uncertain_retries=uncertain_retries,
            on_retry=on_retry,
            draw=draw,
            clock=clock,
            sleep=sleep,
        )
        self._ids = IdDeleter(
            client, client.caps, self._calls, verify, on_verify=self._on_verify, draw=draw
        )
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
        tally = Tally()
        outcome = Outcome()
        try:
            if isinstance(operation, DeleteIds):
                outcome.failures = await self._ids.delete_ids(operation, tally)
                if operation.linked:
                    outcome.cascades = cascades_by_event(operation, tally.cascades or {})
            elif isinstance(operation, DeleteAll):
                await self._delete_all(operation.scope, tally)
            elif isinstance(operation, DeleteEntity):
                await self._delete_entity(operation, tally)
            else:
                failure = await self._resolve(operation, tally)
                if failure is not None:
                    outcome.failures = dict.fromkeys(operation.refs, failure)
        except GaveUp as exc:
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

    # -- filter deletes and entities: a job, then a check -------------------------------------

    async def _delete_all(self, scope: Scope, tally: Tally) -> None:
        client, call = self._client, self._calls.call

        async def start_and_watch() -> None:
            job_id = await call("delete_all", lambda: client.delete_all(scope), tally)
            if job_id is None:
                await self._verify_empty(scope, tally)
                return
            await self._job_succeeded(job_id, "delete_all", tally)

        async def delete() -> None:
            await call("delete_all", start_and_watch, tally, counted=False)

        try:
            await delete()
            if tally.job_id is not None and self._verify.enabled:
                await self._verify_scope(scope, delete, tally)
        except RejectedError as exc:
            raise GaveUp(DlqReason.REJECTED, str(exc), exc.status) from exc

    async def _verify_scope(
        self, scope: Scope, delete: Callable[[], Awaitable[None]], tally: Tally
    ) -> None:
        """After a job SUCCEEDED: list the scope and expect nothing; delete again while not."""
        if self._grouped is not None and await self._grouped.empty(scope):
            tally.calls += 1  # a listing shared with other scopes: it served this one too
            self._passed(tally, 0)
            return

        async def left(_: object = None) -> Collection[str]:
            found = await self._calls.call("list", lambda: self._client.list_ids(scope, 1), tally)
            return _SOMETHING if found else ()

        checked = await redelete_until_gone(
            await left(), left, _ignoring(delete), max_rounds=self._verify.max_rounds
        )
        self._conclude(
            checked,
            tally,
            "memories still match the scope after its delete job SUCCEEDED and {} more delete_all",
        )

    async def _delete_entity(self, operation: DeleteEntity, tally: Tally) -> None:
        """An erased user's entity record: a Platform job like a delete_all, then read back."""
        client, call, user_id = self._client, self._calls.call, operation.entity_id

        async def start_and_watch() -> None:
            job_id = await call(
                "entity_delete", lambda: client.delete_entity("user", user_id), tally
            )
            if job_id is None:
                return  # no such entity: nothing to delete
            await self._job_succeeded(job_id, "entity_delete", tally)

        async def delete() -> None:
            await call("entity_delete", start_and_watch, tally, counted=False)

        async def left(_: object = None) -> Collection[str]:
            there = await call("entity_get", lambda: client.entity_exists("user", user_id), tally)
            return _SOMETHING if there else ()

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
            checked = await redelete_until_gone(
                await left(), left, _ignoring(delete), max_rounds=self._verify.max_rounds
            )
            self._conclude(
                checked,
                tally,
                "the user's entity is still there after its delete job SUCCEEDED and {} more "
                "entity deletes",
            )
        except RejectedError as exc:
            raise GaveUp(DlqReason.REJECTED, str(exc), exc.status) from exc

    def _conclude(self, checked: Redeleted, tally: Tally, failed: str) -> None:
        """A check is over: passed, or the operation fails as `verification_failed`, its
        message `failed` with the number of re-deletes in place of `{}`."""
        if checked.left:
            self._on_verify(FAILED)
            raise GaveUp(
                DlqReason.VERIFICATION_FAILED,
                failed.format(checked.redeletes),
                tally.last_status,
            )
        self._passed(tally, checked.redeletes)

    def _passed(self, tally: Tally, redeletes: int) -> None:
        tally.verified = True
        self._on_verify(passed(redeletes))

    async def _job_succeeded(self, job_id: str, operation: str, tally: Tally) -> None:
        """Watch a Platform job to its end; a FAILED one is raised like a failed call, so the
        step that started it is retried."""
        tally.job_id = job_id
        status = await self._watch(job_id, self._job_timing[operation], tally)
        if status.status != "SUCCEEDED":
            raise TransientError(
                f"{operation} job FAILED: {status.error or 'no reason given'}",
                operation=operation,
            )

    async def _watch(self, job_id: str, timing: JobTiming, tally: Tally) -> JobStatus:
        """Poll a job until it finishes, when jobs like it have been finishing (`JobTiming`).

        A job the API does not know is taken for one not yet readable for a grace period
        (nothing documents how soon a new one is); past it, the delete is issued again (it is
        idempotent) rather than dead-lettered."""
        started = self._clock()
        for delay in timing.delays():
            await self._calls.sleep(delay)
            try:
                status = await self._calls.call(
                    "job_status", lambda: self._client.job_status(job_id), tally
                )
            except JobNotFound as exc:
                if self._clock() - started >= self._job_not_found_grace_s:
                    raise TransientError(
                        f"delete job not found for {self._job_not_found_grace_s:g}s: {exc}",
                        operation="job_status",
                        status=404,
                    ) from exc
                self._calls.on_retry("job_status", 404)
            else:
                if status.finished:
                    timing.found_done(self._clock() - started)
                    return status
        raise AssertionError("JobTiming.delays never ends")

    # -- self-hosted delete_all and compound scopes: listings ---------------------------------

    async def _verify_empty(self, scope: Scope, tally: Tally) -> None:
        """After a synchronous delete_all: list, and delete again until nothing is left.

        This is the contract's repeat-until-empty procedure, so it runs whatever the policy.
        """
        client, call = self._client, self._calls.call

        async def listed(_: object = None) -> list[str]:
            return await call("list", lambda: client.list_ids(scope, _RESOLVE_CHUNK), tally)

        async def redelete(_: object) -> None:
            await call("delete_all", lambda: client.delete_all(scope), tally)

        checked = await redelete_until_gone(
            await listed(), listed, redelete, max_rounds=self._verify.max_rounds
        )
        self._conclude(checked, tally, "memories still match after delete_all and {} more")

    async def _resolve(self, operation: ResolveScope, tally: Tally) -> Failure | None:
        """A compound scope: list with the AND filter, delete those ids, until none is left.

        Pages of ids never deleted before are the delete itself; a listing that shows again an
        id whose delete succeeded starts the check, which ends on an empty listing (its
        verification) or fails as `verification_failed`.
        """
        scope = operation.scope
        refused: dict[str, RejectedError] = {}
        deleted: set[str] = set()

        async def listed(_: object = None) -> list[str]:
            limit = _RESOLVE_CHUNK + len(refused)
            ids = await self._calls.call("list", lambda: self._client.list_ids(scope, limit), tally)
            return [memory_id for memory_id in ids if memory_id not in refused]

        async def delete(ids: Collection[str]) -> int:
            """The ids refused by this round."""
            bad = await self._ids.delete_chunk(list(ids), tally)
            refused.update(bad)
            deleted.update(memory_id for memory_id in ids if memory_id not in refused)
            return len(bad)

        todo = await listed()
        stalled = 0
        while todo and deleted.isdisjoint(todo):
            stalled = stalled + 1 if await delete(todo) == len(todo) else 0
            if stalled >= _STALLED_ROUNDS:
                break
            todo = await listed()
        else:
            checked = await redelete_until_gone(
                todo, listed, _ignoring_count(delete), max_rounds=self._verify.max_rounds
            )
            if checked.left:
                self._on_verify(FAILED)
                message = f"memories still listed after {checked.redeletes} re-deletes"
                return Failure(
                    DlqReason.VERIFICATION_FAILED, message, tally.calls, tally.last_status
                )
            if not refused:
                self._passed(tally, checked.redeletes)
                return None
        last_refusal = list(refused.values())[-1]
        return Failure(DlqReason.REJECTED, str(last_refusal), tally.calls, last_refusal.status)


def _ignoring(delete: Callable[[], Awaitable[None]]) -> Callable[[object], Awaitable[None]]:
    """A re-delete that does not depend on what was found (a filter or an entity delete)."""

    async def redelete(_: object) -> None:
        await delete()

    return redelete


def _ignoring_count(
    delete: Callable[[Collection[str]], Awaitable[int]],
) -> Callable[[Collection[str]], Awaitable[None]]:
    async def redelete(ids: Collection[str]) -> None:
        await delete(ids)

    return redelete
