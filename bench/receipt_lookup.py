"""`receipts --event-id` on a big receipts topic: every partition scanned against the key's one.

    python -m bench.receipt_lookup [--records 1000000] [--partitions 12] [--runs 3] [--quick]

Starts Tansu (or uses the cluster at KAFKA_BOOTSTRAP_SERVERS), fills a receipts topic of
`--partitions` partitions with `--records` receipts the way the consumer produces them (its
producer configuration, hence murmur2_random, keyed by distinct event ids; a few encoded bodies
are reused so the fill takes seconds, not minutes) and prints the fill time. A handful of real
receipts go in half-way through: for event ids whose partitions differ, so the lookups are
spread over the topic. Then, in the same command, each of those ids and one that has no
receipt is looked up with `find_receipts` (through `look_up_receipts`, which also counts the
records read), `--runs` times each way:

- "full scan": `--all-partitions`, what every lookup did before (the "before");
- "key's partition": the default now: the id's murmur2 partition, and for an id not found
  there its CRC32 one too (where earlier versions wrote), so a missing id reads two.

A row gives the partitions read, the median seconds of a lookup each way, the records read each
way, and the ratio full scan / key's partition. Seconds include what every lookup pays whatever
it reads (a client, metadata, watermarks, a fetch per partition to its end); records read show
what the scan itself was spared. The machine is shared: compare the ratios, not the seconds
of different commands.

`--quick` is a short form (50,000 records, 2 runs); it prints figures and asserts only that
both ways find the same receipts.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Producer

from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.commands.receipt_lookup import Lookup, look_up_receipts
from consumer.core.partitioning import LEGACY_PARTITIONER, partition_for
from consumer.core.receipts import COMPLETED, Position, Receipt
from consumer.kafka.broker import LocalBroker, create_topics
from consumer.kafka.config import producer_config
from consumer.settings import Settings

PARTITIONER = "murmur2_random"
FOUND_IDS = 4  # looked-up ids that have a receipt, each on a partition of its own
FILLER_BODIES = 8


@dataclass
class Row:
    event_id: str
    has_receipt: bool
    partitions: tuple[int, ...]  # read by the key's-partition lookup
    full_s: float
    keyed_s: float
    full_records: int
    keyed_records: int


@contextmanager
def bootstrap_servers() -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    with LocalBroker() as broker:
        yield broker.bootstrap


def settings_for(bootstrap: str, topic: str) -> Settings:
    return Settings.from_sources(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}",
            "DELETION_TOPICS": "memory.deletions",
            "RECEIPTS_TOPIC": topic,
            "MEM0_BASE_URL": "http://127.0.0.1:9",
            "MEM0_API_KEY": "unused",
            "LOG_LEVEL": "WARNING",
        }
    )


def receipt(event_id: str, n: int) -> Receipt:
    return Receipt(
        event_id=event_id,
        outcome=COMPLETED,
        event_type="user_deleted",
        reason="GDPR",
        source="bench.receipt_lookup",
        occurred_at_ms=1_700_000_000_000 + n,
        completed_at_ms=1_700_000_001_000 + n,
        time_to_erasure_ms=1000,
        operations=(),
        verified=True,
        dlq_reason=None,
        consumer_group="bench",
        input=Position("memory.deletions", n % 12, n),
    )


def spread_ids(rng: random.Random, partitions: int) -> list[str]:
    """Event ids with a receipt, on as many different partitions as there are ids."""
    ids: dict[int, str] = {}
    while len(ids) < min(FOUND_IDS, partitions):
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        partition = partition_for(event_id.encode(), partitions, PARTITIONER)
        assert partition is not None
        ids.setdefault(partition, event_id)
    return list(ids.values())


def missing_id(rng: random.Random, partitions: int) -> str:
    """An id with no receipt whose murmur2 and CRC32 partitions differ (a lookup reads both)."""
    while True:
        key = str(uuid.UUID(int=rng.getrandbits(128)))
        first = partition_for(key.encode(), partitions, PARTITIONER)
        if partitions == 1 or first != partition_for(key.encode(), partitions, LEGACY_PARTITIONER):
            return key


def fill(
    settings: Settings, topic: str, records: int, targets: list[str], rng: random.Random
) -> float:
    """Produce `records` receipts, `targets`' real ones among them; the seconds it took."""
    encoder = ReceiptEncoder()
    bodies = [
        encoder.single_object(receipt(str(uuid.UUID(int=rng.getrandbits(128))), n))
        for n in range(FILLER_BODIES)
    ]
    halfway = records // 2
    config = {
        **producer_config(settings),
        "linger.ms": 100,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    producer = Producer(config)

    getrandbits = rng.getrandbits
    started = time.perf_counter()
    for n in range(records):
        if n == halfway:
            for event_id in targets:
                value = encoder.single_object(receipt(event_id, n))
                produce(producer, topic, event_id.encode(), value)
        key = str(uuid.UUID(int=getrandbits(128))).encode()
        produce(producer, topic, key, bodies[n % FILLER_BODIES])
    left = producer.flush(300)
    if left:
        raise RuntimeError(f"{left} receipts not delivered")
    return time.perf_counter() - started


def produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.05)


