"""The fuzz's inputs: valid deletion events of both schema versions, and their mutations.

Everything is drawn from one `random.Random`, so a seed names a sequence of inputs. Valid
bodies come from fastavro's writer (`encode_record`), as a producer writes them, and a walk of
each body (`walk`) finds its varints and blocks, so that mutations can aim where the scans
decide something (a length, a count, a branch) rather than only where random bytes land.

The mutations are those a scan of untrusted bytes gets wrong: bit flips and byte sets,
truncation, extension, insertions and deletions, varints rewritten (huge, negative, one past
the end, overlong, 10 and 11 bytes wide, unterminated), block counts made negative (legal
Avro the scans must step aside for) or a block split in two (legal Avro they must read), and
splices of two bodies. A body of one version is sometimes read with the other's layout: they
differ by MemoriesDeleted's last byte, the near miss a shortcut gets wrong.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any, Final

from consumer.avro.codec import AvroSchema, SchemaStore, default_schema_dir, encode_record
from consumer.core.events import REASONS

__all__ = [
    "READER",
    "V1",
    "WRITERS",
    "Case",
    "Seeds",
    "Walk",
    "case",
    "encode",
    "record",
    "walk",
    "zigzag",
]

READER: Final = SchemaStore.from_directory().reader
V1: Final = AvroSchema.parse((default_schema_dir() / "deletion_event.v1.avsc").read_text())
WRITERS: Final = {True: READER, False: V1}  # by `linked`: version 2 has include_linked

# Longer than any mutated input, so the crash record (scan_fuzz.py) has a fixed size.
MAX_INPUT: Final = 1 << 16

# Text that trips the scans: empty, blank, padded (ASCII and Unicode white space at either
# end, which decides the compiled scan's clean-id tuple), multi-byte UTF-8, long enough for
# a two-byte length, NUL.
_TEXTS: Final = ("", " ", "\t\n", " alice ", "bob", "é", "🙂", "a\u00a0", "\u2028b", "\x00")
_ALPHABET: Final = "abcXYZ019-_ .\t\x00é€🙂\u00a0\u3000"
_LONGS: Final = (0, 1, -1, 63, 64, -64, -65, 2**31, 2**62 - 1, -(2**62), 1_700_000_000_000)


def _text(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.4:
        return rng.choice(_TEXTS)
    if pick < 0.6:
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if pick < 0.65:
        return rng.choice("xy") * rng.choice((63, 64, 70, 200))  # 1- and 2-byte lengths
    if pick < 0.651:
        return "z" * 8200  # a 3-byte length
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 12)))


def _optional(rng: random.Random) -> str | None:
    return None if rng.random() < 0.4 else _text(rng)


def record(rng: random.Random) -> dict[str, Any]:
    """A random valid record of the version-2 schema (version 1 drops include_linked)."""
    kind = rng.randrange(4)
    payload: tuple[str, dict[str, Any]]
    fields: dict[str, Any]
    if kind == 0:
        payload = ("memory.deletion.UserDeleted", {"user_id": _text(rng)})
    elif kind == 1:
        fields = {"run_id": _text(rng), "user_id": _optional(rng), "agent_id": _optional(rng)}
        payload = ("memory.deletion.SessionExpired", fields)
    elif kind == 2:
        names = ("user_id", "agent_id", "run_id", "app_id")
        fields = {name: _optional(rng) for name in names}
        fields["metadata"] = {_text(rng): _text(rng) for _ in range(rng.choice((0, 1, 2, 5)))}
        payload = ("memory.deletion.ScopeDeleted", fields)
    else:
        pool = [_text(rng) for _ in range(rng.randint(1, 4))]  # repeats: duplicate ids
        # Around the compiled scan's pairwise limit (16), and past 63: a two-byte count.
        size = rng.choice((0, 1, 2, 3, 16, 17, 63, 64, 80))
        ids = [rng.choice(pool) if rng.random() < 0.3 else _text(rng) for _ in range(size)]
        fields = {
            "memory_ids": ids,
            "user_id": _optional(rng),
            "include_linked": rng.random() < 0.5,
        }
        payload = ("memory.deletion.MemoriesDeleted", fields)
    occurred = rng.choice(_LONGS) if rng.random() < 0.3 else rng.getrandbits(41)
    return {
        "event_id": _text(rng),
        "occurred_at": occurred,
        "source": _text(rng),
        "reason": rng.choice(REASONS),
        "payload": payload,
    }


def encode(rec: dict[str, Any], linked: bool) -> bytes:
    """The body a version-2 (`linked`) or version-1 writer makes of a version-2 record."""
    if linked:
        return encode_record(rec, READER)
    name, fields = rec["payload"]
    fields = {k: v for k, v in fields.items() if k != "include_linked"}
    return encode_record({**rec, "payload": (name, fields)}, V1)


def zigzag(value: int) -> bytes:
    """Avro's long: zigzag, then base-128 little-endian (any width, 10 bytes for 64 bits)."""
    n = ((value << 1) ^ (value >> 63)) & ((1 << 64) - 1)  # outside 64 bits: wrapped
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


