"""Deleting memories by id: batches split until the refused ids stand alone, linked deletes one
call per id, and a sample read back afterwards.

A rejected batch is split in halves until the offending ids are isolated, so only the events
that asked for them fail; a lone id answered 404 is already deleted. Ids asked with
`include_linked` are deleted one call each with `delete_linked` (the batch endpoint cannot),
and the superseded memories that went with them are counted per event (`cascade_count`).

With a `VerifyPolicy`, a sample of the deleted ids is read back; one found makes the whole batch
suspect, and every id is read back. What is there is deleted again (`redelete_until_gone`). A
read Mem0 refuses leaves the batch unverified, not failed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection

from consumer.core.capabilities import Capabilities
from consumer.core.dlq import DlqReason
from consumer.core.outcome import Failure
from consumer.core.planner import DeleteIds, Ref
from consumer.core.verification import FAILED, VerifyPolicy, passed, pick_sample
from consumer.mem0.client import Mem0Client
from consumer.mem0.errors import RejectedError
from consumer.pipeline.calls import Caller, Tally
from consumer.pipeline.redelete import redelete_until_gone

__all__ = ["IdDeleter", "cascades_by_event"]

log = logging.getLogger(__name__)


class IdDeleter:
    """Carries out `DeleteIds` operations, and deletes id chunks for compound scopes."""

    def __init__(
        self,
        client: Mem0Client,
        caps: Capabilities,
        calls: Caller,
        verify: VerifyPolicy,
        *,
        on_verify: Callable[[str], None],
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._caps = caps
        self._calls = calls
        self._verify = verify
        self._on_verify = on_verify
        self._draw = draw

    async def delete_ids(self, operation: DeleteIds, tally: Tally) -> dict[Ref, Failure]:
        linked = operation.linked
        if linked:
            tally.cascades = {}
        bad = await self.delete_chunk(list(operation.ids), tally, linked=linked)
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

    async def _verify_ids(self, ids: list[str], tally: Tally, *, linked: bool) -> Collection[str]:
        """Read a sample of deleted ids back; the ids still there after the re-deletes."""
        size = self._verify.sample_size(len(ids))
        if size == 0:
            return []
        present = await self._present(pick_sample(ids, size, self._draw), tally)
        if present and size < len(ids):
            present = await self._present(ids, tally)
        if present is None:
            return []

        async def find(left: Collection[str]) -> list[str] | None:
            return await self._present(list(left), tally)

        async def redelete(left: Collection[str]) -> None:
            await self.delete_chunk(list(left), tally, linked=linked)

        result = await redelete_until_gone(
            present, find, redelete, max_rounds=self._verify.max_rounds
        )
        if result.left:
            self._on_verify(FAILED)
            return result.left
        if result.verdict:
            tally.verified = True
            self._on_verify(passed(result.redeletes))
        return []

    async def _present(self, ids: list[str], tally: Tally) -> list[str] | None:
        """The ids that are still there; None when Mem0 refused a read (no verdict)."""

        async def there(memory_id: str) -> bool:
            return await self._calls.call("get", lambda: self._client.exists(memory_id), tally)

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

    async def delete_chunk(
        self, ids: list[str], tally: Tally, *, linked: bool = False
    ) -> list[tuple[str, RejectedError]]:
        """Delete ids (with what they superseded, when `linked`: one call each, as the batch
        endpoint cannot); the ones refused, each with its rejection."""
        if linked or not self._caps.batch_endpoint:
            one = self._delete_one_linked if linked else self._delete_one
            results = await asyncio.gather(*(one(i, tally) for i in ids))
            return [(i, error) for i, error in zip(ids, results, strict=True) if error is not None]
        return await self._delete_batch(ids, tally)

    async def _delete_one(self, memory_id: str, tally: Tally) -> RejectedError | None:
        try:
            await self._calls.call("delete", lambda: self._client.delete(memory_id), tally)
        except RejectedError as exc:
            return exc
        return None

    async def _delete_one_linked(self, memory_id: str, tally: Tally) -> RejectedError | None:
        try:
            count = await self._calls.call(
                "delete", lambda: self._client.delete_linked(memory_id), tally
            )
        except RejectedError as exc:
            return exc
        if tally.cascades is not None:
            tally.cascades[memory_id] = tally.cascades.get(memory_id, 0) + count
        return None

    async def _delete_batch(self, ids: list[str], tally: Tally) -> list[tuple[str, RejectedError]]:
        """A rejected batch is split in halves until the offending ids stand alone."""
        try:
            await self._calls.call("batch_delete", lambda: self._client.batch_delete(ids), tally)
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


def cascades_by_event(operation: DeleteIds, by_id: dict[str, int]) -> dict[Ref, int]:
    """Each event's share of a linked delete: the cascade counts of the ids it asked for."""
    totals: dict[Ref, int] = dict.fromkeys(operation.refs, 0)
    for memory_id, owners in zip(operation.ids, operation.owners, strict=True):
        count = by_id.get(memory_id, 0)
        if count:
            for ref in owners:
                totals[ref] += count
    return totals
