"""`deletion-consumer replay`: dead letters back to the input topic (CONTRACT section 7).

A run, per DLQ partition:

1. Start where this selection's cursor group (`replay_rules.cursor_group`) committed, else at
   the beginning (or `--from-offset`). The partitions are assigned directly: no group
   membership, no rebalance, nothing that disturbs the consumers while they run.
2. Fix the end when the run starts, so that it terminates and never reads the dead letters its
   own replays cause while consumers are running. The end is the larger of the broker's
   ListOffsets answer and the high watermark of the first fetch answer. Tansu answers
   ListOffsets with the base offset of the last record batch + 1, short of the end after a
   multi-record batch; its fetch answers carry the true high watermark. With
   `enable.partition.eof`, the broker says when a partition has been read to its end (and a
   start past the end is caught against the fetch answers' high watermark), so no idle
   timeout decides it: one only guards against a broker that stops answering.
3. Decide each record (`replay_rules.decide`); republish the chosen ones with the idempotent,
   acks=all producer: original key, value and headers, without `dlq.*`, plus
   `dlq.replay.count`. A letter that came from a partition of the destination topic goes back
   to that partition, so a subject's events still share one.
4. After each batch, wait for every acknowledgement, then commit the cursor past every record
   decided: replayed and acknowledged, left out by a filter, or stopped by the loop guard.
   A record whose delivery failed, and everything after it in its partition, stays uncommitted.

Exit codes: 0 done, 1 the broker failed us, 2 bad arguments, 130 interrupted (what was
acknowledged is committed first).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.avro.codec import DecodeError, Decoder, SchemaStore
from consumer.avro.registry import RegistryError, SchemaRegistryClient
from consumer.core.dlq import DLQ_REASONS, headers_of
from consumer.core.replay_rules import (
    DEFAULT_MAX_REPLAYS,
    Letter,
    Pacer,
    Selection,
    Tally,
    Verdict,
    cursor_group,
    decide,
    loop_guard_lines,
    parse_when,
    replay_headers,
)
from consumer.kafka.partition_end import fetched_end, partition_end
from consumer.settings import Settings

__all__ = ["add_replay_arguments", "run_replay"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 130

_BATCH = 500
_POLL_S = 0.2
_TIMEOUT_S = 10.0
# A partition that yields neither a record nor its end for this long means a broker in trouble.
_SILENCE_LIMIT_S = 30.0
_PROGRESS_EVERY_S = 0.1


class ReplayError(Exception):
    """The run cannot go on; the message is one line for the operator."""


# --- command line ---------------------------------------------------------------------------


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 (unlimited) or more, not {text}")
    return value


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `replay` (the settings' own options are added separately)."""
    group = parser.add_argument_group("replay")
    group.add_argument(
        "--reason",
        dest="reasons",
        action="append",
        choices=DLQ_REASONS,
        metavar="REASON",
        help=f"only dead letters of this reason, repeatable ({', '.join(DLQ_REASONS)})",
    )
    group.add_argument(
        "--since",
        metavar="WHEN",
        help="only letters that failed at or after WHEN: ISO 8601 (UTC unless it says) or a "
        "duration ago (30m, 2h, 7d, 1d12h)",
    )
    group.add_argument("--until", metavar="WHEN", help="only letters that failed before WHEN")
    group.add_argument(
        "--event-id", dest="event_ids", action="append", metavar="ID", help="repeatable"
    )
    group.add_argument(
        "--partition",
        dest="partitions",
        action="append",
        type=_count,
        metavar="N",
        help="only this DLQ partition, repeatable",
    )
    group.add_argument("--from-offset", type=_count, metavar="N", help="first DLQ offset")
    group.add_argument("--to-offset", type=_count, metavar="N", help="last DLQ offset, included")
    group.add_argument("--limit", type=_positive, metavar="N", help="replay at most N records")
    group.add_argument(
        "--to",
        metavar="TOPIC",
        help="publish here (default: each letter's dlq.original.topic, else the first input topic)",
    )
    group.add_argument(
        "--rate", type=_rate, default=0.0, metavar="N", help="records per second (0: unlimited)"
    )
    group.add_argument(
        "--max-replays",
        type=_count,
        default=DEFAULT_MAX_REPLAYS,
        metavar="N",
        help=f"loop guard: skip a record replayed N times already (default {DEFAULT_MAX_REPLAYS})",
    )
    group.add_argument("--force", action="store_true", help="replay past the loop guard")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be replayed, by reason and event type; publish and commit nothing",
    )
    group.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    group.add_argument(
        "--replay-group",
        metavar="NAME",
        help="base of the cursor groups (default: KAFKA_GROUP_ID + '.replay'); a filtered "
        "replay adds its selection to the name",
    )


