"""Receipts land where `core.partitioning` says, and `receipts --event-id` reads only there.

Against the real broker: records produced with the project's producer configuration (and with
each other reproducible partitioner, and with librdkafka's default as earlier versions ran it)
land on the partition `partition_for` computes, which proves the hashes are librdkafka's. Then
a lookup reads the key's partition (and, for an id not found there, its CRC32 partition, where
earlier versions wrote), and every partition with `--all-partitions`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer

from consumer.__main__ import main
from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.commands.receipt_lookup import find_receipts, look_up_receipts
from consumer.core.partitioning import partition_for
from consumer.core.receipts import COMPLETED, Position, Receipt
from consumer.kafka.broker import create_topics
from consumer.kafka.config import producer_config
from consumer.settings import Settings
from tests.support.harness import Topics, make_settings

pytestmark = pytest.mark.integration

PARTITIONS = 7
MURMUR2 = "murmur2_random"
LEGACY = "consistent_random"


@pytest.fixture
def receipts_topic(kafka: str, topics: Topics) -> str:
    """A receipts topic with more partitions than the shared fixture's three."""
    name = f"{topics.receipts}.wide"
    create_topics(kafka, [name], partitions=PARTITIONS)
    return name


def settings_for(kafka: str, topics: Topics, receipts: str, **env: str) -> Settings:
    return make_settings(kafka, "http://127.0.0.1:9", topics, RECEIPTS_TOPIC=receipts, **env)


