"""Which partition a keyed record goes to, under each of librdkafka's partitioners.

A reader that knows a record's key and the partitioner its producer used can compute the one
partition that may hold it instead of scanning them all: `receipts --event-id` reads the
receipts topic this way (`commands/receipt_lookup.py`).

Receipts are produced with `murmur2_random` (`kafka/config.py`): the Java producer's default
partitioner, which Kafka Streams, ksqlDB, Kafka Connect and kafka-python use as well, so any
tool of the ecosystem, not only this one, can find the partition of a receipt from its event
id. librdkafka's own default, `consistent_random` (CRC32), is what every version before that
choice wrote with; `partition_for(key, n, "consistent_random")` finds those receipts.

Checked against librdkafka's sources (src/rdmurmur2.c, src/rdfnv1a.c, src/rdkafka_msg.c
`rd_kafka_msg_partitioner_*`):

- murmur2: MurmurHash2 over the key's 4-byte little-endian words, seed 0x9747b28c, the hash
  Java's `Utils.murmur2` computes; the partition is `(h & 0x7fffffff) % n`, Java's
  `toPositive(h) % n` (librdkafka masks the same way, it does not take an absolute value).
- consistent: `crc32(key) % n` (zlib's CRC-32, unsigned).
- fnv1a: FNV-1a 32-bit, read as a signed int32 and made positive by negation (Sarama's
  `NewHashPartitioner`; INT32_MIN stays 2**31), then an unsigned `% n`.
- The `_random` variants differ only for keys that are missing or, for `consistent_random`
  alone, empty: those go to a random (sticky) partition, which nothing can reproduce. A
  record with no key at all is no concern here: every receipt is keyed by its event id.

Every key-hash lookup assumes the topic still has the partition count the record was written
with: a topic whose partitions were added since has its older records where the old count put
them. That is what `receipts --all-partitions` is for.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

__all__ = [
    "LEGACY_PARTITIONER",
    "REPRODUCIBLE",
    "consistent_hash",
    "fnv1a",
    "murmur2",
    "partition_for",
    "to_positive",
]

# librdkafka's default partitioner, hence what receipts were written with before this project
# chose murmur2_random.
LEGACY_PARTITIONER = "consistent_random"

_MASK = 0xFFFFFFFF
_SIGN = 0x80000000
_MURMUR_SEED = 0x9747B28C
_MURMUR_M = 0x5BD1E995
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_WORDS = struct.Struct("<I")


def _signed(value: int) -> int:
    """An unsigned 32-bit value read as Java's (or C's) int32."""
    return value - (1 << 32) if value & _SIGN else value


def murmur2(key: bytes) -> int:
    """Kafka's `Utils.murmur2`: the signed 32-bit hash, as the Java client returns it."""
    length = len(key)
    whole = length - length % 4
    h = (_MURMUR_SEED ^ length) & _MASK
    for (word,) in _WORDS.iter_unpack(memoryview(key)[:whole]):
        k = (word * _MURMUR_M) & _MASK
        k ^= k >> 24
        k = (k * _MURMUR_M) & _MASK
        h = ((h * _MURMUR_M) & _MASK) ^ k
    if whole < length:
        # The last 1 to 3 bytes, little-endian: Java's fall-through switch XORs each one in
        # at its own byte position, which is the tail read as one little-endian number.
        h ^= int.from_bytes(key[whole:], "little")
        h = (h * _MURMUR_M) & _MASK
    h ^= h >> 13
    h = (h * _MURMUR_M) & _MASK
    h ^= h >> 15
    return _signed(h)


def to_positive(hash32: int) -> int:
    """Java's `Utils.toPositive`: the sign bit cleared (not an absolute value)."""
    return hash32 & 0x7FFFFFFF


def consistent_hash(key: bytes) -> int:
    """librdkafka's `consistent` hash: the key's CRC-32, unsigned."""
    return zlib.crc32(key)


def fnv1a(key: bytes) -> int:
    """librdkafka's `rd_fnv1a`: FNV-1a 32-bit made positive by negation, in [0, 2**31]."""
    h = _FNV_OFFSET
    for byte in key:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    # C negates the int32; -INT32_MIN wraps to INT32_MIN, i.e. 2**31 once read unsigned.
    return abs(_signed(h))


def _murmur2_partition(key: bytes, partitions: int) -> int | None:
    return to_positive(murmur2(key)) % partitions


def _consistent_partition(key: bytes, partitions: int) -> int | None:
    return consistent_hash(key) % partitions


def _consistent_random_partition(key: bytes, partitions: int) -> int | None:
    # An empty key is spread at random by this partitioner alone (the others hash it).
    return consistent_hash(key) % partitions if key else None


def _fnv1a_partition(key: bytes, partitions: int) -> int | None:
    return fnv1a(key) % partitions


_PARTITIONERS: dict[str, Callable[[bytes, int], int | None]] = {
    "murmur2": _murmur2_partition,
    "murmur2_random": _murmur2_partition,
    "consistent": _consistent_partition,
    "consistent_random": _consistent_random_partition,
    "fnv1a": _fnv1a_partition,
    "fnv1a_random": _fnv1a_partition,
}
# The librdkafka partitioners whose choice for a keyed record can be computed again.
REPRODUCIBLE = frozenset(_PARTITIONERS)


def partition_for(key: bytes, partitions: int, partitioner: str) -> int | None:
    """The partition librdkafka's `partitioner` puts a record keyed `key` on, out of
    `partitions`; None when no one can tell (`random`, a name librdkafka does not know, or an
    empty key under `consistent_random`)."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    choose = _PARTITIONERS.get(partitioner)
    return choose(key, partitions) if choose is not None else None
