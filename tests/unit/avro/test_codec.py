"""Both wire framings, schema evolution, the registry seam, and hostile bytes."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.avro.codec import (
    AvroSchema,
    DecodeError,
    Decoder,
    Encoder,
    SchemaError,
    SchemaStore,
    default_schema_dir,
    encode_record,
)
from consumer.avro.framing import frame_confluent, frame_single_object
from consumer.avro.registry import (
    RegistryError,
    RegistryUnavailable,
    SchemaNotFound,
    SchemaRegistryClient,
)
from consumer.core.events import DeletionEvent, EventType, Scope, event_to_record
from tests.support.registry_server import RegistryServer

HERE = Path(__file__).parent
READER_TEXT = (default_schema_dir() / "deletion_event.avsc").read_text()
OLD_TEXT = (HERE / "schemas" / "deletion_event.v0.avsc").read_text()
NEW_TEXT = (HERE / "schemas" / "deletion_event.v2.avsc").read_text()
READER = AvroSchema.parse(READER_TEXT)
OLD = AvroSchema.parse(OLD_TEXT)
NEW = AvroSchema.parse(NEW_TEXT)
STORE = SchemaStore(READER, [OLD, NEW])
ENCODER = Encoder(STORE)
REASONS = {"decode_error", "unknown_schema"}

EVENTS = [
    DeletionEvent(
        "0b5c1f0e-1111-4c3a-9d59-0f1c6e4b2a01",
        1_700_000_000_123,
        EventType.USER_DELETED,
        Scope.of(user_id="alice"),
        source="accounts",
        reason="GDPR",
    ),
    DeletionEvent(
        "0b5c1f0e-2222-4c3a-9d59-0f1c6e4b2a01",
        1,
        EventType.SESSION_EXPIRED,
        Scope.of(run_id="r1", user_id="alice", agent_id="bot"),
    ),
    DeletionEvent(
        "0b5c1f0e-3333-4c3a-9d59-0f1c6e4b2a01",
        2**62,
        EventType.SCOPE_DELETED,
        Scope.of(user_id="a", app_id="app", metadata={"k": "v", "é": "ü"}),
        reason="RETENTION",
    ),
    DeletionEvent(
        "0b5c1f0e-4444-4c3a-9d59-0f1c6e4b2a01",
        -5,
        EventType.MEMORIES_DELETED,
        memory_ids=("8d0a3c52-0e7e-4d1c-a6a1-6d2f1c3b4a01", "8d0a3c52-0e7e-4d1c-a6a1-6d2f1c3b4a02"),
        informational_user_id="alice",
        reason="USER_REQUEST",
    ),
    DeletionEvent(
        "0b5c1f0e-5555-4c3a-9d59-0f1c6e4b2a01",
        3,
        EventType.MEMORIES_DELETED,
        memory_ids=("8d0a3c52-0e7e-4d1c-a6a1-6d2f1c3b4a03",),
        reason="GDPR",
        include_linked=True,
    ),
]


class FakeRegistry:
    """In memory, for tests that need no HTTP; counts lookups."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas
        self.calls: list[int] = []

    def get_schema(self, schema_id: int) -> str:
        self.calls.append(schema_id)
        if schema_id not in self.schemas:
            raise SchemaNotFound(f"schema id {schema_id}")
        return self.schemas[schema_id]


def _fake_decoder(**kwargs: Any) -> Decoder:
    return Decoder(STORE, FakeRegistry({1: READER_TEXT, 2: OLD_TEXT, 3: NEW_TEXT}), **kwargs)


def _reason(value: bytes | None, decoder: Decoder | None = None) -> str:
    with pytest.raises(DecodeError) as info:
        (decoder or _fake_decoder()).decode(value)
    return info.value.reason


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


