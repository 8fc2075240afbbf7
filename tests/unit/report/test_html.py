"""The report's HTML form: its tables, figures and charts, that it loads nothing from outside, and
that anyone's text (a source, a reason, an event id) comes out as text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.dlq import printable
from consumer.core.erasure_report import (
    DAY_MS,
    AgeBucket,
    Counts,
    DayLatency,
    DeadLetterSpot,
    ErasureReport,
    Latency,
    Outstanding,
    ScanFacts,
)
from consumer.report.durations import human_duration
from consumer.report.html import render_html
from consumer.report.svg import Threshold, age_chart, latency_chart

HOUR_MS = 3_600_000
MARCH_1 = 1_740_787_200_000  # 2025-03-01T00:00:00Z
NOW = MARCH_1 + 32 * DAY_MS + 9 * HOUR_MS + 30 * 60_000  # 2025-04-02 09:30 UTC
DEADLINE = 30 * DAY_MS
TARGET = DAY_MS

COUNTS_HEADERS = [
    "Requests",
    "Completed",
    "Unverified",
    "Ever dead-lettered",
    "Outstanding",
    "Over the deadline",
    "Over the target",
]
LATENCY_HEADERS = ["Completed", "p50", "p99", "Longest"]
OUTSTANDING_HEADERS = [
    "Event id",
    "Event type",
    "Reason",
    "Source",
    "Requested at",
    "Age",
    "DLQ reason",
    "Dead letter",
    "Deadline",
]
SCRIPT = "<script>alert(1)</script>"
ANSI = "\x1b[31mred\x1b[0m"
LONG_REASON = "because " * 1200  # nearly 10 kB
UNBROKEN = "x" * 3000  # a word no line break can fit


def _counts(requests: int, outstanding: int = 0, late: int = 0) -> Counts:
    completed = requests - outstanding
    return Counts(
        requests=requests,
        completed=completed,
        unverified=completed // 10,
        dead_lettered=outstanding + 1 if requests > 3 else outstanding,
        outstanding=outstanding,
        over_deadline=late,
        over_target=late + outstanding,
    )


def _day(index: int) -> str:
    return f"2025-03-{index + 1:02d}"


def _outstanding(
    event_id: str, day: int, hour: int, spot: DeadLetterSpot | None, source: str = "web-app"
) -> Outstanding:
    occurred = MARCH_1 + day * DAY_MS + hour * HOUR_MS
    age = NOW - occurred
    return Outstanding(
        event_id=event_id,
        event_type="user_deleted",
        reason="GDPR",
        source=source,
        occurred_at_ms=occurred,
        dead_lettered_at_ms=occurred + 40 * 60_000,
        age_ms=age,
        dlq_reason="retries_exhausted",
        dead_letter=spot,
        past_deadline=age > DEADLINE,
        past_target=age > TARGET,
    )


OUTSTANDING = (
    _outstanding(
        "0b5c1f0e-1111-4c3a-9d59-0f1c6e4b2a01",
        0,
        10,
        DeadLetterSpot(2, 41, "retries_exhausted", "2025-03-01T10:40:00.000Z", 0),
    ),
    _outstanding("5e2a77c1-2222-4b7e-8f0d-3a9b8c7d6e02", 6, 3, None, source="support-desk"),
    _outstanding(
        "9f1d3b2a-3333-4d5c-a6e7-b8c9d0e1f203",
        11,
        15,
        DeadLetterSpot(0, 7, "rejected", "2025-03-12T15:40:00.000Z", 1),
    ),
)

# 2025-03-09 had no request at all; on 2025-03-12 none completed (its only one is outstanding).
REQUEST_DAYS = [d for d in range(14) if d != 8]
LATENCY_DAYS = [d for d in REQUEST_DAYS if d != 11]


def _latency(day: int) -> Latency:
    # From seconds (p50) to hours (p99); day 6 had one stuck a day and a half on the DLQ.
    p50 = 1_200 + 350 * day
    p99 = 36 * HOUR_MS if day == 6 else 40_000 + 90_000 * day
    return Latency(completed=20 + day, p50_ms=p50, p99_ms=p99, max_ms=p99 + 5_000)


def realistic_report(**changes: object) -> ErasureReport:
    """Two weeks of erasures from three sources for four reasons, three still outstanding."""
    by_day = tuple(
        (_day(d), _counts(20 + d, outstanding={0: 1, 6: 1, 11: 1}.get(d, 0))) for d in REQUEST_DAYS
    )
    report = ErasureReport(
        generated_at_ms=NOW,
        since_ms=MARCH_1,
        until_ms=MARCH_1 + 14 * DAY_MS,
        deadline_ms=DEADLINE,
        target_ms=TARGET,
        scan=ScanFacts(
            receipts_topic="memory.deletion.receipts",
            dlq_topic="memory.deletions.dlq",
            receipts_read=1_412,
            receipts_unreadable=2,
            dead_letters_read=17,
            dlq_unavailable=None,
        ),
        totals=_counts(sum(c.requests for _, c in by_day), outstanding=3, late=1),
        by_day=by_day,
        by_reason=(
            ("GDPR", _counts(180, outstanding=2, late=1)),
            ("USER_REQUEST", _counts(92, outstanding=1)),
            ("RETENTION", _counts(40)),
            ("CCPA", _counts(11)),
        ),
        by_source=(
            ("web-app", _counts(201, outstanding=2, late=1)),
            ("support-desk", _counts(90, outstanding=1)),
            ("nightly-retention", _counts(32)),
        ),
        latency_by_type=(
            ("memories_deleted", Latency(40, 850, 9_400, 12_000)),
            (
                "user_deleted",
                Latency(271, 3_200, 4 * HOUR_MS + 10 * 60_000, 2 * DAY_MS + 3 * HOUR_MS),
            ),
        ),
        latency_by_reason=(
            ("CCPA", Latency(11, 2_900, 42_000, 45_500)),
            ("GDPR", Latency(178, 3_250, 5 * 60_000, 2 * DAY_MS + 3 * HOUR_MS)),
        ),
        latency_by_day=tuple(DayLatency(_day(d), _latency(d)) for d in LATENCY_DAYS),
        outstanding=OUTSTANDING,
        outstanding_by_age=(
            AgeBucket("under 1 hour", HOUR_MS, 0),
            AgeBucket("1-24 hours", DAY_MS, 0),
            AgeBucket("1-7 days", 7 * DAY_MS, 0),
            AgeBucket("7-30 days", 30 * DAY_MS, 2),
            AgeBucket("over 30 days", None, 1),
        ),
        past_deadline=1,
        past_target=3,
    )
    return replace(report, **changes)  # type: ignore[arg-type]


def empty_report() -> ErasureReport:
    return ErasureReport(
        generated_at_ms=NOW,
        since_ms=MARCH_1,
        until_ms=MARCH_1 + 14 * DAY_MS,
        deadline_ms=DEADLINE,
        target_ms=None,
        scan=ScanFacts("memory.deletion.receipts", None, 0, 0, 0, None),
        totals=Counts(),
        by_day=(),
        by_reason=(),
        by_source=(),
        latency_by_type=(),
        latency_by_reason=(),
        latency_by_day=(),
        outstanding=(),
        outstanding_by_age=tuple(
            AgeBucket(label, bound, 0)
            for label, bound in (
                ("under 1 day", DAY_MS),
                ("1-30 days", 30 * DAY_MS),
                ("older", None),
            )
        ),
        past_deadline=0,
        past_target=0,
    )


def hostile_report() -> ErasureReport:
    """Anyone's text where anyone can put it: a script as a source, an ANSI escape as a reason,
    a reason of ten kilobytes, quotes and markup in an event id and in the DLQ's error."""
    report = realistic_report()
    item = replace(
        OUTSTANDING[0],
        event_id="\"'><img src=x onerror=alert(2)>",
        source=SCRIPT,
        reason=ANSI,
        dlq_reason="</td></tr></table><iframe src='https://evil.example/'>",
    )
    return replace(
        report,
        scan=replace(report.scan, dlq_unavailable=None),
        by_source=((SCRIPT, _counts(3)), (UNBROKEN, _counts(1)), *report.by_source),
        by_reason=((ANSI, _counts(2)), (LONG_REASON, _counts(1)), *report.by_reason),
        latency_by_type=(("<b>bold</b> & co", Latency(1, 5, 5, 5)),),
        outstanding=(item, *OUTSTANDING[1:]),
    )


