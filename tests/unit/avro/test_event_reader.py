"""The specialised reader against the general one (fastavro + event_from_record).

Its promise: whatever it returns is what the general path would build; for anything valid
it returns an event (so the shortcut is actually taken); for anything else it may step aside.
It reads two writers' layouts: version 2, the reader schema itself (`linked`: MemoriesDeleted
ends with include_linked), and version 1 (no include_linked), whose general path is fastavro
resolving version 1 against the version-2 reader.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.avro import event_reader
from consumer.avro.codec import (
    AvroSchema,
    DecodeError,
    Decoder,
    SchemaStore,
    default_schema_dir,
    encode_record,
)
from consumer.avro.event_reader import CANONICAL, CANONICAL_V1, scan_py
from consumer.core.events import REASONS, DeletionEvent

STORE = SchemaStore.from_directory()
READER = STORE.reader
V1 = AvroSchema.parse((default_schema_dir() / "deletion_event.v1.avsc").read_text())
DECODER = Decoder(STORE)
# The decoder's own plans for either writer, with the shortcut turned off: the general path.
GENERAL = {
    True: dataclasses.replace(DECODER._by_fingerprint[READER.fingerprint], fast=False),
    False: dataclasses.replace(DECODER._by_fingerprint[V1.fingerprint], fast=False),
}
LAYOUTS = pytest.mark.parametrize("linked", [True, False], ids=["v2", "v1"])


def general(body: bytes, linked: bool = True) -> DeletionEvent | None:
    """The general path's answer for a bare body: its event, or None for a DecodeError."""
    try:
        return DECODER._read(GENERAL[linked], body, 0)
    except DecodeError:
        return None


try:
    from consumer.avro._scan import scan as compiled_scan
except ImportError:  # installed without a C compiler: only the Python scan is tested here
    compiled_scan = None

SCANS = [scan_py] + ([compiled_scan] if compiled_scan is not None else [])


def read_with(scan: Any, body: bytes, start: int, linked: bool = True) -> DeletionEvent | None:
    """read_event, with the given scan in place of the one the module picked."""
    saved = event_reader.scan
    event_reader.scan = scan
    try:
        return event_reader.read_event(body, start, linked)
    finally:
        event_reader.scan = saved


def read_both(body: bytes, start: int = 0, linked: bool = True) -> DeletionEvent | None:
    """What every scan makes of the body; they must agree (both None, or equal events)."""
    answers = [read_with(scan, body, start, linked) for scan in SCANS]
    first = answers[0]
    for other in answers[1:]:
        assert (first is None) == (other is None), "the scans disagree on stepping aside"
        assert first is None or other is None or same(first, other)
    return first


def test_the_compiled_scan_is_built_where_ci_runs() -> None:
    # CI machines have a C compiler: a build that silently fell back would go unnoticed.
    if compiled_scan is None and not os.environ.get("CI"):
        pytest.skip("consumer.avro._scan was not built (no C compiler at install time)")
    assert compiled_scan is not None
    assert event_reader.COMPILED and event_reader.scan is compiled_scan


def same(a: DeletionEvent, b: DeletionEvent) -> bool:
    # informational_user_id is left out of equality on purpose (it never scopes a delete),
    # so compare it too; and include_linked by identity, a bool and nothing that equals one.
    return (
        a == b
        and a.informational_user_id == b.informational_user_id
        and a.include_linked is b.include_linked
    )


def test_the_shipped_reader_schema_takes_the_shortcut() -> None:
    # If this fails, the reader schema changed: update event_reader.py (and CANONICAL) with it.
    assert READER.canonical == CANONICAL
    plan = DECODER._by_fingerprint[READER.fingerprint]
    assert plan.fast and plan.linked and plan.reader is None


def test_the_shipped_version_1_schema_takes_the_shortcut() -> None:
    # If this fails, deletion_event.v1.avsc changed: update event_reader.py (CANONICAL_V1, and
    # the scan's layout when not `linked`) with it, or its writers fall back to resolution.
    assert V1.canonical == CANONICAL_V1 != CANONICAL
    plan = DECODER._by_fingerprint[V1.fingerprint]
    assert plan.fast and not plan.linked
    assert plan.reader is READER.decoding  # resolved against version 2 when it steps aside


