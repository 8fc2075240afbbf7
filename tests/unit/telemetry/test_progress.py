"""Flush summaries: a line for a notable flush (at most one a second), a periodic progress line."""

from __future__ import annotations

from typing import Any

from consumer.telemetry.progress import FlushSummary, ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: Any) -> list[tuple[str, dict[str, Any]]]:
    keep = ("events", "dead_lettered", "seconds", "flushes", "flush_lines_skipped", "deleted")
    return [
        (r.getMessage(), {k: getattr(r, k) for k in keep if hasattr(r, k)})
        for r in caplog.records
        if r.name == "consumer.telemetry.progress"
    ]


def test_quiet_fast_flushes_make_one_progress_line_per_interval(caplog: Any) -> None:
    clock = Clock()
    progress = ProgressLog(interval_s=30, clock=clock)
    with caplog.at_level("INFO", logger="consumer.telemetry.progress"):
        for _ in range(1001):  # 30 s of flushes at 33 a second
            clock.now += 0.03
            progress.flush_done(FlushSummary(events=10, operations=2, deleted=10, seconds=0.01))
    assert [message for message, _ in lines(caplog)] == ["progress"]
    _, fields = lines(caplog)[0]
    assert fields["flushes"] == 1001 and fields["events"] == 10_010
    assert fields["deleted"] == 10_010


def test_slow_or_dead_lettering_flushes_get_a_line_at_most_once_a_second(caplog: Any) -> None:
    clock = Clock()
    progress = ProgressLog(interval_s=30, clock=clock)
    with caplog.at_level("INFO", logger="consumer.telemetry.progress"):
        progress.flush_done(FlushSummary(events=5, deleted=5, seconds=1.5))  # slow
        clock.now += 0.1
        progress.flush_done(FlushSummary(events=5, deleted=4, dead_lettered=1, seconds=0.1))
        clock.now += 1.0
        progress.flush_done(FlushSummary(events=5, deleted=4, dead_lettered=1, seconds=0.1))
        progress.emit()
    assert [message for message, _ in lines(caplog)] == [
        "flush finished",
        "flush finished",
        "progress",
    ]
    assert lines(caplog)[1][1]["dead_lettered"] == 1
    assert lines(caplog)[2][1]["flush_lines_skipped"] == 1
    assert lines(caplog)[2][1]["dead_lettered"] == 2


def test_nothing_flushed_nothing_logged(caplog: Any) -> None:
    progress = ProgressLog(clock=Clock())
    with caplog.at_level("INFO", logger="consumer.telemetry.progress"):
        progress.emit()
    assert lines(caplog) == []
