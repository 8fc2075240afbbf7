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

Records that do not decode (`decode_error`, `unknown_schema`) count only where nothing decodes:
while events within `window` of one decode, the decoder and its schemas evidently work, and the
junk is its producer's (any producer can write any bytes, and a flood of them must not stop
everyone's erasures); its dead letter holds it byte for byte for a replay. Where nothing
decodes, the cause is likelier ours (a reader schema we shipped, a registry serving the wrong
schemas, a producer's whole topic in a format we cannot read) and they count as before. The
flushes report which events decoded (`decoded`); junk that does not count still counts as
consumed, so a junk-heavy stream dilutes the share of the events that decode.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from consumer.core.dlq import DlqReason

__all__ = ["UNDECODABLE", "DlqGuard"]

# The reasons of records that never became an event.
UNDECODABLE = frozenset({DlqReason.DECODE_ERROR, DlqReason.UNKNOWN_SCHEMA})


@dataclass(slots=True)
class DlqGuard:
    window: int = 1000
    max_share: float = 0.5  # 1.0 or more: never trips
    min_events: int = 100  # no verdict before this many events were consumed
    horizon: int = 1_000_000  # events that may be in flight at once, at most
    tripped: bool = False
    consumed: int = 0  # events consumed so far; event n (0-based) has ordinal n
    _dead: list[int] = field(default_factory=list)  # ordinals admitted, sorted
    # The lowest and highest decoded ordinal of each stretch of `window` ordinals (by
    # ordinal // window): enough to tell exactly whether one decoded within `window` of n.
    _decoded: dict[int, list[int]] = field(default_factory=dict)

    def consume(self, count: int) -> int:
        """`count` more events were consumed; returns the ordinal of the first of them."""
        first = self.consumed
        self.consumed += count
        return first

    def decoded(self, ordinals: Sequence[int]) -> None:
        """These events decoded; `ordinals` ascending (a flush's, in consumption order). Costs
        a few steps per stretch of `window` they span, not per event."""
        spans, window = self._decoded, self.window
        at, end = 0, len(ordinals)
        while at < end:
            stretch = ordinals[at] // window
            # The last of them in this stretch: the first of the next one, less one.
            last = bisect.bisect_left(ordinals, (stretch + 1) * window, at) - 1
            low, high = ordinals[at], ordinals[last]
            span = spans.get(stretch)
            if span is None:
                # A stretch begun: those out of every reach go (once a window, so cheap).
                self._forget_decoded(self.consumed - self.horizon - self.window)
                spans[stretch] = [low, high]
            else:
                span[0], span[1] = min(span[0], low), max(span[1], high)
            at = last + 1

    def admit(self, ordinal: int, reason: DlqReason | None = None) -> bool:
        """May the dead letter of event `ordinal` be written? Counts it when it may, unless it
        never decoded and events near it did."""
        if self.tripped:
            return False
        dead = self._dead
        # Ordinals a window behind the oldest event that may still finish are out of reach.
        reach = self.consumed - self.horizon - self.window
        if dead and dead[0] < reach:
            del dead[: bisect.bisect_left(dead, reach)]
        if reason in UNDECODABLE and self._decoding_near(ordinal):
            return True
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

    def _decoding_near(self, ordinal: int) -> bool:
        """Whether an event within `window` of `ordinal` (either side) decoded."""
        window, spans = self.window, self._decoded
        stretch = ordinal // window
        if stretch in spans:
            return True
        before, after = spans.get(stretch - 1), spans.get(stretch + 1)
        return (before is not None and before[1] > ordinal - window) or (
            after is not None and after[0] < ordinal + window
        )

    def _forget_decoded(self, reach: int) -> None:
        """Forget the stretches no event that may still be judged is within `window` of."""
        spans = self._decoded
        oldest = reach // self.window - 1
        for stretch in [s for s in spans if s < oldest]:
            del spans[stretch]
