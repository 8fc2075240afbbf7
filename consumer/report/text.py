"""The report for people (`deletion-consumer report`, without `--json`): aligned plain text.

What it holds, in order: a header (the range, when it was made, the deadline and target, what
was read of which topic), the totals, the counts by day, by reason and by source, time to
erasure by event type and by reason, the outstanding erasures (oldest request first: age, event
id, DLQ reason, where the dead letter is, flags), and the outstanding ones by age.

Readable at 100 columns: a name column (reason, source, event type) is cut with "…" to what
the row leaves it, and the outstanding list takes two lines an erasure. Every field that comes
from a topic is shown escaped (`core.dlq.printable`): reasons, sources, event ids and header
values are anyone's text, and a newline or an escape sequence must not reach the terminal as
one. Event ids are never cut (an operator replays one by it).
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer.core.dlq import printable
from consumer.core.erasure_report import (
    DAY_MS,
    Counts,
    DeadLetterSpot,
    ErasureReport,
    Latency,
    Outstanding,
)
from consumer.core.timestamps import iso_millis
from consumer.report.durations import human_duration

__all__ = ["WIDTH", "exact_duration", "render_text"]

WIDTH = 100
_INDENT = "  "
_GAP = "  "

_COUNT_COLUMNS = (
    ("requests", "requests"),
    ("completed", "completed"),
    ("unverified", "unverified"),
    ("dead_lettered", "dead-lettered"),
    ("outstanding", "outstanding"),
    ("over_deadline", ">deadline"),
    ("over_target", ">target"),
)
_LATENCY_COLUMNS = ("completed", "p50", "p99", "max")
_LEGEND = (
    "  unverified: completed, but its first completion was not verified (in completed too)",
    "  dead-lettered: ever dead-lettered, completed since or not",
    "  outstanding: its latest receipt is DEAD_LETTERED (nothing later says it was done)",
)
_UNITS = (("d", DAY_MS), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def exact_duration(millis: int) -> str:
    """A duration as the options take it (`30d`, `1d12h`, `1m30s`); any ms left as `ms`."""
    parts, rest = [], millis
    for unit, scale in _UNITS:
        if rest >= scale:
            parts.append(f"{rest // scale}{unit}")
            rest %= scale
    if rest or not parts:
        parts.append(f"{rest}ms")
    return "".join(parts)


def _when(millis: int) -> str:
    try:
        return iso_millis(millis)
    except (ValueError, OverflowError, OSError):  # outside what a datetime holds
        return f"{millis} ms after the epoch"


def _cell(text: str, width: int) -> str:
    """Escaped, then cut to `width` with an ellipsis."""
    shown = printable(text)
    return shown if len(shown) <= width else shown[: max(0, width - 1)] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> list[str]:
    """Aligned rows: the first `left` columns to the left, the others (numbers) to the right."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return (_INDENT + _GAP.join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _count_table(
    name: str, groups: Sequence[tuple[str, Counts]], *, with_target: bool
) -> list[str]:
    columns = [c for c in _COUNT_COLUMNS if with_target or c[0] != "over_target"]
    numbers = [[f"{getattr(counts, key):,}" for key, _ in columns] for _, counts in groups]
    widths = [
        max([len(label), *(len(row[i]) for row in numbers)]) for i, (_, label) in enumerate(columns)
    ]
    room = WIDTH - len(_INDENT) - sum(widths) - len(_GAP) * len(widths)
    rows = [
        [_cell(label, max(len(name), room)), *row]
        for (label, _), row in zip(groups, numbers, strict=True)
    ]
    return _table([name, *(label for _, label in columns)], rows)


def _latency_table(name: str, groups: Sequence[tuple[str, Latency]]) -> list[str]:
    rows = [
        [
            _cell(label, 40),
            f"{latency.completed:,}",
            human_duration(latency.p50_ms),
            human_duration(latency.p99_ms),
            human_duration(latency.max_ms),
        ]
        for label, latency in groups
    ]
    return _table([name, *_LATENCY_COLUMNS], rows)


def _where(spot: DeadLetterSpot | None) -> str:
    return "not found" if spot is None else f"{spot.partition}:{spot.offset}"


def _past(item: Outstanding) -> str:
    flags = (("deadline", item.past_deadline), ("target", item.past_target))
    return "+".join(name for name, on in flags if on)


