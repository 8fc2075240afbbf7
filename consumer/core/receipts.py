"""The receipt of a finished event, as the Avro record of `schemas/deletion_receipt.avsc`.

A receipt proves that an erasure was carried out (or why not) without holding the personal data
it erased: operations are described by the names of the identifiers they filtered by
(`user_id`, `run_id`, ..., `memory_id`), never by their values. One receipt answers one input
record; a duplicate record of the same flush gets one too, pointing at the record whose work
served it (`duplicate_of`).

No I/O and no clock: times come in as arguments. Encoding and writing are in `receipt_codec`
and `receipt_sink`; reading them back in `receipt_lookup`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Protocol

from consumer.core.events import DeletionEvent, EventType
from consumer.core.planner import DeleteAll, DeleteEntity, DeleteIds, Operation
from consumer.core.timestamps import iso_millis, to_millis

__all__ = [
    "COMPLETED",
    "DEAD_LETTERED",
    "CompletedReceipts",
    "InputRecord",
    "OperationReport",
    "Position",
    "Receipt",
    "all_verified",
    "completed",
    "dead_lettered",
    "duplicate",
    "operation_report",
]

COMPLETED: Final = "COMPLETED"
DEAD_LETTERED: Final = "DEAD_LETTERED"


@dataclass(frozen=True, slots=True)
class OperationReport:
    """One Mem0 operation that served an event: what it was and how it went."""

    # delete_all, resolve_scope, delete_ids, delete_linked or delete_entity
    kind: str
    identifiers: tuple[str, ...]  # names only: user_id, run_id, metadata, memory_id...
    calls: int
    last_http_status: int | None = None
    job_id: str | None = None
    verified: bool = False
    # delete_linked: the superseded memories that went with this event's ids.
    cascade_count: int | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "identifiers": list(self.identifiers),
            "calls": self.calls,
            "last_http_status": self.last_http_status,
            "job_id": self.job_id,
            "verified": self.verified,
            "cascade_count": self.cascade_count,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> OperationReport:
        return cls(
            kind=str(record["kind"]),
            identifiers=tuple(str(name) for name in record["identifiers"]),
            calls=int(record["calls"]),
            last_http_status=record.get("last_http_status"),
            job_id=record.get("job_id"),
            verified=bool(record.get("verified", False)),
            cascade_count=record.get("cascade_count"),
        )


def operation_report(
    operation: Operation,
    *,
    calls: int,
    last_http_status: int | None,
    job_id: str | None,
    verified: bool,
) -> OperationReport:
    """The report of a planned operation; it keeps the scope's key names, not its values."""
    names: tuple[str, ...]
    if isinstance(operation, DeleteIds):
        kind = "delete_linked" if operation.linked else "delete_ids"
        names = ("memory_id",)
    elif isinstance(operation, DeleteEntity):
        kind, names = "delete_entity", ("user_id",)
    elif isinstance(operation, DeleteAll):
        kind, names = "delete_all", operation.scope.key_names()
    else:
        kind, names = "resolve_scope", operation.scope.key_names()
    return OperationReport(kind, names, calls, last_http_status, job_id, verified)


