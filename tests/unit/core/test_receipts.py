"""Receipts: the pure model, the Avro codec in both framings, and what a receipt never holds."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from typing import Any

import pytest

from consumer.avro.codec import (
    AvroSchema,
    SchemaStore,
    default_schema_dir,
    encode_record,
)
from consumer.avro.framing import frame_confluent
from consumer.avro.receipt_codec import (
    RECEIPT_FILE,
    RECEIPT_NAME,
    ReceiptDecodeError,
    ReceiptDecoder,
    ReceiptEncoder,
)
from consumer.avro.registry import RegistryUnavailable
from consumer.commands.receipt_lookup import Found, describe
from consumer.core.events import DeletionEvent, EventType, Scope
from consumer.core.planner import DeleteAll, DeleteIds, ResolveScope
from consumer.core.receipts import (
    COMPLETED,
    DEAD_LETTERED,
    OperationReport,
    Position,
    Receipt,
    completed,
    dead_lettered,
    duplicate,
    operation_report,
)
from consumer.core.timestamps import iso_millis
from tests.unit.core.test_purity import _closure, _is_forbidden, imported_modules

T0 = 1_700_000_000_000
HERE = Position("memory.deletions", 2, 41)
SHIPPED = AvroSchema.parse((default_schema_dir() / RECEIPT_FILE).read_text())
SECRET_VALUES = ("alice-7f3a9c", "session-55e1", "agent-b0b", "meta-v4lue", "app-zz9")


def an_event(kind: EventType = EventType.USER_DELETED, **fields: Any) -> DeletionEvent:
    ids = tuple(fields.pop("memory_ids", ()))
    scope = None if kind is EventType.MEMORIES_DELETED else Scope.of(**fields)
    return DeletionEvent(
        event_id=str(uuid.uuid4()),
        occurred_at_ms=T0,
        type=kind,
        scope=scope,
        memory_ids=ids,
        source="billing",
        reason="CCPA",
        informational_user_id=fields.get("user_id"),
    )


def report(verified: bool = True, **changes: Any) -> OperationReport:
    base = OperationReport("delete_all", ("user_id",), 3, 200, str(uuid.uuid4()), verified)
    return OperationReport(**{**base.to_record(), **changes, "identifiers": base.identifiers})


# --- the model ------------------------------------------------------------------------------


def test_an_operation_is_reported_by_the_names_of_its_identifiers() -> None:
    scope = Scope.of(
        user_id=SECRET_VALUES[0],
        run_id=SECRET_VALUES[1],
        agent_id=SECRET_VALUES[2],
        metadata={"topic": SECRET_VALUES[3]},
    )
    common = {"calls": 4, "last_http_status": 200, "job_id": None, "verified": True}
    assert operation_report(DeleteAll(Scope.of(app_id="a"), (0,)), **common).identifiers == (
        "app_id",
    )
    resolved = operation_report(ResolveScope(scope, (0, 1)), **common)
    assert (resolved.kind, resolved.identifiers) == (
        "resolve_scope",
        ("user_id", "agent_id", "run_id", "metadata"),
    )
    ids = operation_report(DeleteIds.of(("m1", "m2"), ((0,), (1,))), **common)
    assert (ids.kind, ids.identifiers, ids.calls) == ("delete_ids", ("memory_id",), 4)
    assert not any(value in repr(resolved) for value in SECRET_VALUES)


def test_a_completed_receipt() -> None:
    event = an_event(user_id="u")
    ops = [report(), report(kind="resolve_scope")]
    receipt = completed(event, ops, completed_at_ms=T0 + 1500, group="g", position=HERE)
    assert receipt.outcome == COMPLETED and receipt.dlq_reason is None
    assert (receipt.event_id, receipt.event_type, receipt.reason, receipt.source) == (
        event.event_id,
        "user_deleted",
        "CCPA",
        "billing",
    )
    assert (receipt.occurred_at_ms, receipt.completed_at_ms, receipt.time_to_erasure_ms) == (
        T0,
        T0 + 1500,
        1500,
    )
    assert receipt.verified and receipt.operations == tuple(ops)
    assert receipt.input == HERE and receipt.duplicate_of is None and receipt.consumer_group == "g"


@pytest.mark.parametrize(
    ("ops", "verified"),
    [([], False), ([report(verified=False)], False), ([report(), report(verified=False)], False)],
)
def test_verified_needs_every_operation_verified(
    ops: list[OperationReport], verified: bool
) -> None:
    receipt = completed(an_event(user_id="u"), ops, completed_at_ms=T0, group="g", position=HERE)
    assert receipt.verified is verified


def test_an_erasure_confirmed_before_it_was_asked_takes_zero_time() -> None:
    # A producer's clock ahead of ours must not make a negative duration.
    receipt = completed(
        an_event(user_id="u"), [report()], completed_at_ms=T0 - 10, group="g", position=HERE
    )
    assert receipt.time_to_erasure_ms == 0


def test_a_dead_lettered_receipt_is_never_verified() -> None:
    receipt = dead_lettered(
        an_event(user_id="u"),
        [report()],
        dlq_reason="verification_failed",
        failed_at_ms=T0 + 9,
        group="g",
        position=HERE,
    )
    assert (receipt.outcome, receipt.dlq_reason, receipt.verified) == (
        DEAD_LETTERED,
        "verification_failed",
        False,
    )
    assert receipt.completed_at_ms == T0 + 9 and receipt.time_to_erasure_ms is None


def test_a_duplicate_reports_the_same_work_and_points_at_it() -> None:
    original = completed(
        an_event(user_id="u"), [report()], completed_at_ms=T0, group="g", position=HERE
    )
    copy = duplicate(original, Position("memory.deletions", 2, 44))
    assert copy.duplicate_of == HERE and copy.input.offset == 44
    assert copy.operations == original.operations and copy.outcome == original.outcome
    assert copy.event_id == original.event_id


def test_record_round_trip_and_json() -> None:
    receipt = duplicate(
        completed(an_event(user_id="u"), [report()], completed_at_ms=T0, group="g", position=HERE),
        Position("t", 0, 1),
    )
    assert Receipt.from_record(receipt.to_record()) == receipt
    shown = receipt.to_json()
    assert shown["occurred_at_iso"] == iso_millis(T0) == "2023-11-14T22:13:20.000Z"
    assert json.loads(json.dumps(shown))["duplicate_of"] == HERE.to_record()


# --- the codec ------------------------------------------------------------------------------


def a_receipt(**changes: Any) -> Receipt:
    event = an_event(
        EventType.SCOPE_DELETED,
        user_id=SECRET_VALUES[0],
        run_id=SECRET_VALUES[1],
        agent_id=SECRET_VALUES[2],
        app_id=SECRET_VALUES[4],
        metadata={"k": SECRET_VALUES[3]},
    )
    assert event.scope is not None
    op = operation_report(
        ResolveScope(event.scope, (0,)), calls=5, last_http_status=200, job_id=None, verified=True
    )
    receipt = completed(event, [op], completed_at_ms=T0 + 20, group="g", position=HERE)
    return dataclasses.replace(receipt, **changes)


class FakeRegistry:
    """Registers and serves schemas by id, like the registry clients the codec takes."""

    def __init__(self, fail_first: int = 0) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: list[str] = []
        self._fail = fail_first

    def register(self, subject: str, schema: str) -> int:
        if self._fail:
            self._fail -= 1
            raise RegistryUnavailable("registry register: HTTP 503")
        self.subjects.append(subject)
        schema_id = 7 + len(self.schemas)
        self.schemas[schema_id] = schema
        return schema_id

    def get_schema(self, schema_id: int) -> str:
        return self.schemas[schema_id]


def test_single_object_round_trip_with_the_shipped_schema() -> None:
    receipt = a_receipt()
    value = ReceiptEncoder().single_object(receipt)
    assert SHIPPED.full_name == RECEIPT_NAME
    assert value[:2] == b"\xc3\x01" and value[2:10] == SHIPPED.fingerprint
    assert ReceiptDecoder().decode(value) == receipt


def test_registry_framing_registers_once_under_the_subject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = FakeRegistry(fail_first=1)
    encoder = ReceiptEncoder(registry=registry, subject="receipts-value")

    async def no_wait(_seconds: float) -> None:
        return None

    # A registry that fails once is waited out (without really waiting, here).
    monkeypatch.setattr("consumer.avro.receipt_codec.asyncio.sleep", no_wait)

    async def encode_many() -> list[bytes]:
        return await asyncio.gather(*(encoder.encode(a_receipt()) for _ in range(5)))

    values = asyncio.run(encode_many())
    assert registry.subjects == ["receipts-value"]
    assert {v[:5] for v in values} == {b"\x00\x00\x00\x00\x07"}
    assert ReceiptDecoder(registry).decode(values[0]).outcome == COMPLETED


def test_a_newer_writer_resolves_against_the_reader() -> None:
    # A later version adds a field with a default: old readers still read it.
    schema = json.loads((default_schema_dir() / RECEIPT_FILE).read_text())
    schema["fields"].append({"name": "region", "type": "string", "default": "eu"})
    registry = FakeRegistry()
    registry.schemas[3] = json.dumps(schema)
    receipt = a_receipt()
    body = encode_record({**receipt.to_record(), "region": "us"}, AvroSchema.parse(schema))
    assert ReceiptDecoder(registry).decode(frame_confluent(body, 3)) == receipt


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"", "empty"),
        (b"\x07garbage", "framing"),
        (b"\xc3\x01" + bytes(8) + b"\x00", "fingerprint"),
        (b"\x00\x00\x00\x00\x09\x00", "no schema registry"),
        (b"\xc3\x01" + SHIPPED.fingerprint + b"\x02", "not a receipt"),
    ],
)
def test_what_is_not_a_receipt(value: bytes, problem: str) -> None:
    with pytest.raises(ReceiptDecodeError, match=problem):
        ReceiptDecoder().decode(value)


def test_the_event_store_ignores_the_receipt_schema() -> None:
    store = SchemaStore.from_directory()
    assert store.reader.full_name == "memory.deletion.DeletionEvent"
    assert {w.full_name for w in store.writers.values()} == {store.reader.full_name}


# --- no personal data -----------------------------------------------------------------------


def test_no_identifier_value_in_a_receipt_its_bytes_or_its_description() -> None:
    receipt = a_receipt()
    ids_event = an_event(EventType.MEMORIES_DELETED, memory_ids=("mem-1f2e3d",), user_id="zed-9")
    ids_receipt = dead_lettered(
        ids_event,
        [
            operation_report(
                DeleteIds.of(("mem-1f2e3d",), ((0,),)),
                calls=1,
                last_http_status=400,
                job_id=None,
                verified=False,
            )
        ],
        dlq_reason="rejected",
        failed_at_ms=T0,
        group="g",
        position=HERE,
    )
    for r, values in ((receipt, SECRET_VALUES), (ids_receipt, ("mem-1f2e3d", "zed-9"))):
        texts = [
            ReceiptEncoder().single_object(r),
            json.dumps(r.to_json()).encode(),
            describe(Found(r, 0, 1)).encode(),
        ]
        for text in texts:
            assert not [v for v in values if v.encode() in text]
    # ...while it does name what was filtered by.
    assert receipt.operations[0].identifiers == (
        "user_id",
        "agent_id",
        "run_id",
        "app_id",
        "metadata",
    )


def test_the_description_reads_like_a_receipt() -> None:
    text = describe(Found(a_receipt(), 1, 9))
    assert "receipt for event" in text and "COMPLETED, verified" in text
    assert "resolve_scope by user_id, agent_id, run_id, app_id, metadata: 5 calls" in text
    copy = duplicate(a_receipt(), Position("memory.deletions", 2, 50))
    assert "a duplicate of memory.deletions 2:41" in describe(Found(copy, 1, 10))


@pytest.mark.parametrize("module", ["consumer.core.receipts", "consumer.core.verification"])
def test_the_pure_modules_stay_pure(module: str) -> None:
    for inner in _closure(module):
        bad = sorted(name for name in imported_modules(inner) if _is_forbidden(name))
        assert not bad, f"{module} reaches {bad} through {inner}"
