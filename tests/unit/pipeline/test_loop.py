"""The loop behind the consumer protocol, with a scripted consumer and a scripted Mem0: offsets
are committed only past settled work, a full budget pauses, bad bytes go to the dead-letter
sink before their offset moves. (The same loop against a real broker: tests/integration.)"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from consumer.avro.codec import Decoder, Encoder, SchemaStore
from consumer.core.events import DeletionEvent, EventType, Scope
from consumer.core.guard import DlqGuard
from consumer.core.offsets import OffsetTracker
from consumer.core.retry import RetryPolicy
from consumer.kafka.dead_letter_sink import DeadLetterSink
from consumer.mem0.downstream import Downstream
from consumer.pipeline.app import ConsumerApp, LoopLimits
from consumer.pipeline.executor import Executor
from consumer.pipeline.flush import FlushParts
from consumer.pipeline.in_flight import InFlight
from consumer.telemetry.metrics import Metrics
from consumer.telemetry.progress import ProgressLog
from tests.unit.pipeline.fakes import TOPIC, Letters, Mem0, Msg

STORE = SchemaStore.from_directory()
ENCODER = Encoder(STORE)


class ScriptedConsumer:
    """Assigns its partitions at the first consume, then hands out its messages; records every
    pause, resume and commit. `stop` is set once `until` holds of the commits."""

    def __init__(
        self, messages: list[Msg], stop: asyncio.Event, until: Callable[[dict[int, int]], bool]
    ) -> None:
        self.messages = messages
        self.committed: dict[int, int] = {}
        self.paused: list[set[int]] = []
        self.resumed: list[set[int]] = []
        self.closed = False
        self._callbacks: dict[str, Any] = {}
        self._assigned = False
        self._stop, self._until = stop, until
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        assert topics == [TOPIC]
        self._callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        if not self._assigned:
            self._assigned = True
            partitions = sorted({m.partition() for m in self.messages})
            self._callbacks["on_assign"](self, [TopicPartition(TOPIC, p) for p in partitions])
            return []
        with self._lock:
            taken, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        return taken

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.append({p.partition for p in partitions})

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed.append({p.partition for p in partitions})

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert not asynchronous
        for tp in offsets:
            assert tp.offset >= self.committed.get(tp.partition, 0), "a commit went backwards"
            self.committed[tp.partition] = tp.offset
        if self._until(self.committed):
            self._loop.call_soon_threadsafe(self._stop.set)
        return offsets

    def close(self) -> None:
        self.closed = True


def _erasure(n: int) -> bytes:
    event = DeletionEvent(
        f"0b5c1f0e-{n:04x}-4c3a-9d59-0f1c6e4b2a01",
        1_700_000_000_000,
        EventType.SCOPE_DELETED,
        Scope.of(user_id=f"user-{n}"),
    )
    return ENCODER.single_object(event)


def _run(
    messages: list[Msg],
    until: Callable[[dict[int, int]], bool],
    *,
    mem0: Mem0 | None = None,
    max_in_flight: int = 1000,
    during: Callable[[ScriptedConsumer, Mem0], Any] | None = None,
) -> tuple[ScriptedConsumer, Mem0, Letters]:
    mem0 = mem0 or Mem0()
    letters = Letters()

    async def go() -> ScriptedConsumer:
        stop = asyncio.Event()
        consumer = ScriptedConsumer(messages, stop, until)
        metrics = Metrics(CollectorRegistry())
        downstream = Downstream(mem0)
        parts = FlushParts(
            decoder=Decoder(STORE),
            caps=mem0.caps,
            executor=Executor(mem0, downstream, RetryPolicy(), job_poll_s=0.0),
            dead_letters=DeadLetterSink(
                letters, topic="dlq", group="g", metrics=metrics, guard=DlqGuard(max_share=1.0)
            ),
            metrics=metrics,
            in_flight=InFlight(OffsetTracker(), metrics),
            summaries=ProgressLog(),
        )
        limits = LoopLimits(
            topics=(TOPIC,),
            flush_max_events=10,
            flush_max_bytes=1 << 20,
            flush_max_wait_s=0.005,
            max_in_flight_events=max_in_flight,
            max_in_flight_operations=max_in_flight,
            commit_interval_s=0.0,
            shutdown_timeout_s=5.0,
        )
        app = ConsumerApp(consumer, parts, limits, downstream=downstream)
        running = asyncio.ensure_future(app.run(stop))
        if during is not None:
            await during(consumer, mem0)
        await asyncio.wait_for(running, 20)
        await downstream.aclose()
        return consumer

    return asyncio.run(go()), mem0, letters


def _ends(messages: Collection[Msg]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for m in messages:
        ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
    return ends


def test_every_event_is_deleted_and_committed_past_its_offset() -> None:
    messages = [Msg(n % 2, n // 2, _erasure(n)) for n in range(40)]
    ends = _ends(messages)
    consumer, mem0, letters = _run(messages, lambda c: c == ends)
    assert consumer.committed == ends and consumer.closed
    assert set(mem0.deleted) == {f"user-{n}" for n in range(40)}
    assert letters.sent == []


def test_bad_bytes_are_dead_lettered_before_their_offset_is_committed() -> None:
    messages = [Msg(0, 0, _erasure(0)), Msg(0, 1, b"not avro"), Msg(0, 2, _erasure(2))]
    consumer, _mem0, letters = _run(messages, lambda c: c.get(0) == 3)
    assert consumer.committed == {0: 3}
    [(value, headers)] = letters.sent
    assert value == b"not avro"
    assert headers["dlq.reason"] == b"decode_error" and headers["origin"] == b"test"


def test_nothing_is_committed_past_work_in_flight_and_a_spent_budget_pauses() -> None:
    messages = [Msg(0, n, _erasure(n)) for n in range(30)]
    mem0 = Mem0()
    mem0.gate.clear()  # Mem0 does not answer until the test says so

    async def during(consumer: ScriptedConsumer, mem0: Mem0) -> None:
        # The budget (10 events) is spent with nothing settled: the loop holds, then pauses
        # its partition (after 2 s of holding), and commits nothing meanwhile.
        for _ in range(400):
            if consumer.paused:
                break
            await asyncio.sleep(0.01)
        assert consumer.paused == [{0}]
        assert consumer.committed == {}
        mem0.gate.set()

    consumer, mem0, _ = _run(
        messages, lambda c: c.get(0) == 30, mem0=mem0, max_in_flight=10, during=during
    )
    assert consumer.committed == {0: 30}
    assert consumer.resumed and sum(mem0.deleted.values()) == 30