@pytest.fixture
def client(registry: RegistryServer) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry.url, "timeout": 5.0}) as c:
        yield c


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type.value)
def test_single_object_round_trip(event: DeletionEvent) -> None:
    value = ENCODER.single_object(event)
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == READER.fingerprint
    decoded = Decoder(STORE).decode(value)
    assert decoded == event
    assert decoded.include_linked is event.include_linked


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type.value)
def test_confluent_round_trip(event: DeletionEvent) -> None:
    value = ENCODER.confluent(event, 1)
    assert value[:5] == b"\x00\x00\x00\x00\x01"
    assert _fake_decoder().decode(value) == event


def test_timestamps_stay_exact_integers() -> None:
    # A datetime round trip would lose precision far from the epoch; the raw long does not.
    event = DeletionEvent("e", 2**53 + 1, EventType.USER_DELETED, Scope.of(user_id="u"))
    assert Decoder(STORE).decode(ENCODER.single_object(event)).occurred_at_ms == 2**53 + 1


def test_encoder_takes_raw_records() -> None:
    record = {
        "event_id": "e",
        "occurred_at": 5,
        "payload": ("memory.deletion.UserDeleted", {"user_id": ""}),
    }
    event = Decoder(STORE).decode(ENCODER.single_object(record))
    assert (event.source, event.reason, event.scope) == ("unknown", "OTHER", Scope())


def test_fingerprint_is_crc64_avro_little_endian() -> None:
    # Test vector from the Avro specification's test suite: "int" -> 0x7275D51A3F395C8F.
    assert AvroSchema.parse('"int"').fingerprint == (0x7275D51A3F395C8F).to_bytes(8, "little")


def test_doc_changes_keep_the_fingerprint() -> None:
    raw = json.loads(READER_TEXT)
    raw["doc"] = "reworded"
    assert AvroSchema.parse(raw).fingerprint == READER.fingerprint


# --- schema store -----------------------------------------------------------------------------


def test_default_store_reads_the_contract_schema() -> None:
    store = SchemaStore.from_directory()
    assert store.reader.full_name == "memory.deletion.DeletionEvent"
    assert store.reader.canonical == READER.canonical
    assert READER.fingerprint in store.writers


def test_store_from_directory_keeps_every_version(tmp_path: Path) -> None:
    shutil.copy(default_schema_dir() / "deletion_event.avsc", tmp_path)
    shutil.copy(HERE / "schemas" / "deletion_event.v0.avsc", tmp_path)
    shutil.copy(HERE / "schemas" / "deletion_event.v2.avsc", tmp_path)
    (tmp_path / "receipt.avsc").write_text(
        json.dumps({"type": "record", "name": "Receipt", "fields": [{"name": "x", "type": "int"}]})
    )
    store = SchemaStore.from_directory(tmp_path)
    assert set(store.writers) == {READER.fingerprint, OLD.fingerprint, NEW.fingerprint}
    old_event = encode_record(
        {
            "event_id": "e",
            "occurred_at": 1,
            "payload": ("memory.deletion.UserDeleted", {"user_id": "u"}),
        },
        OLD,
    )
    event = Decoder(store).decode(frame_single_object(old_event, OLD.fingerprint))
    assert event.scope == Scope.of(user_id="u")


def test_store_needs_the_reader_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SchemaStore.from_directory(tmp_path)


def test_store_names_a_broken_file(tmp_path: Path) -> None:
    shutil.copy(default_schema_dir() / "deletion_event.avsc", tmp_path)
    (tmp_path / "zz_broken.avsc").write_text("{not json")
    with pytest.raises(SchemaError, match=r"zz_broken\.avsc"):
        SchemaStore.from_directory(tmp_path)


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        (
            {"type": "record", "name": "N", "fields": [{"name": "n", "type": ["null", "N"]}]},
            "recursive",
        ),
        ({"type": "array", "items": "null"}, "zero-width"),
        (
            {"type": "array", "items": {"type": "record", "name": "E", "fields": []}},
            "zero-width",
        ),
        ({"type": "array", "items": {"type": "fixed", "name": "F", "size": 0}}, "zero-width"),
        ("not json", "not a valid"),
        ({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}, "not a valid"),
    ],
)
def test_unbounded_or_broken_schemas_are_refused(schema: Any, why: str) -> None:
    with pytest.raises(SchemaError, match=why):
        AvroSchema.parse(schema if isinstance(schema, str) else json.dumps(schema))


