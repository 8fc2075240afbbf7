"""`deletion-consumer receipts`: an event's receipts from `RECEIPTS_TOPIC`, for the audit trail.

Receipts are keyed by event id and produced with a partitioner that can be computed again
(`murmur2_random`, the Java client's, unless `KAFKA_PARTITIONER` says otherwise:
`core.partitioning`), so a lookup reads only the partitions the ids asked for can be on:

- first the partition the configured partitioner puts each id's key on (the union over the ids);
- then, for an id not found there, the partition librdkafka's default (`consistent_random`,
  CRC32) puts it on: versions before the partitioner was chosen wrote receipts with it. Only
  the ids still missing are looked for in that second read.

Every partition is read, as before, with `--all-partitions` (a topic whose partition count
changed since a receipt was written has it where the old count put it) or when the
configured partitioner cannot be reproduced (`random`). An id with no receipt is reported
with the partitions that were read for it.

Each partition read is read from its beginning to the end it had when the read started (with
`kafka.topic_scan`, as `replay` reads the DLQ); the records keyed by the ids asked for are kept
and printed decoded. It only reads: partitions are assigned directly, no group is joined,
nothing is committed.

No one record stops a lookup (issue 16): a record that does not decode as a receipt is named
by its position on stderr and skipped; a receipt whose time is outside what a datetime holds
(a producer's `occurred_at` is copied into its receipt) is printed with the raw milliseconds
instead of a date; and the text form shows every field escaped (`core.dlq.printable`), since
ids, sources and reasons are anyone's text and must not drive the operator's terminal.

Exit codes: 0 every event asked for has a receipt, 1 one has none (or the broker failed us),
2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message

from consumer.avro.receipt_codec import ReceiptDecodeError, ReceiptDecoder
from consumer.avro.registry_config import registry_client
from consumer.commands.command_line import Console, add_event_id_option, event_ids_of
from consumer.core.dlq import printable
from consumer.core.partitioning import LEGACY_PARTITIONER, partition_for
from consumer.core.receipts import Receipt
from consumer.core.timestamps import iso_millis
from consumer.kafka.config import consumer_config, producer_config
from consumer.kafka.topic_scan import ScanError, ScanPartition, TopicScan, reader_config
from consumer.report.durations import human_duration
from consumer.settings import Settings

__all__ = [
    "Found",
    "Lookup",
    "ScanError",
    "add_receipts_arguments",
    "find_receipts",
    "look_up_receipts",
    "run_receipts",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_BAD_ARGUMENTS = 2


@dataclass(frozen=True, slots=True)
class Found:
    """A receipt and where it sits on the receipts topic."""

    receipt: Receipt
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a lookup found, and what it read to find it."""

    found: list[Found]  # in topic order per partition, the second read's after the first's
    partition_count: int  # of the receipts topic
    # Per event id asked for, the partitions read that could hold its receipts, sorted.
    read: Mapping[str, tuple[int, ...]]
    # The partitioner whose partitions were read first; None when every partition was read.
    partitioner: str | None
    records_read: int  # every record in range of the partitions read, kept or not

    @property
    def every_partition(self) -> bool:
        return self.partitioner is None


def add_receipts_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("receipts")
    add_event_id_option(group, required=True, help="the event whose receipts to show, repeatable")
    group.add_argument("--json", action="store_true", help="one JSON object per receipt")
    group.add_argument(
        "--all-partitions",
        action="store_true",
        help="read every partition, not only those the event ids hash to (for a topic whose "
        "partition count changed since its receipts were written)",
    )


def run_receipts(
    args: argparse.Namespace, settings: Settings, console: Console | None = None
) -> int:
    """Run `receipts` with parsed arguments; the exit code. `console`: stdout and stderr."""
    console = console if console is not None else Console.of("receipts")
    out, err = console.out, console.err
    try:
        wanted = event_ids_of(args.event_ids)  # one at least: the option is required
    except ValueError as exc:
        console.complain(exc)
        return EXIT_BAD_ARGUMENTS
    if not settings.receipts_topic:
        console.complain("RECEIPTS_TOPIC is empty: no receipts")
        return EXIT_BAD_ARGUMENTS
    try:
        lookup = look_up_receipts(
            settings,
            wanted,
            all_partitions=args.all_partitions,
            warn=lambda line: print(line, file=err),
        )
    except ScanError as exc:
        console.complain(exc)
        return EXIT_NOT_FOUND
    found = lookup.found
    for item in found:
        if args.json:
            row = {**_json_of(item.receipt), "receipts_partition": item.partition}
            row["receipts_offset"] = item.offset
            print(json.dumps(row), file=out)
        else:
            print(describe(item), file=out)
    seen = {item.receipt.event_id for item in found}
    missing = [event_id for event_id in wanted if event_id not in seen]
    for event_id in missing:
        print(not_found_line(event_id, settings.receipts_topic, lookup), file=err)
    return EXIT_NOT_FOUND if missing else EXIT_OK


