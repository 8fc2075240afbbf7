"""One run of `replay`: read the DLQ to the end it had at the start, decide, republish, commit.

Per DLQ partition:

1. Start where this selection's cursor group (`replay_rules.cursor_group`) committed, else at
   the beginning (or `--from-offset`), never before the log start.
2. Read to the end the partition had when the run started (`TopicScan`: assigned, not
   subscribed, the end fixed at the first fetch answer), so that the run terminates and never
   reads the dead letters its own replays cause while consumers are running.
3. Decide each record (`replay_rules.decide`) and republish the chosen ones (`Republisher`).
4. After each batch, wait for every acknowledgement, then commit the cursor past every record
   decided: replayed and acknowledged, left out by a filter, stopped by the loop guard, or
   skipped as malformed (`Letter.of` reads any headers without raising, so no record stops
   the run: it is counted and reported once, by its position).
   A record whose delivery failed, and everything after it in its partition, stays
   uncommitted: the cursor is where the next run must begin.

Errors of the broker and of the scan come out as `ReplayError`, one line for the operator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from consumer.avro.codec import DecodeError, Decoder, SchemaStore
from consumer.avro.registry import RegistryError
from consumer.avro.registry_config import registry_client
from consumer.core.dlq import headers_of
from consumer.core.replay_rules import Letter, Tally, Verdict, decide
from consumer.kafka.config import consumer_config, producer_config, with_logger
from consumer.kafka.topic_scan import (
    BATCH,
    TIMEOUT_S,
    BrokerSilent,
    ScanError,
    ScanPartition,
    TopicScan,
    reader_config,
)
from consumer.replay.options import ReplayError, ReplayOptions
from consumer.replay.report import Progress
from consumer.replay.republish import Republisher
from consumer.settings import Settings

__all__ = ["Replay"]


@dataclass(slots=True)
class _Partition(ScanPartition):
    """A DLQ partition as the scan reads it, with this run's cursor on it."""

    committed: int = -1  # the cursor group's position; -1: none yet
    failed_at: int | None = None  # the first offset whose delivery failed


class Replay:
    """One run of `replay`; `tally` is what it did."""

    def __init__(
        self,
        settings: Settings,
        options: ReplayOptions,
        *,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._options = options
        self._progress = progress
        self._clock = clock
        self.tally = Tally()
        self.stopped = False
        self.started = False  # the DLQ partitions are assigned: there is something to report
        self._partitions: dict[int, _Partition] = {}
        self._registry = registry_client(settings)
        self._decoder = Decoder(SchemaStore.from_directory(), self._registry)

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> None:
        """Replay to the end, or until stopped (`stopped` then says so)."""
        config = reader_config(
            consumer_config(self._settings),
            group=self._options.group,
            # Only an offset past the end can be out of range (the start is clamped to the
            # log start): it means "nothing to read", not "read everything again".
            reset="latest",
        )
        try:
            reader = Consumer(config)
            producer = (
                None
                if self._options.dry_run
                else Producer(with_logger(producer_config(self._settings)))
            )
        except KafkaException as exc:
            raise ReplayError(f"bad Kafka setting: {exc.args[0]}") from exc
        republisher = Republisher(producer, reader, self._settings, self._options, self._clock)
        to_offset = self._options.selection.to_offset
        scan = TopicScan(
            reader,
            self._settings.dlq_topic,
            name="DLQ",
            until=None if to_offset is None else to_offset + 1,
            clock=self._clock,
        )
        try:
            self._open(reader, scan)
            self.started = True
            self._loop(reader, scan, republisher)
        except BrokerSilent as exc:
            raise ReplayError(
                f"no answer from the broker for {exc.limit_s:.0f} s on DLQ partitions "
                f"{exc.waiting}; what was done is committed, run again to go on"
            ) from exc
        except ScanError as exc:
            raise ReplayError(str(exc)) from exc
        except KafkaException as exc:
            raise ReplayError(f"Kafka: {exc.args[0]}") from exc
        finally:
            if self._progress is not None:
                self._progress.finish()
            republisher.close()
            reader.close()
            if self._registry is not None:
                self._registry.close()

    def _open(self, reader: Consumer, scan: TopicScan) -> None:
        topic = self._settings.dlq_topic
        numbers = scan.partition_numbers()
        wanted = self._options.selection.partitions
        missing = sorted(wanted - set(numbers))
        if missing:
            raise ReplayError(f"the DLQ topic {topic!r} has no partition {missing[0]}")
        if wanted:
            numbers = [n for n in numbers if n in wanted]
        asked = [TopicPartition(topic, n) for n in numbers]
        committed = {tp.partition: tp.offset for tp in reader.committed(asked, timeout=TIMEOUT_S)}
        from_offset = self._options.selection.from_offset or 0
        to_offset = self._options.selection.to_offset
        for n in numbers:
            low, high = scan.watermarks(n)
            cursor = committed.get(n, -1)
            start = max(cursor if cursor >= 0 else 0, from_offset, low)
            part = _Partition(number=n, next=start, listed_end=high, committed=cursor)
            if to_offset is not None and start > to_offset:
                part.done = True
            self._partitions[n] = part
        scan.open(self._partitions.values())

    def _loop(self, reader: Consumer, scan: TopicScan, republisher: Republisher) -> None:
        rate = self._options.rate
        batch = BATCH if rate <= 0 else max(1, min(BATCH, int(rate)))

        def decide_one(part: ScanPartition, offset: int, message: Message) -> None:
            letter = Letter.of(part.number, offset, headers_of(message))
            verdict = decide(letter, self._options.selection)
            event_type = ""
            if verdict is Verdict.REPLAY:
                event_type = self._event_type(message.value())
                republisher.replay(letter, message)
            self.tally.count(letter, verdict, event_type)

        def after_batch() -> None:
            # Also when a record stops the run: what was decided before it is committed.
            self._settle(reader, republisher)
            if self._progress is not None:
                self._progress.show(self.tally, self._total_hint())

        scan.run(decide_one, batch=batch, stopped=self._limited, after_batch=after_batch)

    def _limited(self) -> bool:
        """Interrupted, or `--limit` reached."""
        if self.stopped:
            return True
        limit = self._options.limit
        return limit is not None and self.tally.replayed >= limit

    def _event_type(self, value: bytes | None) -> str:
        try:
            return self._decoder.decode(value).type.value
        except (DecodeError, RegistryError):
            return "unknown"

    def _settle(self, reader: Consumer, republisher: Republisher) -> None:
        """Wait for the batch's acknowledgements, then commit the cursor past what is settled."""
        refused = republisher.settle()
        for partition, offset, _ in refused:
            part = self._partitions[partition]
            part.failed_at = offset if part.failed_at is None else min(part.failed_at, offset)
        if not self._options.dry_run:
            moves = []
            for part in self._partitions.values():
                position = part.next if part.failed_at is None else part.failed_at
                if position > part.committed and position > 0:
                    moves.append(TopicPartition(self._settings.dlq_topic, part.number, position))
                    part.committed = position
            if moves:
                reader.commit(offsets=moves, asynchronous=False)
        if refused:
            partition, offset, reason = refused[0]
            raise ReplayError(
                f"{len(refused)} republished records were refused, the first from DLQ "
                f"offset {partition}:{offset}: {reason}; the cursor stops before it"
            )

    def _total_hint(self) -> int:
        total = 0
        for part in self._partitions.values():
            end = part.stop if part.stop is not None else part.listed_end
            total += max(0, end - part.next)
        return self.tally.read + total