def test_too_deep_schemas_are_refused() -> None:
    schema: Any = "string"
    for _ in range(40):
        schema = {"type": "array", "items": schema}
    with pytest.raises(SchemaError, match="deeper"):
        AvroSchema.parse(schema)


# --- schema evolution -------------------------------------------------------------------------

OLD_RECORD = {
    "event_id": "old",
    "occurred_at": 10,
    "source": "legacy",
    "payload": ("memory.deletion.SessionExpired", {"run_id": "r", "user_id": "u"}),
}
NEW_RECORD = {
    "event_id": "new",
    "trace_id": "t-1",
    "occurred_at": 20,
    "source": "next",
    "reason": "LEGAL_HOLD",
    "payload": ("memory.deletion.UserDeleted", {"user_id": "u", "tenant": "acme"}),
}


def _assert_evolved(old: DeletionEvent, new: DeletionEvent) -> None:
    # Fields the old writer lacked take the reader's defaults.
    assert old == DeletionEvent(
        "old", 10, EventType.SESSION_EXPIRED, Scope.of(run_id="r", user_id="u"), source="legacy"
    )
    # The newer writer's extra field is dropped; its unknown enum symbol becomes the default.
    assert new == DeletionEvent(
        "new", 20, EventType.USER_DELETED, Scope.of(user_id="u"), source="next", reason="OTHER"
    )


def test_evolution_by_fingerprint() -> None:
    decoder = Decoder(STORE)
    old = decoder.decode(ENCODER.single_object(OLD_RECORD, OLD))
    new = decoder.decode(ENCODER.single_object(NEW_RECORD, NEW))
    _assert_evolved(old, new)


def test_evolution_by_registry_id(registry: RegistryServer, client: SchemaRegistryClient) -> None:
    old_id = client.register("memory.deletions-value", OLD_TEXT)
    new_id = client.register("memory.deletions-value", NEW_TEXT)
    decoder = Decoder(STORE, SchemaRegistryClient(registry.url))
    old = decoder.decode(ENCODER.confluent(OLD_RECORD, old_id, OLD))
    new = decoder.decode(ENCODER.confluent(NEW_RECORD, new_id, NEW))
    _assert_evolved(old, new)


def test_a_payload_the_reader_does_not_know_is_unknown_schema() -> None:
    record = {**NEW_RECORD, "payload": ("memory.deletion.OrgDeleted", {"org_id": "o"})}
    assert _reason(ENCODER.single_object(record, NEW)) == "unknown_schema"


def test_an_incompatible_writer_is_unknown_schema() -> None:
    raw = json.loads(READER_TEXT)
    raw["fields"][0]["type"] = "long"  # event_id: string -> long, which Avro cannot resolve
    writer = AvroSchema.parse(raw)
    record = {**event_to_record(EVENTS[0]), "event_id": 7}
    decoder = Decoder(SchemaStore(READER, [writer]), FakeRegistry({9: json.dumps(raw)}))
    assert _reason(ENCODER.single_object(record, writer), decoder) == "unknown_schema"
    assert _reason(ENCODER.confluent(record, 9, writer), decoder) == "unknown_schema"


@pytest.mark.parametrize(
    "schema",
    [
        '"string"',
        json.dumps({"type": "record", "name": "Receipt", "fields": []}),
        "{not json",
        json.dumps(
            {"type": "record", "name": "N", "fields": [{"name": "n", "type": ["null", "N"]}]}
        ),
    ],
)
def test_registry_schemas_that_are_not_events_are_unknown_schema(schema: str) -> None:
    registry = FakeRegistry({5: schema})
    decoder = Decoder(STORE, registry)
    value = frame_confluent(b"\x00" * 8, 5)
    assert _reason(value, decoder) == "unknown_schema"
    assert _reason(value, decoder) == "unknown_schema"
    assert registry.calls == [5]  # an unusable id stays unusable: asked once


