"""One logical Mem0 call, retried: the downstream's gate, the policy's backoff, and the tally.

Transient errors are retried with the policy's backoff until its budget runs out; an auth
failure parks every call until the downstream answers again (nothing is dead-lettered for a
credentials problem); a rejection is raised to the caller, who knows what it means for its
operation. A self-hosted 502 `unknown` is retried a bounded number of times whatever the time
budget, since it may be deterministic. `Tally` counts what an operation's calls did, for its
receipt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from consumer.core.dlq import DlqReason
from consumer.core.errors import ConsumerError
from consumer.core.retry import RetryPolicy
from consumer.mem0.downstream import Downstream
from consumer.mem0.errors import AuthError, RejectedError, TransientError, UncertainError

__all__ = ["Caller", "GaveUp", "Tally"]

T = TypeVar("T")


@dataclass(slots=True)
class Tally:
    """What one operation's calls came to, for its receipt."""

    calls: int = 0
    last_status: int | None = None
    job_id: str | None = None
    verified: bool = False
    cascades: dict[str, int] | None = None  # memory id -> cascade_count, for linked deletes


class GaveUp(ConsumerError):
    """An operation that will not succeed: its events fail with `reason`."""

    def __init__(self, reason: DlqReason, message: str, status: int | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class Caller:
    """Makes one logical call at a time per `call`; many may be in flight at once."""

    def __init__(
        self,
        downstream: Downstream,
        policy: RetryPolicy,
        *,
        uncertain_retries: int = 5,
        on_retry: Callable[[str, int | None], None] | None = None,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._downstream = downstream
        self._policy = policy
        self._uncertain_retries = uncertain_retries
        self.on_retry = on_retry or (lambda _op, _reason: None)
        self._draw = draw
        self._clock = clock
        self.sleep = sleep

    async def call(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        tally: Tally,
        *,
        counted: bool = True,
    ) -> T:
        """One logical call, retried until it succeeds, is rejected, or the budget runs out.

        `counted` is False for a step made of calls that count themselves (start and watch);
        such a step does not take a turn either: its calls take theirs (the turn is not
        reentrant, and a step holding it would wait on its own calls forever).
        """
        started = self._clock()
        attempt = uncertain = 0
        downstream = self._downstream
        while True:
            await downstream.wait_open()
            if counted:
                tally.calls += 1
            try:
                if counted:
                    async with downstream.turn():
                        result = await call()
                else:
                    result = await call()
            except AuthError as exc:
                # Nothing is dead-lettered for a credentials problem: wait for it to be fixed.
                tally.last_status = exc.status
                downstream.halt(exc)
                continue
            except TransientError as exc:
                tally.last_status = exc.status
                delay = self._policy.delay(attempt, self._draw(), exc.retry_after_s)
                if isinstance(exc, UncertainError):
                    # Whatever the time budget (RETRY_MAX_DURATION_S 0 is for ever): an error
                    # that may be deterministic must not be retried for ever.
                    uncertain += 1
                    if uncertain > self._uncertain_retries:
                        raise GaveUp(DlqReason.RETRIES_EXHAUSTED, str(exc), exc.status) from exc
                if self._policy.gives_up(started, self._clock(), delay):
                    raise GaveUp(DlqReason.RETRIES_EXHAUSTED, str(exc), exc.status) from exc
                self.on_retry(operation, exc.status)
                downstream.backing_off()
                attempt += 1
                await self.sleep(delay)
                continue
            except RejectedError as exc:
                tally.last_status = exc.status
                raise
            tally.last_status = 200
            downstream.succeeded()
            return result