@dataclass(frozen=True, slots=True)
class _Options:
    selection: Selection
    group: str
    to: str | None
    limit: int | None
    rate: float
    dry_run: bool
    as_json: bool


def _options(args: argparse.Namespace, settings: Settings, now: datetime) -> _Options:
    """Raises ValueError with a line naming the option."""
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        text = getattr(args, name)
        try:
            times[name] = parse_when(text, now) if text is not None else None
        except ValueError as exc:
            raise ValueError(f"--{name}: {exc}") from None
    if times["since"] and times["until"] and times["since"] >= times["until"]:
        raise ValueError("--since must be before --until")
    if args.to_offset is not None and (args.from_offset or 0) > args.to_offset:
        raise ValueError("--from-offset must not be past --to-offset")
    event_ids = frozenset(item.strip() for item in args.event_ids or () if item.strip())
    if args.event_ids and not event_ids:
        raise ValueError("--event-id: empty")
    selection = Selection(
        reasons=frozenset(args.reasons or ()),
        event_ids=event_ids,
        since=times["since"],
        until=times["until"],
        partitions=frozenset(args.partitions or ()),
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        max_replays=args.max_replays,
        force=args.force,
    )
    base = args.replay_group or f"{settings.group_id}.replay"
    return _Options(
        selection=selection,
        group=cursor_group(base, selection, to=args.to, since=args.since, until=args.until),
        to=args.to,
        limit=args.limit,
        rate=args.rate,
        dry_run=args.dry_run,
        as_json=args.json,
    )


