"""JSON lines from upstream teams to Avro records, the input of `deletion-consumer produce`.

The result is the record the codec encodes (payload as `(full_name, fields)`), not a
DeletionEvent: produce must be able to publish exactly what it was given, including events the
consumer will reject (empty ids, `*`, ids that are not UUIDs), and DeletionEvent normalises. So
only JSON types are checked here, never what the identifiers mean.

    {"type": "user_deleted", "user_id": "alice"}
    {"type": "SessionExpired", "run_id": "r1", "user_id": "alice", "reason": "GDPR"}
    {"type": "scope_deleted", "user_id": "a", "agent_id": "b", "metadata": {"k": "v"}}
    {"type": "memories_deleted", "memory_ids": ["..."], "occurred_at": "2025-01-31T12:00:00Z"}
    {"type": "memories_deleted", "memory_ids": ["..."], "include_linked": true}

Errors are ValueError with one line naming the field, never its value.

A line without `reason` or `source` gets the `Defaults` given (`produce --reason`, `--source`),
else the schema's (`SCHEMA_DEFAULTS`: OTHER, "unknown"); `on_schema_default` hears of each use
of the schema's, so that produce can say how many lines got one (`schema_default_note`): a
silent OTHER would pass for an answer in the compliance report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.core.events import REASONS, EventType

__all__ = [
    "NAMESPACE",
    "SCHEMA_DEFAULTS",
    "Defaults",
    "parse_lines",
    "parse_record",
    "schema_default_note",
]

NAMESPACE = "memory.deletion"

# What DeletionEvent's schema gives a record without them (schemas/deletion_event.avsc).
SCHEMA_DEFAULTS = {"reason": "OTHER", "source": "unknown"}


@dataclass(frozen=True, slots=True)
class Defaults:
    """The reason and source of a line that gives none; None: the schema's default."""

    reason: str | None = None
    source: str | None = None

    @classmethod
    def of(cls, *, reason: str | None, source: str | None) -> Defaults:
        """From the command line's values, checked as a line's are (the reason upper-cased);
        a ValueError names the flag."""
        if reason is not None:
            if reason.upper() not in REASONS:
                raise ValueError("--reason: expected one of " + ", ".join(REASONS))
            reason = reason.upper()
        return cls(reason=reason, source=source)


def schema_default_note(field: str, lines: int) -> str:
    """What produce says of the lines that got the schema's default for `field`."""
    subject = "1 line" if lines == 1 else f"{lines:,} lines"
    return (
        f"{subject} had no {field}: {SCHEMA_DEFAULTS[field]}, the schema's default; "
        f"give --{field} or a {field} field"
    )


_COMMON = frozenset({"type", "event_id", "occurred_at", "source", "reason"})

# Per payload record: its required string fields (absent -> "", which the consumer rejects) and
# its optional ones. Listed here rather than read from the schema so a typo in a line fails.
_REQUIRED: dict[EventType, tuple[str, ...]] = {
    EventType.USER_DELETED: ("user_id",),
    EventType.SESSION_EXPIRED: ("run_id",),
    EventType.SCOPE_DELETED: (),
    EventType.MEMORIES_DELETED: (),
}
_OPTIONAL: dict[EventType, tuple[str, ...]] = {
    EventType.USER_DELETED: (),
    EventType.SESSION_EXPIRED: ("user_id", "agent_id"),
    EventType.SCOPE_DELETED: ("user_id", "agent_id", "run_id", "app_id"),
    EventType.MEMORIES_DELETED: ("user_id",),
}
_EXTRA: dict[EventType, tuple[str, ...]] = {
    EventType.SCOPE_DELETED: ("metadata",),
    EventType.MEMORIES_DELETED: ("memory_ids", "include_linked"),
}

# "user_deleted", "UserDeleted" and "memory.deletion.UserDeleted" all name the same type.
_TYPES: dict[str, EventType] = {
    alias: kind
    for kind in EventType
    for alias in (kind.value, kind.record_name, f"{NAMESPACE}.{kind.record_name}")
}


