"""Republishing the chosen dead letters, paced, and learning which ones the broker took.

Each letter goes back with its original key, value and headers (without `dlq.*`, plus
`dlq.replay.count`: `replay_rules.replay_headers`) through the idempotent, acks=all producer.
A letter that came from a partition of the destination topic goes back to that partition, so a
subject's events still share one whatever partitioner the upstream producers use.

Deliveries are not awaited one by one: a batch is produced, then `settle` waits for all its
acknowledgements and returns the refusals, so the caller commits the cursor only up to the
first record the broker did not take. A refusal is not retried here: the run stops (exit 1)
with the cursor before it, so the next run starts from it. `--rate` spaces the records out
(`Pacer`), serving delivery reports while it waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer

from consumer.core.replay_rules import Letter, Pacer, replay_headers
from consumer.kafka.topic_scan import POLL_S, TIMEOUT_S
from consumer.replay.options import ReplayError, ReplayOptions
from consumer.settings import Settings

__all__ = ["Refusal", "Republisher"]

# A batch's acknowledgements may take this long before the run gives up on them.
_ACK_TIMEOUT_S = TIMEOUT_S * 6

Refusal = tuple[int, int, str]  # DLQ partition, DLQ offset, the broker's error


@dataclass(slots=True)
class _Pending:
    """Republished records of the batch in hand, with the refusals reported so far."""

    sent: int = 0
    errors: list[Refusal] = field(default_factory=list)


class Republisher:
    """Where each letter goes, and its production; `producer` None is a dry run.

    `reader` (the DLQ consumer) answers the destination's metadata: a destination that does
    not exist stops the run, in a dry run too.
    """

    def __init__(
        self,
        producer: Producer | None,
        reader: Consumer,
        settings: Settings,
        options: ReplayOptions,
        clock: Callable[[], float],
    ) -> None:
        self._producer = producer
        self._reader = reader
        self._settings = settings
        self._to = options.to
        self._pacer = Pacer(options.rate)
        self._clock = clock
        self._topic_sizes: dict[str, int] = {}
        self._pending = _Pending()

    def replay(self, letter: Letter, message: Message) -> None:
        """Produce the letter's original record again; its delivery is known at `settle`."""
        topic = self.destination(letter)
        size = self._size(topic)  # checked in a dry run too
        if self._producer is None:
            return
        # Back to its own partition when it goes back to its own topic: a subject's events
        # keep sharing a partition whatever partitioner the upstream producers use.
        partition = letter.original_partition
        if topic != letter.original_topic or partition is None or partition >= size:
            partition = None
        self._publish(self._producer, topic, partition, letter, message)

    def destination(self, letter: Letter) -> str:
        if self._to:
            return self._to
        if letter.original_topic:
            return letter.original_topic
        first = self._settings.topics[0]
        if first.startswith("^"):
            raise ReplayError(
                f"DLQ offset {letter.partition}:{letter.offset} has no dlq.original.topic and "
                "the input topics are a pattern: name the destination with --to"
            )
        return first

    def settle(self) -> list[Refusal]:
        """Wait for the batch's acknowledgements; the records refused. A new batch begins.

        Raises ReplayError when some are still unacknowledged after `_ACK_TIMEOUT_S`.
        """
        pending, self._pending = self._pending, _Pending()
        if self._producer is not None and pending.sent:
            left = self._producer.flush(_ACK_TIMEOUT_S)
            if left:
                raise ReplayError(f"{left} republished records not acknowledged in time")
        return pending.errors

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(TIMEOUT_S)

    def _size(self, topic: str) -> int:
        """The destination's partition count; a destination that does not exist is an error."""
        if topic not in self._topic_sizes:
            found = self._reader.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise ReplayError(f"the destination topic {topic!r} does not exist")
            self._topic_sizes[topic] = len(found.partitions)
        return self._topic_sizes[topic]

    def _publish(
        self,
        producer: Producer,
        topic: str,
        partition: int | None,
        letter: Letter,
        message: Message,
    ) -> None:
        """Produce one record, paced; its delivery report lands in the pending batch."""
        delay = self._pacer.delay(self._clock())
        deadline = self._clock() + delay
        while delay > 0:
            producer.poll(min(delay, POLL_S))  # serves delivery reports while it waits
            delay = deadline - self._clock()
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        headers: list[tuple[str, str | bytes | None]] = [*replay_headers(letter)]
        pending = self._pending

        def delivered(error: KafkaError | None, _record: object) -> None:
            if error is not None:
                pending.errors.append((letter.partition, letter.offset, error.str()))

        while True:
            try:
                producer.produce(
                    topic,
                    key=message.key(),
                    value=message.value(),
                    headers=headers,
                    on_delivery=delivered,
                    **extra,
                )
                break
            except BufferError:
                producer.poll(POLL_S)  # the local queue is full: let deliveries drain it
        pending.sent += 1
        producer.poll(0)
