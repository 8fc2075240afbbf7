"""The compliance report's fold: receipts and dead letters in, `ErasureReport` out.

What each figure means is defined with the model, in `core/erasure_report.py`; this module
computes them. `ErasureTally` takes one receipt at a time as the topic is read (per event id a
small slotted record, so a million erasures fit), and `tally` is the whole fold for a list.
`dead_letter_entry` reads a dead letter's headers into the index the fold looks its erasures'
dead letters up in. Pure: the caller passes `now`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from consumer.core.dlq import Headers, replay_count
from consumer.core.erasure_report import (
    DAY_MS,
    AgeBucket,
    Counts,
    DayLatency,
    DeadLetterIndex,
    DeadLetterSpot,
    ErasureReport,
    Latency,
    Outstanding,
    ReceiptSeen,
    ScanFacts,
)
from consumer.core.receipts import COMPLETED, DEAD_LETTERED

__all__ = [
    "AGE_BUCKETS",
    "OUT_OF_RANGE_DAY",
    "ErasureTally",
    "dead_letter_entry",
    "nearest_rank",
    "tally",
    "utc_day",
]


# The consumer writes these numbers as plain ASCII decimals (core/dlq.py): read them so, strictly.
_MAX_DIGITS = 19


def _one_header(headers: Headers, name: str) -> str | None:
    """The value of the header if there is exactly one, not null and UTF-8; else None."""
    values = [value for key, value in headers if key == name]
    if len(values) != 1 or values[0] is None:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _decimal(text: str | None) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    return int(text)


def dead_letter_entry(
    partition: int, offset: int, headers: Headers
) -> tuple[tuple[str, int, int], DeadLetterSpot] | None:
    """The index entry of the dead letter at `partition`, `offset` of the DLQ: the input
    position its `dlq.original.*` headers name, and what it says. None when those headers are
    not as the consumer writes them (missing, repeated, null, not UTF-8, not a decimal).

    Never raises: the DLQ holds whatever anyone wrote to it. A replay count that cannot be
    read counts 0 (`replay` writes readable ones only).
    """
    topic = _one_header(headers, "dlq.original.topic")
    original_partition = _decimal(_one_header(headers, "dlq.original.partition"))
    original_offset = _decimal(_one_header(headers, "dlq.original.offset"))
    if not topic or original_partition is None or original_offset is None:
        return None
    counts = [value for key, value in headers if key == "dlq.replay.count"]
    replays = replay_count(counts[0]) if len(counts) == 1 else None
    spot = DeadLetterSpot(
        partition=partition,
        offset=offset,
        reason=_one_header(headers, "dlq.reason"),
        failed_at=_one_header(headers, "dlq.failed_at"),
        replay_count=replays or 0,
    )
    return (topic, original_partition, original_offset), spot


# -- small pure helpers ------------------------------------------------------------------------

_EPOCH = date(1970, 1, 1)
OUT_OF_RANGE_DAY = "out of range"


def utc_day(millis: int) -> str:
    """The UTC date (YYYY-MM-DD) of a Unix time in ms; "out of range" where no date holds it."""
    try:
        return (_EPOCH + timedelta(days=millis // DAY_MS)).isoformat()
    except OverflowError:
        return OUT_OF_RANGE_DAY


def nearest_rank(ordered: Sequence[int], percent: int) -> int:
    """The nearest-rank percentile of values sorted ascending (not empty): the
    ceil(percent * n / 100)-th value, 1-based, at least the first."""
    rank = max(1, math.ceil(percent * len(ordered) / 100))
    return ordered[rank - 1]


def _latency(times: list[int]) -> Latency:
    times.sort()
    return Latency(
        completed=len(times),
        p50_ms=nearest_rank(times, 50),
        p99_ms=nearest_rank(times, 99),
        max_ms=times[-1],
    )


# (label, upper bound excluded); the last has none.
AGE_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("under 1 day", DAY_MS),
    ("1-7 days", 7 * DAY_MS),
    ("7-30 days", 30 * DAY_MS),
    ("over 30 days", None),
)


def _bucket_of(age_ms: int) -> int:
    for index, (_, up_to) in enumerate(AGE_BUCKETS):
        if up_to is None or age_ms < up_to:
            return index
    raise AssertionError("the last bucket has no bound")


# -- the fold ----------------------------------------------------------------------------------


class _Erasure:
    """One event id's state: small, as a topic may hold millions of them."""

    __slots__ = (
        "completed_at_ms",
        "dead_letter",
        "dlq_reason",
        "event_type",
        "ever_dead_lettered",
        "latest_at_ms",
        "latest_completed",
        "latest_offset",
        "latest_partition",
        "reason",
        "requested_at_ms",
        "source",
        "verified",
    )

    def __init__(self, seen: ReceiptSeen) -> None:
        self.requested_at_ms = seen.occurred_at_ms
        self.completed_at_ms: int | None = None  # the first COMPLETED receipt's
        self.verified = False  # the first COMPLETED receipt's
        self.ever_dead_lettered = False
        # The latest receipt: its rank (completed_at, receipts position) and what it says.
        self.latest_at_ms = seen.completed_at_ms
        self.latest_partition = seen.receipts_partition
        self.latest_offset = seen.receipts_offset
        self.latest_completed = False
        self.event_type = seen.event_type
        self.reason = seen.reason
        self.source = seen.source
        self.dlq_reason: str | None = None
        self.dead_letter: DeadLetterSpot | None = None


