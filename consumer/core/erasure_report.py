"""The compliance report's figures, from receipts and dead letters (`deletion-consumer report`).

An *erasure* is one event id. Its receipts (one per input record that carried it: a duplicate,
a redelivery, a replay each write one) decide what it is:

- **requested at**: the event's `occurred_at` (the same in all its receipts; the earliest if
  a producer sent different ones). The report's range (`since` included, `until` excluded)
  and its days (UTC) are those of the request.
- **status**: that of its *latest* receipt (the largest `completed_at`, then the later
  position on the receipts topic): `completed` or `outstanding` (the latest is
  `DEAD_LETTERED`: nothing later says it was done). An erasure dead-lettered, then replayed
  and completed, is completed; it also counts as `dead_lettered` (ever dead-lettered).
- **time to erasure**: from the request to its *first* `COMPLETED` receipt's `completed_at`
  (the Mem0 answer that confirmed the deletion), for a completed erasure; a dead letter's
  wait is part of it.
- **unverified**: a completed erasure whose first `COMPLETED` receipt says `verified` false
  (verification switched off, or an operation no check covers).
- **over the deadline** (or the target): completed more than the deadline after its request,
  or outstanding and older than the deadline at `now`.
- **where its dead letter is**: the DLQ record whose `dlq.original.*` headers name the input
  position of its latest receipt, if the DLQ still holds it.

Nothing here reads a clock, a topic or a file: the caller hands over what it read and `now`.
The report shows no identifier value (receipts hold none); event ids are request ids, shown so
that an operator can replay one (`replay --event-id`).

How it is computed (`core/erasure_tally.py`: `tally`, or `ErasureTally` fed one receipt at a time
while a topic is read):

- Per event id only a small slotted record is kept (`_Erasure`: times, the latest receipt's
  rank and outcome, the first completion), never the receipt: about 360 bytes an event id,
  its string included (a million events: 480 MiB at the peak of the process, report made).
- Ties: two receipts with the same `completed_at` and receipts position are one record read
  twice: the first read is kept. Of two COMPLETED receipts with the same `completed_at` (a
  duplicate record of one flush repeats its original's), the first read is the first
  completion.
  A receipt whose outcome is neither COMPLETED nor DEAD_LETTERED (a newer schema's) is ignored.
- The event type, reason and source of an erasure are those of its latest receipt.
- Time to erasure is never negative (a request time ahead of the consumer's clock counts 0, as
  the receipt's `time_to_erasure_ms` does); "more than" the deadline is strictly more.
- Percentiles are nearest-rank: the p-th of n sorted values is the ceil(p * n / 100)-th
  (1-based), so it is always one of the values measured, never an interpolation.
- Days are UTC dates of the request (`utc_day`); a time no date can hold is "out of range".
- Outstanding erasures are listed oldest request first, then by event id; the age buckets
  hold each of them once (ages under 1 day, negative ones included, in the first).
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.core.receipts import Receipt

__all__ = [
    "DAY_MS",
    "AgeBucket",
    "Counts",
    "DayLatency",
    "DeadLetterIndex",
    "DeadLetterSpot",
    "ErasureReport",
    "Latency",
    "Outstanding",
    "ReceiptSeen",
    "ScanFacts",
]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ReceiptSeen:
    """A receipt as the report needs it, and where it was read."""

    event_id: str
    outcome: str  # COMPLETED or DEAD_LETTERED
    event_type: str
    reason: str
    source: str
    occurred_at_ms: int
    completed_at_ms: int
    verified: bool
    dlq_reason: str | None
    input_topic: str
    input_partition: int
    input_offset: int
    receipts_partition: int
    receipts_offset: int

    @classmethod
    def of(cls, receipt: Receipt, partition: int, offset: int) -> ReceiptSeen:
        """What the report keeps of a decoded receipt read at `partition`, `offset`."""
        return cls(
            receipt.event_id,
            receipt.outcome,
            receipt.event_type,
            receipt.reason,
            receipt.source,
            receipt.occurred_at_ms,
            receipt.completed_at_ms,
            receipt.verified,
            receipt.dlq_reason,
            receipt.input.topic,
            receipt.input.partition,
            receipt.input.offset,
            partition,
            offset,
        )


@dataclass(frozen=True, slots=True)
class DeadLetterSpot:
    """A dead letter on the DLQ: where it is, and what its headers say."""

    partition: int
    offset: int
    reason: str | None  # dlq.reason
    failed_at: str | None  # dlq.failed_at, as written (RFC 3339)
    replay_count: int  # dlq.replay.count of the record that failed (0: never replayed)


# Dead letters by the input position they came from: (topic, partition, offset).
DeadLetterIndex = dict[tuple[str, int, int], DeadLetterSpot]


@dataclass(frozen=True, slots=True)
class Counts:
    """Erasures of one group (a day, a reason, a source, or all)."""

    requests: int = 0
    completed: int = 0
    unverified: int = 0  # completed, but not verified: counted in `completed` too
    dead_lettered: int = 0  # ever dead-lettered, completed since or not
    outstanding: int = 0  # latest receipt DEAD_LETTERED
    # Past the deadline: completed later than it after the request, or outstanding and older.
    over_deadline: int = 0
    over_target: int = 0  # the same against the internal target (0 without one)


@dataclass(frozen=True, slots=True)
class Latency:
    """Time to erasure of the completed erasures of one group, in milliseconds."""

    completed: int
    p50_ms: int
    p99_ms: int
    max_ms: int


@dataclass(frozen=True, slots=True)
class DayLatency:
    """Time to erasure of the erasures requested on one UTC day (for the chart over time)."""

    day: str  # YYYY-MM-DD
    latency: Latency


@dataclass(frozen=True, slots=True)
class Outstanding:
    """An erasure whose latest receipt is DEAD_LETTERED."""

    event_id: str
    event_type: str
    reason: str
    source: str
    occurred_at_ms: int
    dead_lettered_at_ms: int  # the latest receipt's completed_at
    age_ms: int  # now - occurred_at
    dlq_reason: str | None
    dead_letter: DeadLetterSpot | None  # None: not found on the DLQ (aged out, or elsewhere)
    past_deadline: bool
    past_target: bool  # False when no target was given


@dataclass(frozen=True, slots=True)
class AgeBucket:
    """Outstanding erasures by age, for the chart: `label` such as "1-7 days"."""

    label: str
    up_to_ms: int | None  # the bucket's upper bound (excluded); None: no bound
    count: int


@dataclass(frozen=True, slots=True)
class ScanFacts:
    """What was read to make the report."""

    receipts_topic: str
    dlq_topic: str | None
    receipts_read: int
    receipts_unreadable: int  # skipped: named on stderr by their position
    dead_letters_read: int
    dlq_unavailable: str | None  # why the DLQ was not read, if it was not


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """Everything the text, JSON and HTML forms show; times in Unix milliseconds."""

    generated_at_ms: int
    since_ms: int | None  # None: from the first receipt
    until_ms: int  # excluded
    deadline_ms: int
    target_ms: int | None
    scan: ScanFacts
    totals: Counts
    by_day: tuple[tuple[str, Counts], ...]  # YYYY-MM-DD, ascending
    by_reason: tuple[tuple[str, Counts], ...]  # most requests first, then by name
    by_source: tuple[tuple[str, Counts], ...]  # most requests first, then by name
    latency_by_type: tuple[tuple[str, Latency], ...]  # event type, by name
    latency_by_reason: tuple[tuple[str, Latency], ...]  # reason, by name
    latency_by_day: tuple[DayLatency, ...]  # ascending days with a completed erasure
    outstanding: tuple[Outstanding, ...]  # oldest request first
    outstanding_by_age: tuple[AgeBucket, ...]  # youngest bucket first, every bucket present
    past_deadline: int  # outstanding erasures older than the deadline
    past_target: int  # outstanding erasures older than the target (0 without one)
    latency_all: Latency | None = None  # every completed erasure in the range; None: none


# -- where a dead letter came from -------------------------------------------------------------
