"""What is in flight between the loop and its flushes: records taken in and not yet settled,
and the Mem0 work behind them.

The loop takes records in (`taken`) and reads the totals for its back-pressure; each flush says
what it planned, when an operation finished, and settles its records. Both hold this one
object, so neither calls back into the other. `progress` is set whenever anything finishes:
room in the budgets may have freed, and a revoke waiting for its partitions' work may go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Message

from consumer.core.offsets import OffsetTracker
from consumer.telemetry.metrics import Metrics

__all__ = ["TP", "InFlight", "Record"]

TP = tuple[str, int]


@dataclass(slots=True)
class Record:
    """One consumed record, where it came from, and the assignment epoch it was read in."""

    message: Message
    tp: TP
    offset: int
    epoch: int
    ordinal: int = 0  # its place in consumption order (for the dead-letter guard)


class InFlight:
    """Events taken in and not settled, and the Mem0 operations behind them.

    An event weighs one operation until its flush is planned (scopes plan about one each, a
    Platform user erasure two, the second for its entity record, so a flush of them may pass
    the budget up to twice; ids fold up to a thousand into one), then the plan's operations
    count as they are until each finishes.
    """

    def __init__(self, tracker: OffsetTracker[TP], metrics: Metrics) -> None:
        self.tracker = tracker
        self.events = 0  # taken into a flush and not settled
        self.unplanned = 0  # events handed to a flush that has not planned yet
        self.operations = 0  # operations planned and not finished
        self.progress = asyncio.Event()
        self._metrics = metrics

    @property
    def work(self) -> int:
        """The Mem0 work in flight, in operations (unplanned events weighing one each)."""
        return self.unplanned + self.operations

    def dispatched(self, events: int) -> None:
        """A flush of `events` records has started."""
        self.events += events
        self.unplanned += events
        self._metrics.in_flight_events.set(self.events)

    def planned(self, events: int, operations: int) -> None:
        self.unplanned -= events
        self.operations += operations
        self.progress.set()

    def operation_finished(self) -> None:
        self.operations -= 1
        self.progress.set()

    def settle(self, records: Iterable[Record]) -> None:
        """These records are done (deleted, dead-lettered or duplicates): their offsets may be
        committed once every earlier one of their partition is."""
        mark_done = self.tracker.mark_done
        count = 0
        for record in records:
            mark_done(record.tp, record.offset, record.epoch)
            count += 1
        self.events -= count
        self._metrics.in_flight_events.set(self.events)
        self.progress.set()
