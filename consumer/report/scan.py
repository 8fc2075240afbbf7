"""What `report` reads: the DLQ's headers, then every receipt, each topic once to its end.

Both topics are read as `receipts` reads its topic (`kafka.topic_scan`): partitions assigned
directly, no group joined, nothing committed (auto-commit is forced off, whatever the settings
pass through), each partition read to the end it had when its read started.

- The DLQ first, headers only, into a `DeadLetterIndex` (`core.erasure_tally.dead_letter_entry`
  reads them and never raises): the index must be complete before a receipt asks where its
  dead letter is. A DLQ that is not set, does not exist or cannot be read is no failure of the
  report: `ScanFacts.dlq_unavailable` says why (after what was read, if the read broke off), and
  the outstanding erasures show their dead letter as not found. A dead letter written after its
  read has started is not in it, whereas its receipt, written after it, may be read.
- Then the receipts topic, each record decoded (`ReceiptDecoder`) and folded into an
  `ErasureTally` at once, so that no receipt is kept. A record that does not decode is named by
  its position on stderr (the first `NAMED_UNREADABLE`; all are counted) and skipped. A receipts
  topic that does not exist, or a broker that fails us, is a `ScanError`: there is no report.

A progress line goes to stderr at most every `PROGRESS_EVERY_S` while a topic is read (none for
a topic read faster than that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message

from consumer.avro.receipt_codec import ReceiptDecodeError, ReceiptDecoder
from consumer.avro.registry_config import registry_client
from consumer.core.dlq import headers_of
from consumer.core.erasure_report import DeadLetterIndex, ReceiptSeen, ScanFacts
from consumer.core.erasure_tally import ErasureTally, dead_letter_entry
from consumer.kafka.config import consumer_config
from consumer.kafka.topic_scan import ScanError, ScanPartition, TopicScan, reader_config
from consumer.settings import Settings

__all__ = [
    "NAMED_UNREADABLE",
    "PROGRESS_EVERY_S",
    "ScanError",
    "ScanProgress",
    "Scanned",
    "read_dead_letters",
    "read_receipts",
    "scan_topics",
]

PROGRESS_EVERY_S = 2.0
# A topic full of junk must not flood the terminal: the rest are counted in the report.
NAMED_UNREADABLE = 100

Warn = Callable[[str], None]


class ScanProgress:
    """ "report: 412,000 of ~1,000,000 receipts read" on stderr, at most every `every_s`.

    The first line waits `every_s` from `start`, so that a small topic reads in silence. The
    total is what the broker listed at the start: about right (short on Tansu), hence the `~`.
    """

    def __init__(
        self,
        write: Warn,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = PROGRESS_EVERY_S,
    ) -> None:
        self._write = write
        self._clock = clock
        self._every_s = every_s
        self._last = clock()
        self._total = 0
        self._noun = "records"

    def start(self, total: int, noun: str) -> None:
        self._total, self._noun, self._last = total, noun, self._clock()

    def tick(self, done: int) -> None:
        now = self._clock()
        if now - self._last >= self._every_s:
            self._last = now
            self._write(f"report: {done:,} of ~{max(done, self._total):,} {self._noun} read")


@dataclass(frozen=True, slots=True)
class Scanned:
    """The receipts folded, and what was read to fold them."""

    tally: ErasureTally
    facts: ScanFacts


def scan_topics(
    settings: Settings,
    *,
    warn: Warn,
    progress: ScanProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Scanned:
    """The DLQ then the receipts topic, read; raises `ScanError` when the receipts cannot be."""
    topic = settings.receipts_topic
    if not topic:
        raise ScanError("RECEIPTS_TOPIC is empty: no receipts to report on")
    dead_letters, letters_read, unavailable = read_dead_letters(
        settings, progress=progress, clock=clock
    )
    tally = ErasureTally(dead_letters)
    read, unreadable = read_receipts(settings, tally, warn=warn, progress=progress, clock=clock)
    facts = ScanFacts(
        receipts_topic=topic,
        dlq_topic=settings.dlq_topic or None,
        receipts_read=read,
        receipts_unreadable=unreadable,
        dead_letters_read=letters_read,
        dlq_unavailable=unavailable,
    )
    return Scanned(tally, facts)


def _reader(settings: Settings) -> Consumer:
    config = reader_config(
        consumer_config(settings),
        group=f"{settings.group_id}.report",  # never joined nor committed
        reset="earliest",
    )
    # Only `commit` calls and auto-commit write offsets: the scan makes none, and a
    # pass-through property must not turn the other on.
    config["enable.auto.commit"] = False
    try:
        return Consumer(config)
    except KafkaException as exc:
        raise ScanError(f"bad Kafka setting: {exc.args[0]}") from exc


def _open(scan: TopicScan) -> int:
    """Assign every partition from its log start; the records the broker lists in all."""
    parts, listed = [], 0
    for number in scan.partition_numbers():
        low, high = scan.watermarks(number)
        # ListOffsets may be short (Tansu), never long: an empty answer is an empty partition.
        parts.append(ScanPartition(number, next=low, listed_end=high, done=high <= low))
        listed += max(0, high - low)
    scan.open(parts)
    return listed


def read_dead_letters(
    settings: Settings,
    *,
    progress: ScanProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[DeadLetterIndex, int, str | None]:
    """(the index, records read, why the DLQ was not read in full: None when it was)."""
    topic = settings.dlq_topic
    if not topic:
        return {}, 0, "DLQ_TOPIC is empty"
    index: DeadLetterIndex = {}
    read = 0

    def take(part: ScanPartition, offset: int, message: Message) -> None:
        nonlocal read
        read += 1
        entry = dead_letter_entry(part.number, offset, headers_of(message))
        if entry is not None:
            index[entry[0]] = entry[1]  # the same input record dead-lettered twice: the later

    try:
        reader = _reader(settings)
    except ScanError as exc:
        return {}, 0, str(exc)
    try:
        scan = TopicScan(reader, topic, name="DLQ", clock=clock)
        listed = _open(scan)
        if progress is not None:
            progress.start(listed, "dead letters")
        scan.run(take, after_batch=None if progress is None else lambda: progress.tick(read))
    except (ScanError, KafkaException) as exc:
        why = str(exc) if isinstance(exc, ScanError) else f"Kafka: {exc.args[0]}"
        if read:
            why = f"the read stopped after {read} records: {why}"
        return index, read, why
    finally:
        reader.close()
    return index, read, None


def read_receipts(
    settings: Settings,
    tally: ErasureTally,
    *,
    warn: Warn,
    progress: ScanProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, int]:
    """Every receipt folded into `tally`; (receipts read, records that were none)."""
    topic = settings.receipts_topic
    if not topic:
        raise ScanError("RECEIPTS_TOPIC is empty: no receipts to report on")
    registry = registry_client(settings)
    decoder = ReceiptDecoder(registry)
    read = unreadable = 0

    def take(part: ScanPartition, offset: int, message: Message) -> None:
        nonlocal read, unreadable
        try:
            receipt = decoder.decode(message.value())
        except ReceiptDecodeError as exc:
            unreadable += 1
            if unreadable <= NAMED_UNREADABLE:
                warn(f"receipts partition {part.number}, offset {offset}: unreadable: {exc}")
            if unreadable == NAMED_UNREADABLE:
                warn("further unreadable receipts are counted in the report, not named")
            return
        read += 1
        tally.add(ReceiptSeen.of(receipt, part.number, offset))

    try:
        reader = _reader(settings)
        try:
            scan = TopicScan(reader, topic, name="receipts", clock=clock)
            listed = _open(scan)
            if progress is not None:
                progress.start(listed, "receipts")
            after = None if progress is None else lambda: progress.tick(read + unreadable)
            scan.run(take, after_batch=after)
        except KafkaException as exc:
            raise ScanError(f"Kafka: {exc.args[0]}") from exc
        finally:
            reader.close()
    finally:
        if registry is not None:
            registry.close()
    return read, unreadable
