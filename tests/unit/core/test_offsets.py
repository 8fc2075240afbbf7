"""Offset tracking: only the prefix of finished work is committable, per partition and epoch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.offsets import OffsetTracker, PartitionOffsets

PARTITIONS = ("t/0", "t/1", "u/0")


def test_nothing_is_committable_before_any_progress() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    assert tracker.committable() == {}
    tracker.assign(["t/0"])
    assert tracker.committable() == {}
    for offset in (10, 11, 15):
        tracker.add("t/0", offset)
    assert tracker.committable() == {}
    assert tracker.in_flight == 3


def test_the_position_is_the_first_offset_not_done() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    epoch = 0
    for offset in (10, 11, 15, 16):
        epoch = tracker.add("t/0", offset)
    tracker.mark_done("t/0", 11, epoch)
    tracker.mark_done("t/0", 15, epoch)
    assert tracker.committable() == {}  # 10 is still running
    tracker.mark_done("t/0", 10, epoch)
    assert tracker.committable() == {"t/0": 16}
    tracker.confirm({"t/0": 16})
    assert tracker.committable() == {}  # handed out once only
    tracker.mark_done("t/0", 16, epoch)
    assert tracker.committable() == {"t/0": 17}  # one past the last, not the gap
    assert tracker.in_flight == 0


def test_an_unconfirmed_position_is_offered_again() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    epoch = tracker.add("t/0", 0)
    tracker.mark_done("t/0", 0, epoch)
    assert tracker.committable() == {"t/0": 1}
    assert tracker.committable() == {"t/0": 1}  # the commit failed: still to do
    tracker.confirm({"t/0": 1})
    assert tracker.committable() == {}


def test_adding_an_offset_below_the_last_is_refused() -> None:
    state = PartitionOffsets()
    state.add(5)
    with pytest.raises(ValueError, match="offset 4"):
        state.add(4)
    with pytest.raises(ValueError):
        state.add(5)


def test_committable_can_be_restricted_to_some_partitions() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for partition in PARTITIONS:
        epoch = tracker.add(partition, 3)
        tracker.mark_done(partition, 3, epoch)
    assert tracker.committable() == dict.fromkeys(PARTITIONS, 4)
    assert tracker.committable(["t/1"]) == {"t/1": 4}
    assert tracker.committable(["t/0", "u/0", "absent"]) == {"t/0": 4, "u/0": 4}
    assert tracker.committable([]) == {}


def test_revoke_forgets_the_partition() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    epoch = tracker.add("t/0", 0)
    tracker.add("t/1", 0)
    tracker.mark_done("t/0", 0, epoch)
    tracker.revoke(["t/0"])
    assert tracker.committable() == {}
    assert tracker.committable(["t/0"]) == {}
    assert "t/0" not in tracker.partitions
    assert tracker.in_flight == 1
    tracker.mark_done("t/0", 0, epoch)  # a late completion: ignored, no error
    assert tracker.committable() == {}
    tracker.confirm({"t/0": 1})  # a late confirmation: ignored too
    assert "t/0" not in tracker.partitions


def test_a_late_completion_from_an_old_assignment_is_ignored() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.assign(["t/0"])
    old = tracker.add("t/0", 7)
    assert old == tracker.epoch("t/0") == 1
    tracker.revoke(["t/0"])
    tracker.assign(["t/0"])
    new = tracker.add("t/0", 7)  # the new owner consumes the same offset again
    assert new == tracker.epoch("t/0") == 2
    tracker.mark_done("t/0", 7, old)
    assert tracker.committable() == {}
    assert tracker.in_flight == 1
    tracker.mark_done("t/0", 7, new)
    assert tracker.committable() == {"t/0": 8}


def test_assigning_a_partition_already_held_keeps_its_state_and_epoch() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    epoch = tracker.add("t/0", 1)
    tracker.assign(["t/0", "t/1"])
    assert tracker.epoch("t/0") == epoch
    assert tracker.epoch("t/1") == 1
    tracker.mark_done("t/0", 1, epoch)
    assert tracker.committable() == {"t/0": 2}


def test_epochs_are_per_partition() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    assert tracker.epoch("t/0") == 0
    tracker.assign(["t/0", "t/1"])
    tracker.revoke(["t/0"])
    tracker.assign(["t/0"])
    assert (tracker.epoch("t/0"), tracker.epoch("t/1")) == (2, 1)
    epoch = tracker.add("t/1", 0)
    tracker.mark_done("t/1", 0, tracker.epoch("t/0"))  # another partition's epoch
    assert tracker.committable() == {}
    tracker.mark_done("t/1", 0, epoch)
    assert tracker.committable() == {"t/1": 1}


# Property: random consumption with gaps, completion in any order, commits at random points


@st.composite
def offsets(draw: st.DrawFn) -> list[int]:
    """Increasing offsets with gaps, as a compacted topic delivers them."""
    start = draw(st.integers(0, 1000))
    gaps = draw(st.lists(st.integers(1, 4), min_size=1, max_size=25))
    out = [start]
    for gap in gaps[1:]:
        out.append(out[-1] + gap)
    return out


@given(st.data(), st.dictionaries(st.sampled_from(PARTITIONS), offsets(), min_size=1))
@settings(max_examples=150, deadline=None)
def test_committable_is_the_finished_prefix(
    data: st.DataObject, consumed: dict[str, list[int]]
) -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    added: dict[str, list[int]] = {p: [] for p in consumed}
    done: dict[str, set[int]] = {p: set() for p in consumed}
    epochs: dict[str, int] = {}
    handed: dict[str, int] = {}  # the last position handed out per partition
    confirmed: dict[str, int] = {}

    def expected(partition: str) -> int:
        pending = [o for o in added[partition] if o not in done[partition]]
        return pending[0] if pending else added[partition][-1] + 1

    steps = data.draw(st.integers(1, 3 * sum(map(len, consumed.values())) + 5))
    for _ in range(steps):
        addable = [p for p in consumed if len(added[p]) < len(consumed[p])]
        finishable = [(p, o) for p in consumed for o in added[p] if o not in done[p]]
        action = data.draw(st.sampled_from(["add", "finish", "commit"]))
        if action == "add" and addable:
            partition = data.draw(st.sampled_from(addable))
            offset = consumed[partition][len(added[partition])]
            epochs[partition] = tracker.add(partition, offset)
            added[partition].append(offset)
        elif action == "finish" and finishable:
            partition, offset = data.draw(st.sampled_from(finishable))
            tracker.mark_done(partition, offset, epochs[partition])
            done[partition].add(offset)
        else:
            subset = data.draw(st.one_of(st.none(), st.sets(st.sampled_from(PARTITIONS))))
            positions = tracker.committable(subset)
            if subset is not None:
                assert set(positions) <= subset
            for partition in consumed:
                if not added[partition] or (subset is not None and partition not in subset):
                    assert partition not in positions
                    continue
                position = expected(partition)
                if not done[partition]:
                    # Nothing finished yet: nothing to commit.
                    assert partition not in positions
                baseline = confirmed.get(partition, added[partition][0])
                if partition in positions:
                    assert positions[partition] == position
                    assert position != baseline
                    assert position >= handed.get(partition, baseline)  # never backwards
                    # Never past an offset that is not done.
                    assert all(o in done[partition] for o in added[partition] if o < position)
                    handed[partition] = position
                else:
                    assert position == baseline
            if data.draw(st.booleans()):  # the commit may fail and not be confirmed
                tracker.confirm(positions)
                confirmed.update(positions)
        # In flight: everything from the first unfinished offset on, finished or not.
        assert tracker.in_flight == sum(
            len([o for o in added[p] if o >= expected(p)]) for p in consumed if added[p]
        )

    # Everything finished: the position is one past the last offset of each partition.
    for partition in consumed:
        for offset in added[partition]:
            tracker.mark_done(partition, offset, epochs[partition])
    final = tracker.committable()
    for partition in consumed:
        if added[partition] and confirmed.get(partition) != added[partition][-1] + 1:
            assert final[partition] == added[partition][-1] + 1
        else:
            assert partition not in final
