"""`deletion-consumer receipts`: an event's receipts from `RECEIPTS_TOPIC`, for the audit trail.

Scans every partition from its beginning to the end it had when the scan started (the end is
found as `replay` finds it: see `partition_end`), keeps the records keyed by the event ids asked
for, and prints them decoded. It only reads: partitions are assigned directly, no group is
joined, nothing is committed.

Exit codes: 0 every event asked for has a receipt, 1 one has none (or the broker failed us),
2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.avro.receipt_codec import ReceiptDecodeError, ReceiptDecoder
from consumer.avro.registry import SchemaRegistryClient
from consumer.core.receipts import Receipt, iso_millis
from consumer.kafka.partition_end import fetched_end, partition_end
from consumer.settings import Settings

__all__ = ["Found", "add_receipts_arguments", "find_receipts", "run_receipts"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_BAD_ARGUMENTS = 2

_BATCH = 500
_POLL_S = 0.2
_TIMEOUT_S = 10.0
_SILENCE_LIMIT_S = 30.0


class ScanError(Exception):
    """The scan cannot go on; one line for the operator."""


@dataclass(frozen=True, slots=True)
class Found:
    """A receipt and where it sits on the receipts topic."""

    receipt: Receipt
    partition: int
    offset: int


def add_receipts_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("receipts")
    group.add_argument(
        "--event-id",
        dest="event_ids",
        action="append",
        required=True,
        metavar="ID",
        help="the event whose receipts to show, repeatable",
    )
    group.add_argument("--json", action="store_true", help="one JSON object per receipt")


def run_receipts(
    args: argparse.Namespace,
    settings: Settings,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    wanted = [item.strip() for item in args.event_ids if item.strip()]
    if not wanted:
        print("deletion-consumer receipts: --event-id: empty", file=err)
        return EXIT_BAD_ARGUMENTS
    if not settings.receipts_topic:
        print("deletion-consumer receipts: RECEIPTS_TOPIC is empty: no receipts", file=err)
        return EXIT_BAD_ARGUMENTS
    try:
        found = find_receipts(settings, wanted, warn=lambda line: print(line, file=err))
    except ScanError as exc:
        print(f"deletion-consumer receipts: {exc}", file=err)
        return EXIT_NOT_FOUND
    for item in found:
        if args.json:
            row = {**item.receipt.to_json(), "receipts_partition": item.partition}
            row["receipts_offset"] = item.offset
            print(json.dumps(row), file=out)
        else:
            print(describe(item), file=out)
    seen = {item.receipt.event_id for item in found}
    missing = [event_id for event_id in wanted if event_id not in seen]
    for event_id in missing:
        print(f"no receipt for event {event_id} on {settings.receipts_topic}", file=err)
    return EXIT_NOT_FOUND if missing else EXIT_OK


def describe(found: Found) -> str:
    """A receipt for people: what was asked, what was done, when, and whether it was checked."""
    r = found.receipt
    outcome = r.outcome + (", verified" if r.verified else ", not verified")
    if r.dlq_reason:
        outcome = f"{r.outcome} ({r.dlq_reason})"
    record = str(r.input)
    if r.duplicate_of is not None:
        record += f" (a duplicate of {r.duplicate_of}: the same work)"
    completed = iso_millis(r.completed_at_ms)
    if r.time_to_erasure_ms is not None:
        completed += f" ({r.time_to_erasure_ms / 1000:.3f} s after it was asked)"
    lines = [
        f"receipt for event {r.event_id} (receipts partition {found.partition}, offset "
        f"{found.offset})",
        f"  outcome         {outcome}",
        f"  event           {r.event_type}, reason {r.reason}, from {r.source}",
        f"  input record    {record}",
        f"  occurred at     {iso_millis(r.occurred_at_ms)}",
        f"  {'completed at' if r.dlq_reason is None else 'dead-lettered':<14}  {completed}",
        f"  consumer group  {r.consumer_group}",
        f"  operations      {len(r.operations) or 'none (refused before any call)'}",
    ]
    for op in r.operations:
        parts = [f"{op.calls} calls", f"last HTTP {op.last_http_status or 'none'}"]
        if op.job_id:
            parts.append(f"job {op.job_id}")
        parts.append("verified" if op.verified else "not verified")
        lines.append(f"    {op.kind} by {', '.join(op.identifiers)}: {', '.join(parts)}")
    return "\n".join(lines)


@dataclass(slots=True)
class _Partition:
    number: int
    next: int
    listed_end: int
    stop: int | None = None
    done: bool = False


def find_receipts(
    settings: Settings,
    event_ids: Iterable[str],
    *,
    warn: Callable[[str], None] = log.warning,
    clock: Callable[[], float] = time.monotonic,
) -> list[Found]:
    """Every receipt of these events on the receipts topic, in topic order per partition."""
    topic = settings.receipts_topic
    if not topic:
        return []
    keys = {event_id.encode("utf-8") for event_id in event_ids}
    config = dict(settings.consumer_config())
    config.pop("partition.assignment.strategy", None)  # assigned, never subscribed
    config.update(
        {
            "group.id": f"{settings.group_id}.receipts-lookup",  # never joined nor committed
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "logger": logging.getLogger("consumer.kafka"),
        }
    )
    registry = (
        SchemaRegistryClient(settings.schema_registry_url) if settings.schema_registry_url else None
    )
    decoder = ReceiptDecoder(registry)
    try:
        reader = Consumer(config)
    except KafkaException as exc:
        raise ScanError(f"bad Kafka setting: {exc.args[0]}") from exc
    try:
        scan = _Scan(reader, topic=topic, keys=keys, decoder=decoder, warn=warn, clock=clock)
        return scan.run()
    except KafkaException as exc:
        raise ScanError(f"Kafka: {exc.args[0]}") from exc
    finally:
        reader.close()
        if registry is not None:
            registry.close()


class _Scan:
    def __init__(
        self,
        reader: Consumer,
        *,
        topic: str,
        keys: set[bytes],
        decoder: ReceiptDecoder,
        warn: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        self._reader = reader
        self._topic = topic
        self._keys = keys
        self._decoder = decoder
        self._warn = warn
        self._clock = clock
        self._parts: dict[int, _Partition] = {}
        self.found: list[Found] = []

    def run(self) -> list[Found]:
        self._open()
        heard = self._clock()
        while not all(part.done for part in self._parts.values()):
            messages = self._reader.consume(_BATCH, timeout=_POLL_S)
            for message in messages:
                heard = self._clock()
                self._take(message)
            if messages:
                continue
            self._past_the_end()
            if self._clock() - heard > _SILENCE_LIMIT_S:
                raise ScanError(
                    f"no answer from the broker for {_SILENCE_LIMIT_S:.0f} s on {self._topic!r}"
                )
        return self.found

    def _open(self) -> None:
        reader, topic = self._reader, self._topic
        metadata = reader.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ScanError(f"the receipts topic {topic!r} does not exist")
        for n in sorted(metadata.partitions):
            low, high = reader.get_watermark_offsets(
                TopicPartition(topic, n), timeout=_TIMEOUT_S, cached=False
            )
            # ListOffsets may be short (Tansu), never long: an empty answer is an empty partition.
            self._parts[n] = _Partition(n, next=low, listed_end=high, done=high <= low)
        reader.assign(
            [TopicPartition(topic, p.number, p.next) for p in self._parts.values() if not p.done]
        )

    def _take(self, message: Message) -> None:
        error = message.error()
        number, offset = message.partition(), message.offset()
        part = self._parts.get(number) if number is not None else None
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                if error.fatal() or not error.retriable():
                    raise KafkaException(error)
                log.warning("receipts read error, retrying: %s", error.str())
            elif part is not None:
                self._close(part)  # read up to the end
            return
        if part is None or offset is None or part.done or offset < part.next:
            return
        stop = self._stop(part)
        if offset >= stop:
            self._close(part)  # written after the scan started
            return
        if message.key() in self._keys:
            try:
                receipt = self._decoder.decode(message.value())
            except ReceiptDecodeError as exc:
                self._warn(f"receipts partition {number}, offset {offset}: unreadable: {exc}")
            else:
                self.found.append(Found(receipt, part.number, offset))
        part.next = offset + 1
        if part.next >= stop:
            self._close(part)

    def _stop(self, part: _Partition) -> int:
        """Where the scan of a partition ends, fixed by its first fetch answer."""
        if part.stop is None:
            tp = TopicPartition(self._topic, part.number)
            part.stop = partition_end(self._reader, tp, part.listed_end)
        return part.stop

    def _past_the_end(self) -> None:
        for part in self._parts.values():
            if part.done:
                continue
            fetched = fetched_end(self._reader, TopicPartition(self._topic, part.number))
            if fetched >= 0 and part.next >= fetched:
                self._close(part)

    def _close(self, part: _Partition) -> None:
        if not part.done:
            part.done = True
            self._reader.pause([TopicPartition(self._topic, part.number)])
