"""How a delete is checked afterwards (`VERIFY_DELETES`), and what a check concluded.

Mem0's own deletion flow ends with "confirm the response, then re-run search to ensure the
memory is gone". The executor does that per operation: a Platform filter delete is followed by
a listing of its scope once its job has SUCCEEDED, a batch of ids by reading a sample of them
back, a self-hosted `delete_all` by a listing (always: the contract's repeat-until-empty), and a
compound scope ends on an empty listing by construction. Whatever is left is deleted again, at
most `max_rounds` times, before the events it serves are dead-lettered as `verification_failed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FAILED",
    "OFF",
    "PASSED",
    "REDELETED",
    "RESULTS",
    "VerifyPolicy",
    "passed",
    "pick_sample",
    "progressed",
]

# The `result` label of `verifications_total`: nothing was left; something was left and a
# re-delete removed it; something was still left after `max_rounds` re-deletes.
PASSED: Final = "passed"
REDELETED: Final = "redeleted"
FAILED: Final = "failed"
RESULTS = (PASSED, REDELETED, FAILED)


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """`enabled`: check at all; `sample_share`: the share of a batch's ids read back (0 to 1);
    `max_rounds`: re-deletes before giving up."""

    enabled: bool = True
    sample_share: float = 0.001
    max_rounds: int = 3

    def sample_size(self, ids: int) -> int:
        """How many of a batch's `ids` to read back: a share rounded up, at least one."""
        if not self.enabled or self.sample_share <= 0 or ids <= 0:
            return 0
        return min(ids, max(1, math.ceil(ids * self.sample_share)))


# No checks beyond those the delete procedures make by themselves (compound scopes, self-hosted
# delete_all); the self-hosted repeat-until-empty still stops after this many idle rounds.
OFF = VerifyPolicy(enabled=False)


def passed(redeletes: int) -> str:
    """The result of a check that ended with nothing left, after `redeletes` re-deletes."""
    return PASSED if redeletes == 0 else REDELETED


def pick_sample(ids: Sequence[str], size: int, draw: Callable[[], float]) -> list[str]:
    """`size` distinct ids chosen uniformly (a partial Fisher-Yates shuffle); `draw` is a
    uniform number in [0, 1), so tests can make the choice deterministic."""
    pool = list(ids)
    size = max(0, min(size, len(pool)))
    for i in range(size):
        j = i + min(int(draw() * (len(pool) - i)), len(pool) - i - 1)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:size]


def progressed(before: Collection[str], after: Collection[str]) -> bool:
    """Whether a re-delete removed anything: some id listed before is no longer listed.

    Counting would mislead: a listing capped at 100 (the self-hosted server's) stays at 100
    while an old server deletes the first 100 matches per call.
    """
    remaining = set(after)
    return any(memory_id not in remaining for memory_id in before)