def run_replay(
    args: argparse.Namespace,
    settings: Settings,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `replay` with parsed arguments (see `add_replay_arguments`); the exit code."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        options = _options(args, settings, datetime.now(UTC))
    except ValueError as exc:
        print(f"deletion-consumer replay: {exc}", file=err)
        return EXIT_BAD_ARGUMENTS
    replay = Replay(settings, options, progress=_Progress(err))
    with _interruptible(replay.stop):
        try:
            code = replay.run()
        except ReplayError as exc:
            print(f"deletion-consumer replay: {exc}", file=err)
            code = EXIT_FAILED
    if replay.started:
        _report(replay, options, settings, out, interrupted=replay.stopped)
    return code


@contextmanager
def _interruptible(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM finish the batch in hand, commit it, and end the run."""
    if not _in_main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# --- the run --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Partition:
    number: int
    next: int  # the next offset to decide; the cursor goes here once all before it is settled
    listed_end: int  # ListOffsets: exact on Kafka, possibly short on Tansu
    stop: int | None = None  # fixed at the first fetch answer: min(end, --to-offset + 1)
    done: bool = False
    committed: int = -1
    failed_at: int | None = None  # the first offset whose delivery failed in this batch


@dataclass(slots=True)
class _Pending:
    """Republished records of the batch in hand, by DLQ position, with delivery errors."""

    sent: int = 0
    errors: list[tuple[int, int, str]] = field(default_factory=list)


class Replay:
    """One run of `replay`; `tally` is what it did."""

    def __init__(
        self,
        settings: Settings,
        options: _Options,
        *,
        progress: _Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._options = options
        self._progress = progress
        self._clock = clock
        self._pacer = Pacer(options.rate)
        self.tally = Tally()
        self.stopped = False
        self.started = False  # the DLQ partitions are assigned: there is something to report
        self._partitions: dict[int, _Partition] = {}
        self._topic_sizes: dict[str, int] = {}
        self._registry = (
            SchemaRegistryClient(settings.schema_registry_url)
            if settings.schema_registry_url
            else None
        )
        self._decoder = Decoder(SchemaStore.from_directory(), self._registry)

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> int:
        kafka_log = {"logger": logging.getLogger("consumer.kafka")}
        config = dict(self._settings.consumer_config())
        config.pop("partition.assignment.strategy", None)  # assigned, never subscribed
        config.update(
            {
                "group.id": self._options.group,
                "enable.partition.eof": True,
                # Only an offset past the end can be out of range (the start is clamped to the
                # log start): it means "nothing to read", not "read everything again".
                "auto.offset.reset": "latest",
                **kafka_log,
            }
        )
        try:
            reader = Consumer(config)
            producer = (
                None
                if self._options.dry_run
                else Producer({**self._settings.producer_config(), **kafka_log})
            )
        except KafkaException as exc:
            raise ReplayError(f"bad Kafka setting: {exc.args[0]}") from exc
        try:
            self._open(reader)
            self.started = True
            self._loop(reader, producer)
        except KafkaException as exc:
            raise ReplayError(f"Kafka: {exc.args[0]}") from exc
        finally:
            if self._progress is not None:
                self._progress.finish()
            if producer is not None:
                producer.flush(_TIMEOUT_S)
            reader.close()
            if self._registry is not None:
                self._registry.close()
        return EXIT_INTERRUPTED if self.stopped else EXIT_OK

    # -- start ---------------------------------------------------------------------------------

    def _open(self, reader: Consumer) -> None:
        topic = self._settings.dlq_topic
        metadata = reader.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ReplayError(f"the DLQ topic {topic!r} does not exist")
        numbers = sorted(metadata.partitions)
        wanted = self._options.selection.partitions
        missing = sorted(wanted - set(numbers))
        if missing:
            raise ReplayError(f"the DLQ topic {topic!r} has no partition {missing[0]}")
        if wanted:
            numbers = [n for n in numbers if n in wanted]
        asked = [TopicPartition(topic, n) for n in numbers]
        committed = {tp.partition: tp.offset for tp in reader.committed(asked, timeout=_TIMEOUT_S)}
        from_offset = self._options.selection.from_offset or 0
        to_offset = self._options.selection.to_offset
        for n in numbers:
            low, high = reader.get_watermark_offsets(
                TopicPartition(topic, n), timeout=_TIMEOUT_S, cached=False
            )
            cursor = committed.get(n, -1)
            start = max(cursor if cursor >= 0 else 0, from_offset, low)
            part = _Partition(number=n, next=start, listed_end=high, committed=cursor)
            if to_offset is not None and start > to_offset:
                part.done = True
            self._partitions[n] = part
        reader.assign(
            [
                TopicPartition(topic, p.number, p.next)
                for p in self._partitions.values()
                if not p.done
            ]
        )

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self, reader: Consumer, producer: Producer | None) -> None:
        batch = _BATCH if self._options.rate <= 0 else max(1, min(_BATCH, int(self._options.rate)))
        heard = self._clock()
        while not self._finished():
            messages = reader.consume(batch, timeout=_POLL_S)
            pending = _Pending()
            try:
                for message in messages:
                    if self._finished():
                        break
                    heard = self._clock()
                    self._take(reader, producer, message, pending)
            finally:
                # Also when a record stops the run: what was decided before it is committed.
                self._settle(reader, producer, pending)
            if self._progress is not None:
                self._progress.show(self.tally, self._total_hint())
            if not messages:
                self._past_the_end(reader)
            if not messages and not self._finished() and self._clock() - heard > _SILENCE_LIMIT_S:
                waiting = sorted(p.number for p in self._partitions.values() if not p.done)
                raise ReplayError(
                    f"no answer from the broker for {_SILENCE_LIMIT_S:.0f} s on DLQ "
                    f"partitions {waiting}; what was done is committed, run again to go on"
                )

    def _past_the_end(self, reader: Consumer) -> None:
        """Close the partitions read up to the high watermark of their last fetch answer.

        Partition EOF is emitted only at exactly the high watermark; a start past it (an
        explicit --from-offset) is answered by Kafka with an out-of-range reset, by Tansu with
        empty fetches and no EOF at all.
        """
        for part in self._partitions.values():
            if part.done:
                continue
            fetched = fetched_end(reader, TopicPartition(self._settings.dlq_topic, part.number))
            if fetched >= 0 and part.next >= fetched:
                self._fix_end(reader, part, None)
                self._close(reader, part)

    def _finished(self) -> bool:
        if self.stopped:
            return True
        limit = self._options.limit
        if limit is not None and self.tally.replayed >= limit:
            return True
        return all(p.done for p in self._partitions.values())

    def _take(
        self, reader: Consumer, producer: Producer | None, message: Message, pending: _Pending
    ) -> None:
        error = message.error()
        number, offset = message.partition(), message.offset()
        part = self._partitions.get(number) if number is not None else None
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                if error.fatal() or not error.retriable():
                    raise KafkaException(error)
                log.warning("DLQ read error, retrying: %s", error.str())
            elif part is not None:
                self._fix_end(reader, part, offset)
                self._close(reader, part)
            return
        if part is None or offset is None or part.done or offset < part.next:
            return
        stop = self._fix_end(reader, part, None)
        if offset >= stop:
            self._close(reader, part)
            return
        letter = Letter.of(part.number, offset, headers_of(message))
        verdict = decide(letter, self._options.selection)
        event_type = ""
        if verdict is Verdict.REPLAY:
            event_type = self._event_type(message.value())
            self._replay(reader, producer, letter, message, pending)
        self.tally.count(letter, verdict, event_type)
        part.next = offset + 1
        if part.next >= stop:
            self._close(reader, part)

    def _replay(
        self,
        reader: Consumer,
        producer: Producer | None,
        letter: Letter,
        message: Message,
        pending: _Pending,
    ) -> None:
        topic = self._destination(letter)
        size = self._size(reader, topic)  # checked in a dry run too
        if producer is None:
            return
        # Back to its own partition when it goes back to its own topic: a subject's events
        # keep sharing a partition whatever partitioner the upstream producers use.
        partition = letter.original_partition
        if topic != letter.original_topic or partition is None or partition >= size:
            partition = None
        self._publish(producer, topic, partition, letter, message, pending)

    def _fix_end(self, reader: Consumer, part: _Partition, eof: int | None) -> int:
        """Where this run stops reading the partition, fixed by its first fetch answer."""
        if part.stop is not None:
            return part.stop
        tp = TopicPartition(self._settings.dlq_topic, part.number)
        end = partition_end(reader, tp, part.listed_end, eof)
        to_offset = self._options.selection.to_offset
        part.stop = end if to_offset is None else min(end, to_offset + 1)
        return part.stop

    def _close(self, reader: Consumer, part: _Partition) -> None:
        if not part.done:
            part.done = True
            reader.pause([TopicPartition(self._settings.dlq_topic, part.number)])

    def _event_type(self, value: bytes | None) -> str:
        try:
            return self._decoder.decode(value).type.value
        except (DecodeError, RegistryError):
            return "unknown"

    def _publish(  # noqa: PLR0917 - private, called once
        self,
        producer: Producer,
        topic: str,
        partition: int | None,
        letter: Letter,
        message: Message,
        pending: _Pending,
    ) -> None:
        """Produce one record; its delivery report lands in `pending`."""
        delay = self._pacer.delay(self._clock())
        deadline = self._clock() + delay
        while delay > 0:
            producer.poll(min(delay, _POLL_S))  # serves delivery reports while it waits
            delay = deadline - self._clock()
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        headers: list[tuple[str, str | bytes | None]] = [*replay_headers(letter)]

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
                producer.poll(_POLL_S)  # the local queue is full: let deliveries drain it
        pending.sent += 1
        producer.poll(0)

    def _destination(self, letter: Letter) -> str:
        if self._options.to:
            return self._options.to
        if letter.original_topic:
            return letter.original_topic
        first = self._settings.topics[0]
        if first.startswith("^"):
            raise ReplayError(
                f"DLQ offset {letter.partition}:{letter.offset} has no dlq.original.topic and "
                "the input topics are a pattern: name the destination with --to"
            )
        return first

    def _size(self, reader: Consumer, topic: str) -> int:
        """The destination's partition count; a destination that does not exist is an error."""
        if topic not in self._topic_sizes:
            found = reader.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise ReplayError(f"the destination topic {topic!r} does not exist")
            self._topic_sizes[topic] = len(found.partitions)
        return self._topic_sizes[topic]

    def _settle(self, reader: Consumer, producer: Producer | None, pending: _Pending) -> None:
        """Wait for the batch's acknowledgements, then commit the cursor past what is settled."""
        if producer is not None and pending.sent:
            left = producer.flush(_TIMEOUT_S * 6)
            if left:
                raise ReplayError(f"{left} republished records not acknowledged in time")
        for partition, offset, _ in pending.errors:
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
        if pending.errors:
            partition, offset, reason = pending.errors[0]
            raise ReplayError(
                f"{len(pending.errors)} republished records were refused, the first from DLQ "
                f"offset {partition}:{offset}: {reason}; the cursor stops before it"
            )

    def _total_hint(self) -> int:
        total = 0
        for part in self._partitions.values():
            end = part.stop if part.stop is not None else part.listed_end
            total += max(0, end - part.next)
        return self.tally.read + total


# --- output ---------------------------------------------------------------------------------


class _Progress:
    """One stderr line rewritten in place, only on a terminal."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._clock = clock
        self._last = 0.0
        self._width = 0

    def show(self, tally: Tally, total: int) -> None:
        if not self._enabled or self._clock() - self._last < _PROGRESS_EVERY_S:
            return
        self._last = self._clock()
        share = tally.read / total if total else 1.0
        filled = int(share * 20)
        skipped = tally.skipped_filter + tally.skipped_loop_guard
        line = (
            f"replay [{'#' * filled}{'.' * (20 - filled)}] {tally.read}/{total} read, "
            f"{tally.replayed} replayed, {skipped} skipped"
        )
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def finish(self) -> None:
        if self._enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


def _report(
    replay: Replay, options: _Options, settings: Settings, out: TextIO, *, interrupted: bool
) -> None:
    tally = replay.tally
    guarded = [
        {"partition": letter.partition, "offset": letter.offset, "event_id": letter.event_id}
        for letter in tally.loop_guarded
    ]
    if options.as_json:
        summary = {
            "dlq_topic": settings.dlq_topic,
            "group": options.group,
            "dry_run": options.dry_run,
            "interrupted": interrupted,
            "read": tally.read,
            "replayed": tally.replayed,
            "skipped_filter": tally.skipped_filter,
            "skipped_loop_guard": tally.skipped_loop_guard,
            "by_reason_and_type": [
                {"reason": reason, "type": kind, "count": n} for reason, kind, n in tally.table()
            ],
            "loop_guarded": guarded,
        }
        print(json.dumps(summary), file=out)
        return
    verb = "would replay" if options.dry_run else "replayed"
    title = f"replay of {settings.dlq_topic} (cursor group {options.group})"
    if options.dry_run:
        title += ": dry run, nothing published or committed"
    lines = [title]
    table = tally.table()
    if table:
        width = max(len("reason"), *(len(reason) for reason, _, _ in table))
        kind_width = max(len("event type"), *(len(kind) for _, kind, _ in table))
        lines.append(f"  {'reason':<{width}}  {'event type':<{kind_width}}  {verb}")
        lines.extend(
            f"  {reason:<{width}}  {kind:<{kind_width}}  {n:>{len(verb)}}"
            for reason, kind, n in table
        )
    lines += [
        f"  read                   {tally.read}",
        f"  {verb:<21}  {tally.replayed}",
        f"  skipped by filter      {tally.skipped_filter}",
        f"  skipped by loop guard  {tally.skipped_loop_guard}",
    ]
    if tally.loop_guarded:
        lines.append(
            f"  stopped by the loop guard (replayed {options.selection.max_replays} times "
            "already; to replay one anyway: --force --partition P --from-offset O --to-offset O):"
        )
        lines.extend(f"    {line}" for line in loop_guard_lines(tally.loop_guarded))
    if interrupted:
        lines.append("  interrupted: what was acknowledged is committed; run again to go on")
    print("\n".join(lines), file=out)