# --- framing and body errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"\x01",
        b'{"type": "user_deleted"}',
        b"\xc3",
        b"\xc3\x02" + bytes(20),
        b"\x00\x00",
    ],
)
def test_bad_framing_is_a_decode_error(value: bytes | None) -> None:
    assert _reason(value) == "decode_error"


def test_unknown_fingerprint_is_unknown_schema() -> None:
    assert _reason(frame_single_object(b"\x00", bytes(8))) == "unknown_schema"


def test_unknown_registry_id_is_unknown_schema(client: SchemaRegistryClient) -> None:
    assert _reason(ENCODER.confluent(EVENTS[0], 4242), Decoder(STORE, client)) == "unknown_schema"


def test_no_registry_configured_is_unknown_schema() -> None:
    assert _reason(ENCODER.confluent(EVENTS[0], 1), Decoder(STORE)) == "unknown_schema"


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type.value)
def test_every_truncation_is_a_decode_error(event: DeletionEvent) -> None:
    decoder = _fake_decoder()
    for value in (ENCODER.single_object(event), ENCODER.confluent(event, 1)):
        for cut in range(len(value)):
            assert _reason(value[:cut], decoder) == "decode_error", cut


@pytest.mark.parametrize("tail", [b"\x00", b"garbage", bytes(1000)])
def test_trailing_bytes_are_a_decode_error(tail: bytes) -> None:
    decoder = _fake_decoder()
    for value in (ENCODER.single_object(EVENTS[0]), ENCODER.confluent(EVENTS[0], 1)):
        with pytest.raises(DecodeError, match="trailing") as info:
            decoder.decode(value + tail)
        assert info.value.reason == "decode_error"


def _body(*parts: bytes) -> bytes:
    return frame_single_object(b"".join(parts), READER.fingerprint)


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


HEAD = b"\x02e" + _zigzag(1) + b"\x02s"  # event_id "e", occurred_at 1, source "s"


@pytest.mark.parametrize(
    "value",
    [
        _body(HEAD, _zigzag(6), _zigzag(0), b"\x02u"),  # enum index past the symbols
        _body(HEAD, _zigzag(0), _zigzag(4), b"\x02u"),  # union index past the branches
        _body(HEAD, _zigzag(0), _zigzag(-9), b"\x02u"),  # negative, and past them from the end
        _body(HEAD, _zigzag(0), _zigzag(0), b"\x04\xff\xfe"),  # invalid UTF-8
        _body(HEAD, _zigzag(0), _zigzag(0), _zigzag(2**62)),  # a string of 2**62 bytes
        _body(HEAD, _zigzag(0), _zigzag(0), _zigzag(-3)),  # a negative length
        _body(HEAD, _zigzag(0), _zigzag(3), _zigzag(2**62)),  # 2**62 memory ids
        _body(HEAD, _zigzag(0), _zigzag(3), _zigzag(-(2**62)), _zigzag(2**62)),  # sized block
        _body(HEAD, _zigzag(0), _zigzag(2), b"\x00" * 4, _zigzag(2**62)),  # 2**62 map entries
        _body(b"\xff" * 64),  # a varint that never ends
        # include_linked byte 2: Avro has 0 and 1 only, fastavro reads any other as true
        _body(HEAD, _zigzag(0), _zigzag(3), _zigzag(0), _zigzag(0), b"\x02"),
    ],
)
def test_malformed_bodies_are_decode_errors_and_fail_fast(value: bytes) -> None:
    # Not listed: an enum or union index of -1 or -2. fastavro indexes Python lists with it, so
    # it reads as a branch counted from the end instead of failing; a known leniency.
    started = time.perf_counter()
    assert _reason(value) == "decode_error"
    assert time.perf_counter() - started < 1.0


