"""Writes dead letters, and returns only once the broker has acknowledged them.

A dead letter is the original record (key and value byte for byte, headers in order and byte
for byte, except that a producer's own `dlq.*` headers are renamed `dlq.original-header.*`, so
none can pass for ours) with the consumer's `dlq.*` headers added (`core/dlq.py`). The offset
of an event whose dead letter is not acknowledged stays uncommitted, so a broker that is down
is waited out (`produce_until_delivered`).

The dead-letter guard (`core/guard.py`) is asked first: past its share of recent events, no
more dead letters are written and the write waits for good, which holds the event (and every
later offset of its partition) uncommitted until an operator has looked. A bad deploy then
stalls a partition instead of emptying it into the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time

from confluent_kafka import Message

from consumer.core.dlq import (
    DeadLetter,
    DlqReason,
    carried_replay_count,
    dead_letter_headers,
    headers_of,
)
from consumer.core.guard import DlqGuard
from consumer.core.outcome import Failure
from consumer.kafka.producer import AsyncProducer, produce_until_delivered
from consumer.telemetry.metrics import Metrics

__all__ = ["DeadLetterSink"]

log = logging.getLogger(__name__)


class DeadLetterSink:
    """The dead-letter topic, behind its guard."""

    def __init__(
        self,
        producer: AsyncProducer,
        *,
        topic: str,
        group: str,
        metrics: Metrics,
        guard: DlqGuard,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._group = group
        self._metrics = metrics
        self.guard = guard
        self._never = asyncio.Event()  # what a write waits on once the guard has tripped
        self.held = False

    def letter(
        self,
        message: Message,
        tp: tuple[str, int],
        offset: int,
        *,
        reason: DlqReason,
        error: str,
        event_id: str | None,
        failure: Failure | None = None,
    ) -> DeadLetter:
        """The dead letter of the record at `tp`/`offset`: why, and where it came from."""
        kind, stamp = message.timestamp()
        return DeadLetter(
            reason=reason,
            error=error,
            topic=tp[0],
            partition=tp[1],
            offset=offset,
            timestamp_ms=stamp if kind else None,
            attempts=failure.attempts if failure else 0,
            group=self._group,
            event_id=event_id,
            http_status=failure.http_status if failure else None,
        )

    async def write(
        self, message: Message, ordinal: int, letter: DeadLetter, event_type: str
    ) -> None:
        """Write `message`'s dead letter; `ordinal` is its place in consumption order."""
        if not self.guard.admit(ordinal, letter.reason):
            if not self.held:
                self.held = True
                log.error(
                    "dead-letter guard tripped: over %.0f%% of recent events failed; no more "
                    "dead letters are written and nothing past them is committed. Fix the "
                    "cause (a bad deploy, a schema), then restart.",
                    self.guard.max_share * 100,
                )
            self._metrics.dlq_guard_tripped.set(1)
            # Held for good: the event stays in flight and uncommitted until a restart.
            await self._never.wait()
        original = headers_of(message)
        headers = dead_letter_headers(original, letter, time.time())
        await produce_until_delivered(
            self._producer,
            self._topic,
            key=message.key(),
            value=message.value(),
            headers=headers,
            what="dead-letter",
            log=log,
        )
        self._metrics.dlq[letter.reason].inc()
        self._metrics.events[(event_type, "dead_lettered")].inc()
        if carried_replay_count(original):
            self._metrics.replayed["dead_lettered"].inc()
        # Per event, so DEBUG only; coordinates and the event id, never the ids it names.
        log.debug(
            "dead letter written",
            extra={
                "reason": letter.reason,
                "event_type": event_type,
                "event_id": letter.event_id,
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
            },
        )
