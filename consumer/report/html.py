"""The compliance report as one self-contained HTML page (`deletion-consumer report --html FILE`).

`render_html` turns an `ErasureReport` (consumer/core/erasure_report.py defines every figure)
into a complete HTML5 document meant to be printed or archived as it is: inline CSS only (a
system font stack, no web font), two inline SVG charts (consumer/report/svg.py), no script, no
link, no image file, nothing fetched from anywhere. A Content-Security-Policy of `default-src
'none'` says so to the browser too, so that even a string that slipped through escaping could
not load anything.

Every value read from a topic (reasons, sources, event types, event ids, DLQ reasons) is
anyone's text: it goes through `svg.text` (control characters shown escaped, then
`html.escape`) and never into markup unescaped. Flags (past the deadline, past the target) are
words in a cell, not a colour, so that a grey print or a screen reader keeps them. No
identifier value appears: receipts hold none; event ids are request ids, shown so that an
operator can replay one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from consumer.core.erasure_report import (
    AgeBucket,
    Counts,
    DayLatency,
    ErasureReport,
    Latency,
    Outstanding,
)
from consumer.report.durations import human_duration
from consumer.report.svg import Threshold, age_chart, latency_chart, text

__all__ = ["render_html"]


_CSS = """
:root { color: #1f1f1f; background: #fff; }
body {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", sans-serif;
  font-size: 15px; line-height: 1.45; margin: 2rem auto; max-width: 1100px; padding: 0 1rem;
}
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid #999;
  padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p.lead { margin: 0 0 1rem; color: #444; }
p.notice { font-size: 1.1rem; font-weight: 600; border: 2px solid #1f1f1f; padding: .75rem 1rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem;
  font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; caption-side: top; }
th, td { border: 1px solid #bbb; padding: .25rem .5rem; text-align: left; vertical-align: top;
  overflow-wrap: break-word; }
table.fixed { table-layout: fixed; }
table.fixed td, table.fixed th { overflow-wrap: anywhere; }
table.fixed tbody th { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas,
  "DejaVu Sans Mono", monospace; font-size: .85em; font-weight: normal; }
thead th { border-bottom: 2px solid #555; background: #f2f2f2; }
tbody th { font-weight: 600; background: #fafafa; }
th.num { text-align: right; }
td.num { text-align: right; white-space: nowrap; overflow-wrap: normal; }
/* A row's name is anyone's text, perhaps one unbroken 10 kB word: break it anywhere, but keep
   the column wide enough to read. */
tbody th { overflow-wrap: anywhere; min-width: 10rem; }
table.facts { width: auto; min-width: 60%; }
table.facts th { width: 16rem; }
tr.late td:last-child { font-weight: 600; }
tr.late th:first-child { border-left: 4px solid #1f1f1f; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: .9em; }
figure { margin: 1rem 0 1.5rem; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-size: .9rem; color: #444; margin-top: .3rem; }
dl.terms { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.terms dt { font-weight: 600; }
dl.terms dd { margin: 0; }
footer { margin-top: 2.5rem; font-size: .85rem; color: #555; border-top: 1px solid #999;
  padding-top: .5rem; }
@page { size: A4 landscape; margin: 14mm 12mm; }
@media print {
  body { font-size: 10pt; margin: 0; max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3, caption { break-after: avoid; page-break-after: avoid; }
  thead { display: table-header-group; }
  tr, figure, table.facts, table.totals { break-inside: avoid; page-break-inside: avoid; }
  thead th, tbody th { background: none; }
  p.lead, figcaption, footer { color: #000; }
}
""".strip()


# --- how figures are written ---------------------------------------------------------------


def _utc(ms: int) -> str:
    """A moment in UTC to the second. A request's time is a producer's word: one far outside
    what a datetime holds is written as the number it is rather than failing the page."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms after 1970-01-01 UTC (out of range)"


def _count(value: int) -> str:
    return f"{value:,}"


def _range(report: ErasureReport) -> str:
    start = _utc(report.since_ms) if report.since_ms is not None else "the first receipt"
    return f"{start} to {_utc(report.until_ms)} (end excluded)"


def _range_short(report: ErasureReport) -> str:
    def day(ms: int) -> str:
        return _utc(ms).removesuffix(" UTC")[:10]

    start = day(report.since_ms) if report.since_ms is not None else "first receipt"
    return f"{start} to {day(report.until_ms)}"


# --- building blocks -----------------------------------------------------------------------

# A cell: its text (escaped when written) and whether it is a number (right-aligned).
Cell = tuple[str, bool]


def _num(value: int) -> Cell:
    return _count(value), True


def _word(value: str) -> Cell:
    return value, False


def _class(name: str) -> str:
    """A ` class="..."` attribute, or nothing for no class (`name` is ours, never topic text)."""
    return f' class="{name}"' if name else ""


def _table(
    table_id: str,
    caption: str,
    headers: Sequence[Cell],
    rows: Iterable[Sequence[Cell]],
    *,
    row_classes: Sequence[str] = (),
    css_class: str = "",
    widths: Sequence[int] = (),
) -> str:
    """A table whose first column names the row (`<th scope="row">`), under a head that a
    printer repeats on every page. `widths` (percent per column) fix the layout: without them
    the browser sizes columns by content, and a long unbroken value would squeeze the rest."""
    cols = "".join(f'<col style="width: {w}%">' for w in widths)
    colgroup = f"<colgroup>{cols}</colgroup>" if widths else ""
    head = "".join(
        f'<th scope="col"{_class("num" if numeric else "")}>{text(name)}</th>'
        for name, numeric in headers
    )
    body: list[str] = []
    for position, row in enumerate(rows):
        css = row_classes[position] if row_classes else ""
        cells = [f'<th scope="row">{text(row[0][0])}</th>']
        cells.extend(
            f"<td{_class('num' if numeric else '')}>{text(value)}</td>"
            for value, numeric in row[1:]
        )
        body.append(f"<tr{_class(css)}>{''.join(cells)}</tr>")
    return (
        f'<table id="{table_id}"{_class(css_class)}><caption>{text(caption)}</caption>{colgroup}'
        f"<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"
    )


def _facts_table(table_id: str, caption: str, facts: Sequence[tuple[str, str]]) -> str:
    """Name/value pairs, one a row (no column head: the names are the row heads)."""
    rows = "\n".join(f'<tr><th scope="row">{text(k)}</th><td>{text(v)}</td></tr>' for k, v in facts)
    return (
        f'<table id="{table_id}" class="facts"><caption>{text(caption)}</caption>'
        f"<tbody>\n{rows}\n</tbody></table>"
    )


def _section(section_id: str, title: str, *parts: str) -> str:
    return (
        f'<section id="{section_id}">\n<h2>{text(title)}</h2>\n' + "\n".join(parts) + "\n</section>"
    )


def _figure(svg: str, caption: str) -> str:
    return f"<figure>\n{svg}\n<figcaption>{text(caption)}</figcaption>\n</figure>"


# --- sections ------------------------------------------------------------------------------


def _dlq_read(report: ErasureReport) -> str:
    scan = report.scan
    if scan.dlq_unavailable is not None:
        return f"not read: {scan.dlq_unavailable}"
    if scan.dlq_topic is None:
        return "not read: no dead-letter topic given"
    return f"{_count(scan.dead_letters_read)} dead letters read"


def _summary(report: ErasureReport) -> str:
    scan = report.scan
    unreadable = _count(scan.receipts_unreadable)
    if scan.receipts_unreadable:
        unreadable += " (skipped; the command named their positions on its standard error)"
    facts = [
        ("Receipts topic", scan.receipts_topic),
        ("Requests made", _range(report)),
        ("Generated at", _utc(report.generated_at_ms)),
        ("Dead-letter topic", scan.dlq_topic if scan.dlq_topic is not None else "none given"),
        ("Receipts read", _count(scan.receipts_read)),
        ("Receipts unreadable", unreadable),
        ("Dead-letter topic read", _dlq_read(report)),
        ("Deadline", human_duration(report.deadline_ms)),
        (
            "Internal target",
            human_duration(report.target_ms) if report.target_ms is not None else "none given",
        ),
    ]
    return _section("summary", "Summary", _facts_table("summary-facts", "What was read", facts))


def _count_headers(key: str, with_target: bool) -> list[Cell]:
    headers: list[Cell] = [
        (key, False),
        ("Requests", True),
        ("Completed", True),
        ("Unverified", True),
        ("Ever dead-lettered", True),
        ("Outstanding", True),
        ("Over the deadline", True),
    ]
    if with_target:
        headers.append(("Over the target", True))
    return headers


def _count_row(key: str, counts: Counts, with_target: bool) -> list[Cell]:
    row = [
        _word(key),
        _num(counts.requests),
        _num(counts.completed),
        _num(counts.unverified),
        _num(counts.dead_lettered),
        _num(counts.outstanding),
        _num(counts.over_deadline),
    ]
    if with_target:
        row.append(_num(counts.over_target))
    return row


def _counts_table(
    table_id: str, caption: str, key: str, groups: Sequence[tuple[str, Counts]], with_target: bool
) -> str:
    return _table(
        table_id,
        caption,
        _count_headers(key, with_target),
        (_count_row(name, counts, with_target) for name, counts in groups),
    )


_TERMS = (
    ("Requests", "erasures (event ids) requested in the range; a redelivery counts once"),
    ("Completed", "the latest receipt says the deletion was done"),
    ("Unverified", "completed, but no read-back confirmed it (verification off or not covered)"),
    ("Ever dead-lettered", "sent to the dead-letter topic at least once, completed since or not"),
    ("Outstanding", "the latest receipt is a dead letter: nothing later says it was done"),
    (
        "Over the deadline",
        "completed later than the deadline after the request, or outstanding and older than it",
    ),
    ("Time to erasure", "from the request to the first receipt that says it was completed"),
)


def _totals(report: ErasureReport, with_target: bool) -> str:
    table = _table(
        "totals",
        "All erasures requested in the range",
        _count_headers("Erasures", with_target),
        [_count_row("All", report.totals, with_target)],
        css_class="totals",
    )
    terms = "\n".join(f"<dt>{text(t)}</dt><dd>{text(d)}</dd>" for t, d in _TERMS)
    return _section("totals", "Totals", table, f'<dl class="terms">\n{terms}\n</dl>')


def _groups(report: ErasureReport, with_target: bool) -> str:
    return _section(
        "requests",
        "Requests",
        _counts_table("by-day", "By day requested (UTC)", "Day", report.by_day, with_target),
        _counts_table("by-reason", "By reason", "Reason", report.by_reason, with_target),
        _counts_table("by-source", "By source", "Source", report.by_source, with_target),
    )


def _duration_cell(ms: int) -> Cell:
    return human_duration(ms), True


def _latency_table(
    table_id: str, caption: str, key: str, groups: Sequence[tuple[str, Latency]]
) -> str:
    headers: list[Cell] = [
        (key, False),
        ("Completed", True),
        ("p50", True),
        ("p99", True),
        ("Longest", True),
    ]
    rows = (
        [
            _word(name),
            _num(latency.completed),
            _duration_cell(latency.p50_ms),
            _duration_cell(latency.p99_ms),
            _duration_cell(latency.max_ms),
        ]
        for name, latency in groups
    )
    return _table(table_id, caption, headers, rows)


def _thresholds(report: ErasureReport) -> list[Threshold]:
    limits = [("deadline", report.deadline_ms), ("target", report.target_ms)]
    return [
        Threshold(name, f"{name} {human_duration(ms)}", ms) for name, ms in limits if ms is not None
    ]


def _latency_figure(report: ErasureReport) -> str:
    days: Sequence[DayLatency] = report.latency_by_day
    if not days:
        return '<p class="notice">No erasure requested in the range has completed yet.</p>'
    limits = "; ".join(t.label for t in _thresholds(report))
    label = (
        f"Time to erasure per day requested, {days[0].day} to {days[-1].day}: "
        f"p50 and p99 on a logarithmic scale; {limits}. The table below gives the figures."
    )
    marked = "the deadline and the target" if report.target_ms is not None else "the deadline"
    caption = (
        "Time to erasure by day requested: p50 (solid line, circles) and p99 (dashed line, "
        "squares), logarithmic scale so that milliseconds and days both read; dotted lines "
        f"mark {marked}. Days with no completed erasure are left blank."
    )
    return _figure(latency_chart(days, _thresholds(report), label), caption)


def _latency(report: ErasureReport) -> str:
    by_day = tuple((d.day, d.latency) for d in report.latency_by_day)
    return _section(
        "time-to-erasure",
        "Time to erasure",
        '<p class="lead">Completed erasures only: from the request to the first receipt that '
        "says it was done (a dead letter's wait included).</p>",
        _latency_figure(report),
        _latency_table("latency-by-type", "By event type", "Event type", report.latency_by_type),
        _latency_table("latency-by-reason", "By reason", "Reason", report.latency_by_reason),
        _latency_table("latency-by-day", "By day requested (UTC)", "Day", by_day),
    )


def _dead_letter(report: ErasureReport, item: Outstanding) -> str:
    if report.scan.dlq_unavailable is not None or report.scan.dlq_topic is None:
        return "dead-letter topic not read"
    spot = item.dead_letter
    if spot is None:
        return "not found on the DLQ"
    where = f"partition {spot.partition}, offset {spot.offset}"
    if spot.replay_count:
        times = "time" if spot.replay_count == 1 else "times"
        where += f" (replayed {spot.replay_count} {times} before)"
    return where


def _flags(item: Outstanding) -> str:
    flags = [
        name
        for name, on in (
            ("past the deadline", item.past_deadline),
            ("past the target", item.past_target),
        )
        if on
    ]
    return ", ".join(flags) if flags else "within"


# Each column's head and its share of the width (an event id is a 36-character UUID).
_OUTSTANDING_COLUMNS: tuple[tuple[Cell, int], ...] = (
    (("Event id", False), 20),
    (("Event type", False), 11),
    (("Reason", False), 9),
    (("Source", False), 9),
    (("Requested at", False), 11),
    (("Age", True), 8),
    (("DLQ reason", False), 12),
    (("Dead letter", False), 11),
    (("Deadline", False), 9),
)


def _outstanding_table(report: ErasureReport) -> str:
    items = report.outstanding
    rows = [
        [
            _word(item.event_id),
            _word(item.event_type),
            _word(item.reason),
            _word(item.source),
            _word(_utc(item.occurred_at_ms)),
            _duration_cell(item.age_ms),
            _word(item.dlq_reason if item.dlq_reason is not None else "none recorded"),
            _word(_dead_letter(report, item)),
            _word(_flags(item)),
        ]
        for item in items
    ]
    late = ["late" if item.past_deadline or item.past_target else "" for item in items]
    return _table(
        "outstanding-list",
        "Outstanding erasures, oldest request first",
        [head for head, _ in _OUTSTANDING_COLUMNS],
        rows,
        row_classes=late,
        css_class="fixed",
        widths=[width for _, width in _OUTSTANDING_COLUMNS],
    )


def _age_figure(buckets: Sequence[AgeBucket]) -> str:
    words = ", ".join(f"{b.label}: {b.count:,}" for b in buckets)
    svg = age_chart(buckets, f"Outstanding erasures by age. {words}.")
    return _figure(svg, f"Outstanding erasures by age since the request. {words}.")


def _outstanding(report: ErasureReport) -> str:
    count = len(report.outstanding)
    if not count:
        return _section(
            "outstanding",
            "Outstanding erasures",
            '<p class="lead">None: every erasure requested in the range has completed.</p>',
        )
    summary = (
        f"{_count(count)} outstanding (the latest receipt is a dead letter); "
        f"{_count(report.past_deadline)} past the deadline of {human_duration(report.deadline_ms)}"
    )
    if report.target_ms is not None:
        summary += (
            f"; {_count(report.past_target)} past the target of {human_duration(report.target_ms)}"
        )
    hint = (
        "Once the cause is fixed, <code>deletion-consumer replay --event-id ID</code> sends one "
        "back through the consumer."
    )
    return _section(
        "outstanding",
        "Outstanding erasures",
        f'<p class="lead">{text(summary)}. {hint}</p>',
        _age_figure(report.outstanding_by_age),
        _outstanding_table(report),
    )


# --- the page ------------------------------------------------------------------------------


def render_html(report: ErasureReport) -> str:
    """The report as a complete, self-contained HTML5 document."""
    title = f"Erasure report: {report.scan.receipts_topic}, {_range_short(report)}"
    with_target = report.target_ms is not None
    if report.totals.requests:
        body = [
            _summary(report),
            _totals(report, with_target),
            _groups(report, with_target),
            _latency(report),
            _outstanding(report),
        ]
    else:
        body = [
            '<p class="notice" id="empty">No receipts of requests made in this range: '
            "nothing to report.</p>",
            _summary(report),
        ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'\">",
            '<meta name="generator" content="deletion-consumer report">',
            f"<title>{text(title)}</title>",
            f"<style>\n{_CSS}\n</style>",
            "</head>",
            "<body>",
            "<header>",
            f"<h1>{text(title)}</h1>",
            f'<p class="lead">Erasures requested from {text(_range(report))}; generated '
            f"{text(_utc(report.generated_at_ms))}.</p>",
            "</header>",
            "<main>",
            *body,
            "</main>",
            "<footer>Made by <code>deletion-consumer report</code> from the receipts topic and "
            "the dead-letter topic. It shows no identifier value (receipts hold none); event ids "
            "are request ids.</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )
