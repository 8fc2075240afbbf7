"""Flush summaries in the logs, bounded: at full speed a flush ends many times a second.

A flush gets a line of its own only when it is worth reading (slow, or it dead-lettered
something), and at most one such line per `min_gap_s`; every flush is also folded into a
`progress` line written every `interval_s`, so quiet operation costs two lines a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["FlushSummary", "ProgressLog"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FlushSummary:
    """What one flush did (or, summed, what many did)."""

    events: int = 0
    operations: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    seconds: float = 0.0

    def add(self, other: FlushSummary) -> None:
        self.events += other.events
        self.operations += other.operations
        self.deleted += other.deleted
        self.dead_lettered += other.dead_lettered
        self.duplicates += other.duplicates
        self.seconds += other.seconds


class ProgressLog:
    """Turns flush summaries into a few INFO lines; `emit()` writes what is pending now."""

    def __init__(
        self,
        *,
        interval_s: float = 30.0,
        slow_s: float = 1.0,
        min_gap_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._slow_s = slow_s
        self._min_gap_s = min_gap_s
        self._clock = clock
        self._since = clock()
        self._last_line = float("-inf")
        self._reset()

    def _reset(self) -> None:
        self._total = FlushSummary()
        self._flushes = 0
        self._slowest = 0.0
        self._unlogged = 0  # notable flushes folded into the progress line instead

    def flush_done(self, summary: FlushSummary) -> None:
        now = self._clock()
        self._total.add(summary)
        self._flushes += 1
        self._slowest = max(self._slowest, summary.seconds)
        if summary.dead_lettered or summary.seconds >= self._slow_s:
            if now - self._last_line >= self._min_gap_s:
                self._last_line = now
                fields = asdict(summary)
                fields["seconds"] = round(summary.seconds, 3)
                log.info("flush finished", extra=fields)
            else:
                self._unlogged += 1
        if now - self._since >= self._interval_s:
            self.emit()

    def emit(self) -> None:
        """Write the progress line for the flushes since the last one (none: no line)."""
        now = self._clock()
        if self._flushes:
            total = self._total
            log.info(
                "progress",
                extra={
                    "interval_s": round(now - self._since, 3),
                    "flushes": self._flushes,
                    "events": total.events,
                    "operations": total.operations,
                    "deleted": total.deleted,
                    "dead_lettered": total.dead_lettered,
                    "duplicates": total.duplicates,
                    "slowest_flush_s": round(self._slowest, 3),
                    "flush_lines_skipped": self._unlogged,
                },
            )
        self._since = now
        self._reset()