def produce(
    config: dict[str, Any], topic: str, records: list[tuple[bytes, bytes]], partition: int = -1
) -> list[int]:
    """Produce and wait; the partition each record landed on, in the order given.
    `partition` -1: the partitioner's choice."""
    producer = Producer(config)
    landed: list[int] = [-1] * len(records)
    errors: list[str] = []

    def delivered_at(index: int) -> Callable[[KafkaError | None, Any], None]:
        def delivered(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(error.str())
            else:
                landed[index] = message.partition()

        return delivered

    for index, (key, value) in enumerate(records):
        producer.produce(
            topic, key=key, value=value, partition=partition, on_delivery=delivered_at(index)
        )
    assert producer.flush(30) == 0
    assert not errors, errors
    return landed


def receipt(event_id: str, tag: int = 1) -> Receipt:
    return Receipt(
        event_id=event_id,
        outcome=COMPLETED,
        event_type="user_deleted",
        reason="GDPR",
        source="test",
        occurred_at_ms=1_700_000_000_000,
        completed_at_ms=1_700_000_001_000,
        time_to_erasure_ms=1000,
        operations=(),
        verified=True,
        dlq_reason=None,
        consumer_group="test",
        input=Position("memory.deletions", 0, tag),  # tells two receipts of an id apart
    )


def put(kafka: str, topic: str, event_id: str, partition: int, tag: int = 1) -> None:
    """A receipt for `event_id` on the partition named, whatever a partitioner would say;
    `tag` is its input offset, to tell it from the id's other receipts."""
    value = ReceiptEncoder().single_object(receipt(event_id, tag))
    produce({"bootstrap.servers": kafka}, topic, [(event_id.encode(), value)], partition)


def event_id_where(*, apart: bool) -> tuple[str, int, int]:
    """An event id, its murmur2 partition and its CRC32 one: different ones when `apart`."""
    while True:
        event_id = str(uuid.uuid4())
        key = event_id.encode()
        first = partition_for(key, PARTITIONS, MURMUR2)
        legacy = partition_for(key, PARTITIONS, LEGACY)
        assert first is not None and legacy is not None
        if (first != legacy) == apart:
            return event_id, first, legacy


def tags_of(found: list[Any]) -> list[tuple[int, int]]:
    """(partition, tag) of each receipt found."""
    return [(item.partition, item.receipt.input.offset) for item in found]


def random_keys(count: int) -> list[bytes]:
    rng = random.Random(18)
    keys = [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(count // 2)]
    # Any bytes and any length: every tail length of murmur2's words, bytes over 0x7f.
    keys += [rng.randbytes(rng.randint(1, 40)) for _ in range(count - len(keys))]
    return keys


# --- the producer's partitions are the ones computed ---------------------------------------


@pytest.mark.parametrize(
    "partitioner", [None, "murmur2", "consistent", "consistent_random", "fnv1a", "fnv1a_random"]
)
def test_records_land_on_the_partition_computed_for_their_key(
    kafka: str, topics: Topics, receipts_topic: str, partitioner: str | None
) -> None:
    # None: the project's producer configuration as it stands (murmur2_random); the others
    # through KAFKA_PARTITIONER, which overrides it.
    env = {"KAFKA_PARTITIONER": partitioner} if partitioner else {}
    config = producer_config(settings_for(kafka, topics, receipts_topic, **env))
    assert config["partitioner"] == (partitioner or MURMUR2)
    keys = random_keys(300)
    landed = produce(config, receipts_topic, [(key, b"x") for key in keys])
    expected = [partition_for(key, PARTITIONS, partitioner or MURMUR2) for key in keys]
    assert landed == expected
    assert len(set(landed)) == PARTITIONS  # spread: a constant answer would not pass


def test_receipts_written_before_this_version_are_on_their_crc32_partition(
    kafka: str, receipts_topic: str
) -> None:
    # Earlier versions set no partitioner: librdkafka's default, consistent_random.
    keys = random_keys(200)
    landed = produce({"bootstrap.servers": kafka}, receipts_topic, [(k, b"x") for k in keys])
    assert landed == [partition_for(key, PARTITIONS, LEGACY) for key in keys]


# --- a lookup reads the partitions an id can be on -------------------------------------------


def test_a_lookup_reads_only_the_partition_of_the_key(
    kafka: str, topics: Topics, receipts_topic: str
) -> None:
    event_id, home, legacy = event_id_where(apart=True)
    stray = next(p for p in range(PARTITIONS) if p not in (home, legacy))
    put(kafka, receipts_topic, event_id, stray, tag=10)  # where no partitioner puts it
    put(kafka, receipts_topic, event_id, home, tag=20)
    put(kafka, receipts_topic, str(uuid.uuid4()), home, tag=30)  # another id, same partition
    settings = settings_for(kafka, topics, receipts_topic)

    lookup = look_up_receipts(settings, [event_id])
    assert tags_of(lookup.found) == [(home, 20)]
    assert lookup.read == {event_id: (home,)} and lookup.partitioner == MURMUR2
    assert lookup.records_read == 2  # the one partition's records, not the topic's
    assert lookup.partition_count == PARTITIONS

    every = look_up_receipts(settings, [event_id], all_partitions=True)
    assert sorted(tags_of(every.found)) == sorted([(stray, 10), (home, 20)])
    assert every.every_partition and every.records_read == 3
    assert every.read == {event_id: tuple(range(PARTITIONS))}
    assert tags_of(find_receipts(settings, [event_id])) == [(home, 20)]


def test_a_receipt_of_an_earlier_version_is_found_on_its_crc32_partition(
    kafka: str, topics: Topics, receipts_topic: str
) -> None:
    old_id, old_home, old_legacy = event_id_where(apart=True)
    put(kafka, receipts_topic, old_id, old_legacy, tag=1)  # as librdkafka's default put it
    settings = settings_for(kafka, topics, receipts_topic)

    lookup = look_up_receipts(settings, [old_id])
    assert tags_of(lookup.found) == [(old_legacy, 1)]
    assert lookup.read == {old_id: tuple(sorted((old_home, old_legacy)))}

    # Found where this version writes: the CRC32 partition is not read for it.
    new_id, new_home, new_legacy = event_id_where(apart=True)
    put(kafka, receipts_topic, new_id, new_legacy, tag=2)
    put(kafka, receipts_topic, new_id, new_home, tag=3)
    lookup = look_up_receipts(settings, [new_id])
    assert tags_of(lookup.found) == [(new_home, 3)]
    assert lookup.read == {new_id: (new_home,)}


def test_several_ids_read_the_union_of_their_partitions(
    kafka: str, topics: Topics, receipts_topic: str
) -> None:
    ids = [event_id_where(apart=True) for _ in range(3)]
    for n, (event_id, home, _) in enumerate(ids):
        put(kafka, receipts_topic, event_id, home, tag=n)
    settings = settings_for(kafka, topics, receipts_topic)

    lookup = look_up_receipts(settings, [event_id for event_id, _, _ in ids])
    assert sorted(tags_of(lookup.found)) == sorted((home, n) for n, (_, home, _) in enumerate(ids))
    assert lookup.read == {event_id: (home,) for event_id, home, _ in ids}
    assert lookup.records_read == len(ids)


def test_a_partitioner_no_one_can_reproduce_reads_every_partition(
    kafka: str, topics: Topics, receipts_topic: str
) -> None:
    event_id, home, legacy = event_id_where(apart=True)
    stray = next(p for p in range(PARTITIONS) if p not in (home, legacy))
    put(kafka, receipts_topic, event_id, stray)
    settings = settings_for(kafka, topics, receipts_topic, KAFKA_PARTITIONER="random")

    lookup = look_up_receipts(settings, [event_id])
    assert tags_of(lookup.found) == [(stray, 1)] and lookup.every_partition


# --- the command ----------------------------------------------------------------------------


def test_the_receipts_command_exit_codes_and_where_it_looked(
    kafka: str, topics: Topics, receipts_topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found_id, home, _ = event_id_where(apart=True)
    put(kafka, receipts_topic, found_id, home)
    stray_id, stray_home, stray_legacy = event_id_where(apart=True)
    # Not where any lookup below reads: the two ids' partitions are read together.
    stray = next(p for p in range(PARTITIONS) if p not in (home, stray_home, stray_legacy))
    put(kafka, receipts_topic, stray_id, stray)  # as a topic whose partition count changed
    flags = ["receipts", "--bootstrap-servers", kafka, "--receipts-topic", receipts_topic]

    assert main([*flags, "--event-id", found_id]) == 0
    assert f"receipt for event {found_id} (receipts partition {home}," in capsys.readouterr().out

    assert main([*flags, "--event-id", found_id, "--event-id", stray_id]) == 1
    out, err = capsys.readouterr()
    assert f"receipt for event {found_id}" in out and stray_id not in out
    low, high = sorted((stray_home, stray_legacy))
    assert (
        f"no receipt for event {stray_id} on {receipts_topic} in partitions {low} and {high}" in err
    )
    assert f"of {PARTITIONS}" in err and "try --all-partitions" in err

    assert main([*flags, "--event-id", stray_id, "--all-partitions", "--json"]) == 0
    assert f'"receipts_partition": {stray}' in capsys.readouterr().out

    missing = str(uuid.uuid4())
    assert main([*flags, "--event-id", missing, "--all-partitions"]) == 1
    err = capsys.readouterr().err
    assert f"no receipt for event {missing} on {receipts_topic} (all {PARTITIONS} partitions" in err
