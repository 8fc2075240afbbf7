"""A writer specialised for the receipt schema: a `Receipt` straight to its Avro binary body.

fastavro's `schemaless_writer` is general: it walks the parsed schema for every receipt, looks
each field up in the dicts `Receipt.to_record()` built for it and checks every union branch;
with receipts on, that was a quarter of the consumer's CPU. This module writes the one layout
the receipt schema has, field by field from the dataclass, into one `b"".join`; the bytes are
those fastavro writes for `receipt.to_record()` (tests/unit/avro/test_receipt_writer.py holds
it to that on arbitrary receipts). bench/receipt_encode.py measures the two.

It knows one schema, the one whose CRC-64-AVRO fingerprint is `FINGERPRINT`: `ReceiptEncoder`
compares that with the shipped `schemas/deletion_receipt.avsc` and uses fastavro when they
differ, and a unit test fails until this module follows a change of the schema.

What the schema cannot hold raises ValueError: an outcome that is no symbol of its enum, an int
field outside 32 bits or a long outside 64, text that is not UTF-8 (UnicodeEncodeError). fastavro
refuses the same, but for an out-of-range plain (non-union) int, which it writes as a long: bytes
that no other Avro reader takes.

The same writer compiled (consumer/avro/_receipt.c, built by `pip install` where a compiler is)
writes whole values, framing and body, for `receipt_values`: in C a receipt costs a few field
copies (0.3 µs against 6 here); this module stays its reference and the fallback without a
compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

from consumer.core.events import EventType
from consumer.core.receipts import (
    COMPLETED,
    DEAD_LETTERED,
    CompletedReceipts,
    OperationReport,
    Receipt,
    all_verified,
)

__all__ = [
    "COMPILED",
    "FINGERPRINT",
    "as_messages",
    "completed_records",
    "completed_records_py",
    "operations_array",
    "receipt_bodies",
    "receipt_body",
    "receipt_values",
    "receipt_values_py",
]

# CRC-64-AVRO of the Parsing Canonical Form of schemas/deletion_receipt.avsc, as
# `AvroSchema.fingerprint` computes it: the schema this writer writes.
FINGERPRINT: Final = bytes.fromhex("596f80deb2b4ff95")

_INT_BOUND: Final = 2**32  # zigzag encodings of the 32-bit ints are below this
_LONG_BOUND: Final = 2**64

# Varints by 14-bit chunks: `_LAST[u]` is the varint of u < 2**14, one or two bytes, and
# `_MORE[u]` the same two bytes with the continuation bit set on both. A timestamp's varint is
# then three lookups instead of a loop over its six bytes: 0.4 rather than 1.5 µs here, and a
# receipt has two or three. With `_SMALL`, the tables cost ~2 MB and 20 ms at import.
_CHUNK: Final = 14
_CHUNK_MASK: Final = 2**_CHUNK - 1
_LAST: Final = tuple(
    bytes((u,)) if u < 0x80 else bytes(((u & 0x7F) | 0x80, u >> 7)) for u in range(2**_CHUNK)
)
_MORE: Final = tuple(bytes(((u & 0x7F) | 0x80, (u >> 7) | 0x80)) for u in range(2**_CHUNK))


def _long(value: int, bound: int = _LONG_BOUND) -> bytes:
    """The zigzag varint of `value`, a long (an int with `bound=_INT_BOUND`); ValueError unless
    its zigzag encoding is below `bound`."""
    zigzag = value << 1 if value >= 0 else (~value << 1) | 1
    if zigzag <= _CHUNK_MASK:
        return _LAST[zigzag]
    if zigzag >= bound:
        kind = "int" if bound == _INT_BOUND else "long"
        raise ValueError(f"{value} is out of range for an Avro {kind}")
    if zigzag >> 2 * _CHUNK == 0:
        return _MORE[zigzag & _CHUNK_MASK] + _LAST[zigzag >> _CHUNK]
    if zigzag >> 3 * _CHUNK == 0:  # today's timestamps: 42 bits, until 2039
        return (
            _MORE[zigzag & _CHUNK_MASK]
            + _MORE[(zigzag >> _CHUNK) & _CHUNK_MASK]
            + _LAST[zigzag >> 2 * _CHUNK]
        )
    encoded = b""
    while zigzag > _CHUNK_MASK:
        encoded += _MORE[zigzag & _CHUNK_MASK]
        zigzag >>= _CHUNK
    return encoded + _LAST[zigzag]


class _Varints(Protocol):
    """Where `_body` takes the encoding of a small number from."""

    def __getitem__(self, value: int, /) -> bytes: ...


class _Computed:
    """Every encoding computed and range-checked: the general path's `_Varints`."""

    def __init__(self, bound: int) -> None:
        self._bound = bound

    def __getitem__(self, value: int, /) -> bytes:
        return _long(value, self._bound)


