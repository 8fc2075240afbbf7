"""The report's figures (`core.erasure_tally.tally`) on hand-made receipts: every rule of the
module's docstring, one test each, then properties over random receipts (the tables add up to
the totals, every erasure is completed or outstanding, percentiles are ordered, the list is
sorted and the buckets hold it), and a plain re-count of the rules to compare against."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.dlq import DeadLetter, DlqReason, dead_letter_headers
from consumer.core.erasure_report import (
    DAY_MS,
    Counts,
    DeadLetterIndex,
    DeadLetterSpot,
    ErasureReport,
    ReceiptSeen,
    ScanFacts,
)
from consumer.core.erasure_tally import (
    AGE_BUCKETS,
    ErasureTally,
    dead_letter_entry,
    nearest_rank,
    tally,
    utc_day,
)
from consumer.core.receipts import COMPLETED, DEAD_LETTERED, Position, Receipt

HOUR = 3_600_000
NOW = 1_741_000_000_000  # 2025-03-03T11:06:40Z
DEADLINE = 30 * DAY_MS
SCAN = ScanFacts("receipts", "dlq", 0, 0, 0, None)
INPUT = "memory.deletions"


def seen(
    event_id: str,
    outcome: str = COMPLETED,
    *,
    requested: int = NOW - HOUR,
    at: int | None = None,
    verified: bool = True,
    dlq_reason: str | None = None,
    event_type: str = "user_deleted",
    reason: str = "GDPR",
    source: str = "app",
    input_offset: int = 0,
    offset: int = 0,
    partition: int = 0,
) -> ReceiptSeen:
    """A receipt `at` (default: a second after the request) on receipts `partition:offset`."""
    if outcome == DEAD_LETTERED and dlq_reason is None:
        dlq_reason = "rejected"
    return ReceiptSeen(
        event_id=event_id,
        outcome=outcome,
        event_type=event_type,
        reason=reason,
        source=source,
        occurred_at_ms=requested,
        completed_at_ms=requested + 1000 if at is None else at,
        verified=verified and outcome == COMPLETED,
        dlq_reason=dlq_reason if outcome == DEAD_LETTERED else None,
        input_topic=INPUT,
        input_partition=0,
        input_offset=input_offset,
        receipts_partition=partition,
        receipts_offset=offset,
    )


def report_of(
    receipts: Sequence[ReceiptSeen],
    dead_letters: DeadLetterIndex | None = None,
    *,
    since: int | None = None,
    until: int | None = None,
    deadline: int = DEADLINE,
    target: int | None = None,
    now: int = NOW,
) -> ErasureReport:
    return tally(
        receipts,
        dead_letters or {},
        now_ms=now,
        since_ms=since,
        until_ms=until,
        deadline_ms=deadline,
        target_ms=target,
        scan=SCAN,
    )


def spot(offset: int, reason: str = "rejected") -> DeadLetterSpot:
    return DeadLetterSpot(partition=1, offset=offset, reason=reason, failed_at=None, replay_count=0)


# -- status: the latest receipt decides ---------------------------------------------------------


def test_the_latest_receipt_decides_the_status_not_the_order_read() -> None:
    done = seen("e", at=NOW - 50 * 60_000, offset=1)
    failed_later = seen("e", DEAD_LETTERED, at=NOW - 40 * 60_000, offset=0)
    for order in ([done, failed_later], [failed_later, done]):
        report = report_of(order)
        assert (report.totals.completed, report.totals.outstanding) == (0, 1)
        assert report.totals.requests == 1  # an erasure is an event id, not a receipt
        assert report.totals.dead_lettered == 1
        (item,) = report.outstanding
        assert item.dead_lettered_at_ms == failed_later.completed_at_ms


def test_at_the_same_time_the_later_receipts_position_is_the_latest() -> None:
    failed = seen("e", DEAD_LETTERED, at=NOW - 1000, offset=4)
    done = seen("e", at=NOW - 1000, offset=5)
    for order in ([failed, done], [done, failed]):
        assert report_of(order).totals.outstanding == 0
    assert report_of([replace(done, receipts_offset=3), failed]).totals.outstanding == 1


def test_dead_lettered_then_replayed_and_completed_counts_completed_and_dead_lettered() -> None:
    failed = seen("e", DEAD_LETTERED, at=NOW - 30 * 60_000, input_offset=3, offset=0)
    replayed = seen("e", at=NOW - 10 * 60_000, input_offset=9, offset=1)
    report = report_of([failed, replayed], {(INPUT, 0, 3): spot(12)})
    totals = report.totals
    assert (totals.requests, totals.completed, totals.dead_lettered, totals.outstanding) == (
        1,
        1,
        1,
        0,
    )
    assert report.outstanding == ()
    # Its time to erasure includes the wait on the DLQ.
    assert report.latency_all is not None
    assert report.latency_all.max_ms == replayed.completed_at_ms - replayed.occurred_at_ms


def test_time_to_erasure_runs_to_the_first_completed_receipt() -> None:
    requested = NOW - 10 * HOUR
    first = seen("e", requested=requested, at=requested + 2 * HOUR, offset=0)
    redelivered = seen("e", requested=requested, at=requested + 5 * HOUR, offset=1)
    for order in ([first, redelivered], [redelivered, first]):
        (row,) = report_of(order).latency_by_type
        assert row == ("user_deleted", report_of(order).latency_all)
        assert (row[1].completed, row[1].max_ms) == (1, 2 * HOUR)


def test_a_request_time_ahead_of_the_completion_counts_zero() -> None:
    ahead = seen("e", requested=NOW - 1000, at=NOW - 5000)
    latency = report_of([ahead]).latency_all
    assert latency is not None and (latency.p50_ms, latency.max_ms) == (0, 0)


def test_unverified_is_the_first_completions_word() -> None:
    unchecked = seen("e", verified=False, at=NOW - 2000, offset=0)
    checked_later = seen("e", verified=True, at=NOW - 1000, offset=1)
    totals = report_of([checked_later, unchecked]).totals
    assert (totals.completed, totals.unverified) == (1, 1)
    totals = report_of([replace(unchecked, verified=True), replace(checked_later, verified=False)])
    assert (totals.totals.completed, totals.totals.unverified) == (1, 0)


def test_a_receipt_of_an_unknown_outcome_is_ignored() -> None:
    report = report_of([replace(seen("e"), outcome="SOMETHING_NEW")])
    assert report.totals == Counts()


# -- deadline and target ------------------------------------------------------------------------


def test_a_late_completion_is_over_the_deadline_and_the_target() -> None:
    requested = NOW - 40 * DAY_MS
    late = seen("late", requested=requested, at=requested + DEADLINE + 1)
    on_time = seen("exact", requested=requested, at=requested + DEADLINE)  # not *more* than
    quick = seen("quick", requested=requested, at=requested + HOUR)
    report = report_of([late, on_time, quick], target=HOUR - 1)
    assert (report.totals.over_deadline, report.totals.over_target) == (1, 3)
    assert (report.past_deadline, report.past_target) == (0, 0)  # those count outstanding ones
    assert report_of([late, on_time, quick]).totals.over_target == 0  # no target: none


def test_an_old_outstanding_erasure_is_past_the_deadline_and_the_target() -> None:
    old = seen("old", DEAD_LETTERED, requested=NOW - DEADLINE - 1, offset=0)
    young = seen("young", DEAD_LETTERED, requested=NOW - 2 * HOUR, offset=1)
    newest = seen("newest", DEAD_LETTERED, requested=NOW - HOUR // 2, offset=2)
    report = report_of([young, old, newest], target=HOUR)
    assert [(o.event_id, o.past_deadline, o.past_target) for o in report.outstanding] == [
        ("old", True, True),
        ("young", False, True),
        ("newest", False, False),
    ]
    assert (report.past_deadline, report.past_target) == (1, 2)
    assert (report.totals.over_deadline, report.totals.over_target) == (1, 2)
    assert [o.age_ms for o in report.outstanding] == [DEADLINE + 1, 2 * HOUR, HOUR // 2]


# -- the range and the days ---------------------------------------------------------------------


def test_the_range_is_of_request_times_since_included_until_excluded() -> None:
    since, until = NOW - 10 * DAY_MS, NOW - DAY_MS
    receipts = [
        seen("before", requested=since - 1, at=since + HOUR),  # done inside: still before
        seen("first", requested=since),
        seen("last", requested=until - 1),
        seen("at-until", requested=until),
    ]
    report = report_of(receipts, since=since, until=until)
    assert report.totals.requests == 2
    assert (report.since_ms, report.until_ms) == (since, until)
    assert report_of(receipts).totals.requests == 4  # no since: all; until: now
    assert report_of(receipts).until_ms == NOW


def test_the_request_time_is_the_earliest_of_the_receipts() -> None:
    since = NOW - DAY_MS
    receipts = [seen("e", requested=since, offset=0), seen("e", requested=since - 1, offset=1)]
    assert report_of(receipts, since=since).totals.requests == 0
    (day,) = report_of(receipts).by_day
    assert day[0] == utc_day(since - 1)


def test_days_are_utc_days_of_the_request() -> None:
    midnight = 1_740_960_000_000  # 2025-03-03T00:00:00Z
    receipts = [
        seen("late-evening", requested=midnight - 1),
        seen("midnight", requested=midnight),
        seen("morning", requested=midnight + HOUR, at=midnight + 3 * HOUR),
    ]
    report = report_of(receipts)
    assert [(day, counts.requests) for day, counts in report.by_day] == [
        ("2025-03-02", 1),
        ("2025-03-03", 2),
    ]
    assert [(row.day, row.latency.completed) for row in report.latency_by_day] == [
        ("2025-03-02", 1),
        ("2025-03-03", 2),
    ]
    assert utc_day(-1) == "1969-12-31" and utc_day(0) == "1970-01-01"
    assert utc_day(2**62) == utc_day(-(2**62)) == "out of range"


def test_groups_are_ordered_most_requests_first_then_by_name() -> None:
    receipts = [
        seen("1", reason="CCPA", source="b"),
        seen("2", reason="GDPR", source="a"),
        seen("3", reason="GDPR", source="c"),
        seen("4", reason="ADMIN", source="c"),
    ]
    report = report_of(receipts)
    assert [name for name, _ in report.by_reason] == ["GDPR", "ADMIN", "CCPA"]
    assert [name for name, _ in report.by_source] == ["c", "a", "b"]
    assert [name for name, _ in report.latency_by_reason] == ["ADMIN", "CCPA", "GDPR"]


def test_type_reason_and_source_are_the_latest_receipts() -> None:
    first = seen("e", reason="OTHER", source="old", at=NOW - 2000, offset=0)
    latest = seen("e", reason="GDPR", source="new", at=NOW - 1000, offset=1)
    report = report_of([latest, first])
    assert [name for name, _ in report.by_reason] == ["GDPR"]
    assert [name for name, _ in report.by_source] == ["new"]


# -- where the dead letter is -------------------------------------------------------------------


def test_the_dead_letter_is_the_one_of_the_latest_receipts_input_position() -> None:
    index = {(INPUT, 0, 3): spot(12), (INPUT, 0, 8): spot(20, "retries_exhausted")}
    first = seen("e", DEAD_LETTERED, input_offset=3, at=NOW - 3000, offset=0)
    again = seen(
        "e", DEAD_LETTERED, input_offset=8, at=NOW - 2000, offset=1, dlq_reason="retries_exhausted"
    )
    (item,) = report_of([again, first], index).outstanding
    assert item.dead_letter == spot(20, "retries_exhausted")
    assert item.dlq_reason == "retries_exhausted"
    lost = seen("f", DEAD_LETTERED, input_offset=99)
    (item,) = report_of([lost], index).outstanding
    assert item.dead_letter is None  # not found on the DLQ
    other_topic = replace(first, event_id="g", input_topic="elsewhere")
    assert report_of([other_topic], index).outstanding[0].dead_letter is None


def test_dead_letter_entries_are_read_from_the_consumers_headers() -> None:
    letter = DeadLetter(DlqReason.REJECTED, "HTTP 400", INPUT, 2, 41, None, 1, "g", "e-1")
    headers = dead_letter_headers([("dlq.replay.count", b"2")], letter, 1_700_000_000.0)
    key, found = dead_letter_entry(0, 7, headers) or ((), None)
    assert key == (INPUT, 2, 41)
    assert found == DeadLetterSpot(0, 7, "rejected", "2023-11-14T22:13:20.000Z", 2)
    for flaw in (
        [(k, v) for k, v in headers if k != "dlq.original.offset"],  # missing
        [*headers, ("dlq.original.partition", b"3")],  # repeated
        [(k, None if k == "dlq.original.topic" else v) for k, v in headers],  # null
        [(k, b"\xff" if k == "dlq.original.topic" else v) for k, v in headers],  # not UTF-8
        [(k, b"041" if k == "dlq.original.offset" else v) for k, v in headers],  # not canonical
        [(k, "²".encode() if k == "dlq.original.partition" else v) for k, v in headers],
        [(k, b"" if k == "dlq.original.topic" else v) for k, v in headers],  # empty topic
        [],
    ):
        assert dead_letter_entry(0, 7, flaw) is None
    # What cannot be read of the rest is none, not a failure.
    odd = [(k, b"\xff" if k in ("dlq.reason", "dlq.replay.count") else v) for k, v in headers]
    entry = dead_letter_entry(0, 7, odd)
    assert entry is not None and (entry[1].reason, entry[1].replay_count) == (None, 0)


HEADER_NAMES = st.sampled_from(
    [
        "dlq.original.topic",
        "dlq.original.partition",
        "dlq.original.offset",
        "dlq.reason",
        "dlq.failed_at",
        "dlq.replay.count",
        "other",
    ]
)
HEADER_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=24),
    st.sampled_from([b"0", b"7", b"41", b"topic", "²".encode(), b"9" * 30]),
)


@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12))
def test_no_headers_make_dead_letter_entry_raise(headers: list[tuple[str, bytes | None]]) -> None:
    entry = dead_letter_entry(0, 0, headers)
    if entry is not None:
        (topic, partition, offset), _ = entry
        assert topic and partition >= 0 and offset >= 0


# -- percentiles and buckets --------------------------------------------------------------------


def test_nearest_rank_percentiles() -> None:
    hundred = list(range(1, 101))
    assert [nearest_rank(hundred, p) for p in (50, 99, 100)] == [50, 99, 100]
    assert nearest_rank([7], 50) == nearest_rank([7], 99) == 7
    assert [nearest_rank([1, 2, 3, 4], p) for p in (50, 99)] == [2, 4]  # ceil(2.0), ceil(3.96)


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=200), st.integers(1, 100))
def test_nearest_rank_is_the_smallest_value_with_p_percent_at_or_below(
    values: list[int], percent: int
) -> None:
    ordered = sorted(values)
    found = nearest_rank(ordered, percent)
    share = percent * len(ordered) / 100
    assert sum(v <= found for v in ordered) >= share
    assert sum(v < found for v in ordered) < share


def test_every_age_bucket_is_present_and_the_bounds_are_excluded() -> None:
    ages = [0, DAY_MS - 1, DAY_MS, 7 * DAY_MS - 1, 7 * DAY_MS, 30 * DAY_MS, 400 * DAY_MS, -HOUR]
    receipts = [
        seen(f"e{n}", DEAD_LETTERED, requested=NOW - age, offset=n) for n, age in enumerate(ages)
    ]
    # A request ahead of `now` (a producer's clock) is in a range that reaches past it.
    report = report_of(receipts, until=NOW + DAY_MS)
    assert [(b.label, b.up_to_ms, b.count) for b in report.outstanding_by_age] == [
        ("under 1 day", DAY_MS, 3),
        ("1-7 days", 7 * DAY_MS, 2),
        ("7-30 days", 30 * DAY_MS, 1),
        ("over 30 days", None, 2),
    ]
    empty = report_of([])
    assert [b.count for b in empty.outstanding_by_age] == [0, 0, 0, 0]
    assert [b.label for b in empty.outstanding_by_age] == [label for label, _ in AGE_BUCKETS]
    assert (empty.totals, empty.by_day, empty.latency_all, empty.outstanding) == (
        Counts(),
        (),
        None,
        (),
    )


def test_a_receipt_read_from_the_topic_becomes_what_the_report_keeps() -> None:
    receipt = Receipt(
        "e-1",
        DEAD_LETTERED,
        "memories_deleted",
        "CCPA",
        "svc",
        1,
        2,
        None,
        (),
        False,
        "rejected",
        "group",
        Position(INPUT, 2, 41),
    )
    assert ReceiptSeen.of(receipt, 1, 9) == ReceiptSeen(
        "e-1", DEAD_LETTERED, "memories_deleted", "CCPA", "svc", 1, 2, False, "rejected", INPUT,
        2, 41, 1, 9,
    )  # fmt: skip


def test_a_hundred_thousand_erasures_fold_quickly() -> None:
    # Memory is kept to a slotted record per event id: no receipt is kept.
    folded = ErasureTally({})
    start = time.perf_counter()
    for n in range(100_000):
        folded.add(seen(str(uuid.UUID(int=n)), requested=NOW - 1 - n, offset=n))
    report = folded.report(
        now_ms=NOW, since_ms=None, until_ms=None, deadline_ms=DEADLINE, target_ms=None, scan=SCAN
    )
    assert report.totals.requests == len(folded) == 100_000
    assert time.perf_counter() - start < 20  # ~2 s on the shared 2-core machine
    assert not hasattr(next(iter(folded._erasures.values())), "__dict__")


# -- properties over random receipts ------------------------------------------------------------

receipt_strategy = st.builds(
    lambda event, done, requested, delay, verified, reason, source, kind, position: seen(
        f"e{event}",
        COMPLETED if done else DEAD_LETTERED,
        requested=NOW - requested,
        at=NOW - requested + delay,
        verified=verified,
        reason=reason,
        source=source,
        event_type=kind,
        input_offset=position,
        offset=position,
        partition=event % 2,
    ),
    event=st.integers(0, 12),
    done=st.booleans(),
    requested=st.integers(-HOUR, 60 * DAY_MS),
    delay=st.integers(-1000, 40 * DAY_MS),
    verified=st.booleans(),
    reason=st.sampled_from(["GDPR", "CCPA", "ADMIN"]),
    source=st.sampled_from(["a", "b", "c\x1b"]),
    kind=st.sampled_from(["user_deleted", "memories_deleted"]),
    position=st.integers(0, 40),
)
options_strategy = st.fixed_dictionaries(
    {
        "since": st.one_of(st.none(), st.integers(0, 60 * DAY_MS).map(lambda d: NOW - d)),
        "target": st.one_of(st.none(), st.integers(1, 40 * DAY_MS)),
        "deadline": st.integers(1, 40 * DAY_MS),
    }
)

FIELDS = tuple(Counts.__dataclass_fields__)


def recount(receipts: Sequence[ReceiptSeen], since: int | None) -> dict[str, tuple[bool, ...]]:
    """The rules applied plainly: per event id in range, (completed, unverified, dead-lettered)."""
    by_event: dict[str, list[ReceiptSeen]] = {}
    for receipt in receipts:
        by_event.setdefault(receipt.event_id, []).append(receipt)
    out = {}
    for event_id, mine in by_event.items():
        requested = min(r.occurred_at_ms for r in mine)
        if (since is not None and requested < since) or requested >= NOW:
            continue
        latest = max(
            mine, key=lambda r: (r.completed_at_ms, r.receipts_partition, r.receipts_offset)
        )
        completions = [r for r in mine if r.outcome == COMPLETED]
        first = min(completions, key=lambda r: r.completed_at_ms) if completions else None
        done = latest.outcome == COMPLETED
        unverified = done and first is not None and not first.verified
        out[event_id] = (done, unverified, any(r.outcome == DEAD_LETTERED for r in mine))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(receipt_strategy, max_size=40), options_strategy)
def test_the_tables_add_up_and_match_a_plain_recount(
    receipts: list[ReceiptSeen], options: dict[str, int | None]
) -> None:
    deadline = options["deadline"]
    assert deadline is not None
    report = report_of(
        receipts, since=options["since"], deadline=deadline, target=options["target"]
    )
    totals = report.totals
    for table in (report.by_day, report.by_reason, report.by_source):
        for name in FIELDS:
            assert sum(getattr(counts, name) for _, counts in table) == getattr(totals, name)
        for _, counts in table:
            assert counts.completed + counts.outstanding == counts.requests
            assert counts.unverified <= counts.completed
    assert totals.completed + totals.outstanding == totals.requests
    assert [day for day, _ in report.by_day] == sorted(day for day, _ in report.by_day)

    expected = recount(receipts, options["since"])
    assert totals.requests == len(expected)
    assert totals.completed == sum(done for done, _, _ in expected.values())
    assert totals.unverified == sum(unverified for _, unverified, _ in expected.values())
    assert totals.dead_lettered == sum(dead for _, _, dead in expected.values())
    assert sorted(o.event_id for o in report.outstanding) == sorted(
        event_id for event_id, (done, _, _) in expected.items() if not done
    )

    latencies = [latency for _, latency in report.latency_by_type]
    latencies += [latency for _, latency in report.latency_by_reason]
    latencies += [row.latency for row in report.latency_by_day]
    if report.latency_all is not None:
        latencies.append(report.latency_all)
        assert report.latency_all.completed == totals.completed
    else:
        assert totals.completed == 0
    for latency in latencies:
        assert 0 <= latency.p50_ms <= latency.p99_ms <= latency.max_ms
    assert sum(latency.completed for _, latency in report.latency_by_type) == totals.completed

    keys = [(o.occurred_at_ms, o.event_id) for o in report.outstanding]
    assert keys == sorted(keys)
    assert sum(b.count for b in report.outstanding_by_age) == len(report.outstanding)
    assert report.past_deadline == sum(o.past_deadline for o in report.outstanding)
    assert all(o.past_deadline == (o.age_ms > deadline) for o in report.outstanding)
    if options["target"] is None:
        assert totals.over_target == report.past_target == 0
    assert math.isfinite(report.generated_at_ms)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_folding_in_any_order_gives_the_same_report(count: int) -> None:
    receipts = [
        seen("a", DEAD_LETTERED, at=NOW - 3000, offset=0),
        seen("a", at=NOW - 2000, offset=1, verified=False),
        seen("b", at=NOW - 1500, offset=2),
        seen("b", DEAD_LETTERED, at=NOW - 1000, offset=3),
    ]
    rotated = receipts[count:] + receipts[:count]
    assert report_of(rotated) == report_of(receipts)
