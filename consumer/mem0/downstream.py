"""The Mem0 side's shared state: open, backing off, or halted, and the gate calls pass through.

While halted (401/403, or a self-hosted key without the admin role) every call waits and a
slow probe runs until the permission that was refused is granted again. While struggling (an
outage: nothing has succeeded for a while) calls go one at a time, the first to succeed
reopening the way for all, so that a down API is not hammered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from enum import IntEnum

from consumer.mem0.client import Mem0Client
from consumer.mem0.errors import AdminRoleError, AuthError, RejectedError, TransientError

__all__ = ["Downstream", "DownstreamState"]

log = logging.getLogger(__name__)

# While the downstream struggles, one call at a time, spaced from this to the cap.
_TRIAL_GAP_S = 0.25
_TRIAL_GAP_CAP_S = 5.0


class DownstreamState(IntEnum):
    """The value of the `downstream_state` gauge."""

    OK = 0
    BACKING_OFF = 1
    HALTED = 2


class Downstream:
    """Shared state of the Mem0 side. While halted (401/403), calls wait and a slow probe runs."""

    def __init__(
        self,
        client: Mem0Client,
        *,
        probe_interval_s: float = 15.0,
        on_change: Callable[[DownstreamState], None] | None = None,
        on_halt_cause: Callable[[str | None], None] | None = None,
        struggle_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._probe_interval_s = probe_interval_s
        self._on_change = on_change or (lambda _state: None)
        self._on_halt_cause = on_halt_cause or (lambda _cause: None)
        self._open = asyncio.Event()
        self._open.set()
        self._probe: asyncio.Task[None] | None = None
        self.state = DownstreamState.OK
        self._clock = clock
        self._struggle_after_s = struggle_after_s
        self._failing_since: float | None = None
        self._trial = asyncio.Lock()
        self._trial_gap = _TRIAL_GAP_S
        # Why it is halted (AuthError.cause), None while it is not.
        self.halt_cause: str | None = None

    def _set(self, state: DownstreamState) -> None:
        if state is not self.state:
            self.state = state
            self._on_change(state)

    async def wait_open(self) -> None:
        await self._open.wait()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold around each call. While struggling (an outage), calls go one at a time: the
        first to succeed reopens the way for all, and the others are not hammering meanwhile.
        """
        if not self.struggling():
            yield
            return
        await self._trial.acquire()
        if not self.struggling():
            # It recovered while this call waited: go at once, and let the others go too.
            self._trial.release()
            yield
            return
        try:
            yield
        except TransientError:
            # The trial failed: the next one waits, longer each time (up to a cap). The lock
            # is held meanwhile, so the calls queued behind it wait too.
            await asyncio.sleep(self._trial_gap)
            self._trial_gap = min(self._trial_gap * 2, _TRIAL_GAP_CAP_S)
            raise
        finally:
            self._trial.release()

    def succeeded(self) -> None:
        self._failing_since = None
        self._trial_gap = _TRIAL_GAP_S
        if self.state is DownstreamState.BACKING_OFF:
            self._set(DownstreamState.OK)

    def backing_off(self) -> None:
        if self._failing_since is None:
            self._failing_since = self._clock()
        if self.state is DownstreamState.OK:
            self._set(DownstreamState.BACKING_OFF)

    def struggling(self) -> bool:
        """Halted, or nothing has succeeded for a while: new work would only pile up.

        A failure here and there (a 5xx, a 429) is not struggling as long as other calls
        still go through; an outage is.
        """
        if self.state is DownstreamState.HALTED:
            return True
        since = self._failing_since
        return since is not None and self._clock() - since >= self._struggle_after_s

    def halt(self, error: AuthError) -> None:
        if self.state is DownstreamState.HALTED:
            return
        admin = isinstance(error, AdminRoleError)
        if admin:
            log.error(
                "downstream halted: the self-hosted server requires the admin role for "
                "DELETE /memories and MEM0_API_KEY lacks it; probing until it has it",
                extra={"status": error.status, "operation": error.operation},
            )
        else:
            log.error(
                "downstream halted: authentication refused; probing until it is accepted",
                extra={"status": error.status, "operation": error.operation},
            )
        self.halt_cause = error.cause
        self._on_halt_cause(error.cause)
        self._open.clear()
        self._set(DownstreamState.HALTED)
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_open(admin=admin))

    def describe_halt(self) -> str:
        """Why calls wait, in words for /readyz."""
        if self.halt_cause == AdminRoleError.cause:
            return "downstream halted (MEM0_API_KEY lacks the admin role DELETE /memories needs)"
        return "downstream halted (authentication refused)"

    async def _probe_until_open(self, *, admin: bool) -> None:
        """Probe until the permission that was refused is granted: for a missing admin role, a
        read would pass while deletes still fail, and the consumer would flap."""
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await self._client.probe(admin=admin)
            except (AuthError, TransientError, RejectedError):
                continue
            log.warning("downstream resumed: authentication accepted again")
            self.halt_cause = None
            self._on_halt_cause(None)
            self._set(DownstreamState.OK)
            self._open.set()
            return

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
