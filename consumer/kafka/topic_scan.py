"""One read of a topic to the end it had when the read started, for `replay` and `receipts`.

Both commands read a topic outside any consumer group's membership and must stop on their own:
`replay` so that it never reads the dead letters its own replays cause while consumers run,
`receipts` so that a lookup ends. Hence the way this scan works:

- Partitions are assigned directly, never subscribed: no group membership, no rebalance,
  nothing that disturbs the consumers of the topic while the scan runs.
- Each partition's end is fixed once, at its first fetch answer (or its EOF), to the larger of
  the ListOffsets answer taken at the start and what the fetch answers say (`partition_end`).
  ListOffsets alone is not enough: Tansu answers it with the base offset of the last record
  batch + 1, short of the end after a multi-record batch. It is never long, so a partition
  whose listed end is at its start may be closed at once (the caller says so).
- With `enable.partition.eof` the broker says when a partition has been read to its end, so no
  idle timeout decides it. A start past the end (an explicit `--from-offset`) gets no EOF: Kafka
  answers it with an out-of-range reset, Tansu with empty fetches; it is caught against the
  high watermark of the last fetch answer when a poll comes back empty.
- A timeout remains only against a broker that stops answering: no record nor end for
  `SILENCE_LIMIT_S` raises `BrokerSilent`. A retriable read error is logged and read past
  (librdkafka fetches again); a fatal or non-retriable one is raised as `KafkaException`.
- A closed partition is paused, so the records written after the start are not fetched.

The caller decides each record (`on_record`) and may end the scan early (`stopped`); the hook
`after_batch` runs after each batch, also when a record raised, so that what was decided
before it can be committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.core.errors import ConsumerError
from consumer.kafka.config import with_logger
from consumer.kafka.partition_end import fetched_end, partition_end

__all__ = [
    "BATCH",
    "SILENCE_LIMIT_S",
    "TIMEOUT_S",
    "BrokerSilent",
    "OnRecord",
    "ScanError",
    "ScanPartition",
    "TopicScan",
    "in_slices",
    "reader_config",
]

log = logging.getLogger(__name__)

BATCH = 500  # records per poll, at most
POLL_S = 0.2
TIMEOUT_S = 10.0  # for a metadata or ListOffsets request
# What the caller does with a record in range: its partition, its offset, the record.
OnRecord = Callable[["ScanPartition", int, Message], None]
# A partition that yields neither a record nor its end for this long means a broker in trouble.
SILENCE_LIMIT_S = 30.0


class ScanError(ConsumerError):
    """The scan cannot go on; the message is one line for the operator."""


class BrokerSilent(ScanError):
    """Neither a record nor an end for `SILENCE_LIMIT_S`; `waiting` are the open partitions."""

    def __init__(self, topic: str, waiting: list[int]) -> None:
        super().__init__(f"no answer from the broker for {SILENCE_LIMIT_S:.0f} s on {topic!r}")
        self.topic = topic
        self.waiting = waiting
        self.limit_s = SILENCE_LIMIT_S


_T = TypeVar("_T")
# A request waits in C, where Python's signal handlers cannot run: a Ctrl-C against a broker that
# does not answer would wait out the whole timeout. In slices of this, it is answered promptly.
_SLICE_S = 0.5
_SLICE_ENDS = frozenset({KafkaError._TIMED_OUT, KafkaError._TRANSPORT})


def in_slices(
    ask: Callable[[float], _T], timeout_s: float, *, between: Callable[[], None] | None = None
) -> _T:
    """`ask(seconds)` (a librdkafka request with its timeout), asked again in short slices until
    it answers or `timeout_s` is spent, so that a signal handler runs between slices.

    `between`, if given, runs before each slice and may raise to end the wait (the service's
    start-up check, abandoned from the event loop when a stop comes).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if between is not None:
            between()
        left = deadline - time.monotonic()
        try:
            answer = ask(max(0.001, min(_SLICE_S, left)))
            if answer is not None or left <= _SLICE_S:  # None: timed out (watermarks)
                return answer
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            # A metadata request that timed out says _TRANSPORT, ListOffsets _TIMED_OUT.
            timed_out = isinstance(error, KafkaError) and error.code() in _SLICE_ENDS
            if not timed_out or left <= _SLICE_S:
                raise


def reader_config(client: Mapping[str, object], *, group: str, reset: str) -> dict[str, object]:
    """The scan's consumer configuration, from the client's (`kafka.config.consumer_config`).

    `group` holds committed positions (`replay`'s cursor) or nothing; it is never joined.
    `reset` is what an offset out of range means to the caller. Partition EOF is on: the scan
    relies on it to know a partition was read to its end. librdkafka's lines go through the
    process's logger (`with_logger`).
    """
    config = with_logger(client)
    config.pop("partition.assignment.strategy", None)  # assigned, never subscribed
    config.update({"group.id": group, "enable.partition.eof": True, "auto.offset.reset": reset})
    return config