class _Count:
    """A `Counts` being added up (the same fields, mutable)."""

    __slots__ = (
        "completed",
        "dead_lettered",
        "outstanding",
        "over_deadline",
        "over_target",
        "requests",
        "unverified",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.completed = 0
        self.unverified = 0
        self.dead_lettered = 0
        self.outstanding = 0
        self.over_deadline = 0
        self.over_target = 0

    def frozen(self) -> Counts:
        return Counts(
            requests=self.requests,
            completed=self.completed,
            unverified=self.unverified,
            dead_lettered=self.dead_lettered,
            outstanding=self.outstanding,
            over_deadline=self.over_deadline,
            over_target=self.over_target,
        )


def _groups(table: dict[str, _Count], *, by_requests: bool) -> tuple[tuple[str, Counts], ...]:
    """Most requests first, then by name; or by name alone."""
    if by_requests:
        names = sorted(table, key=lambda name: (-table[name].requests, name))
    else:
        names = sorted(table)
    return tuple((name, table[name].frozen()) for name in names)


class ErasureTally:
    """Receipts folded into per-erasure state as they are read (`add`); `report` then makes
    the figures. `dead_letters` is the DLQ as read before the receipts: an outstanding
    erasure's dead letter is looked up when its receipt is added."""

    def __init__(self, dead_letters: DeadLetterIndex) -> None:
        self._dead_letters = dead_letters
        self._erasures: dict[str, _Erasure] = {}
        # One copy of each repeated text (types, reasons, sources, topics): millions of
        # receipts name a handful of them.
        self._texts: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._erasures)

    def _text(self, value: str) -> str:
        return self._texts.setdefault(value, value)

    def _spot(self, seen: ReceiptSeen) -> DeadLetterSpot | None:
        key = (seen.input_topic, seen.input_partition, seen.input_offset)
        return self._dead_letters.get(key)

    def add(self, seen: ReceiptSeen) -> None:
        completed = seen.outcome == COMPLETED
        if not completed and seen.outcome != DEAD_LETTERED:
            return
        erasure = self._erasures.get(seen.event_id)
        if erasure is None:
            erasure = self._erasures[seen.event_id] = _Erasure(seen)
            latest = True
        else:
            erasure.requested_at_ms = min(erasure.requested_at_ms, seen.occurred_at_ms)
            latest = (seen.completed_at_ms, seen.receipts_partition, seen.receipts_offset) > (
                erasure.latest_at_ms,
                erasure.latest_partition,
                erasure.latest_offset,
            )
        if completed:
            if erasure.completed_at_ms is None or seen.completed_at_ms < erasure.completed_at_ms:
                erasure.completed_at_ms = seen.completed_at_ms
                erasure.verified = seen.verified
        else:
            erasure.ever_dead_lettered = True
        if latest:
            erasure.latest_at_ms = seen.completed_at_ms
            erasure.latest_partition = seen.receipts_partition
            erasure.latest_offset = seen.receipts_offset
            erasure.latest_completed = completed
            erasure.event_type = self._text(seen.event_type)
            erasure.reason = self._text(seen.reason)
            erasure.source = self._text(seen.source)
            if completed:
                erasure.dlq_reason, erasure.dead_letter = None, None
            else:
                erasure.dlq_reason = (
                    None if seen.dlq_reason is None else self._text(seen.dlq_reason)
                )
                erasure.dead_letter = self._spot(seen)

    def report(
        self,
        *,
        now_ms: int,
        since_ms: int | None,
        until_ms: int | None,
        deadline_ms: int,
        target_ms: int | None,
        scan: ScanFacts,
    ) -> ErasureReport:
        """The figures of the erasures requested in [since, until) (until: `now` if None),
        their status as of what was added."""
        until = now_ms if until_ms is None else until_ms
        totals = _Count()
        by_day: dict[str, _Count] = {}
        by_reason: dict[str, _Count] = {}
        by_source: dict[str, _Count] = {}
        waits_all: list[int] = []
        waits_by_type: dict[str, list[int]] = {}
        waits_by_reason: dict[str, list[int]] = {}
        waits_by_day: dict[str, list[int]] = {}
        outstanding: list[Outstanding] = []
        days: dict[int, str] = {}  # a day's label, by day number: made once per day
        for event_id, erasure in self._erasures.items():
            requested = erasure.requested_at_ms
            if (since_ms is not None and requested < since_ms) or requested >= until:
                continue
            number = requested // DAY_MS
            day = days.get(number)
            if day is None:
                day = days[number] = utc_day(requested)
            groups = (
                totals,
                _group(by_day, day),
                _group(by_reason, erasure.reason),
                _group(by_source, erasure.source),
            )
            if erasure.latest_completed:
                assert erasure.completed_at_ms is not None  # the latest is a completion
                wait = max(0, erasure.completed_at_ms - requested)
                late = wait > deadline_ms
                past_target = target_ms is not None and wait > target_ms
                waits_all.append(wait)
                waits_by_type.setdefault(erasure.event_type, []).append(wait)
                waits_by_reason.setdefault(erasure.reason, []).append(wait)
                waits_by_day.setdefault(day, []).append(wait)
            else:
                age = now_ms - requested
                late = age > deadline_ms
                past_target = target_ms is not None and age > target_ms
                outstanding.append(
                    Outstanding(
                        event_id=event_id,
                        event_type=erasure.event_type,
                        reason=erasure.reason,
                        source=erasure.source,
                        occurred_at_ms=requested,
                        dead_lettered_at_ms=erasure.latest_at_ms,
                        age_ms=age,
                        dlq_reason=erasure.dlq_reason,
                        dead_letter=erasure.dead_letter,
                        past_deadline=late,
                        past_target=past_target,
                    )
                )
            for count in groups:
                count.requests += 1
                if erasure.latest_completed:
                    count.completed += 1
                    count.unverified += not erasure.verified
                else:
                    count.outstanding += 1
                count.dead_lettered += erasure.ever_dead_lettered
                count.over_deadline += late
                count.over_target += past_target
        outstanding.sort(key=lambda item: (item.occurred_at_ms, item.event_id))
        in_bucket = [0] * len(AGE_BUCKETS)
        for item in outstanding:
            in_bucket[_bucket_of(item.age_ms)] += 1
        return ErasureReport(
            generated_at_ms=now_ms,
            since_ms=since_ms,
            until_ms=until,
            deadline_ms=deadline_ms,
            target_ms=target_ms,
            scan=scan,
            totals=totals.frozen(),
            by_day=_groups(by_day, by_requests=False),
            by_reason=_groups(by_reason, by_requests=True),
            by_source=_groups(by_source, by_requests=True),
            latency_by_type=tuple(
                (name, _latency(waits_by_type[name])) for name in sorted(waits_by_type)
            ),
            latency_by_reason=tuple(
                (name, _latency(waits_by_reason[name])) for name in sorted(waits_by_reason)
            ),
            latency_by_day=tuple(
                DayLatency(day, _latency(waits_by_day[day])) for day in sorted(waits_by_day)
            ),
            outstanding=tuple(outstanding),
            outstanding_by_age=tuple(
                AgeBucket(label, up_to, count)
                for (label, up_to), count in zip(AGE_BUCKETS, in_bucket, strict=True)
            ),
            past_deadline=sum(item.past_deadline for item in outstanding),
            past_target=sum(item.past_target for item in outstanding),
            latency_all=_latency(waits_all) if waits_all else None,
        )


def _group(table: dict[str, _Count], name: str) -> _Count:
    count = table.get(name)
    if count is None:
        count = table[name] = _Count()
    return count


def tally(
    receipts: Iterable[ReceiptSeen],
    dead_letters: DeadLetterIndex,
    *,
    now_ms: int,
    since_ms: int | None,
    until_ms: int | None,
    deadline_ms: int,
    target_ms: int | None,
    scan: ScanFacts,
) -> ErasureReport:
    """The report of these receipts and dead letters (see the module's docstring)."""
    folded = ErasureTally(dead_letters)
    for seen in receipts:
        folded.add(seen)
    return folded.report(
        now_ms=now_ms,
        since_ms=since_ms,
        until_ms=until_ms,
        deadline_ms=deadline_ms,
        target_ms=target_ms,
        scan=scan,
    )
