"""A reader specialised for the current event schema: Avro bytes straight to a DeletionEvent.

fastavro's schemaless reader is general: it walks the parsed schema for every message and asks
the file object for each primitive, ~12 µs for a small event, and `event_from_record` then takes
its dicts apart again (~3.5 µs). This module reads the one layout the consumer meets nearly
always (written with the reader schema itself) from the bytes in one pass, and builds the event
directly: about a third of the time.

It is a shortcut, never a judge. `read_event` returns None for anything it is not sure of
(an unfamiliar varint width, a negative block count, a length past the end, bad UTF-8, trailing
bytes...) and the codec then takes the general path, which decides and words the error. So the
only promise to keep is: when this returns an event, it is the event the general path would
build. tests/unit/test_event_reader.py checks exactly that on arbitrary bytes and on arbitrary
valid events.

It applies only to writers whose Parsing Canonical Form is `CANONICAL`; a change of the reader
schema turns it off (and a unit test fails until this module follows).
"""

from __future__ import annotations

from typing import Final

from consumer.events import REASONS, DeletionEvent, EventType, Scope, _clean, _clean_ids

__all__ = ["CANONICAL", "read_event"]

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
    '{"name":"user_id","type":["null","string"]}]}]}]}'
)


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


def _count(data: bytes, pos: int) -> tuple[int, int]:
    """A block count; negative ones (followed by a byte size) are legal but rare: unsure."""
    count, pos = _long(data, pos)
    if count < 0:
        raise _Unsure
    return count, pos


def read_event(data: bytes, start: int) -> DeletionEvent | None:
    """The event in `data[start:]`, or None when the general path must decide."""
    try:
        event = _read(data, start)
    except (_Unsure, IndexError, UnicodeDecodeError):
        return None
    return event


def _read(data: bytes, pos: int) -> DeletionEvent:
    event_id, pos = _string(data, pos)
    occurred_at, pos = _long(data, pos)
    source, pos = _string(data, pos)
    symbol, pos = _long(data, pos)
    if not 0 <= symbol < len(_REASONS):
        raise _Unsure
    event = DeletionEvent(event_id, occurred_at, _USER_DELETED, None, (), source, _REASONS[symbol])
    branch = data[pos]
    if branch == 6:  # zigzag 3: MemoriesDeleted, the id clean-up
        pos = _memories_deleted(data, pos + 1, event)
    elif branch == 0:  # UserDeleted
        user_id, pos = _string(data, pos + 1)
        # Scope.of(user_id=...) inlined: the erasure burst is made of these.
        cleaned = _clean(user_id)
        event.scope = Scope((("user_id", cleaned),) if cleaned is not None else (), ())
    elif branch == 2:  # SessionExpired
        run_id, pos = _string(data, pos + 1)
        maybe_user, pos = _optional_string(data, pos)
        maybe_agent, pos = _optional_string(data, pos)
        event.type = _SESSION_EXPIRED
        event.scope = Scope.of(user_id=maybe_user, agent_id=maybe_agent, run_id=run_id)
    elif branch == 4:  # ScopeDeleted
        pos = _scope_deleted(data, pos + 1, event)
    else:
        raise _Unsure
    if pos != len(data):
        raise _Unsure  # trailing bytes: the general path words the error
    return event


def _memories_deleted(data: bytes, pos: int, event: DeletionEvent) -> int:
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
    user_id, pos = _optional_string(data, pos)
    event.type = _MEMORIES_DELETED
    event.memory_ids = _clean_ids(ids)
    event.informational_user_id = _clean(user_id)
    return pos


def _scope_deleted(data: bytes, pos: int, event: DeletionEvent) -> int:
    maybe_user, pos = _optional_string(data, pos)
    maybe_agent, pos = _optional_string(data, pos)
    maybe_run, pos = _optional_string(data, pos)
    maybe_app, pos = _optional_string(data, pos)
    metadata: dict[str, str] = {}
    count, pos = _count(data, pos)
    while count:
        for _ in range(count):
            key, pos = _string(data, pos)
            metadata[key], pos = _string(data, pos)
        count, pos = _count(data, pos)
    event.type = _SCOPE_DELETED
    event.scope = Scope.of(
        user_id=maybe_user,
        agent_id=maybe_agent,
        run_id=maybe_run,
        app_id=maybe_app,
        metadata=metadata,
    )
    return pos