def test_the_shortcut_needs_the_version_2_reader() -> None:
    # It builds what reading with version 2 builds: with another reader (version 1, which drops
    # include_linked; a version 3 with one more field), no writer takes it.
    raw = json.loads(CANONICAL)
    raw["fields"][-1]["type"][-1]["fields"].append({"name": "ticket", "type": "string"})
    v3 = AvroSchema.parse(raw)
    for reader in (V1, v3):
        decoder = Decoder(SchemaStore(reader, [READER, V1, v3]))
        for writer in (READER, V1, v3):
            plan = decoder._by_fingerprint[writer.fingerprint]
            assert not plan.fast and not plan.linked


def test_reasons_are_the_enum_symbols_in_order() -> None:
    symbols = json.loads(CANONICAL)["fields"][3]["type"]["symbols"]
    assert tuple(symbols) == REASONS


def test_an_older_writer_takes_the_general_path() -> None:
    fields = json.loads(CANONICAL)
    fields["fields"] = [f for f in fields["fields"] if f["name"] != "source"]
    old = type(READER).parse(json.dumps(fields))
    assert not Decoder(SchemaStore(READER, [old]))._by_fingerprint[old.fingerprint].fast


# Text that trips the cleaning rules: blanks, padding, non-ASCII, long (multi-byte lengths).
TEXT = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", "\t\n", " alice ", "é", "🙂", "x" * 70, "y" * 200]),
    st.uuids().map(str),
)
OPTIONAL = st.none() | TEXT
PAYLOADS = st.one_of(
    st.builds(lambda u: ("memory.deletion.UserDeleted", {"user_id": u}), TEXT),
    st.builds(
        lambda r, u, a: (
            "memory.deletion.SessionExpired",
            {"run_id": r, "user_id": u, "agent_id": a},
        ),
        TEXT,
        OPTIONAL,
        OPTIONAL,
    ),
    st.builds(
        lambda u, a, r, p, m: (
            "memory.deletion.ScopeDeleted",
            {"user_id": u, "agent_id": a, "run_id": r, "app_id": p, "metadata": m},
        ),
        OPTIONAL,
        OPTIONAL,
        OPTIONAL,
        OPTIONAL,
        st.dictionaries(TEXT, TEXT, max_size=4),
    ),
    st.builds(
        lambda ids, u, linked: (
            "memory.deletion.MemoriesDeleted",
            {"memory_ids": ids, "user_id": u, "include_linked": linked},
        ),
        st.lists(TEXT, max_size=80),  # over 63 items: a two-byte block count
        OPTIONAL,
        st.booleans(),
    ),
)
RECORDS = st.fixed_dictionaries(
    {
        "event_id": TEXT,
        "occurred_at": st.one_of(
            # Up to 9 varint bytes; wider longs step aside (test below).
            st.integers(-(2**62), 2**62 - 1),
            st.integers(1_600_000_000_000, 1_900_000_000_000),
        ),
        "source": TEXT,
        "reason": st.sampled_from(REASONS),
        "payload": PAYLOADS,
    }
)


def encode(record: dict[str, Any], linked: bool = True) -> bytes:
    """The body a version-2 writer (`linked`) or a version-1 writer makes of the record."""
    if linked:
        return encode_record(record, READER)
    name, fields = record["payload"]
    fields = {k: v for k, v in fields.items() if k != "include_linked"}
    return encode_record({**record, "payload": (name, fields)}, V1)


@LAYOUTS
@given(record=RECORDS)
@settings(max_examples=400)
def test_every_valid_body_is_read_as_the_general_path_reads_it(
    linked: bool, record: dict[str, Any]
) -> None:
    body = encode(record, linked)
    fast = read_both(body, linked=linked)
    slow = general(body, linked)
    assert fast is not None and slow is not None
    assert same(fast, slow)
    if not linked:
        assert fast.include_linked is False


