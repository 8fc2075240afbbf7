"""The specialised reader against the general one (fastavro + event_from_record).

Its promise: whatever it returns is what the general path would build; for anything valid
it returns an event (so the shortcut is actually taken); for anything else it may step aside.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer import event_reader
from consumer.codec import DecodeError, Decoder, SchemaStore, _Plan, encode_record
from consumer.event_reader import CANONICAL, scan_py
from consumer.events import REASONS, DeletionEvent

STORE = SchemaStore.from_directory()
READER = STORE.reader
GENERAL = _Plan(READER.decoding, None, fast=False)
DECODER = Decoder(STORE)


def general(body: bytes) -> DeletionEvent | None:
    """The general path's answer for a bare body: its event, or None for a DecodeError."""
    try:
        return DECODER._read(GENERAL, body, 0)
    except DecodeError:
        return None


try:
    from consumer._scan import scan as compiled_scan
except ImportError:  # installed without a C compiler: only the Python scan is tested here
    compiled_scan = None

SCANS = [scan_py] + ([compiled_scan] if compiled_scan is not None else [])


def read_with(scan: Any, body: bytes, start: int) -> DeletionEvent | None:
    """read_event, with the given scan in place of the one the module picked."""
    saved = event_reader.scan
    event_reader.scan = scan
    try:
        return event_reader.read_event(body, start)
    finally:
        event_reader.scan = saved


def read_both(body: bytes, start: int = 0) -> DeletionEvent | None:
    """What every scan makes of the body; they must agree (both None, or equal events)."""
    answers = [read_with(scan, body, start) for scan in SCANS]
    first = answers[0]
    for other in answers[1:]:
        assert (first is None) == (other is None), "the scans disagree on stepping aside"
        assert first is None or other is None or same(first, other)
    return first


def test_the_compiled_scan_is_built_where_ci_runs() -> None:
    # CI machines have a C compiler: a build that silently fell back would go unnoticed.
    if compiled_scan is None and not os.environ.get("CI"):
        pytest.skip("consumer._scan was not built (no C compiler at install time)")
    assert compiled_scan is not None
    assert event_reader.COMPILED and event_reader.scan is compiled_scan


def same(a: DeletionEvent, b: DeletionEvent) -> bool:
    # informational_user_id is left out of equality on purpose (it never scopes a delete),
    # so compare it too.
    return a == b and a.informational_user_id == b.informational_user_id


def test_the_shipped_reader_schema_takes_the_shortcut() -> None:
    # If this fails, the reader schema changed: update event_reader.py (and CANONICAL) with it.
    assert READER.canonical == CANONICAL
    assert DECODER._by_fingerprint[READER.fingerprint].fast


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
        lambda ids, u: ("memory.deletion.MemoriesDeleted", {"memory_ids": ids, "user_id": u}),
        st.lists(TEXT, max_size=80),  # over 63 items: a two-byte block count
        OPTIONAL,
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


def encode(record: dict[str, Any]) -> bytes:
    return encode_record(record, READER)


@given(RECORDS)
@settings(max_examples=400)
def test_every_valid_body_is_read_as_the_general_path_reads_it(record: dict[str, Any]) -> None:
    body = encode(record)
    fast = read_both(body)
    slow = general(body)
    assert fast is not None and slow is not None
    assert same(fast, slow)


@given(RECORDS)
def test_the_body_may_start_after_a_header(record: dict[str, Any]) -> None:
    body = encode(record)
    fast = read_both(b"\xc3\x01" + READER.fingerprint + body, 10)
    slow = general(body)
    assert fast is not None and slow is not None and same(fast, slow)


def test_a_ten_byte_long_steps_aside_and_the_decoder_still_reads_it() -> None:
    record = {
        "event_id": "e",
        "occurred_at": 2**62,
        "source": "s",
        "reason": "GDPR",
        "payload": ("memory.deletion.UserDeleted", {"user_id": "alice"}),
    }
    body = encode(record)
    assert read_both(body) is None
    event = DECODER.decode(b"\xc3\x01" + READER.fingerprint + body)
    assert event.occurred_at_ms == 2**62


def _mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(encode(draw(RECORDS)))
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


MUTATED = st.composite(_mutated)()


@given(st.one_of(st.binary(max_size=200), MUTATED))
@settings(max_examples=1500)
@example(b"")  # nothing at all
@example(b"\x02a\x02\x02s\x00\x00\x01")  # a negative string length (odd one-byte zigzag)
@example(b"\x02a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x02s\x00\x00\x02u")  # 10-byte varint
@example(b"\x02a\x02\x02s\x00\x00\x02u\x00")  # a trailing byte
@example(b"\x02a\x02\x02s\x00\x00\x02\xff")  # bad UTF-8
def test_on_any_bytes_it_agrees_or_steps_aside(body: bytes) -> None:
    fast = read_both(body)
    if fast is not None:
        slow = general(body)
        assert slow is not None, "the shortcut accepted what the general path refuses"
        assert same(fast, slow)


@pytest.mark.parametrize("scan", SCANS, ids=lambda f: f.__module__)
def test_a_start_outside_the_bytes_steps_aside(scan: Any) -> None:
    body = encode(
        {
            "event_id": "e",
            "occurred_at": 1,
            "source": "s",
            "reason": "GDPR",
            "payload": ("memory.deletion.UserDeleted", {"user_id": "alice"}),
        }
    )
    assert scan(body, 0) is not None
    assert scan(body, len(body)) is None
    assert scan(body, len(body) + 5) is None
    assert scan(body, -1) is None


@given(st.lists(st.sampled_from(["a", "b", " c", "d ", "", "é", "x" * 70]), max_size=40))
def test_memory_ids_come_clean_from_either_scan(ids: list[str]) -> None:
    # The compiled scan hands clean id lists over as tuples, to skip the Python clean-up: any
    # blank, padded, non-ASCII-ended or repeated id must still be cleaned.
    record = {
        "event_id": "e",
        "occurred_at": 1,
        "source": "s",
        "reason": "GDPR",
        "payload": ("memory.deletion.MemoriesDeleted", {"memory_ids": ids, "user_id": None}),
    }
    event = read_both(encode(record))
    assert event is not None
    assert event.memory_ids == tuple(dict.fromkeys(i.strip() for i in ids if i.strip()))
