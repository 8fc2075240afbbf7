"""Decode throughput: the codec against fastavro's bare schemaless_reader on the same bodies.

    .venv/bin/python bench/decode_bench.py [--events 100000] [--repeat 3]

(a) is the ceiling: fastavro alone, no framing, no event object. (b) is the hot path as the
consumer runs it: framing, fingerprint or schema-id lookup, the read, the trailing-byte check and
`event_from_record`. (v1) is the same mix written by version-1 producers (deletion_event.v1.avsc,
no include_linked), through the shortcut and, for comparison, through the general path alone
(fastavro resolving version 1 against the reader). Prints events/s (best of --repeat) and the
ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import uuid
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastavro import schemaless_reader

from bench.timing import cpu_rates
from consumer.avro import event_reader
from consumer.avro.codec import (
    AvroSchema,
    DecodeError,
    Decoder,
    Encoder,
    SchemaStore,
    default_schema_dir,
    encode_record,
)
from consumer.core.capabilities import PLATFORM
from consumer.core.events import (
    REASONS,
    DeletionEvent,
    EventType,
    Scope,
    event_from_record,
    event_to_record,
)
from consumer.core.planner import plan


class _InMemoryRegistry:
    def __init__(self, schema: str) -> None:
        self._schema = schema

    def get_schema(self, schema_id: int) -> str:
        return self._schema


def _events(n: int, rng: random.Random) -> list[DeletionEvent]:
    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    kinds = list(EventType)
    events = []
    for _ in range(n):
        kind = rng.choice(kinds)
        user = f"user-{rng.randrange(10_000)}"
        common: dict[str, Any] = {
            "event_id": uid(),
            "occurred_at_ms": 1_700_000_000_000 + rng.randrange(10**9),
            "type": kind,
            "source": "accounts",
            "reason": rng.choice(REASONS),
        }
        if kind is EventType.USER_DELETED:
            events.append(DeletionEvent(**common, scope=Scope.of(user_id=user)))
        elif kind is EventType.SESSION_EXPIRED:
            scope = Scope.of(run_id=uid(), user_id=user)
            events.append(DeletionEvent(**common, scope=scope))
        elif kind is EventType.SCOPE_DELETED:
            scope = Scope.of(user_id=user, agent_id="support-bot", metadata={"topic": "billing"})
            events.append(DeletionEvent(**common, scope=scope))
        else:
            ids = tuple(uid() for _ in range(rng.randint(1, 5)))
            events.append(DeletionEvent(**common, memory_ids=ids, informational_user_id=user))
    return events


def _v1_record(event: DeletionEvent) -> dict[str, Any]:
    """What a version-1 producer writes: its MemoriesDeleted has no include_linked."""
    record = event_to_record(event)
    name, body = record["payload"]
    record["payload"] = (name, {k: v for k, v in body.items() if k != "include_linked"})
    return record


def _general_only(decoder: Decoder) -> Decoder:
    """A copy of `decoder` that never takes the event reader's shortcut: the general path."""
    general = Decoder.__new__(Decoder)
    general.__dict__.update(decoder.__dict__)
    general._by_fingerprint = {
        fp: dataclasses.replace(p, fast=False) for fp, p in decoder._by_fingerprint.items()
    }
    general._by_id = {i: dataclasses.replace(p, fast=False) for i, p in decoder._by_id.items()}
    return general


def _decode_all(decoder: Decoder, values: list[bytes]) -> list[DeletionEvent | DecodeError]:
    """A poll's worth decoded one value at a time, a DecodeError kept in its place: how a flush
    decodes (pipeline/flush.py)."""
    out: list[DeletionEvent | DecodeError] = []
    append, decode = out.append, decoder.decode
    for value in values:
        try:
            append(decode(value))
        except DecodeError as exc:
            append(exc)
    return out


def _decoded(decoder: Decoder, values: list[bytes]) -> list[DeletionEvent]:
    return [e for e in _decode_all(decoder, values) if isinstance(e, DeletionEvent)]


def _with_python_scan(run: Callable[[], object]) -> object:
    """`run` with the event reader's scan in Python, as where consumer/avro/_scan.c is not built."""
    compiled = event_reader.scan
    event_reader.scan = event_reader.scan_py
    try:
        return run()
    finally:
        event_reader.scan = compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.events, args.repeat

    store = SchemaStore.from_directory()
    reader = store.reader
    encoder = Encoder(store)
    events = _events(n, random.Random(42))
    records = [event_to_record(e) for e in events]
    bodies = [encode_record(r, reader) for r in records]
    single = [encoder.single_object(r) for r in records]
    confluent = [encoder.confluent(r, 1) for r in records]
    decoder = Decoder(store, _InMemoryRegistry(json.dumps(reader.parsed)))
    decoder.decode(confluent[0])  # the one registry lookup, outside the timing

    parsed, stripped = reader.parsed, reader.decoding
    decoded = [
        schemaless_reader(BytesIO(b), stripped, None, return_record_name=True) for b in bodies
    ]
    assert [event_from_record(r) for r in decoded] == events
    assert _decode_all(decoder, single) == events
    v1 = AvroSchema.parse((default_schema_dir() / "deletion_event.v1.avsc").read_text())
    assert v1.fingerprint in store.writers
    single_v1 = [encoder.single_object(_v1_record(e), v1) for e in events]
    general = _general_only(decoder)
    assert _decode_all(decoder, single_v1) == _decode_all(general, single_v1) == events

    runs: dict[str, Callable[[], object]] = {
        "(a) fastavro schemaless_reader, reader schema as written": lambda: [
            schemaless_reader(BytesIO(b), parsed, parsed, return_record_name=True) for b in bodies
        ],
        "(a') fastavro schemaless_reader, logical types dropped": lambda: [
            schemaless_reader(BytesIO(b), stripped, None, return_record_name=True) for b in bodies
        ],
        "    event_from_record alone": lambda: list(map(event_from_record, decoded)),
        "(b) Decoder.decode, single-object": lambda: list(map(decoder.decode, single)),
        "(b) Decoder.decode, Confluent": lambda: list(map(decoder.decode, confluent)),
        "(b) a flush's decode loop, single-object": lambda: _decode_all(decoder, single),
        "(v1) the same, version-1 writers": lambda: _decode_all(decoder, single_v1),
        "(v1) the same, general path only (fastavro resolution)": lambda: _decode_all(
            general, single_v1
        ),
        "(b') the same with the Python scan (no C compiler)": lambda: _with_python_scan(
            lambda: _decode_all(decoder, single)
        ),
        "(c) decode + plan, flushes of 5000 (the consumer's hot path)": lambda: [
            plan(_decoded(decoder, single[i : i + 5000]), PLATFORM)
            for i in range(0, len(single), 5000)
        ],
    }
    rows = list(cpu_rates(runs, n, repeat).items())
    bare = rows[0][1]
    scan = "compiled" if event_reader.COMPILED else "in Python (consumer/avro/_scan.c not built)"
    print(f"{n} mixed events, best of {repeat}; Python {sys.version.split()[0]}; scan {scan}")
    for label, rate in rows:
        print(f"{label:<58} {rate:>10,.0f} events/s   {rate / bare:5.2f}x (a)")


if __name__ == "__main__":
    main()