@given(RECORDS)
@settings(max_examples=200)
def test_the_versions_differ_by_the_last_byte_of_memories_deleted(record: dict[str, Any]) -> None:
    v1, v2 = encode(record, linked=False), encode(record)
    if record["payload"][0].endswith("MemoriesDeleted"):
        assert v2 == v1 + bytes([record["payload"][1]["include_linked"]])
        # Read with the other layout, either is one byte out: the scans step aside.
        assert read_both(v1, linked=True) is None and general(v1, True) is None
        assert read_both(v2, linked=False) is None and general(v2, False) is None
    else:
        assert v1 == v2


@LAYOUTS
@given(record=RECORDS)
def test_the_body_may_start_after_a_header(linked: bool, record: dict[str, Any]) -> None:
    body = encode(record, linked)
    fast = read_both(b"\xc3\x01" + READER.fingerprint + body, 10, linked)
    slow = general(body, linked)
    assert fast is not None and slow is not None and same(fast, slow)


def test_a_ten_byte_long_steps_aside_and_the_decoder_still_reads_it() -> None:
    record = {
        "event_id": "e",
        "occurred_at": 2**62,
        "source": "s",
        "reason": "GDPR",
        "payload": ("memory.deletion.UserDeleted", {"user_id": "alice"}),
    }
    for linked, writer in ((True, READER), (False, V1)):
        body = encode(record, linked)
        assert read_both(body, linked=linked) is None
        event = DECODER.decode(b"\xc3\x01" + writer.fingerprint + body)
        assert event.occurred_at_ms == 2**62


