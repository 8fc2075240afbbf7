"""Which offsets may be committed, given work that finishes out of order.

Per partition, offsets are added in the order they are consumed and marked done in any order.
The committable position is the first offset not yet done (or one past the last offset seen):
Kafka's convention is to commit the offset of the next record to read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "PartitionOffsets"]

P = TypeVar("P", bound=Hashable)


@dataclass(slots=True)
class PartitionOffsets:
    """Offsets of one partition: pending ones in consumption order, and the done ones."""

    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset added
    # The last position confirmed committed. It starts at the first offset added: the group is
    # already positioned there, so committing it again would say nothing.
    committed: int | None = None

    def add(self, offset: int) -> None:
        if self.next_offset is not None and offset < self.next_offset:
            raise ValueError(f"offset {offset} added after {self.next_offset - 1}")
        if self.committed is None:
            self.committed = offset
        self.pending.append(offset)
        self.next_offset = offset + 1

    def mark_done(self, offset: int) -> None:
        self.done.add(offset)
        # Pop the finished prefix now, so `done` holds only out-of-order completions.
        while self.pending and self.pending[0] in self.done:
            self.done.discard(self.pending.popleft())

    def position(self) -> int | None:
        """The offset to commit: the first not done, or one past the last seen."""
        if self.pending:
            return self.pending[0]
        return self.next_offset

    @property
    def in_flight(self) -> int:
        return len(self.pending)


@dataclass(slots=True)
class OffsetTracker(Generic[P]):
    """Done-tracking for every assigned partition.

    Each assignment of a partition opens a new epoch: work consumed under an earlier assignment
    that finishes late cannot mark offsets of the current one as done.
    """

    partitions: dict[P, PartitionOffsets] = field(default_factory=dict)
    epochs: dict[P, int] = field(default_factory=dict)

    def assign(self, partitions: Iterable[P]) -> None:
        for partition in partitions:
            if partition not in self.partitions:
                self.partitions[partition] = PartitionOffsets()
                self.epochs[partition] = self.epochs.get(partition, 0) + 1

    def epoch(self, partition: P) -> int:
        return self.epochs.get(partition, 0)

    def revoke(self, partitions: Iterable[P]) -> None:
        """Forget partitions; late completions for them are then ignored."""
        for partition in partitions:
            self.partitions.pop(partition, None)

    def add(self, partition: P, offset: int) -> int:
        """Track a consumed offset; returns the epoch to pass to `mark_done`."""
        state, epoch = self.track(partition)
        state.add(offset)
        return epoch

    def track(self, partition: P) -> tuple[PartitionOffsets, int]:
        """Where to `add` a run of a partition's offsets, and the epoch to pass to `mark_done`
        for them (for callers adding many: one lookup per run instead of one per offset)."""
        if partition not in self.partitions:
            self.assign((partition,))
        return self.partitions[partition], self.epochs[partition]

    def mark_done(self, partition: P, offset: int, epoch: int) -> None:
        state = self.partitions.get(partition)
        if state is not None and self.epochs.get(partition) == epoch:
            state.mark_done(offset)

    def committable(self, partitions: Iterable[P] | None = None) -> dict[P, int]:
        """Positions that moved since last handed out; call `confirm` once committed."""
        chosen = self.partitions if partitions is None else partitions
        out: dict[P, int] = {}
        for partition in chosen:
            state = self.partitions.get(partition)
            if state is None:
                continue
            position = state.position()
            if position is not None and position != state.committed:
                out[partition] = position
        return out

    def confirm(self, positions: dict[P, int]) -> None:
        """Record positions the broker accepted, so they are not committed again."""
        for partition, position in positions.items():
            state = self.partitions.get(partition)
            if state is not None:
                state.committed = position

    @property
    def in_flight(self) -> int:
        return sum(state.in_flight for state in self.partitions.values())
