"""The compiled receipt writer (consumer/avro/_receipt.c) against the Python one.

Its promise: `values` writes, for any batch of receipts and any framing header, the bytes of
`receipt_values_py` (which test_receipt_writer.py holds to fastavro), and `completed` writes
for a `CompletedReceipts` what encoding its `receipts()` gives, without building them; what the
schema cannot hold is refused as the Python writer refuses it. tests/fuzz/receipt_fuzz.py runs
the same comparison under AddressSanitizer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.avro import receipt_writer
from consumer.avro.receipt_writer import (
    completed_records_py,
    operations_array,
    receipt_values_py,
)
from consumer.core.events import DeletionEvent, EventType
from consumer.core.receipts import CompletedReceipts, OperationReport, Receipt
from tests.unit.avro.test_receipt_writer import (
    A_RECEIPT,
    PAST_32_BITS,
    UNHOLDABLE,
    ints,
    longs,
    operations,
    realistic,
    receipts,
    texts,
    vars_of,
)

try:
    from consumer.avro import _receipt
except ImportError:  # pragma: no cover - installed without a C compiler
    _receipt = None  # type: ignore[assignment]

compiled = pytest.mark.skipif(_receipt is None, reason="consumer.avro._receipt was not built")
HEADER = b"\xc3\x01" + bytes(range(8))  # a single-object header; any bytes do
headers = st.one_of(st.just(HEADER), st.just(b""), st.binary(max_size=12))


def test_the_compiled_writer_is_built_and_used_where_ci_runs() -> None:
    # CI installs with a compiler: the Python writer in its place would be a silent 6x.
    if _receipt is None and not os.environ.get("CI"):
        pytest.skip("consumer.avro._receipt was not built (no C compiler at install time)")
    assert _receipt is not None
    assert receipt_writer.COMPILED and receipt_writer.receipt_values is not receipt_values_py
    assert receipt_writer.completed_records is not completed_records_py


def with_shared_operations(distinct: list[Receipt], picks: list[int]) -> list[Receipt]:
    """Runs of receipts sharing one operations tuple (as the ledger hands them over) among
    receipts with tuples of their own: the writer encodes a shared tuple once."""
    shared = distinct[0].operations
    return [
        replace(distinct[p % len(distinct)], operations=shared)
        if p % 2
        else distinct[p % len(distinct)]
        for p in picks
    ]


@compiled
@settings(max_examples=400, deadline=None)
@given(
    st.lists(receipts | realistic, min_size=1, max_size=5),
    st.lists(st.integers(0, 9), max_size=10),
    headers,
)
def test_values_are_the_python_writers(
    distinct: list[Receipt], picks: list[int], header: bytes
) -> None:
    batch = with_shared_operations(distinct, picks)
    assert _receipt.values(batch, header, operations_array) == receipt_values_py(batch, header)


@dataclass
class InputAt:
    """An input record as the pipeline keeps it: (topic, partition) and offset."""

    tp: tuple[str, int]
    offset: int


events = st.builds(
    DeletionEvent,
    event_id=texts | st.uuids().map(str),
    occurred_at_ms=longs,
    type=st.sampled_from(list(EventType)),
    source=texts,
    reason=texts,
)
inputs = st.builds(InputAt, st.tuples(texts, ints), longs)
operation_tuples = st.lists(operations, max_size=3).map(tuple)


@st.composite
def completed_batches(draw: st.DrawFn) -> CompletedReceipts:
    size = draw(st.integers(0, 8))
    shared = draw(operation_tuples)
    return CompletedReceipts(
        events=draw(st.lists(events, min_size=size, max_size=size)),
        # Runs sharing one tuple (one operation served them), and some of their own.
        operations=[draw(st.just(shared) | operation_tuples) for _ in range(size)],
        completed_at_ms=draw(st.lists(longs, min_size=size, max_size=size)),
        group=draw(texts),
        records=draw(st.lists(inputs, min_size=size, max_size=size)),
    )


def python_completed(
    batch: CompletedReceipts, header: bytes
) -> list[dict[str, bytes]] | type[BaseException]:
    try:
        return completed_records_py(batch, header)
    except (ValueError, OverflowError) as exc:  # a time to erasure past 64 bits, say
        return type(exc)


@compiled
@settings(max_examples=400, deadline=None)
@given(completed_batches(), headers)
def test_completed_is_the_python_writers_without_building_receipts(
    batch: CompletedReceipts, header: bytes
) -> None:
    expected = python_completed(batch, header)
    if isinstance(expected, type):
        with pytest.raises(ValueError, match="out of range"):
            receipt_writer.completed_records(batch, header)
        return
    assert receipt_writer.completed_records(batch, header) == expected


@compiled
def test_completed_writes_a_realistic_batch_as_the_encoder_would() -> None:
    report = OperationReport("delete_ids", ("memory_id",), 2, 200, None, True)
    event = DeletionEvent("e-1", 1_700_000_000_000, EventType.MEMORIES_DELETED, memory_ids=("m",))
    batch = CompletedReceipts(
        [event, replace(event, event_id="e-2")],
        [(report,), (report,)],
        [1_700_000_000_900, 1_699_999_999_000],  # the second before it occurred: 0, not less
        "g",
        [InputAt(("memory.deletions", 3), 41), InputAt(("memory.deletions", 0), 7)],
    )
    written = receipt_writer.completed_records(batch, HEADER)
    assert written == completed_records_py(batch, HEADER)
    assert [m["key"] for m in written] == [b"e-1", b"e-2"]
    assert [r.time_to_erasure_ms for r in batch.receipts()] == [900, 0]


# --- what the schema cannot hold ---------------------------------------------------------------


@compiled
@pytest.mark.parametrize("changes", UNHOLDABLE + PAST_32_BITS)
def test_what_the_schema_cannot_hold_is_refused_alike(changes: dict[str, Any]) -> None:
    receipt = Receipt(**{**vars_of(A_RECEIPT), **changes})
    with pytest.raises(ValueError) as python:
        receipt_values_py([receipt], HEADER)
    with pytest.raises(ValueError) as c:
        _receipt.values([receipt], HEADER, operations_array)
    assert str(c.value) == str(python.value)


@compiled
def test_text_that_is_not_utf8_is_refused_alike() -> None:
    receipt = Receipt(**{**vars_of(A_RECEIPT), "source": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        _receipt.values([receipt], HEADER, operations_array)
    event = DeletionEvent("\udfff", 0, EventType.USER_DELETED)
    batch = CompletedReceipts([event], [()], [0], "g", [InputAt(("t", 0), 0)])
    with pytest.raises(UnicodeEncodeError):
        receipt_writer.completed_records(batch, HEADER)


def loose(name: str) -> Any:
    """A compiled function, untyped: to be called with what it must refuse."""
    return getattr(_receipt, name)


def describe(_operations: Any) -> tuple[bytes, bool]:
    return b"", True


@compiled
@pytest.mark.parametrize(
    "call",
    [
        lambda: loose("values")([object()], HEADER, operations_array),
        lambda: loose("values")(
            [replace(A_RECEIPT, event_id=loose("values"))], HEADER, operations_array
        ),
        lambda: loose("values")([A_RECEIPT], "not bytes", operations_array),
        lambda: loose("values")([A_RECEIPT], HEADER, lambda _ops: "not bytes"),
        lambda: loose("completed")(
            [1], [()], [0], "g", [InputAt(("t", 0), 0)], HEADER, {}, describe
        ),
        lambda: loose("completed")([], [()], [], "g", [], HEADER, {}, describe),  # lengths differ
        lambda: loose("completed")(  # no name for the event's type
            [DeletionEvent("e", 0, EventType.USER_DELETED)],
            [()],
            [0],
            "g",
            [InputAt(("t", 0), 0)],
            HEADER,
            {},
            describe,
        ),
        lambda: loose("completed")(  # a partition past 32 bits
            [DeletionEvent("e", 0, EventType.USER_DELETED)],
            [()],
            [0],
            "g",
            [InputAt(("t", 2**31), 0)],
            HEADER,
            {EventType.USER_DELETED: "user_deleted"},
            describe,
        ),
    ],
)
def test_what_is_not_a_receipt_raises_rather_than_writes(call: Any) -> None:
    with pytest.raises((TypeError, AttributeError, ValueError)):
        call()
