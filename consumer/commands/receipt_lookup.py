"""`deletion-consumer receipts`: an event's receipts from `RECEIPTS_TOPIC`, for the audit trail.

Scans every partition from its beginning to the end it had when the scan started (with
`kafka.topic_scan`, as `replay` reads the DLQ), keeps the records keyed by the event ids asked
for, and prints them decoded. It only reads: partitions are assigned directly, no group is
joined, nothing is committed.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message

from consumer.avro.receipt_codec import ReceiptDecodeError, ReceiptDecoder
from consumer.avro.registry import SchemaRegistryClient
from consumer.commands.command_line import Console, add_event_id_option, event_ids_of
from consumer.core.dlq import printable
from consumer.core.receipts import Receipt
from consumer.core.timestamps import iso_millis
from consumer.kafka.config import consumer_config
from consumer.kafka.topic_scan import ScanError, ScanPartition, TopicScan, reader_config
from consumer.settings import Settings

__all__ = ["Found", "ScanError", "add_receipts_arguments", "find_receipts", "run_receipts"]

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


def add_receipts_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("receipts")
    add_event_id_option(group, required=True, help="the event whose receipts to show, repeatable")
    group.add_argument("--json", action="store_true", help="one JSON object per receipt")


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
        found = find_receipts(settings, wanted, warn=lambda line: print(line, file=err))
    except ScanError as exc:
        console.complain(exc)
        return EXIT_NOT_FOUND
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
    completed = _when(r.completed_at_ms)
    if r.time_to_erasure_ms is not None:
        completed += f" ({r.time_to_erasure_ms / 1000:.3f} s after it was asked)"
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
    warn: Callable[[str], None] = log.warning,
    clock: Callable[[], float] = time.monotonic,
) -> list[Found]:
    """Every receipt of these events on the receipts topic, in topic order per partition."""
    topic = settings.receipts_topic
    if not topic:
        return []
    keys = {event_id.encode("utf-8") for event_id in event_ids}
    config = reader_config(
        consumer_config(settings),
        group=f"{settings.group_id}.receipts-lookup",  # never joined nor committed
        reset="earliest",
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
        return _scan(reader, topic=topic, keys=keys, decoder=decoder, warn=warn, clock=clock)
    except KafkaException as exc:
        raise ScanError(f"Kafka: {exc.args[0]}") from exc
    finally:
        reader.close()
        if registry is not None:
            registry.close()


def _scan(
    reader: Consumer,
    *,
    topic: str,
    keys: set[bytes],
    decoder: ReceiptDecoder,
    warn: Callable[[str], None],
    clock: Callable[[], float],
) -> list[Found]:
    scan = TopicScan(reader, topic, name="receipts", clock=clock)
    parts = []
    for n in scan.partition_numbers():
        low, high = scan.watermarks(n)
        # ListOffsets may be short (Tansu), never long: an empty answer is an empty partition.
        parts.append(ScanPartition(n, next=low, listed_end=high, done=high <= low))
    scan.open(parts)
    found: list[Found] = []

    def keep(part: ScanPartition, offset: int, message: Message) -> None:
        if message.key() not in keys:
            return
        try:
            receipt = decoder.decode(message.value())
        except ReceiptDecodeError as exc:
            warn(f"receipts partition {part.number}, offset {offset}: unreadable: {exc}")
        else:
            found.append(Found(receipt, part.number, offset))

    scan.run(keep)
    return found
