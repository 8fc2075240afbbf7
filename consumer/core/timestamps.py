"""The one way times are written out and the one way a decoded timestamp becomes millis.

Every time the consumer shows (a receipt's `*_iso`, the `dlq.failed_at` header, a log line's `ts`)
is RFC 3339 in UTC with milliseconds and a `Z`, as the README (Dead letters, Logs) asks; writing
that format in one place keeps the three from drifting apart (a `+00:00` here, microseconds there).
Avro's `timestamp-millis` arrives as an int, or as a datetime when fastavro applies the logical
type: `to_millis` takes either.

No clock: the moment is always an argument.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_millis", "iso_seconds", "to_millis"]


def iso_seconds(seconds: float) -> str:
    """Unix seconds as RFC 3339 UTC with milliseconds (`2025-03-01T08:00:00.000Z`)."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def iso_millis(millis: int) -> str:
    """Unix milliseconds as RFC 3339 UTC with milliseconds (`2025-03-01T08:00:00.000Z`)."""
    return iso_seconds(millis / 1000)


def to_millis(value: object, field: str) -> int:
    """A decoded `timestamp-millis` (an int, or a datetime from fastavro's logical-type reader)
    as Unix milliseconds; ValueError naming `field` (never the value) for anything else."""
    if isinstance(value, int):
        return value
    timestamp = getattr(value, "timestamp", None)
    if timestamp is None:
        raise ValueError(f"{field} is not a timestamp: {type(value).__name__}")
    return round(float(timestamp()) * 1000)