# The encodings of the numbers nearly every receipt's lengths, counts, HTTP statuses and
# partitions are: looked up rather than computed. A dict, not a list: a negative number must
# miss (KeyError, and the general path) rather than index from the end. 2**13 is where a
# varint grows past two bytes.
_SMALL: Final[dict[int, bytes]] = {n: _LAST[n << 1] for n in range(2**13)}
_INTS: Final = _Computed(_INT_BOUND)
_LONGS: Final = _Computed(_LONG_BOUND)

_OUTCOMES: Final = {COMPLETED: b"\x00", DEAD_LETTERED: b"\x02"}  # the enum's index, as an int
_NULL: Final = b"\x00"  # a union's branch 0 (null in every union here), a boolean false, ...
_SET: Final = b"\x02"  # ... a union's branch 1, the value's type
_TRUE: Final = b"\x01"


def receipt_body(receipt: Receipt) -> bytes:
    """The Avro binary body of `receipt`, as fastavro's `schemaless_writer` writes
    `receipt.to_record()` with the schema whose fingerprint is `FINGERPRINT`."""
    return _with_fallback(receipt, operations_array(receipt.operations))


def receipt_bodies(receipts: Iterable[Receipt]) -> list[bytes]:
    """`receipt_body` of each. Receipts that share their operations tuple (the events one
    operation alone served, up to a thousand ids' events: see core/ledger.py) have it encoded
    once: it is the larger half of a receipt."""
    bodies: list[bytes] = []
    shared: tuple[OperationReport, ...] | None = None
    encoded = b""
    for receipt in receipts:
        operations = receipt.operations
        if operations is not shared:
            shared, encoded = operations, operations_array(operations)
        bodies.append(_with_fallback(receipt, encoded))
    return bodies


def receipt_values_py(receipts: Sequence[Receipt], header: bytes) -> list[bytes]:
    """Each receipt's value: `header` (its framing), then its body."""
    return [header + body for body in receipt_bodies(receipts)]


def completed_records_py(batch: CompletedReceipts, header: bytes) -> list[dict[str, bytes]]:
    """Each completed event's receipt as a message: {"key": its event id, "value": `header`
    then its body}, the record as confluent-kafka's `produce_batch` takes it."""
    receipts = batch.receipts()
    return as_messages(receipts, receipt_values(receipts, header))


def as_messages(receipts: Sequence[Receipt], values: Sequence[bytes]) -> list[dict[str, bytes]]:
    """Each receipt with its value as a message, keyed by its event id."""
    return [
        {"key": receipt.event_id.encode(), "value": value}
        for receipt, value in zip(receipts, values, strict=True)
    ]


def operations_array(operations: Sequence[OperationReport]) -> bytes:
    """The `operations` field: the array of ReceiptOperation records."""
    try:
        return _operations(operations, _SMALL, _SMALL)
    except KeyError:  # a number past the table (a long string, a negative count...)
        return _operations(operations, _INTS, _LONGS)


def _with_fallback(receipt: Receipt, operations: bytes) -> bytes:
    try:
        return _body(receipt, operations, _SMALL)
    except KeyError:
        pass  # a number past the table, or no such outcome
    try:
        return _body(receipt, operations, _LONGS)
    except KeyError:  # the computed encodings never raise it: the outcome
        raise ValueError(f"{receipt.outcome!r} is not a ReceiptOutcome symbol") from None