def test_hand_built_body_is_valid_when_well_formed() -> None:
    event = Decoder(STORE).decode(_body(HEAD, _zigzag(1), _zigzag(0), b"\x02u"))
    assert (event.event_id, event.reason, event.scope) == ("e", "GDPR", Scope.of(user_id="u"))


def test_errors_never_echo_identifiers() -> None:
    event = DeletionEvent(
        "secret-event", 1, EventType.USER_DELETED, Scope.of(user_id="secret-user")
    )
    value = ENCODER.single_object(event)
    for bad in (value + b"x", value[:-3], value.replace(b"secret-user", b"secret\xffuser")):
        with pytest.raises(DecodeError) as info:
            Decoder(STORE).decode(bad)
        assert "secret" not in str(info.value)


def test_one_decoder_takes_good_and_bad_values_in_turn() -> None:
    # As a flush decodes its records: one decoder, one value after another, an error in between
    # leaving the next value's decoding as it was.
    values = [ENCODER.single_object(EVENTS[0]), b"junk", None, ENCODER.confluent(EVENTS[1], 1)]
    decoder = _fake_decoder()
    results: list[DeletionEvent | DecodeError] = []
    for value in values:
        try:
            results.append(decoder.decode(value))
        except DecodeError as exc:
            results.append(exc)
    assert results[0] == EVENTS[0]
    assert isinstance(results[1], DecodeError)
    assert isinstance(results[2], DecodeError)
    assert results[3] == EVENTS[1]


# --- the registry seam ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_registry_outage_is_retriable_not_a_decode_error(
    registry: RegistryServer, client: SchemaRegistryClient, status: int
) -> None:
    schema_id = registry.add("s", READER_TEXT)
    registry.fail_with = status
    decoder = Decoder(STORE, client)
    value = ENCODER.confluent(EVENTS[0], schema_id)
    with pytest.raises(RegistryUnavailable) as info:
        decoder.decode(value)
    assert info.value.retriable
    registry.fail_with = None  # the registry recovers: the same message now decodes
    assert decoder.decode(value) == EVENTS[0]


def test_registry_auth_failure_halts_rather_than_dead_letters(
    registry: RegistryServer, client: SchemaRegistryClient
) -> None:
    registry.fail_with = 401
    with pytest.raises(RegistryError) as info:
        Decoder(STORE, client).decode(ENCODER.confluent(EVENTS[0], 1))
    assert not isinstance(info.value, DecodeError)
    assert not info.value.retriable


def test_unreachable_registry_is_retriable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    with SchemaRegistryClient("http://user:pw@registry.invalid", client=http) as client:
        with pytest.raises(RegistryUnavailable) as info:
            client.get_schema(1)
        assert "pw" not in str(info.value)
    http.close()


def test_registry_garbage_is_retriable() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, text="<html>")))
    with pytest.raises(RegistryUnavailable):
        SchemaRegistryClient("http://registry", client=http).get_schema(1)
    http.close()


def test_schema_is_fetched_once_per_id(
    registry: RegistryServer, client: SchemaRegistryClient
) -> None:
    schema_id = registry.add("s", READER_TEXT)
    decoder = Decoder(STORE, client)
    for event in EVENTS * 3:
        assert decoder.decode(ENCODER.confluent(event, schema_id)) == event
    assert registry.hits[f"/schemas/ids/{schema_id}"] == 1
    # And the client caches for every decoder that shares it.
    Decoder(STORE, client).decode(ENCODER.confluent(EVENTS[0], schema_id))
    assert registry.hits[f"/schemas/ids/{schema_id}"] == 1


