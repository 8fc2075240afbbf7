"""When to poll a delete job: from how long jobs have been taking.

A Platform `delete_all` (or entity delete) answers at once with a job id and finishes later. A
fixed schedule (100 ms, then 1.5x) finds a 200 ms job at 250 ms: the schedule, not the job,
set the time to erasure, and a second poll was spent finding out. Instead polls are placed
around `typical`, the median of the times recent jobs were found done (from their delete's
answer): the first goes out a little before it (`LEAD`), so that jobs getting quicker are
noticed (one found done at the first poll pulls the median down), the next ones close together
up to twice `typical`, then backing off to the cap as before, for the rare long job (a user with
many memories). Until a job has been seen finishing, the configured first poll and backoff hold.

Jobs at a steady duration then cost two polls each (one just before, one at `typical`), the
same as the fixed schedule, and are found within a tenth of `typical` of finishing.

Pure: the caller measures the times and hands them in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Final

__all__ = ["JobTiming"]

# The first poll's share of `typical`: early enough that a quicker job is found at it.
LEAD: Final = 0.9
# Polls after the first, at this share of `typical` apart, until twice `typical`.
STEP: Final = 0.1
# Jobs remembered: a median of this many ignores the odd long one (up to 7 in 16), and moves
# after 8 jobs found sooner, so quicker jobs are followed down within a hundred or so.
WINDOW: Final = 16
# Growth of the gap between polls once past twice `typical` (as the fixed schedule's).
BACKOFF: Final = 1.5


class JobTiming:
    def __init__(self, *, first_s: float, cap_s: float, min_gap_s: float = 0.01) -> None:
        self._first_s = first_s
        self._cap_s = cap_s
        # Never closer than the configured first poll if that is closer still (tests use 0).
        self._min_gap_s = min(min_gap_s, first_s, cap_s)
        self._seen: deque[float] = deque(maxlen=WINDOW)
        self._typical: float | None = None

    @property
    def typical_s(self) -> float | None:
        """The median time to done of recent jobs; None before any."""
        return self._typical

    def delays(self) -> Iterator[float]:
        """The waits before each poll of a job whose delete just answered, for ever."""
        typical = self._typical
        low, cap = self._min_gap_s, self._cap_s
        if typical is None:
            gap = min(self._first_s, cap)
        else:
            first = min(max(low, typical * LEAD), cap)
            yield first
            step = min(max(low, typical * STEP), cap)
            elapsed = first
            while elapsed < 2 * typical:
                yield step
                elapsed += step
            gap = min(step * BACKOFF, cap)
        while True:
            yield gap
            gap = min(gap * BACKOFF, cap)

    def found_done(self, after_s: float) -> None:
        """A job was found finished `after_s` seconds after its delete answered."""
        self._seen.append(max(0.0, after_s))
        ordered = sorted(self._seen)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            self._typical = ordered[middle]
        else:
            self._typical = (ordered[middle - 1] + ordered[middle]) / 2