def not_found_line(event_id: str, topic: str, lookup: Lookup) -> str:
    """What stderr says of an event with no receipt: where it was looked for."""
    line = f"no receipt for event {event_id} on {topic}"
    if lookup.every_partition:
        return f"{line} (all {lookup.partition_count} partitions read)"
    read = lookup.read.get(event_id, ())
    where = "partition" + ("s " if len(read) > 1 else " ") + " and ".join(map(str, read))
    hashed = lookup.partitioner
    if len(read) > 1:
        hashed = f"{lookup.partitioner}, then {LEGACY_PARTITIONER} as earlier versions wrote"
    return (
        f"{line} in {where} of {lookup.partition_count} (where its key hashes to: {hashed}); "
        "if the topic's partition count changed since, try --all-partitions"
    )


def describe(found: Found) -> str:
    """A receipt for people: what was asked, what was done, when, and whether it was checked."""
    r = found.receipt
    outcome = r.outcome + (", verified" if r.verified else ", not verified")
    if r.dlq_reason:
        outcome = f"{r.outcome} ({r.dlq_reason})"
    record = str(r.input)
    if r.duplicate_of is not None:
        record += f" (a duplicate of {r.duplicate_of}: the same work)"
    completed = _when(r.completed_at_ms)
    if r.time_to_erasure_ms is not None:
        completed += f" ({_after(r.time_to_erasure_ms)})"
    lines = [
        f"receipt for event {r.event_id} (receipts partition {found.partition}, offset "
        f"{found.offset})",
        f"  outcome         {outcome}",
        f"  event           {r.event_type}, reason {r.reason}, from {r.source}",
        f"  input record    {record}",
        f"  occurred at     {_when(r.occurred_at_ms)}",
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
    # Each line escaped on its own: a newline inside a field shows as \n, not as a line.
    return "\n".join(printable(line) for line in lines)


def _after(ms: int) -> str:
    """How long after it was asked: in seconds under a minute, beyond in days, hours, minutes
    as a person reads them, with the exact seconds beside."""
    exact = f"{ms / 1000:.3f} s"
    if abs(ms) < 60_000:
        return f"{exact} after it was asked"
    return f"{human_duration(ms)} after it was asked: {exact}"


# What `datetime` raises for a time outside the years 1 to 9999 (or the platform's range).
_OUT_OF_RANGE = (ValueError, OverflowError, OSError)


def _iso(millis: int) -> str | None:
    try:
        return iso_millis(millis)
    except _OUT_OF_RANGE:
        return None


def _when(millis: int) -> str:
    return _iso(millis) or f"{millis} ms after the epoch (out of range for a date)"


def _json_of(receipt: Receipt) -> dict[str, object]:
    """`Receipt.to_json`, or with a null `*_iso` for a time no date can show."""
    try:
        return receipt.to_json()
    except _OUT_OF_RANGE:
        row: dict[str, object] = receipt.to_record()
        row["occurred_at_iso"] = _iso(receipt.occurred_at_ms)
        row["completed_at_iso"] = _iso(receipt.completed_at_ms)
        return row


def find_receipts(
    settings: Settings,
    event_ids: Iterable[str],
    *,
    all_partitions: bool = False,
    warn: Callable[[str], None] = log.warning,
    clock: Callable[[], float] = time.monotonic,
) -> list[Found]:
    """Every receipt of these events on the receipts topic, in topic order per partition.

    Reads the partitions the ids hash to (see the module's docstring), or every partition
    with `all_partitions`."""
    lookup = look_up_receipts(
        settings, event_ids, all_partitions=all_partitions, warn=warn, clock=clock
    )
    return lookup.found


def look_up_receipts(
    settings: Settings,
    event_ids: Iterable[str],
    *,
    all_partitions: bool = False,
    warn: Callable[[str], None] = log.warning,
    clock: Callable[[], float] = time.monotonic,
) -> Lookup:
    """`find_receipts`, with what was read: partitions per event id and records in all."""
    topic = settings.receipts_topic
    wanted = list(dict.fromkeys(event_ids))  # the order given, each id once
    if not topic:
        return Lookup([], 0, {}, None, 0)
    # Whatever the receipts' producer uses (its choice, or KAFKA_PARTITIONER over it); without
    # one there, librdkafka's default.
    partitioner = str(producer_config(settings).get("partitioner", LEGACY_PARTITIONER))
    config = reader_config(
        consumer_config(settings),
        group=f"{settings.group_id}.receipts-lookup",  # never joined nor committed
        reset="earliest",
    )
    registry = registry_client(settings)
    decoder = ReceiptDecoder(registry)
    try:
        reader = Consumer(config)
    except KafkaException as exc:
        raise ScanError(f"bad Kafka setting: {exc.args[0]}") from exc
    try:
        scan = TopicScan(reader, topic, name="receipts", clock=clock)
        read = _Reader(scan, decoder, warn)
        return read.look_up(wanted, None if all_partitions else partitioner)
    except KafkaException as exc:
        raise ScanError(f"Kafka: {exc.args[0]}") from exc
    finally:
        reader.close()
        if registry is not None:
            registry.close()


def _partitions_of(
    event_ids: list[str], count: int, partitioner: str | None
) -> dict[str, int] | None:
    """Each id's partition under `partitioner`; None when one cannot be computed."""
    if partitioner is None:
        return None
    partitions: dict[str, int] = {}
    for event_id in event_ids:
        partition = partition_for(event_id.encode("utf-8"), count, partitioner)
        if partition is None:
            return None
        partitions[event_id] = partition
    return partitions


class _Reader:
    """The reads of one lookup, on one assigned reader: one or two passes over partitions."""

    def __init__(
        self, scan: TopicScan, decoder: ReceiptDecoder, warn: Callable[[str], None]
    ) -> None:
        self._scan = scan
        self._decoder = decoder
        self._warn = warn
        self.records = 0

    def look_up(self, event_ids: list[str], partitioner: str | None) -> Lookup:
        """The receipts of `event_ids`: every partition when `partitioner` is None."""
        numbers = self._scan.partition_numbers()
        count = len(numbers)
        first = _partitions_of(event_ids, count, partitioner)
        if first is None:  # --all-partitions, or a partitioner no one can reproduce
            found = self._read(numbers, event_ids)
            every = dict.fromkeys(event_ids, tuple(numbers))
            return Lookup(found, count, every, None, self.records)
        read_first = sorted(set(first.values()))
        found = self._read(read_first, event_ids)
        seen = {item.receipt.event_id for item in found}
        missing = [event_id for event_id in event_ids if event_id not in seen]
        # Not found where this version writes: where versions before it wrote, if elsewhere.
        read = {event_id: {partition} for event_id, partition in first.items()}
        legacy: dict[str, int] = {}
        for event_id in missing:
            partition = partition_for(event_id.encode("utf-8"), count, LEGACY_PARTITIONER)
            if partition is not None:  # None: an empty id, which it spread at random
                legacy[event_id] = partition
                read[event_id].add(partition)
        second = sorted(set(legacy.values()) - set(read_first))
        if second:
            # Only the ids still missing: a found id's older receipts elsewhere are not
            # looked for, so what a lookup shows of an id does not depend on the others asked.
            found += self._read(second, missing)
        return Lookup(
            found,
            count,
            {event_id: tuple(sorted(parts)) for event_id, parts in read.items()},
            partitioner,
            self.records,
        )

    def _read(self, numbers: list[int], event_ids: list[str]) -> list[Found]:
        """The receipts of `event_ids` in these partitions, each read from its start to its end."""
        keys = {event_id.encode("utf-8") for event_id in event_ids}
        scan = self._scan
        parts = []
        for n in numbers:
            low, high = scan.watermarks(n)
            # ListOffsets may be short (Tansu), never long: an empty answer is an empty partition.
            parts.append(ScanPartition(n, next=low, listed_end=high, done=high <= low))
        scan.open(parts)  # replaces the assignment of a previous read
        found: list[Found] = []

        def keep(part: ScanPartition, offset: int, message: Message) -> None:
            self.records += 1
            if message.key() not in keys:
                return
            try:
                receipt = self._decoder.decode(message.value())
            except ReceiptDecodeError as exc:
                self._warn(f"receipts partition {part.number}, offset {offset}: unreadable: {exc}")
            else:
                found.append(Found(receipt, part.number, offset))

        scan.run(keep)
        return found
