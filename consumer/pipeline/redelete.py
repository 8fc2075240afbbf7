"""The one "delete again until a check finds nothing" loop, and its one stop rule.

Every check after a delete ends here: a Platform scope listed after its job SUCCEEDED, a user's
entity read back, a self-hosted `delete_all` repeated until its listing is empty, ids read back,
a compound scope listed again. What differs is only what `find` asks and what `redelete` does.

The stop rule: a re-delete that removed something (some id found before is no longer found,
see `core.verification.progressed`) is progress; `max_rounds` re-deletes in a row without
progress end the loop with what is left, and the events it serves fail as
`verification_failed`. Older self-hosted servers delete only the first 100 matches per call
while reporting success, so a re-delete that removes some is not a failure; a check with no
ids to compare (a scope listed for "anything left?", an entity) never progresses, so for it the
rule is plainly `max_rounds` re-deletes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from consumer.core.verification import progressed

__all__ = ["NO_VERDICT", "Redeleted", "redelete_until_gone"]


@dataclass(frozen=True, slots=True)
class Redeleted:
    """How a check ended: what is still there (empty: nothing), and the re-deletes it took.
    `verdict` is False when a check could not be made (Mem0 refused a read)."""

    left: Collection[str]
    redeletes: int
    verdict: bool = True


# A `find` answers this when it cannot tell (a read Mem0 refused): no verdict, no failure.
NO_VERDICT: Collection[str] | None = None


async def redelete_until_gone(
    left: Collection[str],
    find: Callable[[Collection[str]], Awaitable[Collection[str] | None]],
    redelete: Callable[[Collection[str]], Awaitable[None]],
    *,
    max_rounds: int,
) -> Redeleted:
    """While `left` is not empty, `redelete` it and `find` what of it (or of the scope) is
    still there, under the stop rule above."""
    redeletes = stalled = 0
    while left:
        if stalled >= max_rounds:
            return Redeleted(left, redeletes)
        await redelete(left)
        redeletes += 1
        found = await find(left)
        if found is None:
            return Redeleted((), redeletes, verdict=False)
        stalled = 0 if progressed(left, found) else stalled + 1
        left = found
    return Redeleted((), redeletes)
