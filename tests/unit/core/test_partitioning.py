"""librdkafka's partitioners computed again: Kafka's and librdkafka's own test vectors, and
properties (in range, deterministic, None where no one can tell)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.partitioning import (
    LEGACY_PARTITIONER,
    REPRODUCIBLE,
    consistent_hash,
    fnv1a,
    murmur2,
    partition_for,
    to_positive,
)

# apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
_UNALIGNED = b"PreAmbleWillBeRemoved,ThePrePartThatIs"
# confluentinc/librdkafka src/rdmurmur2.c and src/rdfnv1a.c, their unit tests' keys and results
# (unsigned 32-bit: the murmur2 ones are the Java client's, the FNV-1a ones Go's hash/fnv made
# positive as Sarama does).
LIBRDKAFKA_KEYS = [
    b"kafka",
    b"giberish123456789",
    b"1234",
    b"234",
    b"34",
    b"4",
    _UNALIGNED,
    _UNALIGNED[1:],
    _UNALIGNED[2:],
    _UNALIGNED[3:],
    b"",
]
LIBRDKAFKA_MURMUR2 = [
    0xD067CF64,
    0x8F552B0C,
    0x9FC97B14,
    0xE7C009CA,
    0x873930DA,
    0x5A4B5CA1,
    0x78424F1C,
    0x4A62B377,
    0xE0E4E09E,
    0x62B8B43F,
    0x106E08D9,
]
LIBRDKAFKA_FNV1A = [
    0xD33C4E1,
    0x77A58295,
    0x23BDD03,
    0x2DEA3CD2,
    0x740FA83E,
    0x310CA263,
    0x65CBD69C,
    0x6E49C79A,
    0x69EED356,
    0x6ABCC023,
    0x7EE3623B,
]

keys = st.binary(max_size=64)
counts = st.integers(min_value=1, max_value=10_000)


def java_murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` transliterated line by line (int32 arithmetic, `>>>`, the
    fall-through switch on the tail): an independent check of the word-wise version."""

    def int32(value: int) -> int:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value

    def ushr(value: int, bits: int) -> int:
        return (value & 0xFFFFFFFF) >> bits

    length, seed, m, r = len(data), int32(0x9747B28C), 0x5BD1E995, 24
    h = int32(seed ^ length)
    for i in range(length // 4):
        i4 = i * 4
        k = (
            (data[i4] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = int32(k * m)
        k = int32(k ^ ushr(k, r))
        k = int32(k * m)
        h = int32(h * m)
        h = int32(h ^ k)
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h = int32(h ^ ((data[tail + 2] & 0xFF) << 16))
    if rest >= 2:
        h = int32(h ^ ((data[tail + 1] & 0xFF) << 8))
    if rest >= 1:
        h = int32(h ^ (data[tail] & 0xFF))
        h = int32(h * m)
    h = int32(h ^ ushr(h, 13))
    h = int32(h * m)
    return int32(h ^ ushr(h, 15))


@pytest.mark.parametrize(("key", "expected"), list(KAFKA_MURMUR2.items()))
def test_murmur2_is_the_java_clients(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize(
    ("key", "expected"), list(zip(LIBRDKAFKA_KEYS, LIBRDKAFKA_MURMUR2, strict=True))
)
def test_murmur2_is_librdkafkas(key: bytes, expected: int) -> None:
    assert murmur2(key) & 0xFFFFFFFF == expected


@pytest.mark.parametrize(
    ("key", "expected"), list(zip(LIBRDKAFKA_KEYS, LIBRDKAFKA_FNV1A, strict=True))
)
def test_fnv1a_is_librdkafkas(key: bytes, expected: int) -> None:
    assert fnv1a(key) == expected


@given(keys)
def test_murmur2_matches_the_java_source_for_every_tail_length(key: bytes) -> None:
    assert murmur2(key) == java_murmur2(key)


def test_the_java_transliteration_is_itself_right() -> None:
    # Guard against a reference that agrees with anything.
    assert all(java_murmur2(key) == value for key, value in list(KAFKA_MURMUR2.items()))


@pytest.mark.parametrize("partitioner", ["murmur2", "murmur2_random"])
@given(key=keys, count=counts)
def test_a_murmur2_partition_is_the_java_producers(
    partitioner: str, key: bytes, count: int
) -> None:
    # Java: Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions, the sign bit cleared.
    expected = (murmur2(key) & 0x7FFFFFFF) % count
    assert partition_for(key, count, partitioner) == expected


def test_to_positive_clears_the_sign_bit_rather_than_negating() -> None:
    assert to_positive(-1) == 0x7FFFFFFF  # abs would give 1
    assert to_positive(-(1 << 31)) == 0
    assert to_positive(5) == 5
    # "21": -973932308 -> 1173551340, so partition 0 of 10 (an absolute value would give 8).
    assert partition_for(b"21", 10, "murmur2") == 1173551340 % 10 == 0


def test_consistent_is_crc32() -> None:
    assert consistent_hash(b"123456789") == 0xCBF43926  # CRC-32's check value
    assert consistent_hash(b"") == 0


@pytest.mark.parametrize("partitioner", ["consistent", "consistent_random"])
@given(key=keys.filter(bool), count=counts)
def test_a_consistent_partition_is_zlibs_crc32_modulo(
    partitioner: str, key: bytes, count: int
) -> None:
    assert partition_for(key, count, partitioner) == zlib.crc32(key) % count


@pytest.mark.parametrize("partitioner", ["fnv1a", "fnv1a_random"])
@given(key=keys, count=counts)
def test_an_fnv1a_partition_is_the_positive_hash_modulo(
    partitioner: str, key: bytes, count: int
) -> None:
    assert 0 <= fnv1a(key) <= 1 << 31
    assert partition_for(key, count, partitioner) == fnv1a(key) % count


@pytest.mark.parametrize("partitioner", sorted(REPRODUCIBLE))
@given(key=keys.filter(bool), count=counts)
def test_a_reproducible_partition_is_in_range_and_always_the_same(
    partitioner: str, key: bytes, count: int
) -> None:
    partition = partition_for(key, count, partitioner)
    assert partition is not None and 0 <= partition < count
    assert partition_for(bytes(key), count, partitioner) == partition


@given(key=keys, count=counts, name=st.sampled_from(["random", "Murmur2", "crc32", ""]))
def test_random_and_unknown_partitioners_cannot_be_reproduced(
    key: bytes, count: int, name: str
) -> None:
    assert partition_for(key, count, name) is None


def test_an_empty_key_is_random_under_consistent_random_alone() -> None:
    # librdkafka spreads empty keys like missing ones for consistent_random only.
    assert partition_for(b"", 7, "consistent_random") is None
    assert partition_for(b"", 7, "consistent") == 0
    assert partition_for(b"", 7, "murmur2_random") == (0x106E08D9 & 0x7FFFFFFF) % 7


def test_the_hashes_differ_so_the_choice_matters() -> None:
    spread = {
        name: [partition_for(f"event-{n}".encode(), 12, name) for n in range(200)]
        for name in ("murmur2_random", "consistent_random", "fnv1a_random")
    }
    assert len(set(spread["murmur2_random"])) == 12  # every partition gets some
    assert spread["murmur2_random"] != spread[LEGACY_PARTITIONER] != spread["fnv1a_random"]


def test_a_topic_has_at_least_one_partition() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for(b"key", 0, "murmur2_random")
    assert partition_for(b"key", 1, "murmur2_random") == 0
