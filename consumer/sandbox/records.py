"""What the store keeps: memories and entities, how seed records build them, their JSON shapes.

A memory may carry Dream's marks: `merged` (a near-duplicate Mem0 keeps, hidden from reads
unless they ask `include_merged`) and `superseded_by` (the newer memory that contradicted it).
The API's memory shape leaves them out, as Mem0's documented shape does; the admin shape
(`to_admin_json`) shows them, so that a test can see what an erasure left behind.

An entity is a (type, name) pair: ("user", "alice") for the memories of user_id "alice". Its
`id` in the API is an opaque UUID derived from the pair; paths name an entity by its name.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from consumer.sandbox.faults import canonical_id

__all__ = ["ENTITY_KEYS", "ENTITY_TYPES", "Entity", "Memory", "iso", "parse_time"]

# The identifiers Mem0 scopes memories by; each has an index in the store.
ENTITY_KEYS = ("user_id", "agent_id", "run_id", "app_id")

# Entity type -> the memory field that names it.
ENTITY_TYPES: dict[str, str] = {
    "user": "user_id",
    "agent": "agent_id",
    "app": "app_id",
    "run": "run_id",
}

_NO_CATEGORIES: list[str] = []  # shared, never mutated: most memories have none

_RECORD_KEYS = frozenset(
    {
        *ENTITY_KEYS,
        "id",
        "memory",
        "metadata",
        "categories",
        "created_at",
        "expiration_date",
        "merged",
        "superseded_by",
    }
)
_ENTITY_RECORD_KEYS = frozenset({"type", "id", "name"})
_ENTITY_NAMESPACE = uuid.UUID("5b0c6a4e-1f0e-4d7a-9a55-6d656d307361")


def iso(moment: float) -> str:
    """ISO 8601 in UTC, as Mem0 prints its timestamps."""
    return datetime.fromtimestamp(moment, UTC).isoformat()


def parse_time(value: object) -> float:
    """Epoch seconds from an ISO date or date-time (naive ones are UTC) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Memory:
    """A memory as the store keeps it; times are epoch seconds."""

    __slots__ = (
        "agent_id",
        "app_id",
        "categories",
        "created_at",
        "expiration_date",
        "expires_at",
        "id",
        "memory",
        "merged",
        "metadata",
        "run_id",
        "seq",
        "superseded_by",
        "updated_at",
        "user_id",
    )

    def __init__(self, memory_id: str, seq: int, record: Mapping[str, Any], now: float) -> None:
        unknown = record.keys() - _RECORD_KEYS
        if unknown:
            raise ValueError(f"unknown memory field(s): {', '.join(sorted(unknown))}")
        self.id = memory_id
        self.seq = seq
        self.memory = str(record.get("memory") or "")
        self.user_id = _entity(record, "user_id")
        self.agent_id = _entity(record, "agent_id")
        self.run_id = _entity(record, "run_id")
        self.app_id = _entity(record, "app_id")
        metadata = record.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("metadata must be an object")
        self.metadata: dict[str, Any] | None = dict(metadata) if metadata is not None else None
        categories = record.get("categories")
        self.categories = [str(c) for c in categories] if categories else _NO_CATEGORIES
        created = record.get("created_at")
        self.created_at = parse_time(created) if created is not None else now
        self.updated_at = self.created_at
        expiration = record.get("expiration_date")
        self.expiration_date: str | None = None if expiration is None else str(expiration)
        self.expires_at = _expiry(self.expiration_date)
        # Most seeds carry neither mark: the checks cost nothing for them.
        merged = record.get("merged", False)
        if merged is not False and merged is not True:
            raise ValueError("merged must be a boolean")
        self.merged: bool = merged
        superseded = record.get("superseded_by")
        self.superseded_by = None if superseded is None else _newer(superseded, memory_id)

    def entity(self, key: str) -> str | None:
        value: str | None = getattr(self, key)
        return value

    def meta(self) -> Mapping[str, Any]:
        return self.metadata or {}

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memory": self.memory,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "app_id": self.app_id,
            "metadata": self.metadata,
            "categories": list(self.categories),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expiration_date": self.expiration_date,
        }

    def to_admin_json(self) -> dict[str, Any]:
        """The API shape plus Dream's marks."""
        shape = self.to_json()
        shape["merged"] = self.merged
        shape["superseded_by"] = self.superseded_by
        return shape


class Entity:
    """A user, agent, app or run the project has seen; times are epoch seconds.

    `updated_at` is when it last went from no memories to some: the store does not touch the
    entity for every memory it adds.
    """

    __slots__ = ("created_at", "name", "seq", "type", "updated_at")

    def __init__(self, entity_type: str, name: str, seq: int, now: float) -> None:
        self.type = entity_type
        self.name = name
        self.seq = seq
        self.created_at = now
        self.updated_at = now

    @property
    def key(self) -> str:
        """The memory field that names this entity."""
        return ENTITY_TYPES[self.type]

    def to_json(self, total_memories: int) -> dict[str, Any]:
        # Derived, not stored: entities come into being on the hot path of adding memories.
        entity_id = uuid.uuid5(_ENTITY_NAMESPACE, f"{self.type}/{self.name}")
        return {
            "id": str(entity_id),
            "name": self.name,
            "type": self.type,
            "total_memories": total_memories,
            "metadata": {},
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }

    @staticmethod
    def parse(record: object) -> tuple[str, str]:
        """(type, name) of a seed record `{"type": "user", "id": "alice"}` ("name" also works)."""
        if not isinstance(record, Mapping):
            raise ValueError("each entity must be an object")
        unknown = record.keys() - _ENTITY_RECORD_KEYS
        if unknown:
            raise ValueError(f"unknown entity field(s): {', '.join(sorted(unknown))}")
        entity_type = record.get("type")
        if not isinstance(entity_type, str) or entity_type not in ENTITY_TYPES:
            raise ValueError(f"entity type must be one of {', '.join(ENTITY_TYPES)}")
        name = record.get("id", record.get("name"))
        if not isinstance(name, str) or not name:
            raise ValueError("an entity needs a non-empty string id")
        return entity_type, name


def _newer(value: object, memory_id: str) -> str:
    """The canonical id of the memory that superseded `memory_id`."""
    newer = canonical_id(value) if isinstance(value, str) else None
    if newer is None:
        raise ValueError(f"superseded_by is not a UUID: {value!r}")
    if newer == memory_id:
        raise ValueError("a memory cannot supersede itself")
    return newer


def _entity(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    return str(value)


def _expiry(expiration: str | None) -> float | None:
    """A date-only expiration lasts through that day (UTC); a date-time is exact."""
    if expiration is None:
        return None
    if len(expiration) == 10:
        day = date.fromisoformat(expiration)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return (start + timedelta(days=1)).timestamp()
    return parse_time(expiration)
