"""One stored memory: its fields, how it is built from a seed record, and its JSON shape."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["ENTITY_KEYS", "Memory", "iso", "parse_time"]

# The identifiers Mem0 scopes memories by; each has an index in the store.
ENTITY_KEYS = ("user_id", "agent_id", "run_id", "app_id")

_NO_CATEGORIES: list[str] = []  # shared, never mutated: most memories have none

_RECORD_KEYS = frozenset(
    {*ENTITY_KEYS, "id", "memory", "metadata", "categories", "created_at", "expiration_date"}
)


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
        "metadata",
        "run_id",
        "seq",
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
