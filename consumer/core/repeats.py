"""Which occurrences of a repeating log line to write: the first, then a reminder per window.

A failure that lasts (a broker that stays away, say) is one state change and then a periodic
reminder, not a line per occurrence: librdkafka reports a refused connection about 20 times a
second per client, and logs must stay bounded (README "Logs"). `RepeatLimiter` decides, per
kind of line (whatever the caller counts as "the same line"):

- A kind never seen, or seen again after `window_s` of silence, is a state change: logged.
- A repeat within `window_s` of the kind's last occurrence is counted, not logged; the first
  repeat `window_s` or more after the kind's last logged line is logged as a reminder carrying
  the count of occurrences since that line.

Two logged lines of one kind are therefore at least `window_s` apart. Repeats counted but never
reported by a reminder (the kind went quiet first) are handed to the kind's next logged line, so
every occurrence is accounted for. At most `capacity` kinds are remembered; the one seen least
recently makes room, and its unreported repeats are counted in `dropped`. The caller passes the
time, so the decisions are deterministic under test. Not thread-safe: lock around it if shared.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Logged", "RepeatLimiter"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Logged:
    """Log this occurrence.

    `first`: the kind is new, or back after a quiet window (a state change); else a reminder.
    `unlogged`: occurrences of the kind since its last logged line that were not logged (this
    one excluded); on a reminder they are what it reports, on a first line the remainder of the
    kind's previous episode (0 for a kind never seen). `since_s`: time since the kind's last
    logged line (0 for a kind never seen).
    """

    first: bool
    unlogged: int
    since_s: float

    @property
    def occurrences(self) -> int:
        """Occurrences since the kind's last logged line, this one included (a reminder's N)."""
        return self.unlogged + 1


@dataclass(slots=True)
class _Kind:
    last_seen: float
    last_logged: float
    unlogged: int = 0


class RepeatLimiter(Generic[K]):
    """Per kind of line: log the first, count the repeats, remind at most once per window."""

    def __init__(self, window_s: float = 60.0, capacity: int = 256) -> None:
        if window_s <= 0:
            raise ValueError("the window must be positive")
        if capacity < 1:
            raise ValueError("the table holds at least one kind")
        self.window_s = window_s
        self.capacity = capacity
        self.dropped = 0  # unreported repeats of kinds pushed out of the table
        # kind -> its state; the order is that of last occurrence, oldest first.
        self._kinds: OrderedDict[K, _Kind] = OrderedDict()

    def offer(self, kind: K, now: float) -> Logged | None:
        """One occurrence of `kind` at `now` (never earlier than the last offer's): what to log."""
        known = self._kinds.get(kind)
        if known is None:
            self._remember(kind, now)
            return Logged(first=True, unlogged=0, since_s=0.0)
        self._kinds.move_to_end(kind)
        quiet = now - known.last_seen >= self.window_s
        known.last_seen = now
        since = now - known.last_logged
        if quiet or since >= self.window_s:
            logged = Logged(first=quiet, unlogged=known.unlogged, since_s=since)
            known.last_logged, known.unlogged = now, 0
            return logged
        known.unlogged += 1
        return None

    def pending(self) -> int:
        """Repeats counted and not yet reported, over every kind remembered."""
        return sum(kind.unlogged for kind in self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)

    def _remember(self, kind: K, now: float) -> None:
        kinds = self._kinds
        while len(kinds) >= self.capacity:
            _, oldest = kinds.popitem(last=False)
            self.dropped += oldest.unlogged
        kinds[kind] = _Kind(last_seen=now, last_logged=now)