@dataclass(slots=True)
class ScanPartition:
    number: int
    next: int  # the next offset to decide
    listed_end: int  # ListOffsets at the start: exact on Kafka, possibly short on Tansu
    stop: int | None = None  # fixed at the first fetch answer: min(end, `until`)
    done: bool = False


class TopicScan:
    """The scan of one topic; `parts` are its partitions once `open` has assigned them.

    `name` names the topic in messages ("DLQ", "receipts"); `until`, if given, is an offset
    not to read past in any partition (excluded).
    """

    def __init__(
        self,
        reader: Consumer,
        topic: str,
        *,
        name: str,
        until: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self.topic = topic
        self._name = name
        self._until = until
        self._clock = clock
        self._heard = clock()
        self.parts: dict[int, ScanPartition] = {}

    # -- start ---------------------------------------------------------------------------------

    def partition_numbers(self) -> list[int]:
        """The topic's partitions, sorted; a topic that does not exist is a `ScanError`."""
        listing = in_slices(lambda s: self._reader.list_topics(self.topic, timeout=s), TIMEOUT_S)
        metadata = listing.topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ScanError(f"the {self._name} topic {self.topic!r} does not exist")
        return sorted(metadata.partitions)

    def watermarks(self, number: int) -> tuple[int, int]:
        """(log start, listed end) of a partition, asked of the broker now."""
        tp = TopicPartition(self.topic, number)
        low, high = in_slices(
            lambda s: self._reader.get_watermark_offsets(tp, timeout=s, cached=False), TIMEOUT_S
        )
        return int(low), int(high)

    def open(self, parts: Iterable[ScanPartition]) -> None:
        """Assign the partitions not already done, each at its `next` offset."""
        self.parts = {part.number: part for part in parts}
        open_parts = [p for p in self.parts.values() if not p.done]
        self._reader.assign([TopicPartition(self.topic, p.number, p.next) for p in open_parts])

    # -- the read ------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return all(part.done for part in self.parts.values())

    def run(
        self,
        on_record: OnRecord,
        *,
        batch: int = BATCH,
        stopped: Callable[[], bool] = lambda: False,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        """Read every open partition to its end, handing each record in range to `on_record`.

        `on_record` gets the record's partition and offset; once it returns, the record counts
        as decided.
        """
        self._heard = self._clock()
        while not (self.done or stopped()):
            messages = self._reader.consume(batch, timeout=POLL_S)
            try:
                for message in messages:
                    if self.done or stopped():
                        break
                    self._heard = self._clock()
                    self._take(message, on_record)
            finally:
                if after_batch is not None:
                    after_batch()
            if messages:
                continue
            self._past_the_end()
            if not (self.done or stopped()) and self._clock() - self._heard > SILENCE_LIMIT_S:
                waiting = sorted(p.number for p in self.parts.values() if not p.done)
                raise BrokerSilent(self.topic, waiting)

    def _take(self, message: Message, on_record: OnRecord) -> None:
        error = message.error()
        number, offset = message.partition(), message.offset()
        part = self.parts.get(number) if number is not None else None
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                if error.fatal() or not error.retriable():
                    raise KafkaException(error)
                log.warning("%s read error, retrying: %s", self._name, error.str())
            elif part is not None:
                self._fix_end(part, offset)  # read up to the end
                self._close(part)
            return
        if part is None or offset is None or part.done or offset < part.next:
            return
        stop = self._fix_end(part, None)
        if offset >= stop:
            self._close(part)  # written after the scan started
            return
        on_record(part, offset, message)
        part.next = offset + 1
        if part.next >= stop:
            self._close(part)

    def _fix_end(self, part: ScanPartition, eof: int | None) -> int:
        """Where the scan of a partition stops, fixed by its first fetch answer."""
        if part.stop is None:
            tp = TopicPartition(self.topic, part.number)
            end = partition_end(self._reader, tp, part.listed_end, eof)
            part.stop = end if self._until is None else min(end, self._until)
        return part.stop

    def _past_the_end(self) -> None:
        """Close the partitions read up to the high watermark of their last fetch answer.

        Partition EOF is emitted only at exactly the high watermark; a start past it gets none.
        """
        for part in self.parts.values():
            if part.done:
                continue
            fetched = fetched_end(self._reader, TopicPartition(self.topic, part.number))
            if fetched >= 0 and part.next >= fetched:
                self._fix_end(part, None)
                self._close(part)

    def _close(self, part: ScanPartition) -> None:
        if not part.done:
            part.done = True
            self._reader.pause([TopicPartition(self.topic, part.number)])