# Position and Receipt are values, never changed once made, but not frozen dataclasses: one of
# each is built per finished event, and a frozen one costs five times as much to build (4 µs
# against 0.7 for a receipt: a tenth of a receipt's whole cost). Hashable all the same.
@dataclass(slots=True, unsafe_hash=True)
class Position:
    """Where an input record was: topic, partition, offset."""

    topic: str
    partition: int
    offset: int

    def to_record(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Position:
        return cls(str(record["topic"]), int(record["partition"]), int(record["offset"]))

    def __str__(self) -> str:
        return f"{self.topic} {self.partition}:{self.offset}"


@dataclass(slots=True, unsafe_hash=True)
class Receipt:
    """One `memory.deletion.DeletionReceipt`; times in Unix milliseconds."""

    event_id: str
    outcome: str  # COMPLETED or DEAD_LETTERED
    event_type: str
    reason: str
    source: str
    occurred_at_ms: int
    completed_at_ms: int
    time_to_erasure_ms: int | None
    operations: tuple[OperationReport, ...]
    verified: bool
    dlq_reason: str | None
    consumer_group: str
    input: Position
    duplicate_of: Position | None = None

    def to_record(self) -> dict[str, Any]:
        """The Avro record (field names as in the schema)."""
        return {
            "event_id": self.event_id,
            "outcome": self.outcome,
            "event_type": self.event_type,
            "reason": self.reason,
            "source": self.source,
            "occurred_at": self.occurred_at_ms,
            "completed_at": self.completed_at_ms,
            "time_to_erasure_ms": self.time_to_erasure_ms,
            "operations": [op.to_record() for op in self.operations],
            "verified": self.verified,
            "dlq_reason": self.dlq_reason,
            "consumer_group": self.consumer_group,
            "input": self.input.to_record(),
            "duplicate_of": None if self.duplicate_of is None else self.duplicate_of.to_record(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Receipt:
        """From a decoded Avro record; timestamps as milliseconds (or datetimes)."""
        original = record.get("duplicate_of")
        return cls(
            event_id=str(record["event_id"]),
            outcome=str(record["outcome"]),
            event_type=str(record["event_type"]),
            reason=str(record["reason"]),
            source=str(record.get("source", "unknown")),
            occurred_at_ms=to_millis(record["occurred_at"], "occurred_at"),
            completed_at_ms=to_millis(record["completed_at"], "completed_at"),
            time_to_erasure_ms=record.get("time_to_erasure_ms"),
            operations=tuple(OperationReport.from_record(op) for op in record["operations"]),
            verified=bool(record["verified"]),
            dlq_reason=record.get("dlq_reason"),
            consumer_group=str(record["consumer_group"]),
            input=Position.from_record(record["input"]),
            duplicate_of=None if original is None else Position.from_record(original),
        )

    def to_json(self) -> dict[str, Any]:
        """For people and scripts: the record, with times also in RFC 3339 UTC."""
        out = self.to_record()
        out["occurred_at_iso"] = iso_millis(self.occurred_at_ms)
        out["completed_at_iso"] = iso_millis(self.completed_at_ms)
        return out


def completed(
    event: DeletionEvent,
    operations: Sequence[OperationReport],
    *,
    completed_at_ms: int,
    group: str,
    position: Position,
) -> Receipt:
    """An event whose every operation succeeded; `completed_at_ms` is the confirming response."""
    operations = tuple(operations)  # the same tuple when given one: see core/ledger.py
    occurred_at_ms = event.occurred_at_ms
    # Positional, `map` over the reports and the type's name looked up: one is built per
    # finished event, and keywords, a generator and the enum's `.value` (a descriptor, 0.3 µs)
    # were half of its cost.
    return Receipt(
        event.event_id,
        COMPLETED,
        _TYPE_NAMES[event.type],
        event.reason,
        event.source,
        occurred_at_ms,
        completed_at_ms,
        completed_at_ms - occurred_at_ms if completed_at_ms > occurred_at_ms else 0,
        operations,
        all_verified(operations),
        None,
        group,
        position,
    )


_TYPE_NAMES: Final = {kind: kind.value for kind in EventType}


class InputRecord(Protocol):
    """Where a record came from, as the pipeline keeps it (pipeline/in_flight.Record)."""

    @property
    def tp(self) -> tuple[str, int]: ...  # (topic, partition)

    @property
    def offset(self) -> int: ...


@dataclass(slots=True)
class CompletedReceipts:
    """The receipts of events every operation of which succeeded, as their parts.

    An operation finishes up to a thousand events at once, and building a `Receipt` and a
    `Position` for each cost more than encoding them (bench/e2e.py, an id clean-up): the
    compiled writer (avro/_receipt.c) writes their bytes straight from these parts, the bytes
    `receipts()` would encode to. `records` are the events' input records.
    """

    events: list[DeletionEvent]
    operations: list[tuple[OperationReport, ...]]
    completed_at_ms: list[int]
    group: str
    records: list[InputRecord]

    def __len__(self) -> int:
        return len(self.events)

    def receipts(self) -> list[Receipt]:
        """The `completed` receipt of each event."""
        group = self.group
        return [
            completed(
                event,
                operations,
                completed_at_ms=at_ms,
                group=group,
                position=Position(record.tp[0], record.tp[1], record.offset),
            )
            for event, operations, at_ms, record in zip(
                self.events, self.operations, self.completed_at_ms, self.records, strict=True
            )
        ]


def all_verified(operations: Sequence[OperationReport]) -> bool:
    """What a completed receipt's `verified` says: there were operations, and each was."""
    return bool(operations) and all(map(_verified, operations))


_verified = attrgetter("verified")


def dead_lettered(
    event: DeletionEvent,
    operations: Sequence[OperationReport],
    *,
    dlq_reason: str,
    failed_at_ms: int,
    group: str,
    position: Position,
) -> Receipt:
    """An event that went to the DLQ (refused, rejected, given up on, or left behind).

    The same copy of the event and its record as `completed`'s; only what the outcome says
    differs: no time to erasure, nothing verified, and the reason.
    """
    done = completed(
        event, operations, completed_at_ms=failed_at_ms, group=group, position=position
    )
    return dataclasses.replace(
        done, outcome=DEAD_LETTERED, time_to_erasure_ms=None, verified=False, dlq_reason=dlq_reason
    )


def duplicate(original: Receipt, position: Position) -> Receipt:
    """The receipt of a record that repeated `original`'s in the same flush: the same work,
    reported for this record, pointing at the one it was done for."""
    return dataclasses.replace(original, input=position, duplicate_of=original.input)
