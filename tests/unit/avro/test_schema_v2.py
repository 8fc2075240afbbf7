"""Schema version 2: MemoriesDeleted.include_linked, and version-1 writers that lack it.

Version 1 ships as schemas/deletion_event.v1.avsc so its fingerprint keeps resolving; its events
decode, by fingerprint and by registry id, to include_linked=False. Version 2 is the reader. Both
versions' events take the specialised reader (either scan, told whether the writer has
include_linked) and agree with the general path. The general path refuses a version-2
MemoriesDeleted whose include_linked byte is neither 0 nor 1.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.avro import event_reader
from consumer.avro.codec import (
    AvroSchema,
    DecodeError,
    Decoder,
    Encoder,
    SchemaStore,
    _Plan,
    default_schema_dir,
    encode_record,
)
from consumer.avro.event_reader import scan_py
from consumer.avro.framing import frame_confluent, frame_single_object
from consumer.avro.registry import SchemaRegistryClient
from consumer.core.events import DeletionEvent, EventType, Scope, event_to_record
from tests.support.registry_server import RegistryServer

V1_FILE = "deletion_event.v1.avsc"
# What version-1 writers put in their single-object header: it must never change.
V1_FINGERPRINT = bytes.fromhex("5529cd68dbe77540")

STORE = SchemaStore.from_directory()
V2 = STORE.reader
V1_TEXT = (default_schema_dir() / V1_FILE).read_text(encoding="utf-8")
V2_TEXT = (default_schema_dir() / "deletion_event.avsc").read_text(encoding="utf-8")
V1 = AvroSchema.parse(V1_TEXT)
ENCODER = Encoder(STORE)

SCANS: list[Any] = [scan_py]
try:
    from consumer.avro._scan import scan as compiled_scan
except ImportError:  # installed without a C compiler: only the Python scan is tested here
    pass
else:
    SCANS.append(compiled_scan)

MEMORY_A = "8d0a3c52-0e7e-4d1c-a6a1-6d2f1c3b4a01"
MEMORY_B = "8d0a3c52-0e7e-4d1c-a6a1-6d2f1c3b4a02"


def memories(*, linked: bool, user_id: str | None = "alice") -> DeletionEvent:
    return DeletionEvent(
        "0b5c1f0e-4444-4c3a-9d59-0f1c6e4b2a01",
        1_700_000_000_123,
        EventType.MEMORIES_DELETED,
        memory_ids=(MEMORY_A, MEMORY_B),
        source="accounts",
        reason="USER_REQUEST",
        informational_user_id=user_id,
        include_linked=linked,
    )


OTHERS = [
    DeletionEvent("e-user", 1, EventType.USER_DELETED, Scope.of(user_id="alice"), reason="GDPR"),
    DeletionEvent(
        "e-session", 2, EventType.SESSION_EXPIRED, Scope.of(run_id="r", user_id="u", agent_id="a")
    ),
    DeletionEvent("e-scope", 3, EventType.SCOPE_DELETED, Scope.of(app_id="x", metadata={"k": "v"})),
]


def v1_record(event: DeletionEvent) -> dict[str, Any]:
    """What a version-1 producer writes: its MemoriesDeleted has no include_linked."""
    record = event_to_record(event)
    name, body = record["payload"]
    record["payload"] = (name, {k: v for k, v in body.items() if k != "include_linked"})
    return record


def memories_record(schema: dict[str, Any]) -> dict[str, Any]:
    """The MemoriesDeleted record inside a parsed-from-JSON DeletionEvent schema."""
    found: dict[str, Any] = next(
        r for r in schema["fields"][-1]["type"] if r["name"] == "MemoriesDeleted"
    )
    return found


def identical(a: DeletionEvent, b: DeletionEvent) -> bool:
    return (
        a == b
        and a.informational_user_id == b.informational_user_id
        and a.include_linked is b.include_linked
    )


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


@pytest.fixture(params=SCANS, ids=lambda f: f.__module__)
def scan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each scan in turn in place of the one event_reader picked."""
    monkeypatch.setattr(event_reader, "scan", request.param)
    return request.param


# --- the schema files --------------------------------------------------------------------------


