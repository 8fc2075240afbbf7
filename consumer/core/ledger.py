"""One flush's bookkeeping, event by event, while its operations finish in any order.

An event (a `Ref`, its index in the flush) may be served by several operations: a user erasure
by its `delete_all` and its entity delete, ids by the batches they fall in. It is finished when
the last of them is, and failed if any of them failed it (the first failure is the one its dead
letter names). The ledger also keeps what the event's receipt needs: the latest confirming
response (its completion time) and a report per operation, and which later records of the flush
were duplicates of it (settled with it, each with a receipt of its own).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from consumer.core.outcome import Failure, Outcome
from consumer.core.planner import Plan, Ref
from consumer.core.receipts import OperationReport

__all__ = ["FlushLedger"]


class FlushLedger:
    """What is left to do for each event of one flush, and what was done."""

    __slots__ = ("_copies", "_failures", "_finished_at", "_remaining", "_reports")

    def __init__(self, planned: Plan) -> None:
        remaining: defaultdict[Ref, int] = defaultdict(int)
        for operation in planned.operations:
            for ref in operation.refs:
                remaining[ref] += 1
        copies: defaultdict[Ref, list[Ref]] = defaultdict(list)
        for copy, original in planned.duplicates.items():
            copies[original].append(copy)
        self._remaining = remaining
        self._copies: dict[Ref, list[Ref]] = dict(copies)
        self._failures: dict[Ref, Failure] = {}
        self._finished_at: dict[Ref, float] = {}
        # Tuples: the events an operation alone served share one, which their receipts then
        # share too, so the writer encodes it once for them all (avro/receipt_writer.py).
        self._reports: dict[Ref, tuple[OperationReport, ...]] = {}

    def record(self, refs: Sequence[Ref], outcome: Outcome) -> tuple[list[Ref], list[Ref]]:
        """An operation serving `refs` is over: the events it completed, as (deleted, failed).

        An event is in neither list while another of its operations is still running. This runs
        once per operation for up to a thousand events, so it is a plain loop over dicts.
        """
        deleted: list[Ref] = []
        failed: list[Ref] = []
        failures, finished_at, remaining = self._failures, self._finished_at, self._remaining
        outcome_failures, at = outcome.failures, outcome.finished_at
        for ref in refs:
            if ref in outcome_failures:
                failures.setdefault(ref, outcome_failures[ref])
            finished_at[ref] = max(finished_at.get(ref, 0.0), at)
            remaining[ref] -= 1
            if remaining[ref] == 0:
                (failed if ref in failures else deleted).append(ref)
        return deleted, failed

    def report(self, refs: Iterable[Ref], done: OperationReport) -> None:
        """Keep an operation's report for each event it served (for their receipts)."""
        reports, alone = self._reports, (done,)
        for ref in refs:
            earlier = reports.get(ref)
            reports[ref] = alone if earlier is None else (*earlier, done)

    def report_each(self, done: dict[Ref, OperationReport]) -> None:
        """Keep a report that differs per event (a linked delete's cascade counts)."""
        reports = self._reports
        for ref, report in done.items():
            reports[ref] = (*reports.get(ref, ()), report)

    def reports(self, ref: Ref) -> tuple[OperationReport, ...]:
        return self._reports.get(ref, ())

    def failure(self, ref: Ref) -> Failure | None:
        return self._failures.get(ref)

    def finished_at(self, ref: Ref) -> float | None:
        """The wall clock of the last confirming response among the event's operations."""
        return self._finished_at.get(ref)

    def copies(self, ref: Ref) -> list[Ref]:
        """The later records of the flush that asked for the same thing as this event."""
        return self._copies.get(ref, [])

    # For the receipts of up to a thousand events an operation completed together: the lookups
    # in one comprehension or `map` each, rather than three method calls per event.

    def reports_of(self, refs: Iterable[Ref]) -> list[tuple[OperationReport, ...]]:
        reports = self._reports.get
        return [reports(ref, ()) for ref in refs]

    def finished_at_of(self, refs: Iterable[Ref]) -> list[float | None]:
        return list(map(self._finished_at.get, refs))

    def repeated(self, refs: Iterable[Ref]) -> list[Ref]:
        """Those of `refs` that later records of the flush repeated."""
        copies = self._copies
        return [ref for ref in refs if ref in copies] if copies else []