def _outstanding(items: Sequence[Outstanding], *, with_target: bool) -> list[str]:
    """Two lines an erasure: what to act on, then what it was."""
    past = "the deadline, the target, or both" if with_target else "the deadline"
    rows = [
        [
            human_duration(item.age_ms),
            printable(item.event_id),
            printable(item.dlq_reason or "none given"),
            _where(item.dead_letter),
            _past(item),
        ]
        for item in items
    ]
    lines = _table(["age", "event id", "dlq reason", "DLQ at", "past"], rows, left=5)
    age_width = max(len("age"), *(len(row[0]) for row in rows))
    pad = " " * (len(_INDENT) + age_width + len(_GAP))
    out = [
        "  age: since the request; DLQ at: the dead letter's partition:offset on the DLQ",
        f"  (not found: gone from it, or not read); past: {past}",
        lines[0],
    ]
    for item, line in zip(items, lines[1:], strict=True):
        what = (
            f"requested {_when(item.occurred_at_ms)}: {printable(item.event_type)}, "
            f"{printable(item.reason)}, from "
        )
        out += [line, _cut(pad + what + printable(item.source))]
    return out


def _cut(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def _header(report: ErasureReport) -> list[str]:
    scan = report.scan
    since = "the first receipt" if report.since_ms is None else _when(report.since_ms)
    aims = f"deadline {exact_duration(report.deadline_ms)}"
    aims += "" if report.target_ms is None else f", target {exact_duration(report.target_ms)}"
    read = f"{printable(scan.receipts_topic)}: {scan.receipts_read:,} read"
    if scan.receipts_unreadable:
        read += f", {scan.receipts_unreadable:,} unreadable (named on stderr)"
    if scan.dlq_topic is None:
        letters = "none (DLQ_TOPIC is empty): dead letters show as not found"
    else:
        letters = f"{printable(scan.dlq_topic)}: {scan.dead_letters_read:,} read"
    if scan.dlq_unavailable is not None and scan.dlq_topic is not None:
        letters += f"; not read in full ({printable(scan.dlq_unavailable)})"
    return [
        f"Erasure report: requests from {since} to {_when(report.until_ms)} (excluded)",
        f"  generated at   {_when(report.generated_at_ms)}",
        f"  flagged        {aims}",
        f"  receipts       {read}",
        f"  dead letters   {letters}",
    ]


def _totals(report: ErasureReport) -> list[str]:
    lines = ["", "Totals"]
    lines += _count_table("", [("all", report.totals)], with_target=report.target_ms is not None)
    latency = report.latency_all
    if latency is not None:
        lines.append(
            f"  time to erasure: p50 {human_duration(latency.p50_ms)}, p99 "
            f"{human_duration(latency.p99_ms)}, max {human_duration(latency.max_ms)} "
            f"({latency.completed:,} completed)"
        )
    flagged = ">deadline, >target" if report.target_ms is not None else ">deadline"
    return [
        *lines,
        *_LEGEND,
        f"  {flagged}: completed later than that after the request, or outstanding and older",
    ]


def _by_age(report: ErasureReport) -> list[str]:
    rows = [[bucket.label, f"{bucket.count:,}"] for bucket in report.outstanding_by_age]
    lines = ["", "Outstanding by age (from the request)", *_table(["age", "erasures"], rows)]
    lines.append(
        f"  past the deadline ({exact_duration(report.deadline_ms)}): {report.past_deadline:,}"
        + (
            ""
            if report.target_ms is None
            else f"; past the target ({exact_duration(report.target_ms)}): {report.past_target:,}"
        )
    )
    return lines


def render_text(report: ErasureReport) -> str:
    """The whole report as text, lines of at most `WIDTH` columns (but for long event ids)."""
    with_target = report.target_ms is not None
    lines = _header(report) + _totals(report)
    for title, name, groups in (
        ("By day (UTC, of the request)", "day", report.by_day),
        ("By reason", "reason", report.by_reason),
        ("By source", "source", report.by_source),
    ):
        lines += ["", title]
        lines += _count_table(name, groups, with_target=with_target) if groups else ["  none"]
    lines += ["", "Time to erasure (request to first COMPLETED receipt; nearest-rank percentiles)"]
    if report.latency_by_type:
        lines += _latency_table("event type", report.latency_by_type)
        lines += [""]
        lines += _latency_table("reason", report.latency_by_reason)
    else:
        lines.append("  no completed erasure in the range")
    count = len(report.outstanding)
    lines += [
        "",
        f"Outstanding erasures: {count:,} (latest receipt DEAD_LETTERED; oldest request first)",
    ]
    lines += _outstanding(report.outstanding, with_target=with_target) if count else ["  none"]
    lines += _by_age(report)
    return "\n".join(lines)