def test_version_1_ships_beside_the_reader_and_keeps_its_fingerprint() -> None:
    assert V1.fingerprint == V1_FINGERPRINT
    assert V1.full_name == V2.full_name == "memory.deletion.DeletionEvent"
    assert set(STORE.writers) >= {V1_FINGERPRINT, V2.fingerprint}
    assert V2.fingerprint != V1_FINGERPRINT


def test_version_2_is_version_1_and_include_linked_boolean_false() -> None:
    v1 = memories_record(json.loads(V1_TEXT))["fields"]
    v2 = memories_record(json.loads(V2_TEXT))["fields"]
    assert [f["name"] for f in v1] == ["memory_ids", "user_id"]
    assert v2[:2] == v1
    added = v2[2]
    assert (added["name"], added["type"], added["default"]) == ("include_linked", "boolean", False)
    # Nothing else moved: the rest of the two schemas reads the same bytes the same way.
    raw = json.loads(V2_TEXT)
    memories_record(raw)["fields"] = v2[:2]
    assert AvroSchema.parse(raw).canonical == V1.canonical


def test_both_versions_take_the_shortcut() -> None:
    decoder = Decoder(STORE)
    v2 = decoder._by_fingerprint[V2.fingerprint]
    v1 = decoder._by_fingerprint[V1_FINGERPRINT]
    assert v2.fast and v2.linked
    assert v1.fast and not v1.linked  # told that its bodies lack include_linked
    assert v1.reader is not None  # resolved to version 2 where the shortcut steps aside


# --- version-1 writers -------------------------------------------------------------------------


@pytest.mark.parametrize("event", [memories(linked=False), *OTHERS], ids=lambda e: e.type.value)
def test_a_version_1_event_by_fingerprint(event: DeletionEvent) -> None:
    value = frame_single_object(encode_record(v1_record(event), V1), V1_FINGERPRINT)
    decoded = Decoder(STORE).decode(value)
    assert identical(decoded, event)
    assert decoded.include_linked is False


@pytest.mark.parametrize("event", [memories(linked=False), *OTHERS], ids=lambda e: e.type.value)
def test_a_version_1_event_by_registry_id(registry: RegistryServer, event: DeletionEvent) -> None:
    with SchemaRegistryClient({"url": registry.url, "timeout": 5.0}) as client:
        v1_id = client.register("memory.deletions-value", V1_TEXT)
        v2_id = client.register("memory.deletions-value", V2_TEXT)
        assert v1_id != v2_id
        decoder = Decoder(STORE, client)
        decoded = decoder.decode(frame_confluent(encode_record(v1_record(event), V1), v1_id))
        assert identical(decoded, event)
        assert decoded.include_linked is False
        assert decoder._by_id[v1_id].fast and not decoder._by_id[v1_id].linked


def test_a_version_1_memories_body_lacks_the_boolean() -> None:
    # The one byte the versions differ by: a version-1 body read as version 2 is cut short, a
    # version-2 body read as version 1 has a trailing byte. Each layout reads its own.
    event = memories(linked=False)
    v1_body = encode_record(v1_record(event), V1)
    v2_body = encode_record(event_to_record(event), V2)
    assert v2_body == v1_body + b"\x00"
    for scan in SCANS:
        assert scan(v1_body, 0, True) is None
        assert scan(v2_body, 0, False) is None
        v1_fields, v2_fields = scan(v1_body, 0, False), scan(v2_body, 0, True)
        assert v1_fields is not None and v2_fields is not None
        assert v1_fields[7] is False and v2_fields[7] is False
        assert v1_fields[:5] == v2_fields[:5] and list(v1_fields[5]) == list(v2_fields[5])


@pytest.mark.parametrize("event", [memories(linked=False), *OTHERS], ids=lambda e: e.type.value)
def test_a_version_1_event_takes_the_shortcut_in_both_framings(
    scan: Any, registry: RegistryServer, event: DeletionEvent
) -> None:
    body = encode_record(v1_record(event), V1)
    single = frame_single_object(body, V1_FINGERPRINT)
    fast = event_reader.read_event(single, 10, False)
    assert fast is not None and identical(fast, event) and fast.include_linked is False
    with SchemaRegistryClient({"url": registry.url, "timeout": 5.0}) as client:
        v1_id = client.register("memory.deletions-value", V1_TEXT)
        decoder = Decoder(STORE, client)
        assert identical(decoder.decode(single), event)
        assert identical(decoder.decode(frame_confluent(body, v1_id)), event)
        assert decoder._by_id[v1_id].fast and not decoder._by_id[v1_id].linked
    fast = event_reader.read_event(frame_confluent(body, 1), 5, False)
    assert fast is not None and identical(fast, event)