def parse_record(
    line: str,
    *,
    now_ms: int,
    new_id: Callable[[], str],
    defaults: Defaults = Defaults(),
    on_schema_default: Callable[[str], None] = lambda _field: None,
) -> dict[str, Any]:
    """One JSON line to an Avro record of memory.deletion.DeletionEvent.

    `on_schema_default("reason")` (or "source") when neither the line nor `defaults` gave one.
    """
    try:
        data = json.loads(line)
    except ValueError:
        raise ValueError("line is not valid JSON") from None  # the parser's message quotes input
    if not isinstance(data, dict):
        raise ValueError("line is not a JSON object")
    name = data.get("type")
    kind = _TYPES.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError("field 'type': expected one of " + ", ".join(e.value for e in EventType))
    allowed = _COMMON.union(_REQUIRED[kind], _OPTIONAL[kind], _EXTRA.get(kind, ()))
    unknown = sorted(key for key in data if key not in allowed)
    if unknown:
        raise ValueError(f"field {unknown[0]!r}: not a field of {kind.value}")

    body: dict[str, Any] = {name: _string(data, name, default="") for name in _REQUIRED[kind]}
    body.update((name, _string(data, name, default=None)) for name in _OPTIONAL[kind])
    if kind is EventType.SCOPE_DELETED:
        body["metadata"] = _metadata(data)
    elif kind is EventType.MEMORIES_DELETED:
        body["memory_ids"] = _memory_ids(data)
        body["include_linked"] = _include_linked(data)
    event_id = _string(data, "event_id", default=None)
    occurred_at = _occurred_at(data, now_ms)
    source = _string(data, "source", default=None)
    reason = _reason(data)
    if source is None:
        source = defaults.source
    if reason is None:
        reason = defaults.reason
    # Told once every field was checked: a line refused is no line that got a default.
    if source is None:
        on_schema_default("source")
    if reason is None:
        on_schema_default("reason")
    return {
        # Only a missing id is made up: "" is published as given, for tests of rejection.
        "event_id": new_id() if event_id is None else event_id,
        "occurred_at": occurred_at,
        "source": SCHEMA_DEFAULTS["source"] if source is None else source,
        "reason": SCHEMA_DEFAULTS["reason"] if reason is None else reason,
        "payload": (f"{NAMESPACE}.{kind.record_name}", body),
    }


def parse_lines(
    lines: Iterable[str], *, now_ms: Callable[[], int], new_id: Callable[[], str]
) -> Iterator[dict[str, Any]]:
    """Every non-blank line to a record; a ValueError says which line (counting from 1)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield parse_record(line, now_ms=now_ms(), new_id=new_id)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from exc


def _string(data: dict[str, Any], name: str, *, default: str | None) -> str | None:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"field {name!r}: expected a string")
    return value


def _metadata(data: dict[str, Any]) -> dict[str, str]:
    value = data.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("field 'metadata': expected an object of strings")
    return value


def _memory_ids(data: dict[str, Any]) -> list[str]:
    value = data.get("memory_ids")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("field 'memory_ids': expected a list of strings")
    return value


def _include_linked(data: dict[str, Any]) -> bool:
    value = data.get("include_linked")
    if value is None:
        return False
    if not isinstance(value, bool):  # no guessing at "false" or 1: true widens the delete
        raise ValueError("field 'include_linked': expected true or false")
    return value


def _occurred_at(data: dict[str, Any], now_ms: int) -> int:
    value = data.get("occurred_at")
    if value is None:
        return now_ms
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # a time without a zone is taken as UTC
            # Exact integer arithmetic: a float timestamp could be a millisecond off.
            return (moment - _EPOCH) // _MILLISECOND
    raise ValueError("field 'occurred_at': expected epoch milliseconds or an ISO 8601 time")


def _reason(data: dict[str, Any]) -> str | None:
    value = data.get("reason")
    if value is None:
        return None
    if isinstance(value, str) and value.upper() in REASONS:
        return value.upper()
    raise ValueError("field 'reason': expected one of " + ", ".join(REASONS))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
