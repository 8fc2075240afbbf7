"""Dead-letter records: the original record byte for byte, with the reason in `dlq.*` headers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consumer.core.timestamps import iso_seconds

__all__ = [
    "DLQ_REASONS",
    "DeadLetter",
    "DlqReason",
    "Headers",
    "dead_letter_headers",
    "headers_of",
    "one_line",
]


class DlqReason(StrEnum):
    """Why a record was dead-lettered: the `dlq.reason` header and the metric's label."""

    DECODE_ERROR = "decode_error"  # the bytes are no event of a schema we know how to read
    UNKNOWN_SCHEMA = "unknown_schema"  # the writer schema cannot be found
    INVALID_SCOPE = "invalid_scope"  # no identifier, a `*` wildcard, a memory id not a UUID
    UNSUPPORTED_SCOPE = "unsupported_scope"  # a scope this backend cannot filter on
    REJECTED = "rejected"  # Mem0 refused the call for good (a 4xx)
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient failures past the retry budget
    VERIFICATION_FAILED = "verification_failed"  # still found after every re-delete


DLQ_REASONS = tuple(reason.value for reason in DlqReason)

_ERROR_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why and where from: everything the headers say besides the original record."""

    reason: DlqReason
    error: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    attempts: int
    group: str
    event_id: str | None = None
    http_status: int | None = None


def one_line(text: str, limit: int = _ERROR_LIMIT) -> str:
    """White space folded to single spaces, cut to `limit` bytes of UTF-8."""
    folded = " ".join(text.split())
    # A lone surrogate (from a surrogateescape'd source) must not make the dead letter unwritable.
    encoded = folded.encode("utf-8", errors="replace")[:limit]
    return encoded.decode("utf-8", errors="ignore")


Headers = list[tuple[str, bytes | None]]


def headers_of(message: object) -> Headers:
    """A consumed message's headers as a list (a header's value may be null)."""
    raw = getattr(message, "headers")()  # noqa: B009 - confluent's Message, typed loosely
    if not raw:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in items]


def dead_letter_headers(original: Headers, letter: DeadLetter, failed_at: float) -> Headers:
    """The original headers, unchanged and first, then the `dlq.*` headers (README: Dead
    letters)."""
    added = {
        "dlq.reason": letter.reason,
        "dlq.error": one_line(letter.error),
        "dlq.original.topic": letter.topic,
        "dlq.original.partition": str(letter.partition),
        "dlq.original.offset": str(letter.offset),
        "dlq.attempts": str(letter.attempts),
        "dlq.failed_at": iso_seconds(failed_at),
        "dlq.consumer.group": letter.group,
    }
    if letter.timestamp_ms is not None:
        added["dlq.original.timestamp"] = str(letter.timestamp_ms)
    if letter.event_id is not None:
        added["dlq.event_id"] = letter.event_id
    if letter.http_status is not None:
        added["dlq.http_status"] = str(letter.http_status)
    return [*original, *((name, value.encode("utf-8")) for name, value in added.items())]
