"""One flush, start to finish: decode, plan, carry out, and settle every record.

A record is settled exactly once: deleted, dead-lettered (after the broker acknowledged the dead
letter), or as a duplicate of an earlier record of the same flush. `settle` is the app's hook to
mark its offset done. With receipts on, a decoded record is settled only once the broker has
acknowledged its receipt (a duplicate's too), so no committed event lacks one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from confluent_kafka import Message

from consumer.avro.codec import DecodeError, Decoder
from consumer.avro.registry import RegistryError
from consumer.core.dlq import DeadLetter, DlqReason, dead_letter_headers, headers_of
from consumer.core.events import DeletionEvent
from consumer.core.guard import DlqGuard
from consumer.core.planner import Capabilities, Operation, Plan, Ref, Rejection, plan
from consumer.core.receipts import (
    OperationReport,
    Position,
    Receipt,
    completed,
    dead_lettered,
    duplicate,
    operation_report,
)
from consumer.kafka.producer import AsyncProducer, DeliveryError
from consumer.kafka.receipt_sink import ReceiptSink
from consumer.pipeline.executor import Executor, Failure
from consumer.telemetry.metrics import Metrics, observe_many
from consumer.telemetry.progress import FlushSummary

__all__ = ["DeadLetterSink", "Flush", "Load", "Record"]

log = logging.getLogger(__name__)

# Events decoded between two yields to the event loop (about 10 ms of work).
_DECODE_SLICE = 500
_RETRY_CAP_S = 30.0


@dataclass(slots=True)
class Record:
    """One consumed record, where it came from, and the assignment epoch it was read in."""

    message: Message
    tp: tuple[str, int]
    offset: int
    epoch: int
    ordinal: int = 0  # its place in consumption order (for the dead-letter guard)


@dataclass(slots=True)
class Load:
    """Mem0 work taken in and not yet done, for the app's back-pressure.

    An event weighs one operation until its flush is planned (scopes plan about one each, a
    Platform user erasure two, the second for its entity record, so a flush of them may pass
    the budget up to twice; ids fold up to a thousand into one), then the plan's operations
    count as they are until each finishes.
    """

    unplanned: int = 0  # events handed to a flush that has not planned yet
    operations: int = 0  # operations planned and not finished
    eased: Callable[[], None] | None = None  # told when a plan or an operation is done

    def planned(self, events: int, operations: int) -> None:
        self.unplanned -= events
        self.operations += operations
        if self.eased is not None:
            self.eased()

    def finished(self) -> None:
        self.operations -= 1
        if self.eased is not None:
            self.eased()

    @property
    def work(self) -> int:
        return self.unplanned + self.operations


class DeadLetterSink:
    """Writes dead letters and returns only once the broker has acknowledged them."""

    def __init__(
        self,
        producer: AsyncProducer,
        *,
        topic: str,
        group: str,
        metrics: Metrics,
        guard: DlqGuard | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._group = group
        self._metrics = metrics
        self.guard = guard if guard is not None else DlqGuard(max_share=1.0)
        self._never = asyncio.Event()  # what a write waits on once the guard has tripped
        self.held = False

    def letter(
        self,
        record: Record,
        reason: DlqReason,
        error: str,
        event_id: str | None,
        failure: Failure | None = None,
    ) -> DeadLetter:
        kind, stamp = record.message.timestamp()
        return DeadLetter(
            reason=reason,
            error=error,
            topic=record.tp[0],
            partition=record.tp[1],
            offset=record.offset,
            timestamp_ms=stamp if kind else None,
            attempts=failure.attempts if failure else 0,
            group=self._group,
            event_id=event_id,
            http_status=failure.http_status if failure else None,
        )

    async def write(self, record: Record, letter: DeadLetter, event_type: str) -> None:
        if not self.guard.admit(record.ordinal):
            if not self.held:
                self.held = True
                log.error(
                    "dead-letter guard tripped: over %.0f%% of recent events failed; no more "
                    "dead letters are written and nothing past them is committed. Fix the "
                    "cause (a bad deploy, a schema), then restart.",
                    self.guard.max_share * 100,
                )
            self._metrics.dlq_guard_tripped.set(1)
            # Held for good: the event stays in flight and uncommitted until a restart.
            await self._never.wait()
        message = record.message
        headers = dead_letter_headers(headers_of(message), letter, time.time())
        delay = 0.5
        while True:
            try:
                await self._producer.send(
                    self._topic, key=message.key(), value=message.value(), headers=headers
                )
                break
            except DeliveryError as exc:
                # Not acknowledged, so not finished: the offset stays uncommitted meanwhile.
                log.error("dead-letter write failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP_S)
        self._metrics.dlq[letter.reason].inc()
        self._metrics.events[(event_type, "dead_lettered")].inc()
        # Per event, so DEBUG only; coordinates and the event id, never the ids it names.
        log.debug(
            "dead letter written",
            extra={
                "reason": letter.reason,
                "event_type": event_type,
                "event_id": letter.event_id,
                "topic": record.tp[0],
                "partition": record.tp[1],
                "offset": record.offset,
            },
        )


class Flush:
    def __init__(
        self,
        records: list[Record],
        *,
        decoder: Decoder,
        caps: Capabilities,
        executor: Executor,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        settle: Callable[[list[Record]], None],
        report: Callable[[FlushSummary], None] | None = None,
        receipts: ReceiptSink | None = None,
        turn: asyncio.Lock | None = None,
        load: Load | None = None,
    ) -> None:
        self._records = records
        self._load = load if load is not None else Load(unplanned=len(records))
        self._turn = turn if turn is not None else asyncio.Lock()
        self._decoder = decoder
        self._caps = caps
        self._executor = executor
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._settle = settle
        self._report = report
        self._summary = FlushSummary(events=len(records))
        self._events: list[DeletionEvent] = []
        self._owners: list[Record] = []
        self._remaining: dict[Ref, int] = defaultdict(int)
        self._failures: dict[Ref, Failure] = {}
        self._finished_at: dict[Ref, float] = {}
        self._copies: dict[Ref, list[Ref]] = defaultdict(list)
        self._receipts = receipts
        self._reports: dict[Ref, list[OperationReport]] = defaultdict(list)

    async def run(self) -> None:
        started = time.monotonic()
        chores: list[asyncio.Future[None]] = []
        # One flush decodes and plans at a time, in dispatch order: interleaved, four flushes
        # finished decoding together, called Mem0 together and finished together, so the
        # consumer alternated between busy decoding and idle waiting. In turn, the first one's
        # calls are in flight while the next one decodes.
        async with self._turn:
            try:
                planned = await self._decode_and_plan(chores)
            except BaseException:
                self._load.planned(len(self._records), 0)
                raise
            self._load.planned(len(self._records), len(planned.operations))

        self._metrics.observe_flush(len(self._records), len(planned.operations))
        self._summary.operations = len(planned.operations)
        for operation in planned.operations:
            for ref in operation.refs:
                self._remaining[ref] += 1
        for copy, original in planned.duplicates.items():
            self._copies[original].append(copy)

        chores.extend(asyncio.ensure_future(self._carry_out(op)) for op in planned.operations)
        chores.extend(
            asyncio.ensure_future(self._finish(ref, rejection))
            for ref, rejection in planned.rejected.items()
        )
        await asyncio.gather(*chores)
        if self._report is not None:
            self._summary.seconds = time.monotonic() - started
            self._report(self._summary)

    async def _decode_and_plan(self, chores: list[asyncio.Future[None]]) -> Plan:
        """Decode every record (bad ones to the DLQ, as chores) and plan the good ones."""
        records, decode = self._records, self._decoder.decode
        events, owners = self._events, self._owners
        for first in range(0, len(records), _DECODE_SLICE):
            if first:
                # Decoding never waits; let the replies of other flushes in meanwhile.
                await asyncio.sleep(0)
            for record in records[first : first + _DECODE_SLICE]:
                value = record.message.value()
                try:
                    try:
                        event = decode(value)
                    except RegistryError as exc:  # rare: only then wait and retry
                        event = await self._decode_patiently(value, exc)
                except DecodeError as exc:
                    letter = self._dead_letters.letter(record, exc.reason, str(exc), None)
                    chores.append(asyncio.ensure_future(self._dead(record, letter, "unknown")))
                    continue
                events.append(event)
                owners.append(record)
        return plan(events, self._caps)

    async def _decode_patiently(self, value: bytes | None, error: RegistryError) -> DeletionEvent:
        """Decode after `error`, waiting out a registry that cannot be reached or refuses our
        credentials: neither is a reason to dead-letter a good event."""
        delay = 0.5
        while True:
            level = logging.WARNING if error.retriable else logging.ERROR
            log.log(level, "schema registry failed, retrying in %.1fs: %s", delay, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_CAP_S)
            try:
                return self._decoder.decode(value)
            except RegistryError as exc:
                error = exc

    async def _carry_out(self, operation: Operation) -> None:
        self._metrics.in_flight_operations.inc()
        try:
            outcome = await self._executor.run(operation)
        finally:
            self._metrics.in_flight_operations.dec()
            self._load.finished()
        if self._receipts is not None:
            done = operation_report(
                operation,
                calls=outcome.calls,
                last_http_status=outcome.last_status,
                job_id=outcome.job_id,
                verified=outcome.verified,
            )
            cascades = outcome.cascades
            for ref in operation.refs:
                self._reports[ref].append(
                    done if cascades is None else replace(done, cascade_count=cascades[ref])
                )
        finished: list[Ref] = []
        failed: list[Ref] = []
        failures, finished_at, remaining = self._failures, self._finished_at, self._remaining
        for ref in operation.refs:
            if ref in outcome.failures:
                failures.setdefault(ref, outcome.failures[ref])
            finished_at[ref] = max(finished_at.get(ref, 0.0), outcome.finished_at)
            remaining[ref] -= 1
            if remaining[ref] == 0:
                (failed if ref in failures else finished).append(ref)
        # The events this operation finished, together: their receipts in one write, then
        # settled here and now (a task per event would cost more than all else done for it).
        if finished:
            sink = self._receipts
            if sink is not None:
                await sink.write(
                    [
                        receipt
                        for ref in finished
                        for receipt in self._receipts_for(
                            ref, None, self._copies.get(ref, []), sink
                        )
                    ]
                )
            self._settled_deleted(finished)
        if failed:
            await asyncio.gather(*(self._finish(ref) for ref in failed))

    async def _finish(self, ref: Ref, rejection: Rejection | None = None) -> None:
        """Every operation of this event is over (or it had none): settle it and its copies,
        once its dead letter (if any) and their receipts are acknowledged."""
        event, record = self._events[ref], self._owners[ref]
        failure = self._failures.get(ref)
        letter: DeadLetter | None = None
        if rejection is not None:
            letter = self._dead_letters.letter(
                record, rejection.reason, rejection.message, event.event_id
            )
        elif failure is not None:
            letter = self._dead_letters.letter(
                record, failure.reason, failure.message, event.event_id, failure
            )
        if letter is not None:
            await self._dead_letters.write(record, letter, event.type.value)
        if self._receipts is not None:
            copies = self._copies.get(ref, [])
            await self._receipts.write(self._receipts_for(ref, letter, copies, self._receipts))
        self._settled(ref, letter)

    def _settled(self, ref: Ref, letter: DeadLetter | None) -> None:
        """The event is done (deleted, or its dead letter acknowledged): count it, and settle
        its record and its copies' records."""
        if letter is None:
            self._settled_deleted([ref])
            return
        self._summary.dead_lettered += 1
        self._settle([self._owners[ref]])
        copies = self._copies.get(ref, ())
        if copies:
            self._count_and_settle_copies(copies)

    def _settled_deleted(self, refs: list[Ref]) -> None:
        """Events every operation of which succeeded, counted and settled together: an
        operation finishes up to a thousand at once, and a metric update and a callback per
        event cost a tenth of the consumer's CPU on an id clean-up."""
        events, owners, finished_at = self._events, self._owners, self._finished_at
        waits: dict[str, list[float]] = defaultdict(list)
        records: list[Record] = []
        copies: list[Ref] = []
        for ref in refs:
            event = events[ref]
            waits[event.type.value].append(finished_at[ref] - event.occurred_at_ms / 1000)
            records.append(owners[ref])
            copies.extend(self._copies.get(ref, ()))
        metrics = self._metrics
        for kind, seconds in waits.items():
            metrics.events[(kind, "deleted")].inc(len(seconds))
            observe_many(metrics.erasure[kind], seconds)
        self._summary.deleted += len(refs)
        self._settle(records)
        if copies:
            self._count_and_settle_copies(copies)

    def _count_and_settle_copies(self, copies: Iterable[Ref]) -> None:
        kinds = Counter(self._events[copy].type.value for copy in copies)
        for kind, count in kinds.items():
            self._metrics.events[(kind, "duplicate")].inc(count)
            self._summary.duplicates += count
        self._settle([self._owners[copy] for copy in copies])

    def _receipts_for(
        self, ref: Ref, letter: DeadLetter | None, copies: list[Ref], sink: ReceiptSink
    ) -> list[Receipt]:
        """The event's receipt, and one per duplicate record pointing at it."""
        event, position = self._events[ref], _position(self._owners[ref])
        reports = self._reports.get(ref, [])
        now_ms = int(time.time() * 1000)
        if letter is None:
            finished = self._finished_at.get(ref)
            receipt = completed(
                event,
                reports,
                completed_at_ms=now_ms if finished is None else int(finished * 1000),
                group=sink.group,
                position=position,
            )
        else:
            receipt = dead_lettered(
                event,
                reports,
                dlq_reason=letter.reason,
                failed_at_ms=now_ms,
                group=sink.group,
                position=position,
            )
        return [receipt, *(duplicate(receipt, _position(self._owners[c])) for c in copies)]

    async def _dead(self, record: Record, letter: DeadLetter, event_type: str) -> None:
        await self._dead_letters.write(record, letter, event_type)
        self._summary.dead_lettered += 1
        self._settle([record])


def _position(record: Record) -> Position:
    return Position(record.tp[0], record.tp[1], record.offset)
