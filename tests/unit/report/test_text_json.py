"""The report's forms and options: the text form escapes what comes from a topic and keeps to
100 columns; the JSON form has the documented keys, times twice; bad options exit 2 before
anything connects; the progress line waits and then keeps its pace."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.__main__ import main
from consumer.commands.command_line import Console
from consumer.core.erasure_report import (
    DAY_MS,
    DeadLetterSpot,
    ErasureReport,
    ReceiptSeen,
    ScanFacts,
)
from consumer.core.erasure_tally import tally
from consumer.core.receipts import COMPLETED, DEAD_LETTERED
from consumer.report import json_form
from consumer.report.cli import add_report_arguments, run_report
from consumer.report.json_form import report_json
from consumer.report.options import parse_duration, report_options
from consumer.report.scan import ScanProgress
from consumer.report.text import WIDTH, exact_duration, render_text
from consumer.settings import Settings

HOUR = 3_600_000
NOW = 1_741_000_000_000  # 2025-03-03T11:06:40Z
HOSTILE_SOURCE = "app\x1b[2J\nFAKE LINE"
HOSTILE_REASON = "GDPR\r\x1b]0;title\x07"
HOSTILE_ID = "evil-\x1b[31m-id\n"


def receipt(
    event_id: str,
    outcome: str,
    *,
    requested: int,
    at: int,
    source: str = "billing-service",
    reason: str = "GDPR",
    input_offset: int = 0,
    offset: int = 0,
    verified: bool = True,
) -> ReceiptSeen:
    return ReceiptSeen(
        event_id,
        outcome,
        "user_deleted",
        reason,
        source,
        requested,
        at,
        verified and outcome == COMPLETED,
        "verification_failed" if outcome == DEAD_LETTERED else None,
        "memory.deletions",
        0,
        input_offset,
        0,
        offset,
    )


def sample(*, target: int | None = HOUR) -> ErasureReport:
    ids = [str(uuid.UUID(int=n)) for n in range(4)]
    receipts = [
        receipt(ids[0], COMPLETED, requested=NOW - 40 * DAY_MS, at=NOW - 39 * DAY_MS),
        receipt(
            ids[1],
            DEAD_LETTERED,
            requested=NOW - 35 * DAY_MS,
            at=NOW - 35 * DAY_MS + 100,
            source=HOSTILE_SOURCE,
            reason=HOSTILE_REASON,
            input_offset=7,
            offset=1,
        ),
        receipt(HOSTILE_ID, DEAD_LETTERED, requested=NOW - 2 * HOUR, at=NOW - HOUR, offset=2),
        receipt(
            ids[3],
            COMPLETED,
            requested=NOW - 3 * HOUR,
            at=NOW - 2 * HOUR,
            source="s" * 300,
            verified=False,
            offset=3,
        ),
    ]
    dead_letters = {
        ("memory.deletions", 0, 7): DeadLetterSpot(2, 42, HOSTILE_REASON, "2025-01-27Z", 1)
    }
    scan = ScanFacts("memory.deletions.receipts", "memory.deletions.dlq", 4, 1, 3, None)
    return tally(
        receipts,
        dead_letters,
        now_ms=NOW,
        since_ms=NOW - 60 * DAY_MS,
        until_ms=None,
        deadline_ms=30 * DAY_MS,
        target_ms=target,
        scan=scan,
    )


# -- text ---------------------------------------------------------------------------------------


def test_the_text_form_escapes_what_comes_from_the_topic() -> None:
    text = render_text(sample())
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "FAKE LINE" not in text.split("\n")[0] and not any(
        line.startswith("FAKE LINE") for line in text.splitlines()
    )
    assert "app\\x1b[2J\\n" in text  # shown, escaped, on the line it belongs to
    assert "GDPR\\r\\x1b]0;title\\x07" in text
    assert "evil-\\x1b[31m-id\\n" in text


def test_the_text_form_keeps_to_100_columns_and_lists_what_is_outstanding() -> None:
    report = sample()
    text = render_text(report)
    assert all(len(line) <= WIDTH for line in text.splitlines()), max(text.splitlines(), key=len)
    assert "s" * 300 not in text and "…" in text  # a long source is cut in the tables
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Outstanding erasures")))
    assert (
        lines[start]
        == "Outstanding erasures: 2 (latest receipt DEAD_LETTERED; oldest request first)"
    )
    rows = [line for line in lines[start:] if line.startswith("  35 d") or "evil" in line]
    oldest, newest = rows[0], rows[1]
    assert str(uuid.UUID(int=1)) in oldest and "2:42" in oldest and "deadline+target" in oldest
    assert "verification_failed" in oldest
    assert newest.startswith("  2 h ") and "not found" in newest and newest.endswith("target")
    assert "Totals" in lines and "By day (UTC, of the request)" in lines
    assert "  time to erasure: p50 1 h, p99 1 d, max 1 d (2 completed)" in lines
    assert "  flagged        deadline 30d, target 1h" in lines
    assert any(line.split() == ["over", "30", "days", "1"] for line in lines)


def test_without_a_target_the_text_form_has_no_target_column() -> None:
    text = render_text(sample(target=None))
    assert ">target" not in text and "past the target" not in text
    assert ">deadline" in text


def test_durations_as_written() -> None:
    assert [exact_duration(ms) for ms in (30 * DAY_MS, 36 * HOUR, 90_000, 1500, 0)] == [
        "30d",
        "1d12h",
        "1m30s",
        "1s500ms",
        "0ms",
    ]


# -- JSON ---------------------------------------------------------------------------------------

COUNTS = {
    "requests",
    "completed",
    "unverified",
    "dead_lettered",
    "outstanding",
    "over_deadline",
    "over_target",
}
LATENCY = {"completed", "p50_ms", "p99_ms", "max_ms"}
TOP = {
    "format",
    "generated_at_ms",
    "generated_at",
    "since_ms",
    "since",
    "until_ms",
    "until",
    "deadline_ms",
    "target_ms",
    "scan",
    "totals",
    "by_day",
    "by_reason",
    "by_source",
    "time_to_erasure",
    "outstanding",
    "outstanding_by_age",
    "past_deadline",
    "past_target",
}
OUTSTANDING = {
    "event_id",
    "event_type",
    "reason",
    "source",
    "occurred_at_ms",
    "occurred_at",
    "dead_lettered_at_ms",
    "dead_lettered_at",
    "age_ms",
    "dlq_reason",
    "dead_letter",
    "past_deadline",
    "past_target",
}


def test_the_json_keys_are_the_documented_ones() -> None:
    data: dict[str, Any] = json.loads(json.dumps(report_json(sample())))
    assert set(data) == TOP and data["format"] == 1
    assert set(data["scan"]) == {
        "receipts_topic",
        "dlq_topic",
        "receipts_read",
        "receipts_unreadable",
        "dead_letters_read",
        "dlq_unavailable",
    }
    assert set(data["totals"]) == COUNTS
    assert all(set(row) == COUNTS | {"day"} for row in data["by_day"])
    assert all(set(row) == COUNTS | {"reason"} for row in data["by_reason"])
    assert all(set(row) == COUNTS | {"source"} for row in data["by_source"])
    latency = data["time_to_erasure"]
    assert set(latency) == {"all", "by_event_type", "by_reason", "by_day"}
    assert set(latency["all"]) == LATENCY
    assert all(set(row) == LATENCY | {"event_type"} for row in latency["by_event_type"])
    assert all(set(row) == LATENCY | {"reason"} for row in latency["by_reason"])
    assert all(set(row) == LATENCY | {"day"} for row in latency["by_day"])
    assert all(set(row) == OUTSTANDING for row in data["outstanding"])
    spots = [row["dead_letter"] for row in data["outstanding"]]
    assert spots[1] is None and set(spots[0]) == {
        "partition",
        "offset",
        "reason",
        "failed_at",
        "replay_count",
    }
    assert all(set(row) == {"label", "up_to_ms", "count"} for row in data["outstanding_by_age"])
    # Every key is in the module's docstring, where automation looks them up.
    doc = json_form.__doc__ or ""
    nested = set().union(COUNTS, LATENCY, OUTSTANDING, data["scan"], spots[0], latency)
    for key in TOP | nested | {"label", "up_to_ms", "count", "day", "event_type"}:
        assert key in doc, key


def test_json_times_are_given_in_ms_and_rfc_3339() -> None:
    data = report_json(sample())
    assert (data["generated_at_ms"], data["generated_at"]) == (NOW, "2025-03-03T11:06:40.000Z")
    assert data["since_ms"] == NOW - 60 * DAY_MS and data["since"].endswith("Z")
    first = data["outstanding"][0]
    assert first["occurred_at"] == "2025-01-27T11:06:40.000Z"
    assert first["source"] == HOSTILE_SOURCE  # as read: JSON escapes it, a terminal never sees it
    assert "\x1b" not in json.dumps(data)
    far = tally(
        [receipt("x", DEAD_LETTERED, requested=-(2**62), at=0)],
        {},
        now_ms=NOW,
        since_ms=None,
        until_ms=None,
        deadline_ms=DAY_MS,
        target_ms=None,
        scan=ScanFacts("r", None, 1, 0, 0, "DLQ_TOPIC is empty"),
    )
    row = report_json(far)["outstanding"][0]
    assert (row["occurred_at_ms"], row["occurred_at"]) == (-(2**62), None)
    assert report_json(far)["by_day"][0]["day"] == "out of range"
    assert "out of range" in render_text(far)


# -- options ------------------------------------------------------------------------------------

NOW_DT = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    return parser.parse_args(list(argv))


def test_options_take_dates_times_and_durations() -> None:
    options = report_options(parse("--since", "2025-03-01", "--until", "24h"), NOW_DT)
    assert options.since_ms == int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1000)
    assert options.until_ms == int(datetime(2025, 3, 2, 12, tzinfo=UTC).timestamp() * 1000)
    assert options.deadline_ms == 30 * DAY_MS and options.target_ms is None
    options = report_options(
        parse("--since", "2025-03-01T10:00:00+02:00", "--target", "1d12h", "--json"), NOW_DT
    )
    assert options.since_ms == int(datetime(2025, 3, 1, 8, tzinfo=UTC).timestamp() * 1000)
    assert options.target_ms == 36 * HOUR and options.as_json
    assert options.until_ms == options.now_ms == int(NOW_DT.timestamp() * 1000)
    assert parse_duration(" 90m ") == 90 * 60_000


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--since", "yesterday"], "--since: 'yesterday' is neither"),
        (["--until", "2025-13-01"], "--until:"),
        (["--since", "99999999d"], "--since: '99999999d' is out of range"),
        (["--since", "1h", "--until", "2h"], "--since must be before --until"),
        (["--deadline", "0d"], "--deadline: '0d': a duration must be more than zero"),
        (["--deadline", "30"], "--deadline: '30' is not a duration"),
        (["--target=-1h"], "--target: '-1h' is not a duration"),
        (["--target", "1e9h"], "--target:"),
        (["--html", "/no/such/folder/report.html"], "--html: no folder '/no/such/folder'"),
        (["--html", "/"], "--html: '/' is not a file name"),
    ],
)
def test_bad_options_exit_2_with_one_line_before_anything_connects(
    argv: list[str], complaint: str
) -> None:
    with pytest.raises(ValueError, match=r"^--") as raised:
        report_options(parse(*argv), NOW_DT)
    assert str(raised.value).startswith(complaint)
    # Nothing listens on port 9: a connection attempt would take seconds, then exit 1.
    settings = Settings.from_sources({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, needs_mem0=False)
    out, err = io.StringIO(), io.StringIO()
    code = run_report(parse(*argv), settings, Console.of("report", out, err))
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue().count("\n") == 1
    assert err.getvalue().startswith(f"deletion-consumer report: {complaint}")


def test_the_command_line_refuses_bad_arguments_and_an_empty_receipts_topic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = ["--bootstrap-servers", "127.0.0.1:9"]
    assert main(["report", *flags, "--deadline", "soon"]) == 2
    assert capsys.readouterr().err.startswith("deletion-consumer report: --deadline:")
    assert main(["report", *flags, "--receipts-topic", ""]) == 2
    assert "RECEIPTS_TOPIC is empty" in capsys.readouterr().err


def test_html_goes_to_the_file_and_the_text_still_to_stdout(tmp_path: Path) -> None:
    pytest.importorskip("consumer.report.html")
    from consumer.report.cli import _write_html

    path = tmp_path / "report.html"
    _write_html(sample(), path)
    page = path.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "\x1b" not in page and not (tmp_path / "report.html.partial").exists()


# -- progress -----------------------------------------------------------------------------------


def test_the_progress_line_waits_then_keeps_its_pace() -> None:
    lines: list[str] = []
    now = [0.0]
    progress = ScanProgress(lines.append, clock=lambda: now[0], every_s=2.0)
    progress.start(1_000_000, "receipts")
    for step in range(1, 11):  # a batch every half second
        now[0] = step * 0.5
        progress.tick(step * 50_000)
    assert lines == [
        "report: 200,000 of ~1,000,000 receipts read",
        "report: 400,000 of ~1,000,000 receipts read",
    ]
    progress.tick(2_000_000)  # past the listed total (Tansu lists short): never "of less"
    now[0] = 10.0
    progress.tick(2_000_000)
    assert lines[-1] == "report: 2,000,000 of ~2,000,000 receipts read"
