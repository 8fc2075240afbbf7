"""The dead-letter guard, in the spirit of arroyo's DlqLimit.

A bad deploy or a wrong schema turns every event into a dead letter; writing them all would
empty the input topic into the DLQ and commit past it. The guard watches the share of dead
letters among any `window` consecutive events consumed and trips before the write that would
pass `max_share`; once tripped, no more dead letters are written (their events stay uncommitted)
until an operator has fixed the cause and restarted the consumer.

Windows are in consumption order, not in the order events finish: an invalid event is
dead-lettered at once while a valid one waits on Mem0, so by finishing order a healthy backlog
would look mostly dead at first. Events not finished yet count as not dead. To judge event n
it counts the dead letters within `window` either side of n, so it may trip a little early
(up to twice the share in one window), never late.

Admitted ordinals are forgotten only once no admit can reach them again: `horizon` is how far
behind the newest consumed event an unfinished one can be (the in-flight budget bounds it). An
ordinal behind the one being judged is not enough: events finish in any order, and forgetting
by it let an older event's letter through unchecked.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["DlqGuard"]


@dataclass(slots=True)
class DlqGuard:
    window: int = 1000
    max_share: float = 0.5  # 1.0 or more: never trips
    min_events: int = 100  # no verdict before this many events were consumed
    horizon: int = 1_000_000  # events that may be in flight at once, at most
    tripped: bool = False
    consumed: int = 0  # events consumed so far; event n (0-based) has ordinal n
    _dead: list[int] = field(default_factory=list)  # ordinals admitted, sorted

    def consume(self, count: int) -> int:
        """`count` more events were consumed; returns the ordinal of the first of them."""
        first = self.consumed
        self.consumed += count
        return first

    def admit(self, ordinal: int) -> bool:
        """May the dead letter of event `ordinal` be written? Counts it when it may."""
        if self.tripped:
            return False
        dead = self._dead
        # Ordinals a window behind the oldest event that may still finish are out of reach.
        reach = self.consumed - self.horizon - self.window
        if dead and dead[0] < reach:
            del dead[: bisect.bisect_left(dead, reach)]
        near = bisect.bisect_left(dead, ordinal + self.window) - bisect.bisect_right(
            dead, ordinal - self.window
        )
        seen = min(self.consumed, self.window)
        if self.consumed >= self.min_events and (near + 1) / seen > self.max_share:
            self.tripped = True
            return False
        bisect.insort(dead, ordinal)
        return True

    @property
    def share(self) -> float:
        """Dead letters among the last `window` events consumed."""
        oldest = self.consumed - self.window
        seen = min(self.consumed, self.window)
        return sum(1 for o in self._dead if o >= oldest) / seen if seen else 0.0
