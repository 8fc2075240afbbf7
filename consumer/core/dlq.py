"""Dead-letter records: the original record, with the reason in the consumer's `dlq.*` headers.

The `dlq.*` headers of a dead letter are the consumer's word (README "Dead letters"): `replay`
reads them to know why a record failed, where it came from and how often it was replayed. So
none of them may come from the record itself. A record's own `dlq.*` headers, which anyone who
can write to an input topic can set, are kept under `dlq.original-header.<name>`, values byte
for byte, and the consumer's block follows. Kept, not dropped, so that an operator sees what a
producer sent; renamed, so that no reader can take a planted `dlq.event_id`, a second
`dlq.reason` or a `dlq.replay.count` that `int()` refuses for the consumer's.

The one fact the consumer takes from the record is the replay count, because only the record
carries it: `replay` republishes a letter with `dlq.replay.count` (README "Replay"), and when it
fails again the consumer writes that count, read strictly (one header, canonical ASCII
decimal), as its own `dlq.replay.count`. A count it cannot read is none: `replay` never writes
such a value, so the record was not replayed by it. A producer can still claim a count on its
own records, which only stops them at the loop guard sooner; it cannot make replay fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from consumer.core.timestamps import iso_seconds

__all__ = [
    "DLQ_PREFIX",
    "DLQ_REASONS",
    "ORIGINAL_HEADER_PREFIX",
    "OWN_HEADERS",
    "REPLAY_COUNT_HEADER",
    "DeadLetter",
    "DlqReason",
    "Headers",
    "carried_replay_count",
    "dead_letter_headers",
    "headers_of",
    "one_line",
    "printable",
    "replay_count",
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

DLQ_PREFIX = "dlq."
# Where a record's own `dlq.*` headers go in its dead letter: still `dlq.*`, so that `replay`
# leaves them out of what it republishes, as it leaves out every `dlq.*` header.
ORIGINAL_HEADER_PREFIX = "dlq.original-header."
REPLAY_COUNT_HEADER = "dlq.replay.count"
# Every header the consumer writes in its block, each at most once: the names `replay` reads.
OWN_HEADERS = (
    "dlq.reason",
    "dlq.error",
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
    "dlq.attempts",
    "dlq.failed_at",
    "dlq.consumer.group",
    "dlq.event_id",
    "dlq.http_status",
    REPLAY_COUNT_HEADER,
)
# What `replay` writes: `str(n)`. Nine digits at most, so that no value reaches `int()`'s limit
# on digits (4300), and no count is big enough to mean anything but a forgery.
_COUNT = re.compile(rb"0|[1-9][0-9]{0,8}")

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


def printable(text: str) -> str:
    """Text fit for a terminal: any character that is not printable (a control character, an
    escape sequence's ESC) shown escaped. Event ids and header values are anyone's text."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


Headers = list[tuple[str, bytes | None]]


def headers_of(message: object) -> Headers:
    """A consumed message's headers as a list (a header's value may be null)."""
    raw = getattr(message, "headers")()  # noqa: B009 - confluent's Message, typed loosely
    if not raw:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in items]


def replay_count(value: bytes | None) -> int | None:
    """A `dlq.replay.count` value as `replay` writes it (`0`, `1`, ... in ASCII); else None."""
    if value is None or _COUNT.fullmatch(value) is None:
        return None
    return int(value)


def carried_replay_count(original: Headers) -> int:
    """The replay count the record arrived with: one readable header, else 0 (never
    replayed, as far as `replay` is concerned: it writes exactly one, readable)."""
    counts = [value for name, value in original if name == REPLAY_COUNT_HEADER]
    if len(counts) != 1:
        return 0
    return replay_count(counts[0]) or 0


def dead_letter_headers(original: Headers, letter: DeadLetter, failed_at: float) -> Headers:
    """The original headers first, in order and byte for byte, those named `dlq.*` renamed
    `dlq.original-header.<name>`; then the consumer's `dlq.*` headers (README: Dead letters)."""
    kept = [
        (ORIGINAL_HEADER_PREFIX + name if name.startswith(DLQ_PREFIX) else name, value)
        for name, value in original
    ]
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
    replays = carried_replay_count(original)
    if replays:
        added[REPLAY_COUNT_HEADER] = str(replays)
    return [*kept, *((name, value.encode("utf-8")) for name, value in added.items())]
