"""One flush, start to finish: decode, plan, carry out, and settle every record.

A record is settled exactly once: deleted, dead-lettered (after the broker acknowledged the dead
letter), or as a duplicate of an earlier record of the same flush. With receipts on, a decoded
record is settled only once the broker has acknowledged its receipt (a duplicate's too), so no
committed event lacks one. What is left to do per event is kept in a `FlushLedger` (pure);
this module does the waiting and the writing around it.

A record whose registry schema id is not known yet (`SchemaPending`) does not hold up the rest:
the flush asks for the lookup (off the event loop, rate-limited: avro/schema_ids.py), plans and
carries out what decoded, and hands the records waiting on each id, once it is answered, to a
flush of their own. Which records decoded is told to the dead-letter guard, which does not let
junk among events that decode stop the consumer (core/guard.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from consumer.avro.codec import DecodeError, Decoder, SchemaPending
from consumer.avro.registry import RegistryError
from consumer.core.capabilities import Capabilities
from consumer.core.dlq import DeadLetter, DlqReason, carried_replay_count, headers_of
from consumer.core.events import DeletionEvent
from consumer.core.ledger import FlushLedger
from consumer.core.outcome import Failure
from consumer.core.planner import Operation, Plan, Ref, plan
from consumer.core.receipts import (
    CompletedReceipts,
    Position,
    Receipt,
    completed,
    dead_lettered,
    duplicate,
    operation_report,
)
from consumer.core.retry import wait_out_delays
from consumer.core.validation import Rejection
from consumer.kafka.dead_letter_sink import DeadLetterSink
from consumer.kafka.receipt_sink import ReceiptSink
from consumer.pipeline.executor import Executor
from consumer.pipeline.in_flight import InFlight, Record
from consumer.telemetry.logs import logged_scope
from consumer.telemetry.metrics import Metrics, observe_many
from consumer.telemetry.progress import FlushSummary, ProgressLog

__all__ = ["Flush", "FlushParts"]

log = logging.getLogger(__name__)

# Events decoded between two yields to the event loop (about 10 ms of work).
_DECODE_SLICE = 500


@dataclass(frozen=True, slots=True)
class FlushParts:
    """What every flush uses, built once by the service and handed to the loop."""

    decoder: Decoder
    caps: Capabilities
    executor: Executor
    dead_letters: DeadLetterSink
    metrics: Metrics
    in_flight: InFlight
    summaries: ProgressLog
    receipts: ReceiptSink | None = None
    # One flush decodes and plans at a time, in dispatch order (see `Flush.run`).
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


class Flush:
    def __init__(self, records: list[Record], parts: FlushParts) -> None:
        self._records = records
        self._parts = parts
        self._in_flight = parts.in_flight
        self._dead_letters = parts.dead_letters
        self._metrics = parts.metrics
        self._receipts = parts.receipts
        self._summary = FlushSummary(events=len(records))
        self._events: list[DeletionEvent] = []
        self._owners: list[Record] = []
        self._ledger: FlushLedger | None = None
        self._deferred = 0  # records handed to later flushes, once their schema is looked up
        # Set once this flush has decoded what it could (see `_dead`).
        self.decoded = asyncio.Event()

    async def run(self) -> None:
        started = time.monotonic()
        chores: list[asyncio.Future[None]] = []
        in_flight = self._in_flight
        # One flush decodes and plans at a time, in dispatch order: interleaved, four flushes
        # finished decoding together, called Mem0 together and finished together, so the
        # consumer alternated between busy decoding and idle waiting. In turn, the first one's
        # calls are in flight while the next one decodes.
        async with self._parts.turn:
            try:
                planned = await self._decode_and_plan(chores)
            except BaseException:
                in_flight.planned(len(self._records) - self._deferred, 0)
                raise
            finally:
                self.decoded.set()
            # The deferred records are planned (and counted) by their own flushes.
            mine = len(self._records) - self._deferred
            in_flight.planned(mine, len(planned.operations))

        self._metrics.observe_flush(mine, len(planned.operations))
        self._summary.events = mine
        self._summary.operations = len(planned.operations)
        self._ledger = FlushLedger(planned)
        chores.extend(asyncio.ensure_future(self._carry_out(op)) for op in planned.operations)
        chores.extend(
            asyncio.ensure_future(self._finish(ref, rejection))
            for ref, rejection in planned.rejected.items()
        )
        await asyncio.gather(*chores)
        self._summary.seconds = time.monotonic() - started
        self._parts.summaries.flush_done(self._summary)

    async def _decode_and_plan(self, chores: list[asyncio.Future[None]]) -> Plan:
        """Decode every record (bad ones to the DLQ, as chores; those whose schema is being
        looked up to flushes of their own, as chores) and plan the good ones."""
        records, decoder = self._records, self._parts.decoder
        decode = decoder.decode
        events, owners = self._events, self._owners
        undecodable: list[tuple[Record, DeadLetter]] = []
        waiting: dict[int, list[Record]] = {}  # by schema id, records whose lookup is under way
        lookups: dict[int, asyncio.Task[None]] = {}
        for first in range(0, len(records), _DECODE_SLICE):
            if first:
                # Decoding never waits; let the replies of other flushes in meanwhile.
                await asyncio.sleep(0)
            for record in records[first : first + _DECODE_SLICE]:
                value = record.message.value()
                try:
                    try:
                        event = decode(value)
                    except SchemaPending as pending:  # rare: an id met for the first time
                        schema_id = pending.schema_id
                        if schema_id not in lookups:
                            # DecodeError when too many lookups wait already.
                            lookups[schema_id] = decoder.look_up(schema_id)
                        waiting.setdefault(schema_id, []).append(record)
                        continue
                    except RegistryError as exc:  # rare, and only with inline lookups
                        event = await self._decode_patiently(value, exc)
                except DecodeError as exc:
                    undecodable.append((record, self._letter(record, exc.reason, str(exc), None)))
                    continue
                events.append(event)
                owners.append(record)
        # The guard judges the undecodable by whether events near them decoded: tell it first.
        self._dead_letters.guard.decoded([owner.ordinal for owner in owners])
        later: list[asyncio.Event] = []
        for schema_id, held in waiting.items():
            child = Flush(held, self._parts)
            later.append(child.decoded)
            chores.append(asyncio.ensure_future(self._after_lookup(lookups[schema_id], child)))
            self._deferred += len(held)
        chores.extend(
            asyncio.ensure_future(self._dead(record, letter, "unknown", later))
            for record, letter in undecodable
        )
        return plan(events, self._parts.caps)

    async def _after_lookup(self, lookup: asyncio.Task[None], child: Flush) -> None:
        """Once `lookup` has its answer, the records waiting on it are a flush of their own
        (`child`); those whose schema is still unknown then are dead-lettered by it."""
        try:
            # asyncio.wait, not await: cancelling this flush must not cancel a lookup that
            # other flushes wait on too.
            await asyncio.wait([lookup])
            lookup.result()  # a lookup that failed (a bug) fails this flush too
            await child.run()
        finally:
            child.decoded.set()  # if it never ran, no letter may wait on it for ever

    async def _decode_patiently(self, value: bytes | None, error: RegistryError) -> DeletionEvent:
        """Decode after `error`, waiting out a registry that cannot be reached or refuses our
        credentials: neither is a reason to dead-letter a good event."""
        for delay in wait_out_delays():
            level = logging.WARNING if error.retriable else logging.ERROR
            log.log(level, "schema registry failed, retrying in %.1fs: %s", delay, error)
            await asyncio.sleep(delay)
            try:
                return self._parts.decoder.decode(value)
            except RegistryError as exc:
                error = exc
        raise AssertionError("wait_out_delays never ends")

    async def _carry_out(self, operation: Operation) -> None:
        self._metrics.in_flight_operations.inc()
        try:
            outcome = await self._parts.executor.run(operation)
        finally:
            self._metrics.in_flight_operations.dec()
            self._in_flight.operation_finished()
        ledger = self._ledger
        assert ledger is not None
        if self._receipts is not None:
            done = operation_report(
                operation,
                calls=outcome.calls,
                last_http_status=outcome.last_status,
                job_id=outcome.job_id,
                verified=outcome.verified,
            )
            cascades = outcome.cascades
            if cascades is None:
                ledger.report(operation.refs, done)
            else:
                ledger.report_each(
                    {ref: replace(done, cascade_count=cascades[ref]) for ref in operation.refs}
                )
        finished, failed = ledger.record(operation.refs, outcome)
        # The events this operation finished, together: their receipts in one write, then
        # settled here and now (a task per event would cost more than all else done for it).
        if finished:
            sink = self._receipts
            if sink is not None:
                await sink.write(*self._completed_receipts(finished, sink.group))
            self._settled_deleted(finished)
        if failed:
            await asyncio.gather(*(self._finish(ref) for ref in failed))

    async def _finish(self, ref: Ref, rejection: Rejection | None = None) -> None:
        """Every operation of this event is over (or it had none): settle it and its copies,
        once its dead letter (if any) and their receipts are acknowledged."""
        event, record = self._events[ref], self._owners[ref]
        ledger = self._ledger
        assert ledger is not None
        failure = ledger.failure(ref)
        letter: DeadLetter | None = None
        if rejection is not None:
            letter = self._letter(record, rejection.reason, rejection.message, event.event_id)
        elif failure is not None:
            letter = self._letter(record, failure.reason, failure.message, event.event_id, failure)
        if letter is not None:
            await self._dead_letters.write(record.message, record.ordinal, letter, event.type.value)
            # An erasure that did not happen: its scope hashed (in clear only with
            # LOG_IDS_IN_CLEAR), which `deletion-consumer hash-id` finds a user's by.
            log.warning(
                "event dead-lettered",
                extra={
                    "reason": letter.reason,
                    "event_type": event.type.value,
                    "event_id": event.event_id,
                    "scope": logged_scope(event.scope),
                    "memory_id_count": len(event.memory_ids),
                },
            )
        sink = self._receipts
        if sink is not None:
            if letter is None:
                await sink.write(*self._completed_receipts([ref], sink.group))
            else:
                await sink.write(self._dead_lettered_receipts(ref, letter, sink))
        if letter is None:
            self._settled_deleted([ref])
            return
        self._summary.dead_lettered += 1
        self._in_flight.settle([record])
        self._settle_copies(ledger.copies(ref))

    def _letter(
        self,
        record: Record,
        reason: DlqReason,
        error: str,
        event_id: str | None,
        failure: Failure | None = None,
    ) -> DeadLetter:
        return self._dead_letters.letter(
            record.message,
            record.tp,
            record.offset,
            reason=reason,
            error=error,
            event_id=event_id,
            failure=failure,
        )

    def _settled_deleted(self, refs: list[Ref]) -> None:
        """Events every operation of which succeeded, counted and settled together: an
        operation finishes up to a thousand at once, and a metric update and a settling per
        event cost a tenth of the consumer's CPU on an id clean-up."""
        ledger = self._ledger
        assert ledger is not None
        events, owners, finished_at = self._events, self._owners, ledger.finished_at
        waits: dict[str, list[float]] = defaultdict(list)
        records: list[Record] = []
        copies: list[Ref] = []
        for ref in refs:
            event = events[ref]
            waits[event.type.value].append((finished_at(ref) or 0.0) - event.occurred_at_ms / 1000)
            records.append(owners[ref])
            copies.extend(ledger.copies(ref))
        metrics = self._metrics
        for kind, seconds in waits.items():
            metrics.events[(kind, "deleted")].inc(len(seconds))
            observe_many(metrics.erasure[kind], seconds)
        replayed = sum(map(_replayed, records))
        if replayed:
            metrics.replayed["completed"].inc(replayed)
        self._summary.deleted += len(refs)
        self._in_flight.settle(records)
        self._settle_copies(copies)

    def _settle_copies(self, copies: Iterable[Ref]) -> None:
        copies = list(copies)
        if not copies:
            return
        kinds = Counter(self._events[copy].type.value for copy in copies)
        for kind, count in kinds.items():
            self._metrics.events[(kind, "duplicate")].inc(count)
            self._summary.duplicates += count
        self._in_flight.settle([self._owners[copy] for copy in copies])

    def _completed_receipts(
        self, refs: list[Ref], group: str
    ) -> tuple[list[Receipt], CompletedReceipts]:
        """The receipts of events every operation of which succeeded: as their parts (the
        writer needs no `Receipt` for them), but for events repeated in the flush, whose
        receipts are built with one per duplicate record pointing at its event's. An operation
        finishes up to a thousand events at once, so the parts are each one `map`."""
        ledger = self._ledger
        assert ledger is not None
        events, owners = self._events, self._owners
        now_ms = int(time.time() * 1000)
        repeated: list[Receipt] = []
        copied = ledger.repeated(refs)
        if copied:
            for ref in copied:
                finished = ledger.finished_at(ref)
                receipt = completed(
                    events[ref],
                    ledger.reports(ref),
                    completed_at_ms=now_ms if finished is None else int(finished * 1000),
                    group=group,
                    position=_position(owners[ref]),
                )
                repeated.append(receipt)
                repeated += [duplicate(receipt, _position(owners[c])) for c in ledger.copies(ref)]
            alone = set(copied)
            refs = [ref for ref in refs if ref not in alone]
        batch = CompletedReceipts(
            list(map(events.__getitem__, refs)),
            ledger.reports_of(refs),
            [now_ms if at is None else int(at * 1000) for at in ledger.finished_at_of(refs)],
            group,
            list(map(owners.__getitem__, refs)),
        )
        return repeated, batch

    def _dead_lettered_receipts(
        self, ref: Ref, letter: DeadLetter, sink: ReceiptSink
    ) -> list[Receipt]:
        """The dead-lettered event's receipt, and one per duplicate record pointing at it."""
        ledger = self._ledger
        assert ledger is not None
        receipt = dead_lettered(
            self._events[ref],
            ledger.reports(ref),
            dlq_reason=letter.reason,
            failed_at_ms=int(time.time() * 1000),
            group=sink.group,
            position=_position(self._owners[ref]),
        )
        copies = ledger.copies(ref)
        return [receipt, *(duplicate(receipt, _position(self._owners[c])) for c in copies)]

    async def _dead(
        self, record: Record, letter: DeadLetter, event_type: str, after: list[asyncio.Event]
    ) -> None:
        # Until the records deferred beside it have decoded (or not), the guard could not tell
        # junk among events from nothing decoding (core/guard.py).
        for decoded in after:
            await decoded.wait()
        await self._dead_letters.write(record.message, record.ordinal, letter, event_type)
        self._summary.dead_lettered += 1
        self._in_flight.settle([record])


def _position(record: Record) -> Position:
    return Position(record.tp[0], record.tp[1], record.offset)


def _replayed(record: Record) -> bool:
    """Whether `replay` put this record back (README "Replay"): it carries a replay count.

    Most records carry no header at all, and then this is one call that answers None.
    """
    headers = record.message.headers()
    return bool(headers) and carried_replay_count(headers_of(record.message)) > 0