def test_not_found_is_asked_again_only_after_a_while() -> None:
    now = [0.0]
    registry = FakeRegistry({})
    decoder = Decoder(STORE, registry, not_found_ttl=30.0, clock=lambda: now[0])
    value = ENCODER.confluent(EVENTS[0], 8)
    assert _reason(value, decoder) == "unknown_schema"
    assert _reason(value, decoder) == "unknown_schema"
    assert registry.calls == [8]
    now[0] = 31.0
    registry.schemas[8] = READER_TEXT  # registered late, e.g. a lagging replica
    assert decoder.decode(value) == EVENTS[0]
    assert registry.calls == [8, 8]


def test_register_returns_the_same_id_for_the_same_schema(client: SchemaRegistryClient) -> None:
    first = client.register("a-value", READER_TEXT)
    assert client.register("b-value", json.dumps(json.loads(READER_TEXT))) == first
    assert client.register("a-value", OLD_TEXT) != first
    assert json.loads(client.get_schema(first)) == json.loads(READER_TEXT)


def test_registry_404_is_schema_not_found(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaNotFound) as info:
        client.get_schema(99)
    assert not info.value.retriable


def test_register_refusal_is_not_retriable(registry: RegistryServer) -> None:
    registry.fail_with = 409
    with SchemaRegistryClient(registry.url) as client, pytest.raises(RegistryError) as info:
        client.register("s", READER_TEXT)
    assert not info.value.retriable
    assert "409" in str(info.value)


# --- the registry seam: confluent-kafka's client with credentials (issue 20) ------------------

SECRET = "sr-secret-value"


@pytest.fixture(scope="module")
def refusing() -> Iterator[RegistryServer]:
    """One registry for every generated status: each answer quotes the schema and the secret."""
    with RegistryServer(basic_auth=("key", SECRET)) as server:
        server.fail_message = f"refused {READER_TEXT} for key:{SECRET}"
        yield server


@settings(max_examples=40, deadline=None)
@given(status=st.integers(400, 599), get=st.booleans())
def test_a_failure_is_one_line_without_url_secret_or_schema(
    refusing: RegistryServer, status: int, get: bool
) -> None:
    refusing.fail_with = status
    url = refusing.url.replace("://", f"://key:{SECRET}@")  # credentials in the URL too
    with SchemaRegistryClient(url) as client, pytest.raises(RegistryError) as info:
        client.get_schema(1) if get else client.register("s", READER_TEXT)
    text = str(info.value)
    assert "\n" not in text
    assert isinstance(info.value, SchemaNotFound) or f"HTTP {status}" in text
    port = str(refusing._server.server_address[1])
    assert SECRET not in text and port not in text and "DeletionEvent" not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__  # nothing chained
    assert info.value.retriable == (status >= 500 or status in (408, 429))
    assert isinstance(info.value, SchemaNotFound) == (get and status == 404)


def test_basic_auth_is_sent_and_a_wrong_secret_names_its_setting() -> None:
    with RegistryServer(basic_auth=("key", SECRET)) as registry:
        schema_id = registry.add("s", READER_TEXT)
        good = {"url": registry.url, "basic.auth.user.info": f"key:{SECRET}"}
        with SchemaRegistryClient(good) as client:
            assert json.loads(client.get_schema(schema_id)) == json.loads(READER_TEXT)
            assert client.register("t", READER_TEXT) == schema_id
        wrong = {**good, "basic.auth.user.info": "key:wrong-secret"}
        with SchemaRegistryClient(wrong) as client, pytest.raises(RegistryError) as info:
            client.get_schema(schema_id)
        assert str(info.value) == (
            f"registry schema id {schema_id}: HTTP 401, credentials refused "
            "(check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO)"
        )
        assert not info.value.retriable and "wrong-secret" not in str(info.value)
        with SchemaRegistryClient(registry.url) as client, pytest.raises(RegistryError) as info:
            client.get_schema(schema_id)
        assert "none are set: SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in str(info.value)
        # The credentials of a URL are the client's by default, and named as such.
        in_url = registry.url.replace("://", "://key:nope@")
        with SchemaRegistryClient(in_url) as client, pytest.raises(RegistryError) as info:
            client.get_schema(schema_id)
        assert "check the user info of SCHEMA_REGISTRY_URL" in str(info.value)
        assert registry.refused == 3