def _operations(operations: Sequence[OperationReport], ints: _Varints, longs: _Varints) -> bytes:
    """The array, its int fields' numbers from `ints` and its longs' from `longs`; one block:
    count, items, end (an empty array is the end marker alone)."""
    if not operations:
        return _NULL
    parts = [longs[len(operations)]]
    append = parts.append
    for operation in operations:
        kind = operation.kind.encode()
        identifiers = operation.identifiers
        parts += (longs[len(kind)], kind)
        if identifiers:
            append(longs[len(identifiers)])
            for identifier in identifiers:
                name = identifier.encode()
                parts += (longs[len(name)], name)
        status = operation.last_http_status
        job_id = operation.job_id
        cascade = operation.cascade_count
        parts += (
            _NULL,  # the identifiers' end
            ints[operation.calls],
            _NULL if status is None else _SET + ints[status],
        )
        if job_id is None:
            append(_NULL)
        else:
            job = job_id.encode()
            parts += (_SET, longs[len(job)], job)
        parts += (
            _TRUE if operation.verified else _NULL,
            _NULL if cascade is None else _SET + longs[cascade],
        )
    append(_NULL)  # the array's end
    return b"".join(parts)


def _body(receipt: Receipt, operations: bytes, varints: _Varints) -> bytes:
    """The body around the encoded `operations`; the lengths and the partitions from
    `varints` (the table, or computed and range-checked), but for the timestamps, the time to
    erasure and the offsets: those are nearly always past the table, so `_long` straight
    away."""
    # One list joined once: each field's bytes are written where they are made, no copy but
    # the join. Strings are encoded once; their length is that of the UTF-8 bytes.
    event_id = receipt.event_id.encode()
    event_type = receipt.event_type.encode()
    reason = receipt.reason.encode()
    source = receipt.source.encode()
    erasure = receipt.time_to_erasure_ms
    parts = [
        varints[len(event_id)],
        event_id,
        _OUTCOMES[receipt.outcome],
        varints[len(event_type)],
        event_type,
        varints[len(reason)],
        reason,
        varints[len(source)],
        source,
        _long(receipt.occurred_at_ms),
        _long(receipt.completed_at_ms),
        _NULL if erasure is None else _SET + _long(erasure),
        operations,
        _TRUE if receipt.verified else _NULL,
    ]
    append = parts.append
    dlq_reason = receipt.dlq_reason
    if dlq_reason is None:
        append(_NULL)
    else:
        why = dlq_reason.encode()
        parts += (_SET, varints[len(why)], why)
    group = receipt.consumer_group.encode()
    where = receipt.input
    topic = where.topic.encode()
    ints = varints if varints is _SMALL else _INTS  # a partition is an int, not a long
    parts += (
        varints[len(group)],
        group,
        varints[len(topic)],
        topic,
        ints[where.partition],
        _long(where.offset),
    )
    original = receipt.duplicate_of
    if original is None:
        append(_NULL)
    else:
        topic = original.topic.encode()
        offset = _long(original.offset)
        parts += (_SET, varints[len(topic)], topic, ints[original.partition], offset)
    return b"".join(parts)


def _compiled_values() -> Callable[[Sequence[Receipt], bytes], list[bytes]] | None:
    """`receipt_values` compiled (consumer/avro/_receipt.c), built by `pip install` with a
    compiler; it asks `operations_array` for each run of receipts sharing their operations."""
    try:
        from consumer.avro._receipt import values
    except ImportError:  # pragma: no cover - a checkout installed without a C compiler
        return None

    def compiled(receipts: Sequence[Receipt], header: bytes) -> list[bytes]:
        return values(receipts, header, operations_array)

    return compiled


def _compiled_completed() -> Callable[[CompletedReceipts, bytes], list[dict[str, bytes]]] | None:
    """`completed_records` compiled: no `Receipt` is built, the bytes are written from the
    batch's parts; it asks `_described` for each run of events sharing their operations."""
    try:
        from consumer.avro._receipt import completed
    except ImportError:  # pragma: no cover - a checkout installed without a C compiler
        return None

    def compiled(batch: CompletedReceipts, header: bytes) -> list[dict[str, bytes]]:
        return completed(
            batch.events,
            batch.operations,
            batch.completed_at_ms,
            batch.group,
            batch.records,
            header,
            _TYPE_NAMES,
            _described,
        )

    return compiled


def _described(operations: tuple[OperationReport, ...]) -> tuple[bytes, bool]:
    return operations_array(operations), all_verified(operations)


_TYPE_NAMES: Final = {kind: kind.value for kind in EventType}
_COMPILED_VALUES: Final = _compiled_values()
COMPILED: Final = _COMPILED_VALUES is not None
receipt_values: Callable[[Sequence[Receipt], bytes], list[bytes]] = (
    _COMPILED_VALUES or receipt_values_py
)
completed_records: Callable[[CompletedReceipts, bytes], list[dict[str, bytes]]] = (
    _compiled_completed() or completed_records_py
)
