"""The deletion event model and the scopes (filters) it asks to delete.

Pure data: no I/O, no clock. The codec builds these from Avro records; the planner turns them
into Mem0 operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from consumer.core.timestamps import to_millis

__all__ = [
    "ENTITY_KEYS",
    "REASONS",
    "DeletionEvent",
    "EventType",
    "Scope",
    "clean_id",
    "clean_memory_ids",
    "event_from_record",
    "event_to_record",
    "partition_key",
]

# The identifiers Mem0 scopes memories by, in the order Mem0's docs list them.
ENTITY_KEYS = ("user_id", "agent_id", "run_id", "app_id")

# memory.deletion.ErasureReason: bounded, so fit for a metric label.
REASONS = ("USER_REQUEST", "GDPR", "CCPA", "RETENTION", "ADMIN", "OTHER")


class EventType(StrEnum):
    """The payload record of an event; the value is the metric label."""

    USER_DELETED = "user_deleted"
    SESSION_EXPIRED = "session_expired"
    SCOPE_DELETED = "scope_deleted"
    MEMORIES_DELETED = "memories_deleted"

    @property
    def record_name(self) -> str:
        return _RECORD_NAMES[self]


_RECORD_NAMES = {
    EventType.USER_DELETED: "UserDeleted",
    EventType.SESSION_EXPIRED: "SessionExpired",
    EventType.SCOPE_DELETED: "ScopeDeleted",
    EventType.MEMORIES_DELETED: "MemoriesDeleted",
}
_TYPES_BY_RECORD = {name: kind for kind, name in _RECORD_NAMES.items()}
# Full names too: the decoder hands them over that way, and one lookup beats a split.
_TYPES_BY_RECORD.update(
    {"memory.deletion." + name: kind for name, kind in _TYPES_BY_RECORD.items()}
)


def clean_id(value: object) -> str | None:
    """An identifier trimmed; one that is absent, empty or only white space counts as absent.

    Public because every builder of events applies it: `Scope.of`, `event_from_record` and the
    codec's shortcut (avro/event_reader.py), which must build the very event the general path
    builds.
    """
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# Scopes and events are built for every message; a frozen dataclass's __init__ (one
# object.__setattr__ per field) costs twice a plain one. Treat them as immutable all the same:
# they are hashed (unsafe_hash) and shared between flush, planner and receipts.
@dataclass(slots=True, unsafe_hash=True)
class Scope:
    """A filter: the memories matching every entry (AND).

    Entries are normalised (trimmed, empty ones dropped) and sorted, so two scopes that ask for
    the same memories are equal and hash alike.
    """

    entities: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Scope:
        entities = []
        # One if per key rather than a loop over a dict of them: this runs for every event.
        if user_id is not None and (cleaned := clean_id(user_id)) is not None:
            entities.append(("user_id", cleaned))
        if agent_id is not None and (cleaned := clean_id(agent_id)) is not None:
            entities.append(("agent_id", cleaned))
        if run_id is not None and (cleaned := clean_id(run_id)) is not None:
            entities.append(("run_id", cleaned))
        if app_id is not None and (cleaned := clean_id(app_id)) is not None:
            entities.append(("app_id", cleaned))
        meta: tuple[tuple[str, str], ...] = ()
        if metadata:
            meta = tuple(
                sorted(
                    (str(key), cleaned)
                    for key, value in metadata.items()
                    if clean_id(key) is not None and (cleaned := clean_id(value)) is not None
                )
            )
        return cls(tuple(entities), meta)

    def entries(self) -> frozenset[tuple[str, str]]:
        """Every key/value the filter requires; metadata keys are prefixed to keep them apart."""
        return frozenset(self.entities) | {("metadata." + k, v) for k, v in self.metadata}

    def covers(self, other: Scope) -> bool:
        """A covers B when every key/value of A is also in B: A's memories include B's."""
        return bool(self.entities or self.metadata) and self.entries() <= other.entries()

    def matches(self, memory: Mapping[str, Any]) -> bool:
        """Whether a memory (a dict with entity keys and a `metadata` dict) is in this scope."""
        meta = memory.get("metadata") or {}
        return all(memory.get(k) == v for k, v in self.entities) and all(
            meta.get(k) == v for k, v in self.metadata
        )

    @property
    def size(self) -> int:
        return len(self.entities) + len(self.metadata)

    @property
    def is_empty(self) -> bool:
        return not self.entities

    def as_dict(self) -> dict[str, str]:
        return dict(self.entities)

    def key_names(self) -> tuple[str, ...]:
        """The identifier names without their values (safe to log, label or put in a receipt)."""
        names = tuple(k for k, _ in self.entities)
        return names + (("metadata",) if self.metadata else ())

    def values(self) -> Iterable[str]:
        yield from (v for _, v in self.entities)
        yield from (v for _, v in self.metadata)


@dataclass(slots=True, unsafe_hash=True)
class DeletionEvent:
    """One decoded `memory.deletion.DeletionEvent`.

    `scope` is set for the filter types; `memory_ids` for MemoriesDeleted (trimmed, empty ones
    dropped, first occurrence kept). `user_id` of MemoriesDeleted is informational and kept apart
    so it can never widen the delete. `include_linked` (MemoriesDeleted, schema version 2; False
    for every other type and for version-1 writers) asks for each id's superseded memories too:
    another request, so it takes part in equality.
    """

    event_id: str
    occurred_at_ms: int
    type: EventType
    scope: Scope | None = None
    memory_ids: tuple[str, ...] = ()
    source: str = "unknown"
    reason: str = "OTHER"
    informational_user_id: str | None = field(default=None, compare=False)
    include_linked: bool = False


def event_from_record(record: Mapping[str, Any]) -> DeletionEvent:
    """Build an event from a decoded Avro record.

    The payload must come as `(record_name, fields)`, as fastavro returns a union of records
    with `return_record_name=True`; the namespace prefix is optional.
    """
    name, body = record["payload"]
    kind = _TYPES_BY_RECORD.get(name) or _TYPES_BY_RECORD.get(name.rsplit(".", 1)[-1])
    if kind is None:
        raise ValueError(f"unknown payload record {name!r}")
    event_id = record["event_id"]
    occurred = record["occurred_at"]
    source = record.get("source", "unknown")
    reason = record.get("reason", "OTHER")
    event = DeletionEvent(
        event_id if type(event_id) is str else str(event_id),
        occurred if type(occurred) is int else to_millis(occurred, "occurred_at"),
        kind,
        None,
        (),
        source if type(source) is str else str(source),
        reason if type(reason) is str else str(reason),
    )
    if kind is EventType.MEMORIES_DELETED:
        event.memory_ids = clean_memory_ids(body["memory_ids"])
        event.informational_user_id = clean_id(body.get("user_id"))
        linked = body.get("include_linked", False)
        if linked is not False:
            # Never coerced: bool("false") is True, and this widens what gets deleted.
            if linked is not True:
                raise ValueError("include_linked is not a boolean")
            event.include_linked = True
    else:
        get = body.get
        event.scope = Scope.of(
            user_id=get("user_id"),
            agent_id=get("agent_id"),
            run_id=get("run_id"),
            app_id=get("app_id"),
            metadata=get("metadata"),
        )
    return event


def clean_memory_ids(raw: Iterable[object]) -> tuple[str, ...]:
    """MemoriesDeleted's ids as an event keeps them: trimmed, empty ones dropped, first
    occurrence kept (the codec's shortcut applies it too, see `clean_id`)."""
    try:
        ids = dict.fromkeys(map(str.strip, raw))  # type: ignore[arg-type]
    except TypeError:  # not all strings (a JSON-lines number, say): the long way
        ids = dict.fromkeys(c for value in raw if (c := clean_id(value)) is not None)
    ids.pop("", None)
    return tuple(ids)


def event_to_record(event: DeletionEvent) -> dict[str, Any]:
    """The Avro record of an event, for encoders (payload as `(record_name, fields)`)."""
    body: dict[str, Any]
    if event.type is EventType.MEMORIES_DELETED:
        body = {
            "memory_ids": list(event.memory_ids),
            "user_id": event.informational_user_id,
            "include_linked": event.include_linked,
        }
    else:
        assert event.scope is not None
        body = {**event.scope.as_dict()}
        if event.type is EventType.SCOPE_DELETED:
            body["metadata"] = dict(event.scope.metadata)
    return {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at_ms,
        "source": event.source,
        "reason": event.reason,
        "payload": ("memory.deletion." + event.type.record_name, body),
    }


def partition_key(record: Mapping[str, Any]) -> bytes | None:
    """The input topic's key (README: Publishing events): the user id, else the run id, as
    UTF-8; else null.

    One subject's events then share a partition, so they are carried out in order.
    """
    _name, body = record["payload"]
    for key in ("user_id", "run_id"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.encode("utf-8")
    return None