@dataclass(frozen=True, slots=True)
class Walk:
    """Where a valid body's varints are, as (start, end, value), and its blocks as
    (count start, count end, the end of each item)."""

    varints: tuple[tuple[int, int, int], ...]
    blocks: tuple[tuple[int, int, tuple[int, ...]], ...]


def walk(body: bytes, linked: bool) -> Walk:
    """The varints and blocks of a valid body (as fastavro writes it: one block per array)."""
    varints: list[tuple[int, int, int]] = []
    blocks: list[tuple[int, int, tuple[int, ...]]] = []
    pos = 0

    def long() -> int:
        nonlocal pos
        start, shift, n = pos, 0, 0
        while True:
            byte = body[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                value = (n >> 1) ^ -(n & 1)
                varints.append((start, pos, value))
                return value

    def string() -> None:
        nonlocal pos
        size = long()  # before `pos +=`, which would read pos ahead of the call
        pos += size

    def optional() -> None:
        if long():
            string()

    def block(items: int) -> None:  # an array (1 string an item) or a map (2)
        nonlocal pos
        while True:
            start = pos
            count = long()
            if not count:
                return
            count_end, ends = pos, []
            for _ in range(count):
                for _ in range(items):
                    string()
                ends.append(pos)
            blocks.append((start, count_end, tuple(ends)))

    string()
    long()
    string()
    long()
    branch = long()
    if branch == 0:
        string()
    elif branch == 1:
        string()
        optional()
        optional()
    elif branch == 2:
        for _ in range(4):
            optional()
        block(2)
    else:
        block(1)
        optional()
        pos += linked
    if pos != len(body):
        raise ValueError("not a valid body of that layout")
    return Walk(tuple(varints), tuple(blocks))


# Varint values to write in place of a length, count, branch or long.
_VARINTS: Final = (0, 1, -1, 2, -2, 63, 64, 127, 128, 2**31, -(2**31), 2**62, -(2**62), 2**63 - 1)
_RAW_VARINTS: Final = (
    b"\xff" * 9 + b"\x7f",  # 10 bytes: wider than either scan reads
    b"\xff" * 10 + b"\x01",  # 11 bytes
    b"\x80" * 8 + b"\x00",  # 9 bytes, overlong zero: legal, and read
    b"\x80\x00",  # overlong zero, 2 bytes
    b"\x81\x80\x00",  # overlong -1
    b"\xff\xff\xff",  # unterminated (then whatever follows)
)
_STEPS: Final = (1, 1, 1, 2, 2, 3, 4)  # mutations stacked on one body
_BYTES: Final = (0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0x81, 0xC3, 0xFE, 0xFF)


def _varint_edit(rng: random.Random, body: bytearray, shape: Walk) -> None:
    if not shape.varints:
        return
    start, end, value = rng.choice(shape.varints)
    pick = rng.random()
    if pick < 0.2:
        new = rng.choice(_RAW_VARINTS)
    elif pick < 0.4:
        new = zigzag(value + rng.choice((-1, 1, 2, len(body) - end, len(body) - end + 1)))
    elif pick < 0.5:
        same = zigzag(value)  # the same value, one byte wider (overlong: legal Avro)
        new = same[:-1] + bytes((same[-1] | 0x80, 0))
    else:
        new = zigzag(rng.choice(_VARINTS))
    body[start:end] = new


def _negative_block(rng: random.Random, body: bytearray, shape: Walk) -> None:
    """A block as count -n and its byte size (legal Avro; the scans step aside), or a size
    one off (not legal)."""
    if not shape.blocks:
        return
    start, count_end, ends = rng.choice(shape.blocks)
    size = ends[-1] - count_end + rng.choice((0, 0, 0, -1, 1))
    body[start:count_end] = zigzag(-len(ends)) + zigzag(size)


def _split_block(rng: random.Random, body: bytearray, shape: Walk) -> None:
    """One block of n items as two blocks, k and n - k (legal Avro; the scans read it)."""
    blocks = [b for b in shape.blocks if len(b[2]) > 1]
    if not blocks:
        return
    start, count_end, ends = rng.choice(blocks)
    k = rng.randrange(1, len(ends))
    first, rest = body[count_end : ends[k - 1]], body[ends[k - 1] : ends[-1]]
    body[start : ends[-1]] = zigzag(k) + first + zigzag(len(ends) - k) + rest


def _below(rng: random.Random, n: int) -> int:
    """A number in [0, n): randrange at a third of its cost (the mutations' hot path)."""
    return int(rng.random() * n)


def _byte_edit(rng: random.Random, body: bytearray, other: bytes) -> None:
    size = len(body)
    pick = _below(rng, 9)
    at = _below(rng, size + 1)
    if pick == 0 and size:
        body[min(at, size - 1)] ^= 1 << _below(rng, 8)
    elif pick == 1 and size:
        body[min(at, size - 1)] = (
            _BYTES[_below(rng, len(_BYTES))] if rng.random() < 0.5 else _below(rng, 256)
        )
    elif pick == 2:
        del body[at:]  # truncation
    elif pick == 3:
        body += rng.randbytes(1 + _below(rng, 8))  # extension
    elif pick == 4:
        body[at:at] = rng.randbytes(1 + _below(rng, 4))
    elif pick == 5:
        del body[at : at + 1 + _below(rng, 8)]
    elif pick == 6:
        body[at:at] = body[at : at + 1 + _below(rng, 16)]  # a repeat
    elif pick == 7:
        body[at:] = other[_below(rng, len(other) + 1) :]  # splice: this head, another's tail
    else:
        j = _below(rng, len(other) + 1)
        body[at:at] = other[j : j + 1 + _below(rng, 32)]


@dataclass(frozen=True, slots=True)
class Case:
    """One input: the bytes, where the body starts, and the layout it is scanned with."""

    value: bytes
    start: int
    linked: bool


class Seeds:
    """Valid bodies to mutate, with their walks: the corpus's, and random records'.

    Drawing a record and encoding it costs several times the checks of its mutation, so a
    pool of them is drawn up front, and one in `renew` mutations replaces one of them: the
    bodies keep changing at a small cost.
    """

    def __init__(self, rng: random.Random, corpus: list[tuple[bytes, bool]], size: int) -> None:
        self._rng = rng
        self._fixed = [(body, linked, walk(body, linked)) for body, linked in corpus]
        self._drawn = [self._draw() for _ in range(size)]

    def _draw(self) -> tuple[bytes, bool, Walk]:
        linked = self._rng.random() < 0.6
        body = encode(record(self._rng), linked)
        return body, linked, walk(body, linked)

    def pick(self, renew: int = 50) -> tuple[bytes, bool, Walk]:
        """A body, its layout and its walk (a new record now and then)."""
        rng = self._rng
        if self._fixed and rng.random() < 0.1:
            return self._fixed[_below(rng, len(self._fixed))]
        at = _below(rng, len(self._drawn))
        if rng.random() * renew < 1:
            self._drawn[at] = self._draw()
        return self._drawn[at]


def case(rng: random.Random, seeds: Seeds) -> Case:
    """A mutation of a valid body of `seeds`, framed raw, single-object or Confluent, scanned
    with its own layout or (sometimes) the other's."""
    base, linked, shape = seeds.pick()
    other = seeds.pick()[0]
    body = bytearray(base)
    for step in range(_STEPS[_below(rng, len(_STEPS))]):
        pick = rng.random() if step == 0 else 1.0  # the walk is only right for the first edit
        if pick < 0.25:
            _varint_edit(rng, body, shape)
        elif pick < 0.3:
            _negative_block(rng, body, shape)
        elif pick < 0.35:
            _split_block(rng, body, shape)
        else:
            _byte_edit(rng, body, other)
    framing = rng.random()
    if framing < 0.45:
        value, start = bytes(body), 0
    elif framing < 0.9:
        value, start = b"\xc3\x01" + WRITERS[linked].fingerprint + body, 10
    else:
        value, start = b"\x00\x00\x00\x00\x07" + body, 5
    if rng.random() < 0.03:
        value = value[: _below(rng, start + 1)]  # cut inside the header: start past the end
    if rng.random() < 0.1:
        linked = not linked  # the other version's layout: one byte out for MemoriesDeleted
    return Case(value[:MAX_INPUT], start, linked)
