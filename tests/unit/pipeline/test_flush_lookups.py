"""A flush whose records name schema ids not known yet (issue 16): the known ones are carried out
at once while the lookups wait; the waiting ones are decoded when their answer comes, junk is
dead-lettered byte for byte, every record is settled once, and junk among valid events does not
trip the dead-letter guard."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry

from consumer.avro.codec import Decoder, Encoder, SchemaStore, default_schema_dir
from consumer.avro.framing import frame_confluent
from consumer.avro.registry import SchemaNotFound
from consumer.avro.schema_ids import LookupLimits
from consumer.core.events import DeletionEvent, EventType, Scope
from consumer.core.guard import DlqGuard
from consumer.core.offsets import OffsetTracker
from consumer.core.retry import RetryPolicy
from consumer.kafka.dead_letter_sink import DeadLetterSink
from consumer.mem0.downstream import Downstream
from consumer.pipeline.executor import Executor
from consumer.pipeline.flush import Flush, FlushParts
from consumer.pipeline.in_flight import InFlight, Record
from consumer.telemetry.metrics import Metrics
from consumer.telemetry.progress import ProgressLog
from tests.unit.pipeline.fakes import Letters, Mem0, Msg

STORE = SchemaStore.from_directory()
ENCODER = Encoder(STORE)
READER_TEXT = (default_schema_dir() / "deletion_event.avsc").read_text()
TP = ("deletions", 0)
KNOWN, NEW = 1, 2  # registered; KNOWN is looked up before the flush, NEW is met in it


class Registry:
    """Holds every call at `gate` once it is cleared."""

    def __init__(self) -> None:
        self.schemas = {KNOWN: READER_TEXT, NEW: READER_TEXT}
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def get_schema(self, schema_id: int) -> str:
        self.calls.append(schema_id)
        self.gate.wait(10)
        if schema_id not in self.schemas:
            raise SchemaNotFound(f"schema id {schema_id}")
        return self.schemas[schema_id]


def _erasure(user: str) -> DeletionEvent:
    return DeletionEvent(
        f"0b5c1f0e-{abs(hash(user)) % 0xFFFF:04x}-4c3a-9d59-0f1c6e4b2a01",
        1_700_000_000_000,
        EventType.SCOPE_DELETED,
        Scope.of(user_id=user),
    )


async def _until(condition: Any, changed: asyncio.Event) -> None:
    while not condition():
        changed.clear()
        await asyncio.wait_for(changed.wait(), 5)


def test_known_ids_go_at_once_the_rest_when_looked_up_and_junk_does_not_trip_the_guard() -> None:
    registry = Registry()
    mem0 = Mem0()
    letters = Letters()

    async def go() -> tuple[InFlight, DlqGuard, OffsetTracker[tuple[str, int]]]:
        # Room for every id at once, and no pacing: this is about the flush (schema_ids.py's
        # tests have the limits).
        limits = LookupLimits(rate=1000.0, burst=1000, max_pending=1000)
        decoder = Decoder(STORE, registry, defer_lookups=True, lookup_limits=limits)
        await asyncio.wait([decoder.look_up(KNOWN)])  # met in an earlier flush
        metrics = Metrics(CollectorRegistry())
        downstream = Downstream(mem0)
        tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
        tracker.assign({TP})
        in_flight = InFlight(tracker, metrics)
        # Half the window's share, in a window of ten: eight records in ten are junk here.
        guard = DlqGuard(window=10, max_share=0.5, min_events=1)
        parts = FlushParts(
            decoder=decoder,
            caps=mem0.caps,
            executor=Executor(mem0, downstream, RetryPolicy(), job_poll_s=0.0),
            dead_letters=DeadLetterSink(
                letters, topic="dlq", group="g", metrics=metrics, guard=guard
            ),
            metrics=metrics,
            in_flight=in_flight,
            summaries=ProgressLog(),
        )
        values: list[bytes] = []
        for n in range(10):
            values.append(ENCODER.confluent(_erasure(f"known-{n}"), KNOWN))
            values.append(ENCODER.confluent(_erasure(f"new-{n}"), NEW))
            values.extend(frame_confluent(os.urandom(16), 1000 + 10 * n + j) for j in range(7))
            values.append(frame_confluent(b"\xff" * 16, KNOWN))  # a known id, no event
        state, epoch = tracker.track(TP)
        guard.consume(len(values))
        records = []
        for offset, value in enumerate(values):
            state.add(offset)
            records.append(Record(Msg(TP[1], offset, value), TP, offset, epoch, offset))
        in_flight.dispatched(len(records))

        registry.gate.clear()  # every lookup hangs
        flush = asyncio.ensure_future(Flush(records, parts).run())
        known = {f"known-{n}" for n in range(10)}
        await _until(lambda: known <= set(mem0.deleted), mem0.changed)
        assert not any(user.startswith("new-") for user in mem0.deleted)
        registry.gate.set()
        await asyncio.wait_for(flush, 10)
        await downstream.aclose()
        decoder.close()
        return in_flight, guard, tracker

    in_flight, guard, tracker = asyncio.run(go())
    assert set(mem0.deleted) == {f"{kind}-{n}" for kind in ("known", "new") for n in range(10)}
    assert not guard.tripped
    reasons = Counter(headers["dlq.reason"] for _, headers in letters.sent)
    assert reasons == {b"unknown_schema": 70, b"decode_error": 10}
    assert (in_flight.events, in_flight.unplanned, in_flight.operations) == (0, 0, 0)
    assert tracker.committable() == {TP: 100}
    # One lookup per id: the new valid one and each junk id, once.
    assert Counter(registry.calls) == Counter([KNOWN, NEW, *range(1000, 1100)]) - Counter(
        n for n in range(1000, 1100) if n % 10 >= 7
    )