def test_a_version_1_writer_cannot_carry_include_linked() -> None:
    # Encoding with the old schema drops what it has no field for: the consumer sees False.
    value = ENCODER.single_object(memories(linked=True), V1)
    assert value[2:10] == V1_FINGERPRINT
    assert Decoder(STORE).decode(value).include_linked is False


def test_a_version_1_body_under_the_version_2_fingerprint_is_refused() -> None:
    body = encode_record(v1_record(memories(linked=False)), V1)
    with pytest.raises(DecodeError) as info:
        Decoder(STORE).decode(frame_single_object(body, V2.fingerprint))
    assert info.value.reason == "decode_error"


def test_a_version_2_body_under_the_version_1_fingerprint_is_refused() -> None:
    body = encode_record(event_to_record(memories(linked=False)), V2)
    with pytest.raises(DecodeError, match="trailing") as info:
        Decoder(STORE).decode(frame_single_object(body, V1_FINGERPRINT))
    assert info.value.reason == "decode_error"


# --- version-2 writers -------------------------------------------------------------------------


@pytest.mark.parametrize("linked", [False, True])
@pytest.mark.parametrize("user_id", [None, "alice"])
def test_a_version_2_event_takes_the_shortcut_in_both_framings(
    scan: Any, registry: RegistryServer, linked: bool, user_id: str | None
) -> None:
    event = memories(linked=linked, user_id=user_id)
    single = ENCODER.single_object(event)
    assert single[2:10] == V2.fingerprint
    fast = event_reader.read_event(single, 10, True)
    assert fast is not None and identical(fast, event)
    with SchemaRegistryClient({"url": registry.url, "timeout": 5.0}) as client:
        v2_id = client.register("memory.deletions-value", V2_TEXT)
        decoder = Decoder(STORE, client)
        confluent = ENCODER.confluent(event, v2_id)
        assert identical(decoder.decode(single), event)
        assert identical(decoder.decode(confluent), event)
        assert decoder._by_id[v2_id].fast and decoder._by_id[v2_id].linked
    fast = event_reader.read_event(confluent, 5, True)
    assert fast is not None and identical(fast, event)


def _general(decoder: Decoder, fingerprint: bytes) -> _Plan:
    """The decoder's plan for that writer with the shortcut off: the general path alone."""
    return dataclasses.replace(decoder._by_fingerprint[fingerprint], fast=False)


@pytest.mark.parametrize("linked", [False, True])
def test_the_general_path_reads_include_linked(linked: bool) -> None:
    body = encode_record(event_to_record(memories(linked=linked)), V2)
    decoder = Decoder(STORE)
    general = decoder._read(_general(decoder, V2.fingerprint), body, 0)
    assert identical(general, memories(linked=linked))


def test_the_boolean_byte_is_the_last_one() -> None:
    plain = ENCODER.single_object(memories(linked=False))
    linked = ENCODER.single_object(memories(linked=True))
    assert plain[:-1] == linked[:-1]
    assert (plain[-1], linked[-1]) == (0, 1)


@pytest.mark.parametrize("byte", [2, 3, 0x7F, 0x80, 0xFF])
def test_a_boolean_byte_neither_0_nor_1_is_a_decode_error(
    registry: RegistryServer, byte: int
) -> None:
    # fastavro reads any byte but 0 as true (Java's Avro reads only 1 so), which would widen the
    # delete to the superseded memories. The shortcut steps aside; the general path refuses:
    # for the version-2 layout, a MemoriesDeleted body's last byte is include_linked.
    for user_id in (None, "alice"):
        event = memories(linked=False, user_id=user_id)
        single = bytearray(ENCODER.single_object(event))
        single[-1] = byte
        for scan in SCANS:
            assert scan(bytes(single), 10, True) is None
        with SchemaRegistryClient({"url": registry.url, "timeout": 5.0}) as client:
            v2_id = client.register("memory.deletions-value", V2_TEXT)
            decoder = Decoder(STORE, client)
            confluent = ENCODER.confluent(event, v2_id)[:-1] + bytes([byte])
            for value in (bytes(single), confluent):
                with pytest.raises(DecodeError) as info:
                    decoder.decode(value)
                assert info.value.reason == "decode_error"
                assert "include_linked" in str(info.value)
                assert "alice" not in str(info.value)
        # What fastavro alone makes of it: the leniency the check is there for.
        raw = fastavro.schemaless_reader(
            io.BytesIO(bytes(single[10:])), V2.decoding, None, return_record_name=True
        )
        assert raw["payload"][1]["include_linked"] is True


