"""The specialised receipt writer against fastavro, and the encoder's choice between them.

Its promise: for every receipt the schema can hold, `receipt_body` writes the bytes fastavro's
`schemaless_writer` writes for `receipt.to_record()`, and they decode back to the receipt. It
has two paths, the table of small numbers and the general one (any length or number,
computed); the strategies reach both, and the general path is also held to fastavro alone. The
encoder uses the writer only for the schema it was written for.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.avro import receipt_writer
from consumer.avro.codec import AvroSchema, default_schema_dir, encode_record
from consumer.avro.receipt_codec import RECEIPT_FILE, ReceiptDecoder, ReceiptEncoder
from consumer.avro.receipt_writer import FINGERPRINT, receipt_body
from consumer.core.receipts import (
    COMPLETED,
    DEAD_LETTERED,
    OperationReport,
    Position,
    Receipt,
)

SHIPPED = AvroSchema.parse((default_schema_dir() / RECEIPT_FILE).read_text(encoding="utf-8"))
T0 = 1_700_000_000_000

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
# Where a varint grows a byte, where the writer's table ends (2**13) and its chunks (2**14 of
# zigzag), and the extremes.
EDGES = sorted(
    {b + d for b in (0, 2**6, 2**13, 2**20, 2**27, 2**34, 2**41, 2**48) for d in (-1, 0)}
    | {-(2**13), -(2**13) - 1, -1, 1}
)


def fastavro_body(receipt: Receipt) -> bytes:
    out = BytesIO()
    schemaless_writer(out, SHIPPED.parsed, receipt.to_record())
    return out.getvalue()


def numbers(low: int, high: int) -> st.SearchStrategy[int]:
    """Across the whole range, with the small ones real receipts have and every edge."""
    edges = [n for n in (*EDGES, low, high, low + 1, high - 1) if low <= n <= high]
    return st.one_of(st.integers(0, 300), st.sampled_from(edges), st.integers(low, high))


ints = numbers(INT_MIN, INT_MAX)
longs = numbers(LONG_MIN, LONG_MAX)
texts = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(min_codepoint=0x10000), max_size=4),  # four UTF-8 bytes each
    st.sampled_from(["", "user_id", "ß", "\U0001f600", "\x00"]),
    # Past the table of small lengths: the general path.
    st.sampled_from([8191, 8192, 8193]).map(lambda n: "x" * n),
    st.sampled_from([2047, 2048]).map(lambda n: "\U0001f600" * n),
)
positions = st.builds(Position, texts, ints, longs)
operations = st.builds(
    OperationReport,
    kind=texts,
    identifiers=st.lists(texts, max_size=4).map(tuple),
    calls=ints,
    last_http_status=st.none() | ints,
    job_id=st.none() | texts,
    verified=st.booleans(),
    cascade_count=st.none() | longs,
)
receipts = st.builds(
    Receipt,
    event_id=texts,
    outcome=st.sampled_from([COMPLETED, DEAD_LETTERED]),
    event_type=texts,
    reason=texts,
    source=texts,
    occurred_at_ms=longs,
    completed_at_ms=longs,
    time_to_erasure_ms=st.none() | longs,
    operations=st.lists(operations, max_size=5).map(tuple),
    verified=st.booleans(),
    dlq_reason=st.none() | texts,
    consumer_group=texts,
    input=positions,
    duplicate_of=st.none() | positions,
)

# What the consumer writes: short names, today's times, small counts and statuses; every number
# the table holds, so these take the table path.
small = st.integers(0, 2**13 - 1)
names = st.text(max_size=40)
realistic = st.builds(
    Receipt,
    event_id=st.uuids().map(str),
    outcome=st.sampled_from([COMPLETED, DEAD_LETTERED]),
    event_type=st.sampled_from(["user_deleted", "session_expired", "memories_deleted"]),
    reason=st.sampled_from(["GDPR", "CCPA", "USER_REQUEST"]),
    source=names,
    occurred_at_ms=st.integers(T0, T0 + 10**10),
    completed_at_ms=st.integers(T0, T0 + 10**10),
    time_to_erasure_ms=st.none() | st.integers(0, 10**8),
    operations=st.lists(
        st.builds(
            OperationReport,
            kind=st.sampled_from(["delete_all", "delete_ids", "delete_entity"]),
            identifiers=st.lists(names, max_size=5).map(tuple),
            calls=small,
            last_http_status=st.none() | st.integers(100, 599),
            job_id=st.none() | st.uuids().map(str),
            verified=st.booleans(),
            cascade_count=st.none() | small,
        ),
        max_size=4,
    ).map(tuple),
    verified=st.booleans(),
    dlq_reason=st.none() | names,
    consumer_group=names,
    input=st.builds(Position, names, small, st.integers(0, 2**40)),
    duplicate_of=st.none() | st.builds(Position, names, small, st.integers(0, 2**40)),
)

A_RECEIPT = Receipt(
    event_id="e-1",
    outcome=COMPLETED,
    event_type="user_deleted",
    reason="GDPR",
    source="accounts",
    occurred_at_ms=T0,
    completed_at_ms=T0 + 1500,
    time_to_erasure_ms=1500,
    operations=(OperationReport("delete_all", ("user_id",), 3, 200, "job-1", True),),
    verified=True,
    dlq_reason=None,
    consumer_group="g",
    input=Position("memory.deletions", 2, 41),
)


def vars_of(receipt: Receipt) -> dict[str, Any]:
    """The fields of a slotted dataclass, to build a changed copy with invalid values."""
    return {name: getattr(receipt, name) for name in Receipt.__dataclass_fields__}


# --- the bytes --------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(receipts)
@example(A_RECEIPT)
def test_the_bytes_are_fastavros(receipt: Receipt) -> None:
    assert receipt_body(receipt) == fastavro_body(receipt)


@settings(max_examples=300, deadline=None)
@given(receipts)
def test_the_general_path_alone_writes_fastavros_bytes(receipt: Receipt) -> None:
    operations = receipt_writer._operations(
        receipt.operations, receipt_writer._INTS, receipt_writer._LONGS
    )
    general = receipt_writer._body(receipt, operations, receipt_writer._LONGS)
    assert general == fastavro_body(receipt)


@settings(max_examples=300, deadline=None)
@given(realistic)
def test_a_realistic_receipt_takes_the_table_and_writes_fastavros_bytes(receipt: Receipt) -> None:
    table = receipt_writer._SMALL
    operations = receipt_writer._operations(receipt.operations, table, table)
    assert receipt_writer._body(receipt, operations, table) == fastavro_body(receipt)


@settings(max_examples=200, deadline=None)
@given(st.lists(receipts, min_size=1, max_size=6), st.lists(st.integers(0, 5), max_size=12))
def test_receipts_sharing_their_operations_are_written_as_each_alone(
    distinct: list[Receipt], picks: list[int]
) -> None:
    """A batch where runs of receipts share one operations tuple (the events one operation
    served, as the ledger hands them over) and others do not."""
    shared = distinct[0].operations
    batch = [
        replace(distinct[pick % len(distinct)], operations=shared)
        if pick % 2
        else distinct[pick % len(distinct)]
        for pick in picks
    ]
    assert receipt_writer.receipt_bodies(batch) == [fastavro_body(r) for r in batch]


@settings(max_examples=300, deadline=None)
@given(receipts, st.integers(0, 2**32 - 1))
def test_both_framings_decode_back_to_the_receipt(receipt: Receipt, schema_id: int) -> None:
    registry = StaticRegistry({schema_id: json.dumps(SHIPPED.parsed)})
    encoder = ReceiptEncoder()
    assert ReceiptDecoder().decode(encoder.single_object(receipt)) == receipt
    assert ReceiptDecoder(registry).decode(encoder.confluent(receipt, schema_id)) == receipt


def test_long_arrays_are_one_block() -> None:
    # More items than the table of counts holds: written by the general path, as fastavro does.
    many = OperationReport("delete_ids", ("memory_id",) * 9000, 1)
    receipt = Receipt(**{**vars_of(A_RECEIPT), "operations": (many,) * 3})
    assert receipt_body(receipt) == fastavro_body(receipt)


# --- what the schema cannot hold --------------------------------------------------------------


# Changes of a receipt that make it no value of the schema (tests/unit/avro/
# test_receipt_writer_compiled.py holds the compiled writer to the same refusals).
UNHOLDABLE: list[dict[str, Any]] = [
    {"outcome": "MAYBE"},
    {"occurred_at_ms": LONG_MAX + 1},
    {"completed_at_ms": LONG_MIN - 1},
    {"time_to_erasure_ms": 2**64},
    {"duplicate_of": Position("t", 0, LONG_MAX + 1)},
    {"duplicate_of": Position("t", INT_MIN - 1, 0)},  # in a union, fastavro checks ints
    {"operations": (OperationReport("k", (), 0, INT_MIN - 1),)},
    {"operations": (OperationReport("k", (), 0, None, None, False, -(2**64)),)},
]
# ... and those fastavro lets through, writing an int past 32 bits as a long.
PAST_32_BITS: list[dict[str, Any]] = [
    {"input": Position("t", INT_MAX + 1, 0)},
    {"operations": (OperationReport("k", (), 2**40),)},
]


@pytest.mark.parametrize("changes", UNHOLDABLE)
def test_what_the_schema_cannot_hold_is_refused(changes: dict[str, Any]) -> None:
    receipt = Receipt(**{**vars_of(A_RECEIPT), **changes})
    with pytest.raises(ValueError, match=r"out of range|not a ReceiptOutcome"):
        receipt_body(receipt)
    # fastavro refuses these too: they are not values of the schema.
    with pytest.raises((ValueError, OverflowError)):
        fastavro_body(receipt)


@pytest.mark.parametrize("changes", PAST_32_BITS)
def test_an_int_field_past_32_bits_is_refused_where_fastavro_writes_a_long(
    changes: dict[str, Any],
) -> None:
    receipt = Receipt(**{**vars_of(A_RECEIPT), **changes})
    with pytest.raises(ValueError, match="out of range for an Avro int"):
        receipt_body(receipt)
    assert fastavro_body(receipt)  # a known leniency of fastavro's: no Avro reader's int


def test_text_that_is_not_utf8_is_refused() -> None:
    receipt = Receipt(**{**vars_of(A_RECEIPT), "source": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        receipt_body(receipt)


# --- the schema it was written for ------------------------------------------------------------


def test_the_writer_was_written_for_the_shipped_schema() -> None:
    # A change of schemas/deletion_receipt.avsc fails here until receipt_writer.py follows it
    # (and its FINGERPRINT with it); meanwhile the encoder uses fastavro.
    assert SHIPPED.fingerprint == FINGERPRINT
    assert ReceiptEncoder().specialised


def copy_of_schemas(tmp_path: Path, change: Any) -> Path:
    folder = tmp_path / "schemas"
    shutil.copytree(default_schema_dir(), folder)
    schema = json.loads((folder / RECEIPT_FILE).read_text(encoding="utf-8"))
    change(schema)
    (folder / RECEIPT_FILE).write_text(json.dumps(schema), encoding="utf-8")
    return folder


def test_another_receipt_schema_is_written_by_fastavro(tmp_path: Path) -> None:
    def add_region(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": "region", "type": ["null", "string"], "default": None})

    folder = copy_of_schemas(tmp_path, add_region)
    encoder = ReceiptEncoder(directory=folder)
    assert not encoder.specialised and encoder.schema.fingerprint != FINGERPRINT
    value = encoder.single_object(A_RECEIPT)
    # The new field, null, after the others: what the specialised writer would have left out.
    body = encode_record(A_RECEIPT.to_record(), encoder.schema)
    assert value[10:] == body == receipt_body(A_RECEIPT) + b"\x00"
    assert value[2:10] == encoder.schema.fingerprint
    assert ReceiptDecoder(directory=folder).decode(value) == A_RECEIPT
    assert encoder.confluent(A_RECEIPT, 3)[5:] == body
    assert asyncio.run(encoder.encode_many([A_RECEIPT])) == [value]


def test_a_change_of_docs_only_keeps_the_writer(tmp_path: Path) -> None:
    # Docs do not change the canonical form, nor the bytes.
    def reword(schema: dict[str, Any]) -> None:
        schema["fields"][0]["doc"] = "reworded"

    encoder = ReceiptEncoder(directory=copy_of_schemas(tmp_path, reword))
    assert encoder.specialised
    assert encoder.single_object(A_RECEIPT) == ReceiptEncoder().single_object(A_RECEIPT)


# --- encode_many ------------------------------------------------------------------------------


class StaticRegistry:
    """Serves fixed schemas by id."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas

    def get_schema(self, schema_id: int) -> str:
        return self.schemas[schema_id]


