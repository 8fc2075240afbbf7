"""The two wire framings of an Avro body, for events and receipts alike (README: Publishing
events).

    0x00 | schema id, 4 bytes big-endian | Avro body          Confluent: the writer is in the
                                                             schema registry under that id
    0xC3 0x01 | fingerprint, 8 bytes LE | Avro body           Avro single-object encoding: the
                                                             writer's CRC-64-AVRO fingerprint

Both codecs frame with `frame_confluent` / `frame_single_object` and read a header with
`split_header`. The event decoder alone reads the two well-formed headers inline, with the
constants here, and hands every other value to `split_header` for the words of its error: it
runs for every message, and a call per message would cost a few per cent of the decode
(bench/decode_bench.py).
"""

from __future__ import annotations

import struct
from typing import Final

from consumer.core.errors import ConsumerError

__all__ = [
    "CONFLUENT_HEADER",
    "CONFLUENT_MAGIC",
    "SCHEMA_ID",
    "SINGLE_OBJECT_HEADER",
    "SINGLE_OBJECT_MAGIC",
    "FramingError",
    "frame_confluent",
    "frame_single_object",
    "split_header",
]

CONFLUENT_MAGIC: Final = 0x00
SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
SCHEMA_ID: Final = struct.Struct(">I")
CONFLUENT_HEADER: Final = 1 + SCHEMA_ID.size
SINGLE_OBJECT_HEADER: Final = len(SINGLE_OBJECT_MAGIC) + 8


class FramingError(ConsumerError, ValueError):
    """A value with neither framing's header, whole. The message never holds payload bytes."""


def frame_single_object(body: bytes, digest: bytes) -> bytes:
    """Avro single-object framing; `digest` is the writer's 8-byte fingerprint."""
    return SINGLE_OBJECT_MAGIC + digest + body


def frame_confluent(body: bytes, schema_id: int) -> bytes:
    """Confluent framing: magic byte 0, then the schema id, 4 bytes big-endian."""
    return bytes((CONFLUENT_MAGIC,)) + SCHEMA_ID.pack(schema_id) + body


def split_header(value: bytes | None) -> tuple[int | bytes, int]:
    """What names the writer, and where the body starts: `(schema id, 5)` for a Confluent
    value, `(fingerprint, 10)` for a single-object one; FramingError for any other value."""
    if not value:
        raise FramingError("null value" if value is None else "empty value")
    magic = value[0]
    if magic == CONFLUENT_MAGIC:
        if len(value) < CONFLUENT_HEADER:
            raise FramingError(f"Confluent header cut at {len(value)} bytes")
        (schema_id,) = SCHEMA_ID.unpack_from(value, 1)
        return schema_id, CONFLUENT_HEADER
    if magic == SINGLE_OBJECT_MAGIC[0]:
        if len(value) < SINGLE_OBJECT_HEADER:
            raise FramingError(f"single-object header cut at {len(value)} bytes")
        if value[1] != SINGLE_OBJECT_MAGIC[1]:
            raise FramingError("single-object marker 0xC3 not followed by 0x01")
        return value[2:SINGLE_OBJECT_HEADER], SINGLE_OBJECT_HEADER
    raise FramingError(f"unknown framing: first byte 0x{magic:02x}")