def timed(settings: Settings, event_id: str, *, all_partitions: bool) -> tuple[float, Lookup]:
    started = time.perf_counter()
    lookup = look_up_receipts(settings, [event_id], all_partitions=all_partitions)
    return time.perf_counter() - started, lookup


def measure(settings: Settings, event_id: str, runs: int) -> Row:
    full: list[float] = []
    keyed: list[float] = []
    for _ in range(runs):  # alternated, so a busy neighbour weighs on both ways alike
        seconds, every = timed(settings, event_id, all_partitions=True)
        full.append(seconds)
        seconds, one = timed(settings, event_id, all_partitions=False)
        keyed.append(seconds)
        found = sorted((f.partition, f.offset) for f in every.found)
        if found != sorted((f.partition, f.offset) for f in one.found):
            raise AssertionError(f"{event_id}: the full scan found {found}, the key's not")
    return Row(
        event_id=event_id,
        has_receipt=bool(one.found),
        partitions=one.read[event_id],
        full_s=statistics.median(full),
        keyed_s=statistics.median(keyed),
        full_records=every.records_read,
        keyed_records=one.records_read,
    )


def print_rows(rows: list[Row], partitions: int) -> None:
    print(
        f"  {'event id':<36} {'receipt':>7} {'read':>9} {'full scan s':>11} {'key s':>8} "
        f"{'records full':>12} {'records key':>11} {'ratio':>7}"
    )
    for row in rows:
        read = ",".join(map(str, row.partitions))
        print(
            f"  {row.event_id:<36} {'yes' if row.has_receipt else 'no':>7} "
            f"{read:>4} of {partitions:<2} {row.full_s:>11.3f} {row.keyed_s:>8.3f} "
            f"{row.full_records:>12,} {row.keyed_records:>11,} {row.full_s / row.keyed_s:>6.1f}x",
            flush=True,
        )
    found = [row for row in rows if row.has_receipt]
    if found:
        full = statistics.median(row.full_s for row in found)
        keyed = statistics.median(row.keyed_s for row in found)
        print(
            f"  median of the ids found: full scan {full:.3f} s, key's partition {keyed:.3f} s, "
            f"{full / keyed:.1f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=None, help="default 1000000 (quick: 50000)")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--runs", type=int, default=None, help="lookups each way (default 3)")
    parser.add_argument("--quick", action="store_true", help="a short form: 50,000 records")
    args = parser.parse_args()
    records = args.records if args.records is not None else (50_000 if args.quick else 1_000_000)
    runs = args.runs if args.runs is not None else (2 if args.quick else 3)
    rng = random.Random(18)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {os.cpu_count()} cores; {records:,} receipts "
        f"on {args.partitions} partitions ({PARTITIONER}); median of {runs} lookups each way"
    )
    with bootstrap_servers() as bootstrap:
        topic = f"memory.deletions.receipts.bench-{uuid.uuid4().hex[:8]}"
        create_topics(bootstrap, [topic], partitions=args.partitions)
        settings = settings_for(bootstrap, topic)
        found = spread_ids(rng, args.partitions)
        seconds = fill(settings, topic, records, found, rng)
        print(f"  filled in {seconds:.1f} s ({records / seconds:,.0f} receipts/s)", flush=True)
        rows = [measure(settings, event_id, runs) for event_id in found]
        rows.append(measure(settings, missing_id(rng, args.partitions), runs))
        print_rows(rows, args.partitions)
        for row in rows[:-1]:
            if not row.has_receipt:
                raise AssertionError(f"{row.event_id}: its receipt was not found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