class CountingRegistrar:
    def __init__(self) -> None:
        self.registered: list[tuple[str, str]] = []

    def register(self, subject: str, schema: str) -> int:
        self.registered.append((subject, schema))
        return 11


@settings(max_examples=50, deadline=None)
@given(st.lists(realistic, max_size=6))
def test_encode_many_is_encode_of_each_with_one_registration(batch: list[Receipt]) -> None:
    registrar = CountingRegistrar()
    encoder = ReceiptEncoder(registry=registrar, subject="receipts-value")

    async def both() -> tuple[list[bytes], list[bytes]]:
        many = await encoder.encode_many(batch)
        return many, [await encoder.encode(receipt) for receipt in batch]

    many, each = asyncio.run(both())
    assert many == each
    assert [subject for subject, _ in registrar.registered] == (["receipts-value"] if batch else [])
    assert all(value[:5] == b"\x00\x00\x00\x00\x0b" for value in many)
    decoder = ReceiptDecoder(StaticRegistry({11: json.dumps(SHIPPED.parsed)}))
    assert [decoder.decode(value) for value in many] == batch


def test_encode_many_without_a_registry_is_single_object() -> None:
    encoder = ReceiptEncoder()
    batch = [A_RECEIPT, Receipt(**{**vars_of(A_RECEIPT), "duplicate_of": A_RECEIPT.input})]
    assert asyncio.run(encoder.encode_many(batch)) == [encoder.single_object(r) for r in batch]
    assert asyncio.run(encoder.encode_many([])) == []