def test_the_boolean_check_only_looks_at_version_2_memories_deleted() -> None:
    # Every other body may end in any byte: a version-2 UserDeleted ends with its user id, a
    # version-1 MemoriesDeleted with its user_id (no boolean). Through the general path too.
    decoder = Decoder(STORE)
    for event in (memories(linked=False, user_id="u\x02"), *OTHERS):
        value = frame_single_object(encode_record(v1_record(event), V1), V1_FINGERPRINT)
        assert value[-1] > 1 or event.type is not EventType.MEMORIES_DELETED
        assert identical(decoder._read(_general(decoder, V1_FINGERPRINT), value, 10), event)
        assert identical(decoder.decode(value), event)
    user = OTHERS[0]
    value = ENCODER.single_object(DeletionEvent("e", 1, user.type, Scope.of(user_id="u\x02")))
    assert value[-1] == 2
    assert decoder._read(_general(decoder, V2.fingerprint), value, 10).scope == Scope.of(
        user_id="u\x02"
    )


# --- evolution beyond version 2 ----------------------------------------------------------------


def _evolved(mutate: Any) -> AvroSchema:
    raw = json.loads(V2_TEXT)
    mutate(memories_record(raw)["fields"])
    return AvroSchema.parse(raw)


def test_a_newer_writer_with_an_extra_field_keeps_include_linked() -> None:
    newer = _evolved(
        lambda fields: fields.append({"name": "ticket", "type": "string", "default": ""})
    )
    record = event_to_record(memories(linked=True))
    record["payload"][1]["ticket"] = "T-1"
    decoded = Decoder(SchemaStore(V2, [newer])).decode(
        frame_single_object(encode_record(record, newer), newer.fingerprint)
    )
    assert identical(decoded, memories(linked=True))


def test_a_writer_whose_include_linked_is_no_boolean_is_unknown_schema() -> None:
    def to_string(fields: list[dict[str, Any]]) -> None:
        fields[2] = {"name": "include_linked", "type": "string", "default": "no"}

    other = _evolved(to_string)
    record = event_to_record(memories(linked=False))
    record["payload"][1]["include_linked"] = "yes"
    value = frame_single_object(encode_record(record, other), other.fingerprint)
    with pytest.raises(DecodeError) as info:
        Decoder(SchemaStore(V2, [other])).decode(value)
    assert info.value.reason == "unknown_schema"


# --- generated ---------------------------------------------------------------------------------

TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["", " a ", "é"]), st.uuids().map(str))
MEMORIES = st.builds(
    lambda event_id, at, ids, user_id, linked: DeletionEvent(
        event_id,
        at,
        EventType.MEMORIES_DELETED,
        memory_ids=tuple(dict.fromkeys(i.strip() for i in ids if i.strip())),
        informational_user_id=(user_id or "").strip() or None,
        include_linked=linked,
    ),
    TEXT,
    st.integers(-(2**62), 2**62 - 1),
    st.lists(TEXT, max_size=20),
    st.none() | TEXT,
    st.booleans(),
)


@given(MEMORIES)
@settings(max_examples=200)
def test_either_version_reads_as_version_2_with_its_default(event: DeletionEvent) -> None:
    decoder = Decoder(STORE)
    v2 = decoder.decode(ENCODER.single_object(event))
    assert identical(v2, event)
    v1 = decoder.decode(frame_single_object(encode_record(v1_record(event), V1), V1_FINGERPRINT))
    assert v1.include_linked is False
    assert v1 == DeletionEvent(
        event.event_id,
        event.occurred_at_ms,
        event.type,
        memory_ids=event.memory_ids,
        include_linked=False,
    )
