"""What an HTTP outcome means, and how long to wait before trying again.

Classification follows the README (What happens when things go wrong): a 404 on a delete means the
memory is already gone; 408, 429, 5xx and transport failures are transient; 401 and 403 halt every
call; any other 4xx rejects that request. Timing is exponential backoff with full jitter, capped,
and `Retry-After` is honoured up to its own cap. The caller passes the random draw and the clock, so
this module is deterministic under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

__all__ = [
    "WAIT_OUT_CAP_S",
    "WAIT_OUT_FIRST_S",
    "RetryPolicy",
    "Verdict",
    "classify",
    "parse_retry_after",
    "wait_out_delays",
]


class Verdict(Enum):
    SUCCESS = "success"
    RETRY = "retry"
    HALT = "halt"
    REJECT = "reject"


_HALTING = frozenset({401, 403})
_TRANSIENT = frozenset({408, 429})


def classify(status: int | None, *, missing_is_success: bool = False) -> Verdict:
    """The verdict for an HTTP status; None stands for a timeout or a broken connection."""
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.SUCCESS
    if status == 404 and missing_is_success:
        return Verdict.SUCCESS
    if status in _HALTING:
        return Verdict.HALT
    if status in _TRANSIENT or status >= 500:
        return Verdict.RETRY
    return Verdict.REJECT


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `max_duration_s` None means retry for ever."""

    base_s: float = 0.2
    cap_s: float = 30.0
    retry_after_cap_s: float = 300.0
    max_duration_s: float | None = None

    def delay(self, attempt: int, draw: float, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based); `draw` is uniform in [0, 1).

        A server's Retry-After wins over the jittered backoff (it knows its own load), but never
        past its cap: a hostile or broken header must not park the consumer for a day.
        """
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.retry_after_cap_s)
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 62))
        return draw * ceiling

    def gives_up(self, started_at: float, now: float, next_delay: float) -> bool:
        """Whether waiting `next_delay` more would pass the total retry budget."""
        if self.max_duration_s is None:
            return False
        return now + next_delay - started_at > self.max_duration_s


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is true, but float() refuses it
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: a year past C's
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


# What must be waited out rather than given up on (a broker that does not take a dead letter or
# a receipt, a schema registry that does not answer): the first wait, and the longest. Doubling
# from one to the other reaches a service back within a second or two, and asks a long outage
# twice a minute.
WAIT_OUT_FIRST_S = 0.5
WAIT_OUT_CAP_S = 30.0


def wait_out_delays() -> Iterator[float]:
    """The waits between attempts at something that must be waited out: 0.5 s, doubling, then
    30 s for ever (no jitter: these are one process's own retries of one thing at a time)."""
    delay = WAIT_OUT_FIRST_S
    while True:
        yield delay
        delay = min(delay * 2, WAIT_OUT_CAP_S)
