"""Registry ids (issue 16): what is remembered of them is bounded, deferred lookups never run on
the event loop, are paced, bounded in number, one per id, and a failing registry is waited out;
a known id decodes at once meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from consumer.avro import schema_ids
from consumer.avro.codec import DecodeError, Decoder, SchemaPending, SchemaStore
from consumer.avro.registry import RegistryError, RegistryUnavailable, SchemaNotFound
from consumer.avro.schema_ids import MAX_MISSES, LookupLimits, SchemaIds, UnknownSchemaId
from tests.unit.avro.test_codec import ENCODER, EVENTS, READER_TEXT, STORE

VALUE = ENCODER.confluent(EVENTS[0], 1)


class Registry:
    """In memory; records each call's id, thread and time, and how many ran at once. `gate`
    holds every call until it is set; `fail` makes the next calls raise."""

    def __init__(self, schemas: dict[int, str] | None = None) -> None:
        self.schemas = schemas if schemas is not None else {1: READER_TEXT}
        self.calls: list[tuple[int, str, float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: list[RegistryError] = []
        self.running = self.most = 0
        self._lock = threading.Lock()

    def get_schema(self, schema_id: int) -> str:
        with self._lock:
            self.calls.append((schema_id, threading.current_thread().name, time.monotonic()))
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.gate.wait(10)
            with self._lock:
                if self.fail:
                    raise self.fail.pop(0)
            if schema_id not in self.schemas:
                raise SchemaNotFound(f"schema id {schema_id}")
            return self.schemas[schema_id]
        finally:
            with self._lock:
                self.running -= 1

    @property
    def ids(self) -> list[int]:
        return [schema_id for schema_id, _, _ in self.calls]


def _deferred(registry: Registry, **limits: Any) -> Decoder:
    return Decoder(STORE, registry, defer_lookups=True, lookup_limits=LookupLimits(**limits))


async def _decoded_after_lookup(decoder: Decoder, value: bytes) -> object:
    try:
        return decoder.decode(value)
    except SchemaPending as pending:
        await asyncio.wait([decoder.look_up(pending.schema_id)])
        return decoder.decode(value)


@pytest.fixture(autouse=True)
def quick_wait_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def delays() -> Iterator[float]:
        while True:
            yield 0.01

    monkeypatch.setattr(schema_ids, "wait_out_delays", delays)


# --- bounded memory (inline, as the commands ask) ----------------------------------------------


def test_a_flood_of_missing_ids_keeps_a_bounded_memory_of_them() -> None:
    registry = Registry()
    decoder = Decoder(STORE, registry)
    for schema_id in range(100, 100 + 3 * MAX_MISSES):
        with pytest.raises(DecodeError) as info:
            decoder.decode(ENCODER.confluent(EVENTS[0], schema_id))
        assert info.value.reason == "unknown_schema"
    assert len(decoder._ids._missing) == MAX_MISSES
    # The most recent misses are still remembered: asked again, no call.
    calls = len(registry.calls)
    with pytest.raises(DecodeError):
        decoder.decode(ENCODER.confluent(EVENTS[0], 99 + 3 * MAX_MISSES))
    assert len(registry.calls) == calls


def test_unusable_ids_are_bounded_too() -> None:
    registry = Registry({n: '"string"' for n in range(MAX_MISSES + 10)})
    decoder = Decoder(STORE, registry)
    for schema_id in range(MAX_MISSES + 10):
        with pytest.raises(DecodeError):
            decoder.decode(ENCODER.confluent(EVENTS[0], schema_id))
    assert len(decoder._ids._unusable) == MAX_MISSES


def test_usable_plans_are_bounded_oldest_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema_ids, "MAX_PLANS", 3)
    registry = Registry({n: READER_TEXT for n in range(1, 6)})
    decoder = Decoder(STORE, registry)
    for schema_id in range(1, 6):
        assert decoder.decode(ENCODER.confluent(EVENTS[0], schema_id)) == EVENTS[0]
    assert sorted(decoder._by_id) == [3, 4, 5]
    assert decoder.decode(ENCODER.confluent(EVENTS[0], 1)) == EVENTS[0]  # asked again
    assert registry.ids == [1, 2, 3, 4, 5, 1]


def test_the_clients_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from consumer.avro import registry as registry_module

    monkeypatch.setattr(registry_module, "_CACHED", 2)
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json={"schema": READER_TEXT})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    client = registry_module.SchemaRegistryClient("http://registry", client=http)
    for schema_id in (1, 2, 3, 1):
        client.get_schema(schema_id)
    assert len(client._by_id) == 2
    assert asked == [f"/schemas/ids/{n}" for n in (1, 2, 3, 1)]  # 1 had gone
    http.close()


# --- deferred lookups (the consumer's loop) ----------------------------------------------------


def test_deferred_decoding_never_calls_the_registry_itself() -> None:
    registry = Registry()
    decoder = _deferred(registry)
    with pytest.raises(SchemaPending) as info:
        decoder.decode(VALUE)
    assert info.value.schema_id == 1
    assert registry.calls == []


def test_the_lookup_runs_off_the_event_loop_and_the_loop_keeps_going() -> None:
    registry = Registry()
    registry.gate.clear()  # the registry hangs until the loop has shown it is free

    async def go() -> None:
        decoder = _deferred(registry)
        with pytest.raises(SchemaPending):
            decoder.decode(VALUE)
        lookup = decoder.look_up(1)
        for _ in range(20):
            await asyncio.sleep(0)  # the loop turns while the registry hangs
        assert not lookup.done() and len(registry.calls) == 1
        registry.gate.set()
        await asyncio.wait([lookup])
        assert decoder.decode(VALUE) == EVENTS[0]
        decoder.close()

    asyncio.run(go())
    [(_, thread, _)] = registry.calls
    assert thread != threading.main_thread().name and thread.startswith("schema-ids")


def test_one_lookup_per_id_however_many_records_wait_on_it() -> None:
    registry = Registry()

    async def go() -> None:
        decoder = _deferred(registry)
        lookups = {decoder.look_up(1) for _ in range(50)}
        assert len(lookups) == 1
        await asyncio.wait(lookups)
        assert decoder.decode(VALUE) == EVENTS[0]

    asyncio.run(go())
    assert registry.ids == [1]


def test_lookups_are_paced_by_the_token_bucket() -> None:
    registry = Registry({})
    rate, burst, ids = 50.0, 3, 13

    async def go() -> float:
        decoder = _deferred(registry, rate=rate, burst=burst, max_pending=100)
        started = time.monotonic()
        await asyncio.wait([decoder.look_up(n) for n in range(ids)])
        return time.monotonic() - started

    elapsed = asyncio.run(go())
    # Ten past the burst, at 50 a second: a fifth of a second at least.
    assert elapsed >= (ids - burst) / rate - 0.01
    starts = sorted(at for _, _, at in registry.calls)
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + rate * (starts[j] - starts[i]) + 1


def test_at_most_so_many_fetches_at_once() -> None:
    registry = Registry({})
    registry.gate.clear()

    async def go() -> None:
        decoder = _deferred(registry, rate=1000.0, burst=100, threads=2, max_pending=100)
        lookups = [decoder.look_up(n) for n in range(10)]
        while len(registry.calls) < 2:
            await asyncio.sleep(0.005)  # polls a thread's progress: nothing to await
        registry.gate.set()
        await asyncio.wait(lookups)

    asyncio.run(go())
    assert registry.most == 2 and len(registry.calls) == 10


def test_past_the_pending_bound_an_id_is_unknown_schema_without_a_call() -> None:
    registry = Registry({})
    registry.gate.clear()

    async def go() -> None:
        decoder = _deferred(registry, max_pending=3)
        lookups = [decoder.look_up(n) for n in range(100, 103)]
        with pytest.raises(DecodeError) as info:
            decoder.look_up(103)
        assert info.value.reason == "unknown_schema"
        assert "not looked up" in str(info.value)
        assert decoder.look_up(101) is lookups[1]  # a pending id is still joined
        registry.gate.set()
        await asyncio.wait(lookups)
        assert decoder._ids.pending == 0
        decoder.look_up(103)  # room again
        decoder.close()

    asyncio.run(go())
    assert 103 not in registry.ids[:3]


def test_a_known_id_decodes_at_once_while_junk_lookups_wait() -> None:
    registry = Registry()

    async def go() -> None:
        decoder = _deferred(registry)
        assert await _decoded_after_lookup(decoder, VALUE) == EVENTS[0]
        registry.gate.clear()  # the registry hangs on the junk
        junk = [decoder.look_up(n) for n in range(1000, 1010)]
        calls = len(registry.calls)
        for event in EVENTS:
            assert decoder.decode(ENCODER.confluent(event, 1)) == event
        assert len(registry.calls) == calls and not any(lookup.done() for lookup in junk)
        registry.gate.set()
        await asyncio.wait(junk)
        for n in range(1000, 1010):
            with pytest.raises(DecodeError):  # now known to be missing: at once, no call
                decoder.decode(ENCODER.confluent(EVENTS[0], n))

    asyncio.run(go())
    assert registry.ids.count(1) == 1


@pytest.mark.parametrize(
    "error", [RegistryUnavailable("registry: HTTP 503"), RegistryError("registry: HTTP 401")]
)
def test_a_failing_registry_is_waited_out_not_a_dead_letter(error: RegistryError) -> None:
    registry = Registry()
    registry.fail = [error, error]

    async def go() -> object:
        return await _decoded_after_lookup(_deferred(registry), VALUE)

    assert asyncio.run(go()) == EVENTS[0]
    assert registry.ids == [1, 1, 1]


def test_an_unusable_schema_is_remembered_after_a_deferred_lookup() -> None:
    registry = Registry({5: '"string"'})

    async def go() -> None:
        decoder = _deferred(registry)
        await asyncio.wait([decoder.look_up(5)])
        for _ in range(3):
            with pytest.raises(DecodeError) as info:
                decoder.decode(ENCODER.confluent(EVENTS[0], 5))
            assert info.value.reason == "unknown_schema"

    asyncio.run(go())
    assert registry.ids == [5]


def test_close_stops_the_lookups_under_way() -> None:
    registry = Registry({})
    registry.gate.clear()

    async def go() -> None:
        decoder = _deferred(registry)
        lookup = decoder.look_up(7)
        await asyncio.sleep(0)
        decoder.close()
        await asyncio.wait([lookup])
        assert lookup.cancelled()
        registry.gate.set()

    asyncio.run(go())


def test_no_registry_is_unknown_at_once_in_either_mode() -> None:
    for defer in (False, True):
        decoder = Decoder(SchemaStore(STORE.reader), defer_lookups=defer)
        with pytest.raises(DecodeError) as info:
            decoder.decode(VALUE)
        assert "no schema registry" in str(info.value)


def test_schema_ids_alone_take_any_plan() -> None:
    registry = Registry({1: "text"})

    def accept(schema_id: int, text: str) -> str:
        if text != "text":
            raise UnknownSchemaId("no")
        return text.upper()

    ids: SchemaIds[str] = SchemaIds(registry, accept)
    assert ids.resolve(1) == "TEXT" and ids.plans == {1: "TEXT"}
