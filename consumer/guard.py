"""PURE: the dead-letter guard, in the spirit of arroyo's DlqLimit.

A bad deploy or a wrong schema turns every event into a dead letter; writing them all would
empty the input topic into the DLQ and commit past it. The guard watches the share of dead
letters among the last `window` finished events and trips before the write that would pass
`max_share`; once tripped, no more dead letters are written (their events stay uncommitted)
until an operator has fixed the cause and restarted the consumer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["DlqGuard"]


@dataclass(slots=True)
class DlqGuard:
    window: int = 1000
    max_share: float = 0.5  # 1.0 or more: never trips
    min_events: int = 100  # no verdict on fewer finished events than this
    tripped: bool = False
    _recent: deque[bool] = field(default_factory=deque)
    _dead: int = 0

    def deleted(self) -> None:
        """An event finished without a dead letter."""
        self._push(False)

    def admit(self) -> bool:
        """May one more dead letter be written? Counts it when it may."""
        if self.tripped:
            return False
        seen = min(len(self._recent) + 1, self.window)
        dead = self._dead + 1 - (1 if len(self._recent) == self.window and self._recent[0] else 0)
        if seen >= self.min_events and dead / seen > self.max_share:
            self.tripped = True
            return False
        self._push(True)
        return True

    @property
    def share(self) -> float:
        return self._dead / len(self._recent) if self._recent else 0.0

    def _push(self, dead: bool) -> None:
        if len(self._recent) == self.window and self._recent.popleft():
            self._dead -= 1
        self._recent.append(dead)
        self._dead += dead
