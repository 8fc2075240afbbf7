"""Many "is this scope empty now?" questions answered by one listing.

After a filter delete's job SUCCEEDED, verification lists the scope and expects nothing: one
more call per scope, a third of all calls in an erasure burst. Scopes finishing at about the
same moment are instead checked together, with one listing whose filter is the OR of theirs
(`{"OR": [{"user_id": "a"}, {"run_id": "b"}, ...]}`, which the Platform's v3 list documents).
An empty answer proves every scope of the group empty. Anything else (a match, an error)
proves nothing about any one of them: each is then checked alone, as before, so a group never
makes a verification weaker, only cheaper when it passes, which is nearly always.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from consumer.core.events import Scope

__all__ = ["GROUP_SIZE", "GroupedEmptinessCheck"]

log = logging.getLogger(__name__)

# Scopes per listing: a bounded filter (the API publishes no limit on OR; this keeps the
# request small), and most of the saving (50 checks -> 1 call).
GROUP_SIZE = 50
# How long the first scope of a group waits for others: short next to a job's own latency.
LINGER_S = 0.005

AnyMatch = Callable[[Sequence[Scope]], Awaitable[bool]]


class GroupedEmptinessCheck:
    def __init__(
        self, any_match: AnyMatch, *, group_size: int = GROUP_SIZE, linger_s: float = LINGER_S
    ) -> None:
        self._any_match = any_match
        self._group_size = group_size
        self._linger_s = linger_s
        self._waiting: list[tuple[Scope, asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def empty(self, scope: Scope) -> bool:
        """True when a grouped listing proved the scope empty; False when it must be checked
        alone (something in the group matched, or the listing failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((scope, future))
        if len(self._waiting) >= self._group_size:
            self._launch()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger_s, self._launch)
        return await future

    def _launch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group, self._waiting = self._waiting, []
        if group:
            task = asyncio.get_running_loop().create_task(self._check(group))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _check(self, group: list[tuple[Scope, asyncio.Future[bool]]]) -> None:
        try:
            matched = await self._any_match([scope for scope, _ in group])
        except Exception as exc:  # any failure: each scope is checked alone
            log.debug("grouped verification listing failed: %s", type(exc).__name__)
            matched = True
        for _, future in group:
            if not future.done():
                future.set_result(not matched)