def _mutated(draw: st.DrawFn, linked: bool) -> bytes:
    body = bytearray(encode(draw(RECORDS), linked))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "add", "insert"]))
        if kind == "flip" and body:
            at = draw(st.integers(0, len(body) - 1))
            body[at] = draw(st.integers(0, 255))
        elif kind == "cut" and body:
            del body[draw(st.integers(0, len(body) - 1)) :]
        elif kind == "add":
            body += draw(st.binary(min_size=1, max_size=4))
        else:
            at = draw(st.integers(0, len(body)))
            body[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(body)


MUTATED: Callable[[bool], st.SearchStrategy[bytes]] = st.composite(_mutated)


# Either version's encodings, mutated, read with either layout: the other version's bodies are
# one byte out, the kind of near miss a shortcut gets wrong.
@LAYOUTS
@given(body=st.one_of(st.binary(max_size=200), MUTATED(True), MUTATED(False)))
@settings(max_examples=1500)
@example(body=b"")  # nothing at all
@example(body=b"\x02a\x02\x02s\x00\x00\x01")  # a negative string length (odd one-byte zigzag)
@example(body=b"\x02a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x02s\x00\x00\x02u")  # 10-byte varint
@example(body=b"\x02a\x02\x02s\x00\x00\x02u\x00")  # a trailing byte
@example(body=b"\x02a\x02\x02s\x00\x00\x02\xff")  # bad UTF-8
@example(body=b"\x02a\x02\x02s\x00\x06\x00\x00\x01")  # MemoriesDeleted, include_linked true
@example(body=b"\x02a\x02\x02s\x00\x06\x00\x00\x02")  # a boolean byte neither 0 nor 1
@example(body=b"\x02a\x02\x02s\x00\x06\x00\x00")  # the boolean missing (a version-1 body)
@example(body=b"\x02a\x02\x02s\x00\x06\x00\x02\x02\x02")  # a version-1 user_id ending in 0x02
def test_on_any_bytes_it_agrees_or_steps_aside(linked: bool, body: bytes) -> None:
    fast = read_both(body, linked=linked)
    if fast is not None:
        slow = general(body, linked)
        assert slow is not None, "the shortcut accepted what the general path refuses"
        assert same(fast, slow)


@pytest.mark.parametrize("scan", SCANS, ids=lambda f: f.__module__)
@LAYOUTS
def test_a_start_outside_the_bytes_steps_aside(scan: Any, linked: bool) -> None:
    body = encode(
        {
            "event_id": "e",
            "occurred_at": 1,
            "source": "s",
            "reason": "GDPR",
            "payload": ("memory.deletion.UserDeleted", {"user_id": "alice"}),
        },
        linked,
    )
    assert scan(body, 0, linked) is not None
    assert scan(body, len(body), linked) is None
    assert scan(body, len(body) + 5, linked) is None
    assert scan(body, -1, linked) is None


MEMORIES_HEAD = b"\x02e\x02\x02s\x02\x06"  # "e", 1, "s", GDPR, MemoriesDeleted


@pytest.mark.parametrize("scan", SCANS, ids=lambda f: f.__module__)
@pytest.mark.parametrize("linked", [False, True])
def test_include_linked_is_the_third_field_of_memories_deleted(scan: Any, linked: bool) -> None:
    record = {
        "event_id": "e",
        "occurred_at": 1,
        "source": "s",
        "reason": "GDPR",
        "payload": (
            "memory.deletion.MemoriesDeleted",
            {"memory_ids": ["m"], "user_id": "u", "include_linked": linked},
        ),
    }
    body = encode(record)
    assert body == MEMORIES_HEAD + b"\x02\x02m\x00\x02\x02u" + bytes([linked])
    fields = scan(body, 0, True)
    assert fields is not None
    assert fields[4:] == (3, fields[5], "u", linked, None, None)
    assert type(fields[7]) is bool
    fast = read_with(scan, body, 0)
    slow = general(body)
    assert fast is not None and slow is not None
    assert fast.include_linked is linked and same(fast, slow)


@pytest.mark.parametrize("scan", SCANS, ids=lambda f: f.__module__)
def test_a_version_1_memories_deleted_reads_include_linked_as_false(scan: Any) -> None:
    record = {
        "event_id": "e",
        "occurred_at": 1,
        "source": "s",
        "reason": "GDPR",
        "payload": ("memory.deletion.MemoriesDeleted", {"memory_ids": ["m"], "user_id": "u"}),
    }
    body = encode(record, linked=False)
    assert body == MEMORIES_HEAD + b"\x02\x02m\x00\x02\x02u"  # ends with the user id
    fields = scan(body, 0, False)
    assert fields is not None
    assert fields[4:] == (3, fields[5], "u", False, None, None)
    assert fields[7] is False
    fast = read_with(scan, body, 0, linked=False)
    slow = general(body, linked=False)
    assert fast is not None and slow is not None
    assert fast.include_linked is False and same(fast, slow)


@pytest.mark.parametrize("scan", SCANS, ids=lambda f: f.__module__)
@pytest.mark.parametrize("byte", [2, 3, 0x80, 0xFF])
def test_a_boolean_byte_neither_0_nor_1_steps_aside(scan: Any, byte: int) -> None:
    # fastavro reads any byte but 0 as true (Java's Avro reads only 1 so): not the shortcut's
    # call to make. The general path refuses it (tests/unit/avro/test_schema_v2.py).
    body = MEMORIES_HEAD + b"\x02\x02m\x00\x00" + bytes([byte])
    assert scan(body[:-1] + b"\x01", 0, True) is not None
    assert scan(body, 0, True) is None
    assert general(body) is None
    assert scan(body[:-1], 0, True) is None  # no boolean at all: a version-1 body
    assert scan(body[:-1], 0, False) is not None  # ... which the version-1 layout reads
    assert scan(body, 0, False) is None  # and for which the boolean is a trailing byte


def test_the_compiled_scan_wants_a_bool_for_linked() -> None:
    if compiled_scan is None:
        pytest.skip("consumer.avro._scan was not built (no C compiler at install time)")
    with pytest.raises(TypeError):
        compiled_scan(b"", 0, 1)
    with pytest.raises(TypeError):
        compiled_scan(b"", 0)


@LAYOUTS
@given(ids=st.lists(st.sampled_from(["a", "b", " c", "d ", "", "é", "x" * 70]), max_size=40))
def test_memory_ids_come_clean_from_either_scan(linked: bool, ids: list[str]) -> None:
    # The compiled scan hands clean id lists over as tuples, to skip the Python clean-up: any
    # blank, padded, non-ASCII-ended or repeated id must still be cleaned.
    record = {
        "event_id": "e",
        "occurred_at": 1,
        "source": "s",
        "reason": "GDPR",
        "payload": ("memory.deletion.MemoriesDeleted", {"memory_ids": ids, "user_id": None}),
    }
    event = read_both(encode(record, linked), linked=linked)
    assert event is not None
    assert event.memory_ids == tuple(dict.fromkeys(i.strip() for i in ids if i.strip()))