def test_a_static_bearer_token_is_sent_with_its_logical_cluster() -> None:
    with RegistryServer(bearer_token=SECRET, logical_cluster="lsrc-1") as registry:
        schema_id = registry.add("s", READER_TEXT)
        bearer = {
            "url": registry.url,
            "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": SECRET,
            "bearer.auth.logical.cluster": "lsrc-1",
        }
        with SchemaRegistryClient(bearer) as client:
            assert client.get_schema(schema_id)
        other_cluster = {**bearer, "bearer.auth.logical.cluster": "lsrc-2"}
        with SchemaRegistryClient(other_cluster) as client, pytest.raises(RegistryError) as info:
            client.get_schema(schema_id)
        assert "HTTP 401" in str(info.value)
        assert "check SCHEMA_REGISTRY_BEARER_AUTH_TOKEN" in str(info.value)


def test_a_private_ca_is_trusted_when_named_and_only_then(tmp_path: Path) -> None:
    with RegistryServer(tls=tmp_path) as registry:
        assert registry.url.startswith("https://") and registry.ca_file is not None
        schema_id = registry.add("s", READER_TEXT)
        trusting = {"url": registry.url, "ssl.ca.location": str(registry.ca_file)}
        with SchemaRegistryClient(trusting) as client:
            assert client.get_schema(schema_id)
        with SchemaRegistryClient(registry.url) as client, pytest.raises(RegistryError) as info:
            client.get_schema(schema_id)
        assert str(info.value) == (
            f"registry schema id {schema_id}: its TLS certificate is not trusted "
            "(check SCHEMA_REGISTRY_SSL_CA_LOCATION)"
        )
        assert not info.value.retriable  # waited out all the same, but logged as an error


def test_no_bearer_token_from_the_endpoint_is_retriable() -> None:
    oauth = {
        "url": "http://127.0.0.1:9",
        "bearer.auth.credentials.source": "OAUTHBEARER",
        "bearer.auth.logical.cluster": "lsrc-1",
        "bearer.auth.client.id": "id",
        "bearer.auth.client.secret": SECRET,
        "bearer.auth.scope": "schema_registry",
        "bearer.auth.issuer.endpoint.url": "http://127.0.0.1:9/token",  # nothing listens there
    }
    with SchemaRegistryClient(oauth) as client, pytest.raises(RegistryUnavailable) as info:
        client.get_schema(1)
    assert "no bearer token from the token endpoint" in str(info.value)
    assert SECRET not in str(info.value)


# --- hostile input, generated ------------------------------------------------------------------

HOSTILE = _fake_decoder()


def _decodes_or_fails_cleanly(value: bytes) -> None:
    try:
        result = HOSTILE.decode(value)
    except DecodeError as exc:
        assert exc.reason in REASONS
        assert "\n" not in str(exc)
    else:
        assert isinstance(result, DeletionEvent)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(value: bytes) -> None:
    _decodes_or_fails_cleanly(value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([READER, OLD, NEW]), st.binary(max_size=200))
def test_arbitrary_bodies_after_a_known_fingerprint(writer: AvroSchema, body: bytes) -> None:
    _decodes_or_fails_cleanly(frame_single_object(body, writer.fingerprint))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 2, 3, 4]), st.binary(max_size=200))
def test_arbitrary_bodies_after_a_schema_id(schema_id: int, body: bytes) -> None:
    _decodes_or_fails_cleanly(frame_confluent(body, schema_id))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(EVENTS), st.integers(0, 400), st.integers(0, 255))
def test_one_flipped_byte_in_a_valid_message(event: DeletionEvent, at: int, byte: int) -> None:
    value = bytearray(ENCODER.single_object(event))
    value[at % len(value)] = byte
    _decodes_or_fails_cleanly(bytes(value))
