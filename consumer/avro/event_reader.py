"""A reader specialised for the current event schema: Avro bytes straight to a DeletionEvent.

fastavro's schemaless reader is general: it walks the parsed schema for every message and asks
the file object for each primitive, ~12 µs for a small event, and `event_from_record` then takes
its dicts apart again (~3.5 µs). This module reads the layouts the consumer meets nearly
always (written with the reader schema itself, or with version 1 of it) from the bytes in one
pass, and builds the event directly: about a third of the time.

It is a shortcut, never a judge. `read_event` returns None for anything it is not sure of
(an unfamiliar varint width, a negative block count, a length past the end, bad UTF-8, a boolean
byte other than 0 or 1, trailing bytes...) and the codec then takes the general path, which
decides and words the error. So the only promise to keep is: when this returns an event, it is
the event the general path would build. tests/unit/avro/test_event_reader.py checks exactly that on
arbitrary bytes and on arbitrary valid events.

It applies only to a reader whose Parsing Canonical Form is `CANONICAL` (version 2), and to
writers whose form is `CANONICAL` or `CANONICAL_V1`: version 1, the same bytes but for
MemoriesDeleted's last field, include_linked, which it lacks (read as its default, False, as
schema resolution does). The scan takes `linked`, whether the writer has that field. A change
of the reader schema, or of the version-1 file, turns the shortcut off for the writers
concerned (and a unit test fails until this module follows).

The scan (bytes to a tuple of fields) exists twice: `scan_py` here, and the same in C
(consumer/avro/_scan.c), which `pip install` builds where a compiler is and which is used when
present: reading is then ~10x cheaper, and the id clean-up spent a third of its CPU there. The
tests hold both to the general path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from consumer.core.events import (
    REASONS,
    DeletionEvent,
    EventType,
    Scope,
    clean_id,
    clean_memory_ids,
)

__all__ = ["CANONICAL", "CANONICAL_V1", "COMPILED", "Fields", "read_event", "scan", "scan_py"]

CANONICAL: Final = (
    '{"name":"memory.deletion.DeletionEvent","type":"record","fields":['
    '{"name":"event_id","type":"string"},'
    '{"name":"occurred_at","type":"long"},'
    '{"name":"source","type":"string"},'
    '{"name":"reason","type":{"name":"memory.deletion.ErasureReason","type":"enum",'
    '"symbols":["USER_REQUEST","GDPR","CCPA","RETENTION","ADMIN","OTHER"]}},'
    '{"name":"payload","type":['
    '{"name":"memory.deletion.UserDeleted","type":"record","fields":['
    '{"name":"user_id","type":"string"}]},'
    '{"name":"memory.deletion.SessionExpired","type":"record","fields":['
    '{"name":"run_id","type":"string"},'
    '{"name":"user_id","type":["null","string"]},'
    '{"name":"agent_id","type":["null","string"]}]},'
    '{"name":"memory.deletion.ScopeDeleted","type":"record","fields":['
    '{"name":"user_id","type":["null","string"]},'
    '{"name":"agent_id","type":["null","string"]},'
    '{"name":"run_id","type":["null","string"]},'
    '{"name":"app_id","type":["null","string"]},'
    '{"name":"metadata","type":{"type":"map","values":"string"}}]},'
    '{"name":"memory.deletion.MemoriesDeleted","type":"record","fields":['
    '{"name":"memory_ids","type":{"type":"array","items":"string"}},'
    '{"name":"user_id","type":["null","string"]},'
    '{"name":"include_linked","type":"boolean"}]}]}]}'
)

# Version 1 (schemas/deletion_event.v1.avsc): the same but for MemoriesDeleted's last field,
# include_linked, the one byte its bodies lack. A unit test holds it to the file.
CANONICAL_V1: Final = CANONICAL.replace(',{"name":"include_linked","type":"boolean"}', "")


# What a scan gives: (event_id, occurred_at, source, reason index, branch, f1..f5), where the
# branch is the payload's place in the union and f1..f5 its fields in schema order (unused ones
# None): 0 UserDeleted (user_id), 1 SessionExpired (run_id, user_id, agent_id), 2 ScopeDeleted
# (user_id, agent_id, run_id, app_id, metadata), 3 MemoriesDeleted (memory_ids, user_id,
# include_linked: True or False; always False from a version-1 writer). The memory ids are a
# list to clean, or, from the compiled scan, a tuple when already clean.
Fields = tuple[str, int, str, int, int, Any, Any, Any, Any, Any]


class _Unsure(Exception):
    """Raised inside the reader to hand the message to the general path."""


_USER_DELETED = EventType.USER_DELETED
_SESSION_EXPIRED = EventType.SESSION_EXPIRED
_SCOPE_DELETED = EventType.SCOPE_DELETED
_MEMORIES_DELETED = EventType.MEMORIES_DELETED
# Enum symbols in schema order; `REASONS` is that order (a test pins it).
_REASONS: Final = REASONS


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint of at most 9 bytes (63 bits: fastavro's C reader and Python agree)."""
    byte = data[pos]  # IndexError past the end: the caller is unsure
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos + 1
        shift += 7
        if shift > 56:
            raise _Unsure


def _string(data: bytes, pos: int) -> tuple[str, int]:
    head = data[pos]
    if head < 0x80:  # one byte, nearly always: skip the loop
        if head & 1:  # zigzag: odd is negative
            raise _Unsure
        size = head >> 1
        pos += 1
    else:
        size, pos = _long(data, pos)
        if size < 0:
            raise _Unsure
    end = pos + size
    if end > len(data):
        raise _Unsure
    return data[pos:end].decode(), end  # strict UTF-8, as fastavro's


