"""The report as JSON, for automation and alerting (`deletion-consumer report --json`).

`report_json(report)` is one object with stable keys, snake_case; a key is never renamed or
removed without `format` changing (keys may be added). Every time is given twice: `<name>_ms`
(Unix milliseconds) and `<name>` (RFC 3339 UTC with milliseconds, or null for a time no date
can hold). Durations are `<name>_ms`. The figures are those of `core.erasure_report`, whose
docstring defines them; text from the topics (reasons, sources, event ids) is given as read.

Keys (`COUNTS` are the keys of every counts object: requests, completed, unverified,
dead_lettered, outstanding, over_deadline, over_target):

    format                  1
    generated_at_ms, generated_at
    since_ms, since         start of the request range, included (null: from the first receipt)
    until_ms, until         end of the request range, excluded
    deadline_ms             the deadline
    target_ms               the internal target (null: none)
    scan                    receipts_topic, dlq_topic (null: none), receipts_read,
                            receipts_unreadable, dead_letters_read,
                            dlq_unavailable (null: the DLQ was read in full; else why not)
    totals                  COUNTS over the range
    by_day                  [{day (YYYY-MM-DD, UTC, of the request), COUNTS}], ascending
    by_reason               [{reason, COUNTS}], most requests first, then by name
    by_source               [{source, COUNTS}], most requests first, then by name
    time_to_erasure         request to first COMPLETED receipt, nearest-rank percentiles:
        all                 {completed, p50_ms, p99_ms, max_ms}, or null with none completed
        by_event_type       [{event_type, completed, p50_ms, p99_ms, max_ms}], by name
        by_reason           [{reason, completed, p50_ms, p99_ms, max_ms}], by name
        by_day              [{day, completed, p50_ms, p99_ms, max_ms}], ascending
    outstanding             [{event_id, event_type, reason, source, occurred_at_ms,
                            occurred_at, dead_lettered_at_ms, dead_lettered_at, age_ms,
                            dlq_reason, dead_letter, past_deadline, past_target}],
                            oldest request first; dead_letter is null (not found on the DLQ)
                            or {partition, offset, reason, failed_at, replay_count}
    outstanding_by_age      [{label, up_to_ms (null: no bound), count}], youngest first,
                            every bucket present
    past_deadline           outstanding erasures older than the deadline
    past_target             outstanding erasures older than the target (0 without one)
"""

from __future__ import annotations

from typing import Any

from consumer.core.erasure_report import (
    Counts,
    DeadLetterSpot,
    ErasureReport,
    Latency,
    Outstanding,
)
from consumer.core.timestamps import iso_millis

__all__ = ["FORMAT", "report_json"]

FORMAT = 1

# What `datetime` raises for a time outside the years 1 to 9999 (or the platform's range).
_OUT_OF_RANGE = (ValueError, OverflowError, OSError)


def _iso(millis: int | None) -> str | None:
    if millis is None:
        return None
    try:
        return iso_millis(millis)
    except _OUT_OF_RANGE:
        return None


def _time(name: str, millis: int | None) -> dict[str, Any]:
    return {f"{name}_ms": millis, name: _iso(millis)}


def _counts(counts: Counts) -> dict[str, int]:
    return {
        "requests": counts.requests,
        "completed": counts.completed,
        "unverified": counts.unverified,
        "dead_lettered": counts.dead_lettered,
        "outstanding": counts.outstanding,
        "over_deadline": counts.over_deadline,
        "over_target": counts.over_target,
    }


def _latency(latency: Latency) -> dict[str, int]:
    return {
        "completed": latency.completed,
        "p50_ms": latency.p50_ms,
        "p99_ms": latency.p99_ms,
        "max_ms": latency.max_ms,
    }


def _dead_letter(spot: DeadLetterSpot | None) -> dict[str, Any] | None:
    if spot is None:
        return None
    return {
        "partition": spot.partition,
        "offset": spot.offset,
        "reason": spot.reason,
        "failed_at": spot.failed_at,
        "replay_count": spot.replay_count,
    }


def _outstanding(item: Outstanding) -> dict[str, Any]:
    return {
        "event_id": item.event_id,
        "event_type": item.event_type,
        "reason": item.reason,
        "source": item.source,
        **_time("occurred_at", item.occurred_at_ms),
        **_time("dead_lettered_at", item.dead_lettered_at_ms),
        "age_ms": item.age_ms,
        "dlq_reason": item.dlq_reason,
        "dead_letter": _dead_letter(item.dead_letter),
        "past_deadline": item.past_deadline,
        "past_target": item.past_target,
    }


def report_json(report: ErasureReport) -> dict[str, Any]:
    """The report as a JSON-ready dict, keys as the module's docstring lists them."""
    scan = report.scan
    return {
        "format": FORMAT,
        **_time("generated_at", report.generated_at_ms),
        **_time("since", report.since_ms),
        **_time("until", report.until_ms),
        "deadline_ms": report.deadline_ms,
        "target_ms": report.target_ms,
        "scan": {
            "receipts_topic": scan.receipts_topic,
            "dlq_topic": scan.dlq_topic,
            "receipts_read": scan.receipts_read,
            "receipts_unreadable": scan.receipts_unreadable,
            "dead_letters_read": scan.dead_letters_read,
            "dlq_unavailable": scan.dlq_unavailable,
        },
        "totals": _counts(report.totals),
        "by_day": [{"day": day, **_counts(counts)} for day, counts in report.by_day],
        "by_reason": [{"reason": name, **_counts(counts)} for name, counts in report.by_reason],
        "by_source": [{"source": name, **_counts(counts)} for name, counts in report.by_source],
        "time_to_erasure": {
            "all": None if report.latency_all is None else _latency(report.latency_all),
            "by_event_type": [
                {"event_type": name, **_latency(latency)}
                for name, latency in report.latency_by_type
            ],
            "by_reason": [
                {"reason": name, **_latency(latency)} for name, latency in report.latency_by_reason
            ],
            "by_day": [{"day": row.day, **_latency(row.latency)} for row in report.latency_by_day],
        },
        "outstanding": [_outstanding(item) for item in report.outstanding],
        "outstanding_by_age": [
            {"label": bucket.label, "up_to_ms": bucket.up_to_ms, "count": bucket.count}
            for bucket in report.outstanding_by_age
        ],
        "past_deadline": report.past_deadline,
        "past_target": report.past_target,
    }