# --- reading the page back -----------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}


@dataclass
class Table:
    caption: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    row_classes: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """The page's tables (by id), every start tag, the CSS, and whether tags balance."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, Table] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.css = ""
        self.text: list[str] = []
        self.unbalanced: list[str] = []
        self._open: list[str] = []
        self._table: Table | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self._in_caption = False
        self._in_style = False
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.tags.append((tag, named))
        if tag not in VOID:
            self._open.append(tag)
        if tag == "table":
            self._table = Table()
            self.tables[named.get("id") or f"table-{len(self.tables)}"] = self._table
        elif tag == "thead":
            self._in_head = True
        elif tag == "caption":
            self._in_caption = True
        elif tag == "style":
            self._in_style = True
        elif tag == "tr" and self._table is not None and not self._in_head:
            self._table.rows.append([])
            self._table.row_classes.append(named.get("class") or "")
        elif tag in {"td", "th"}:
            self._cell = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open[-1] != tag:
            self.unbalanced.append(tag)
        else:
            self._open.pop()
        if tag == "table":
            self._table = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "caption":
            self._in_caption = False
        elif tag == "style":
            self._in_style = False
        elif tag in {"td", "th"} and self._cell is not None and self._table is not None:
            value = "".join(self._cell)
            if self._in_head:
                self._table.headers.append(value)
            else:
                self._table.rows[-1].append(value)
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_style:
            self.css += data
        elif self._in_caption and self._table is not None:
            self._table.caption += data
        elif self._cell is not None:
            self._cell.append(data)

    def row(self, table_id: str, key: str) -> list[str]:
        matches = [row for row in self.tables[table_id].rows if row[0] == key]
        assert len(matches) == 1, (table_id, key, matches)
        return matches[0]


def svgs(document: str) -> list[ET.Element]:
    found = re.findall(r"<svg\b.*?</svg>", document, flags=re.DOTALL)
    return [ET.fromstring(chunk) for chunk in found]


@pytest.fixture(scope="module")
def page_text() -> str:
    return render_html(realistic_report())


@pytest.fixture(scope="module")
def page(page_text: str) -> Page:
    return Page(page_text)


# --- the document --------------------------------------------------------------------------


def test_the_page_is_a_complete_html5_document(page_text: str, page: Page) -> None:
    assert page_text.startswith("<!DOCTYPE html>\n")
    assert ("meta", {"charset": "utf-8"}) in page.tags
    assert [t for t, _ in page.tags][:2] == ["html", "head"]
    assert page.unbalanced == []
    title = re.search(r"<title>(.*?)</title>", page_text)
    assert title is not None
    assert title.group(1) == "Erasure report: memory.deletion.receipts, 2025-03-01 to 2025-03-15"


def test_the_summary_says_what_was_read(page: Page) -> None:
    facts = {row[0]: row[1] for row in page.tables["summary-facts"].rows}
    assert facts["Receipts topic"] == "memory.deletion.receipts"
    assert facts["Requests made"] == (
        "2025-03-01 00:00:00 UTC to 2025-03-15 00:00:00 UTC (end excluded)"
    )
    assert facts["Generated at"] == "2025-04-02 09:30:00 UTC"
    assert facts["Receipts read"] == "1,412"
    assert facts["Receipts unreadable"].startswith("2 (skipped")
    assert facts["Dead-letter topic"] == "memory.deletions.dlq"
    assert facts["Dead-letter topic read"] == "17 dead letters read"
    assert facts["Deadline"] == "30 d"
    assert facts["Internal target"] == "1 d"


def test_the_tables_have_their_heads_and_a_row_per_group(page: Page) -> None:
    report = realistic_report()
    expected = {
        "totals": (["Erasures", *COUNTS_HEADERS], 1),
        "by-day": (["Day", *COUNTS_HEADERS], len(report.by_day)),
        "by-reason": (["Reason", *COUNTS_HEADERS], 4),
        "by-source": (["Source", *COUNTS_HEADERS], 3),
        "latency-by-type": (["Event type", *LATENCY_HEADERS], 2),
        "latency-by-reason": (["Reason", *LATENCY_HEADERS], 2),
        "latency-by-day": (["Day", *LATENCY_HEADERS], len(LATENCY_DAYS)),
        "outstanding-list": (OUTSTANDING_HEADERS, 3),
    }
    for table_id, (headers, rows) in expected.items():
        table = page.tables[table_id]
        assert table.headers == headers, table_id
        assert len(table.rows) == rows, table_id
        assert all(len(row) == len(headers) for row in table.rows), table_id
        assert table.caption, table_id


def test_the_counts_are_in_their_cells(page: Page) -> None:
    gdpr = _counts(180, outstanding=2, late=1)
    assert page.row("by-reason", "GDPR")[1:] == [
        f"{v:,}"
        for v in (
            gdpr.requests,
            gdpr.completed,
            gdpr.unverified,
            gdpr.dead_lettered,
            gdpr.outstanding,
            gdpr.over_deadline,
            gdpr.over_target,
        )
    ]
    assert [row[0] for row in page.tables["by-source"].rows] == [
        "web-app",
        "support-desk",
        "nightly-retention",
    ]
    assert "2025-03-09" not in [row[0] for row in page.tables["by-day"].rows]
    assert page.row("totals", "All")[1] == f"{realistic_report().totals.requests:,}"


def test_durations_read_as_a_person_would_write_them(page: Page) -> None:
    assert page.row("latency-by-type", "user_deleted")[1:] == [
        "271",
        "3.2 s",
        "4 h 10 min",
        "2 d 3 h",
    ]
    assert page.row("latency-by-type", "memories_deleted")[1:] == ["40", "850 ms", "9.4 s", "12 s"]
    assert page.row("latency-by-reason", "GDPR")[2:4] == ["3.2 s", "5 min"]
    assert page.row("latency-by-day", "2025-03-07")[3] == "1 d 12 h"


def test_the_outstanding_list_is_oldest_first_and_says_where_each_dead_letter_is(
    page: Page,
) -> None:
    table = page.tables["outstanding-list"]
    assert [row[0] for row in table.rows] == [item.event_id for item in OUTSTANDING]
    first, second, third = table.rows
    assert first[4] == "2025-03-01 10:00:00 UTC"
    assert first[5] == "31 d 23 h"
    assert first[6] == "retries_exhausted"
    assert first[7] == "partition 2, offset 41"
    assert first[8] == "past the deadline, past the target"
    assert second[7] == "not found on the DLQ"
    assert second[8] == "past the target"
    assert third[7] == "partition 0, offset 7 (replayed 1 time before)"
    # Late rows are marked for the eye too, but the flag above is the words, not the mark.
    assert table.row_classes == ["late", "late", "late"]


def test_an_outstanding_erasure_within_both_limits_says_so() -> None:
    young = replace(OUTSTANDING[0], past_deadline=False, past_target=False)
    page = Page(render_html(realistic_report(outstanding=(young,))))
    assert page.tables["outstanding-list"].rows[0][8] == "within"
    assert page.tables["outstanding-list"].row_classes == [""]


def test_without_a_target_the_page_has_no_target_column_and_says_none_was_given() -> None:
    page = Page(render_html(realistic_report(target_ms=None, past_target=0)))
    assert "Over the target" not in page.tables["by-day"].headers
    assert len(page.tables["by-day"].headers) == 1 + len(COUNTS_HEADERS) - 1
    facts = {row[0]: row[1] for row in page.tables["summary-facts"].rows}
    assert facts["Internal target"] == "none given"


def test_a_dlq_that_was_not_read_is_named_with_why_not_in_the_summary_and_the_list() -> None:
    scan = replace(realistic_report().scan, dlq_unavailable="topic memory.deletions.dlq not found")
    page = Page(render_html(realistic_report(scan=scan)))
    facts = {row[0]: row[1] for row in page.tables["summary-facts"].rows}
    assert facts["Dead-letter topic read"] == "not read: topic memory.deletions.dlq not found"
    # "not found on the DLQ" would claim a look that never happened.
    assert {row[7] for row in page.tables["outstanding-list"].rows} == {
        "dead-letter topic not read"
    }


def test_no_outstanding_erasure_says_so_and_draws_no_age_chart() -> None:
    page_text = render_html(realistic_report(outstanding=(), past_deadline=0, past_target=0))
    assert "outstanding-list" not in Page(page_text).tables
    assert "None: every erasure requested in the range has completed." in page_text
    assert len(svgs(page_text)) == 1


def test_an_empty_report_renders_a_page_that_says_so() -> None:
    page_text = render_html(empty_report())
    page = Page(page_text)
    assert page.unbalanced == []
    assert "No receipts of requests made in this range: nothing to report." in page_text
    assert set(page.tables) == {"summary-facts"}
    facts = {row[0]: row[1] for row in page.tables["summary-facts"].rows}
    assert facts["Receipts read"] == "0"
    assert facts["Dead-letter topic read"] == "not read: no dead-letter topic given"
    assert svgs(page_text) == []


def test_a_report_with_requests_but_none_completed_has_no_latency_chart() -> None:
    page_text = render_html(realistic_report(latency_by_day=(), latency_by_type=()))
    assert "No erasure requested in the range has completed yet." in page_text
    assert [s.find("title").text for s in svgs(page_text)] == ["Outstanding erasures by age"]  # type: ignore[union-attr]


# --- nothing from outside ------------------------------------------------------------------


@pytest.mark.parametrize("build", [realistic_report, empty_report, hostile_report])
def test_the_page_loads_nothing_from_outside(build: object) -> None:
    page_text = render_html(build())  # type: ignore[operator]
    page = Page(page_text)
    forbidden_tags = {"script", "link", "iframe", "img", "object", "embed", "base", "frame"}
    assert {tag for tag, _ in page.tags} & forbidden_tags == set()
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert name not in {"src", "href", "xlink:href", "srcset", "action", "data"}, tag
            assert not name.startswith("on"), (tag, name)
            lowered = (value or "").lower()
            for marker in ("http:", "https:", "//", "javascript:"):
                assert marker not in lowered, (tag, name, value)
    css = page.css.lower()
    assert css.strip()
    for marker in ("@import", "url(", "http", "//", "@font-face"):
        assert marker not in css
    assert "@media print" in css
    assert "thead { display: table-header-group; }" in css
    policy = [a["content"] for t, a in page.tags if t == "meta" and "http-equiv" in a]
    assert policy == ["default-src 'none'; style-src 'unsafe-inline'"]


def test_our_own_page_names_no_address_at_all(page_text: str) -> None:
    lowered = page_text.lower()
    assert "http:" not in lowered
    assert "https:" not in lowered


# --- anyone's text -------------------------------------------------------------------------


def test_hostile_strings_come_out_as_text() -> None:
    page_text = render_html(hostile_report())
    page = Page(page_text)
    assert page.unbalanced == []
    assert "<script" not in page_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_text
    assert page.tables["by-source"].rows[0][0] == SCRIPT
    assert "\x1b" not in page_text
    assert page.tables["by-reason"].rows[0][0] == printable(ANSI) == "\\x1b[31mred\\x1b[0m"
    assert page.tables["by-reason"].rows[1][0] == LONG_REASON  # whole, wrapped by the CSS
    assert "overflow-wrap: anywhere" in page.css
    assert page.tables["latency-by-type"].rows[0][0] == "<b>bold</b> & co"
    row = page.tables["outstanding-list"].rows[0]
    assert row[0] == "\"'><img src=x onerror=alert(2)>"
    assert row[3] == SCRIPT
    assert row[6] == "</td></tr></table><iframe src='https://evil.example/'>"
    assert len(row) == len(OUTSTANDING_HEADERS)


def test_a_hostile_reason_of_the_dlq_and_a_hostile_bucket_label_stay_text() -> None:
    scan = replace(realistic_report().scan, dlq_unavailable="<b onmouseover=x>\x07no</b>")
    buckets = (AgeBucket('"><script>x</script>', None, 3),)
    page_text = render_html(realistic_report(scan=scan, outstanding_by_age=buckets))
    page = Page(page_text)
    facts = {row[0]: row[1] for row in page.tables["summary-facts"].rows}
    assert facts["Dead-letter topic read"] == "not read: <b onmouseover=x>\\x07no</b>"
    assert "<script" not in page_text
    assert "b" not in {tag for tag, _ in page.tags}
    for svg in svgs(page_text):  # still well-formed: the label did not close an attribute
        assert svg.tag == "svg"


def test_a_request_time_no_calendar_holds_is_written_as_its_number() -> None:
    far = replace(OUTSTANDING[0], occurred_at_ms=2**62)
    page = Page(render_html(realistic_report(outstanding=(far,))))
    assert page.tables["outstanding-list"].rows[0][4] == (
        f"{2**62} ms after 1970-01-01 UTC (out of range)"
    )


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_any_source_comes_back_as_the_same_text_and_adds_no_element(source: str) -> None:
    report = realistic_report(by_source=((source, _counts(1)),), outstanding=())
    page = Page(render_html(report))
    assert page.tables["by-source"].rows[0][0] == printable(source)
    baseline = Page(render_html(replace(report, by_source=(("web", _counts(1)),))))
    assert [t for t, _ in page.tags] == [t for t, _ in baseline.tags]


# --- the charts ----------------------------------------------------------------------------


def test_the_charts_are_well_formed_svg_with_a_title_and_a_label(page_text: str) -> None:
    charts = svgs(page_text)
    assert len(charts) == 2
    titles = []
    for svg in charts:
        assert svg.get("role") == "img"
        assert (svg.get("aria-label") or "").strip()
        title = svg.find("title")
        assert title is not None
        titles.append(title.text)
        tags = {element.tag for element in svg.iter()}
        assert tags <= {"svg", "title", "line", "polyline", "circle", "rect", "text"}
    assert titles == ["Time to erasure by day requested", "Outstanding erasures by age"]


def _texts(svg: ET.Element) -> list[str]:
    return [element.text or "" for element in svg.iter("text")]


def test_the_latency_chart_has_labelled_axes_and_the_deadline_and_target_lines(
    page_text: str,
) -> None:
    chart = svgs(page_text)[0]
    labels = _texts(chart)
    assert "day requested (UTC)" in labels
    assert "time to erasure (log scale)" in labels
    assert "deadline 30 d" in labels
    assert "target 1 d" in labels
    # The log axis spans the data (1.2 s to 36 h) and the deadline, at round units.
    assert {"1 s", "1 min", "1 h", "1 d", "30 d"} <= set(labels)
    assert "100 ms" not in labels
    assert "365 d" not in labels
    assert "2025-03-01" in labels
    # One marker per day and percentile; the line breaks at the days with nothing completed.
    assert len(chart.findall("circle")) == len(LATENCY_DAYS) + 1  # + the legend's
    assert len(chart.findall("polyline")) == 2 * 3  # runs: 1-8, 10-11, 13-14


def test_the_age_chart_has_a_bar_and_a_count_per_bucket(page_text: str) -> None:
    chart = svgs(page_text)[1]
    labels = _texts(chart)
    for bucket in realistic_report().outstanding_by_age:
        assert bucket.label in labels
    assert labels.count("2") >= 1
    assert len(chart.findall("rect")) == 2  # the two buckets with a count
    assert "7-30 days: 2" in (chart.get("aria-label") or "")


def test_many_days_get_thinned_labels() -> None:
    days = [
        DayLatency((JAN_1 + timedelta(days=d)).isoformat(), Latency(5, 1000 + d, 9000 + d, 9999))
        for d in range(183)
    ]
    chart = ET.fromstring(
        latency_chart(days, [Threshold("deadline", "deadline 30 d", DEADLINE)], "six months")
    )
    day_labels = [t for t in _texts(chart) if re.fullmatch(r"\d{4}-\d\d-\d\d", t)]
    assert 4 <= len(day_labels) <= 10
    assert day_labels[0] == "2025-01-01"


def test_a_single_day_draws_points_and_no_line() -> None:
    chart = ET.fromstring(latency_chart([DayLatency("2025-03-01", Latency(1, 0, 0, 0))], [], "x"))
    assert chart.findall("polyline") == []
    assert len(chart.findall("circle")) == 2  # the day's and the legend's


def test_the_charts_are_the_same_bytes_every_time() -> None:
    assert render_html(realistic_report()) == render_html(realistic_report())


def _coordinates(svg: ET.Element) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    for element in svg.iter():
        for name in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy"):
            if name in element.attrib:
                found.append((name, float(element.attrib[name])))
        for pair in element.attrib.get("points", "").split():
            x, y = pair.split(",")
            found += [("x", float(x)), ("y", float(y))]
    return found


JAN_1 = date(2025, 1, 1)
LATENCIES = st.integers(min_value=0, max_value=400 * DAY_MS)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), LATENCIES, LATENCIES), min_size=1, max_size=40),
    st.lists(LATENCIES, max_size=2),
)
def test_every_point_of_the_latency_chart_lies_inside_it(
    points: list[tuple[int, int, int]], limits: list[int]
) -> None:
    by_day = {offset: (min(a, b), max(a, b)) for offset, a, b in points}
    days = [
        DayLatency((JAN_1 + timedelta(days=offset)).isoformat(), Latency(1, p50, p99, p99))
        for offset, (p50, p99) in sorted(by_day.items())
    ]
    svg = ET.fromstring(latency_chart(days, [Threshold("t", "t", ms) for ms in limits], "chart"))
    width, height = (float(v) for v in (svg.get("viewBox") or "").split()[2:])
    for name, value in _coordinates(svg):
        bound = height if "y" in name else width
        assert 0 <= value <= bound, (name, value)
    # The p99 point of a day is never drawn below its p50 point (y grows downwards).
    circles = [float(c.get("cy") or 0) for c in svg.findall("circle")][1:]
    squares = [
        float(r.get("y") or 0) + float(r.get("height") or 0) / 2 for r in svg.findall("rect")
    ][1:]
    assert all(p99 <= p50 + 0.11 for p50, p99 in zip(circles, squares, strict=True))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_every_bar_of_the_age_chart_lies_inside_it_and_shows_its_count(counts: list[int]) -> None:
    buckets = [AgeBucket(f"bucket {i}", None, c) for i, c in enumerate(counts)]
    svg = ET.fromstring(age_chart(buckets, "ages"))
    height = float((svg.get("viewBox") or "").split()[3])
    for name, value in _coordinates(svg):
        assert value >= 0, name
        if name.startswith("y"):
            assert value <= height
    labels = _texts(svg)
    for count in counts:
        assert f"{count:,}" in labels
    assert len(svg.findall("rect")) == sum(1 for c in counts if c)


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "words"),
    [
        (0, "0 ms"),
        (850, "850 ms"),
        (999, "999 ms"),
        (1_000, "1.0 s"),
        (3_250, "3.2 s"),
        (9_999, "9.9 s"),
        (10_000, "10 s"),
        (59_999, "59 s"),
        (60_000, "1 min"),
        (250_000, "4 min 10 s"),
        (3_599_999, "59 min 59 s"),
        (4 * HOUR_MS + 10 * 60_000, "4 h 10 min"),
        (5 * HOUR_MS, "5 h"),
        (DAY_MS - 1, "23 h 59 min"),
        (2 * DAY_MS + 3 * HOUR_MS, "2 d 3 h"),
        (400 * DAY_MS, "400 d"),
        (-1_500, "-1.5 s"),
    ],
)
def test_human_duration(ms: int, words: str) -> None:
    assert human_duration(ms) == words


_UNITS = {"ms": 1, "s": 1_000, "min": 60_000, "h": HOUR_MS, "d": DAY_MS}


def _read_back(words: str) -> tuple[int, int]:
    """What `words` says, and the resolution of its last part (the value is at most that more)."""
    parts = words.split()
    total = 0
    resolution = 1
    for amount, unit in zip(parts[::2], parts[1::2], strict=True):
        if "." in amount:
            whole, tenth = amount.split(".")
            total += int(whole) * _UNITS[unit] + int(tenth) * _UNITS[unit] // 10
            resolution = _UNITS[unit] // 10
        else:
            total += int(amount) * _UNITS[unit]
            resolution = _UNITS[unit]
    return total, resolution


@given(st.integers(min_value=0, max_value=10_000 * DAY_MS))
def test_human_duration_rounds_down_to_its_last_part(ms: int) -> None:
    words = human_duration(ms)
    assert re.fullmatch(r"\d+(\.\d)? (ms|s|min|h|d)( \d+ (s|min|h))?", words), words
    shown, resolution = _read_back(words)
    assert shown <= ms < shown + resolution


@given(st.integers(0, 100 * DAY_MS), st.integers(0, 100 * DAY_MS))
def test_human_duration_keeps_the_order(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert _read_back(human_duration(low))[0] <= _read_back(human_duration(high))[0]