def _optional_string(data: bytes, pos: int) -> tuple[str | None, int]:
    branch = data[pos]
    if branch == 0:  # zigzag 0: "null"
        return None, pos + 1
    if branch == 2:  # zigzag 1: "string"
        return _string(data, pos + 1)
    raise _Unsure


def _boolean(data: bytes, pos: int) -> tuple[bool, int]:
    """Avro's boolean, one byte 0 or 1; any other is unsure (fastavro reads it as True)."""
    byte = data[pos]
    if byte == 0:
        return False, pos + 1
    if byte == 1:
        return True, pos + 1
    raise _Unsure


def _count(data: bytes, pos: int) -> tuple[int, int]:
    """A block count; negative ones (followed by a byte size) are legal but rare: unsure."""
    count, pos = _long(data, pos)
    if count < 0:
        raise _Unsure
    return count, pos


def read_event(data: bytes, start: int, linked: bool) -> DeletionEvent | None:
    """The event in `data[start:]`, or None when the general path must decide.

    `linked`: the writer's MemoriesDeleted ends with include_linked (`CANONICAL`, version 2);
    False for `CANONICAL_V1`, whose bodies lack that byte.
    """
    fields = scan(data, start, linked)
    if fields is None:
        return None
    event_id, occurred_at, source, reason, branch, f1, f2, f3, f4, f5 = fields
    if branch == 3:  # MemoriesDeleted, the id clean-up: ids come as a tuple if already clean
        return DeletionEvent(
            event_id,
            occurred_at,
            _MEMORIES_DELETED,
            None,
            f1 if type(f1) is tuple else clean_memory_ids(f1),
            source,
            _REASONS[reason],
            clean_id(f2),
            f3,
        )
    if branch == 0:  # UserDeleted; Scope.of(user_id=...) inlined: the erasure burst
        cleaned = clean_id(f1)
        scope = Scope((("user_id", cleaned),) if cleaned is not None else (), ())
        kind = _USER_DELETED
    elif branch == 1:
        scope = Scope.of(user_id=f2, agent_id=f3, run_id=f1)
        kind = _SESSION_EXPIRED
    else:
        scope = Scope.of(user_id=f1, agent_id=f2, run_id=f3, app_id=f4, metadata=f5)
        kind = _SCOPE_DELETED
    return DeletionEvent(event_id, occurred_at, kind, scope, (), source, _REASONS[reason])


def scan_py(data: bytes, start: int, linked: bool) -> Fields | None:
    """The fields of the event in `data[start:]` (see `Fields`), or None when unsure.

    `linked`: whether the writer's MemoriesDeleted has include_linked (see `read_event`).
    """
    try:
        return _scan(data, start, linked)
    except (_Unsure, IndexError, UnicodeDecodeError):
        return None


def _scan(data: bytes, pos: int, linked: bool) -> Fields:
    if pos < 0:
        raise _Unsure
    event_id, pos = _string(data, pos)
    occurred_at, pos = _long(data, pos)
    source, pos = _string(data, pos)
    symbol, pos = _long(data, pos)
    if not 0 <= symbol < len(_REASONS):
        raise _Unsure
    branch = data[pos]
    pos += 1
    f1: object = None
    f2: object = None
    f3: object = None
    f4: object = None
    f5: object = None
    if branch == 6:  # zigzag 3: MemoriesDeleted
        f1, pos = _memory_ids(data, pos)
        f2, pos = _optional_string(data, pos)
        if linked:
            f3, pos = _boolean(data, pos)
        else:
            f3 = False  # a version-1 writer: no such byte; resolution gives the default
    elif branch == 0:  # UserDeleted
        f1, pos = _string(data, pos)
    elif branch == 2:  # SessionExpired
        f1, pos = _string(data, pos)
        f2, pos = _optional_string(data, pos)
        f3, pos = _optional_string(data, pos)
    elif branch == 4:  # ScopeDeleted
        f1, pos = _optional_string(data, pos)
        f2, pos = _optional_string(data, pos)
        f3, pos = _optional_string(data, pos)
        f4, pos = _optional_string(data, pos)
        f5, pos = _metadata(data, pos)
    else:
        raise _Unsure
    if pos != len(data):
        raise _Unsure  # trailing bytes: the general path words the error
    return (event_id, occurred_at, source, symbol, branch >> 1, f1, f2, f3, f4, f5)


def _memory_ids(data: bytes, pos: int) -> tuple[list[str], int]:
    ids: list[str] = []
    append = ids.append
    size = len(data)
    count, pos = _count(data, pos)
    while count:
        for _ in range(count):
            head = data[pos]
            if head < 0x80 and not head & 1:  # _string inlined: ids are short
                start = pos + 1
                pos = start + (head >> 1)
                if pos > size:
                    raise _Unsure
                append(data[start:pos].decode())
            else:
                memory_id, pos = _string(data, pos)
                append(memory_id)
        count, pos = _count(data, pos)
    return ids, pos


def _metadata(data: bytes, pos: int) -> tuple[dict[str, str], int]:
    metadata: dict[str, str] = {}
    count, pos = _count(data, pos)
    while count:
        for _ in range(count):
            key, pos = _string(data, pos)
            metadata[key], pos = _string(data, pos)
        count, pos = _count(data, pos)
    return metadata, pos


def _compiled_scan() -> Callable[[bytes, int, bool], Fields | None] | None:
    """The same scan compiled (consumer/avro/_scan.c), built by `pip install` with a compiler."""
    try:
        from consumer.avro._scan import scan as compiled
    except ImportError:  # pragma: no cover - a checkout installed without a C compiler
        return None
    return compiled


_COMPILED_SCAN: Final = _compiled_scan()
COMPILED: Final = _COMPILED_SCAN is not None
scan: Callable[[bytes, int, bool], Fields | None] = _COMPILED_SCAN or scan_py
