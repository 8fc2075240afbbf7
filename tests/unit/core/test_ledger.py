"""The per-flush ledger: an event completes once, when its last operation does, failed if any
operation failed it; duplicates and reports are kept for its receipt."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.dlq import DlqReason
from consumer.core.events import Scope
from consumer.core.ledger import FlushLedger
from consumer.core.outcome import Failure, Outcome
from consumer.core.planner import DeleteAll, Plan
from consumer.core.receipts import OperationReport

SCOPE = Scope.of(user_id="u")


def _failure(n: int) -> Failure:
    return Failure(DlqReason.REJECTED, f"failure {n}", attempts=n)


@st.composite
def _flushes(draw: st.DrawFn) -> tuple[Plan, list[tuple[int, Outcome]]]:
    """A plan of operations over events 0..n-1, and each operation's outcome, in the order
    they finish (any order)."""
    events = draw(st.integers(1, 8))
    refs = st.lists(st.integers(0, events - 1), min_size=1, max_size=events, unique=True)
    served = draw(st.lists(refs, min_size=1, max_size=6))
    operations = [DeleteAll(SCOPE, tuple(r)) for r in served]
    outcomes = []
    for index, operation in enumerate(operations):
        failed = draw(st.sets(st.sampled_from(operation.refs)))
        outcome = Outcome(
            failures={ref: _failure(index) for ref in failed},
            finished_at=draw(st.floats(0, 1e6)),
        )
        outcomes.append((index, outcome))
    order = draw(st.permutations(outcomes))
    return Plan(operations=list(operations)), list(order)


@given(_flushes())
def test_each_event_completes_once_when_its_last_operation_does(
    flush: tuple[Plan, list[tuple[int, Outcome]]],
) -> None:
    planned, finishing = flush
    ledger = FlushLedger(planned)
    served = {ref for op in planned.operations for ref in op.refs}
    left = {ref: sum(ref in op.refs for op in planned.operations) for ref in served}
    first_failure: dict[int, Failure] = {}
    latest: dict[int, float] = {}
    completed: list[int] = []
    for index, outcome in finishing:
        refs = planned.operations[index].refs
        for ref in refs:
            left[ref] -= 1
            if ref in outcome.failures:
                first_failure.setdefault(ref, outcome.failures[ref])
            latest[ref] = max(latest.get(ref, 0.0), outcome.finished_at)
        deleted, failed = ledger.record(refs, outcome)
        assert set(deleted) | set(failed) == {ref for ref in refs if left[ref] == 0}
        assert all(ref in first_failure for ref in failed)
        assert not any(ref in first_failure for ref in deleted)
        completed += deleted + failed
    assert sorted(completed) == sorted(served)
    for ref in served:
        assert ledger.failure(ref) == first_failure.get(ref)
        assert ledger.finished_at(ref) == latest[ref]


def test_copies_and_reports_are_kept_per_event() -> None:
    planned = Plan(operations=[DeleteAll(SCOPE, (0, 2))], duplicates={1: 0, 3: 0})
    ledger = FlushLedger(planned)
    report = OperationReport("delete_all", ("user_id",), calls=2)
    ledger.report((0, 2), report)
    ledger.report_each({0: OperationReport("delete_linked", ("memory_id",), 1, cascade_count=3)})
    assert ledger.copies(0) == [1, 3] and ledger.copies(2) == []
    assert [r.kind for r in ledger.reports(0)] == ["delete_all", "delete_linked"]
    assert ledger.reports(2) == (report,) and ledger.reports(5) == ()


def test_an_event_no_operation_serves_has_nothing_recorded() -> None:
    ledger = FlushLedger(Plan())
    assert ledger.failure(0) is None and ledger.finished_at(0) is None


def test_the_events_one_operation_alone_served_share_one_tuple_of_reports() -> None:
    # Their receipts share it then, and the writer encodes it once for all of them.
    planned = Plan(operations=[DeleteAll(SCOPE, (0, 1, 2)), DeleteAll(SCOPE, (2,))])
    ledger = FlushLedger(planned)
    first = OperationReport("delete_ids", ("memory_id",), calls=2)
    ledger.report((0, 1, 2), first)
    assert ledger.reports(0) is ledger.reports(1) is ledger.reports(2)
    ledger.report((2,), OperationReport("delete_all", ("user_id",), calls=3))
    assert ledger.reports(0) is ledger.reports(1) == (first,)
    assert [r.kind for r in ledger.reports(2)] == ["delete_ids", "delete_all"]
