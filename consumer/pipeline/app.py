"""The loop: poll -> decode -> plan -> call -> mark done -> commit.

Records are gathered into flushes (by count, bytes or wait, whichever comes first); each flush is
decoded, planned and carried out as its own task, so the loop keeps polling while calls are in
flight. An offset is committed only once its event, and every earlier one of its partition, is
done or dead-lettered. Under backpressure (too many events or operations in flight, or the
downstream halted) the partitions are paused and polling goes on, so the group membership holds.

confluent-kafka's consumer is not thread-safe and its calls block, so every consumer call runs
on one dedicated thread. Rebalance callbacks fire on that thread, inside `consume`; they hand
their work to the event loop and wait for it, which is safe because the loop is then free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from consumer.avro.codec import Decoder
from consumer.core.guard import DlqGuard
from consumer.core.offsets import OffsetTracker, PartitionOffsets
from consumer.kafka.producer import AsyncProducer
from consumer.kafka.receipt_sink import ReceiptSink
from consumer.mem0.client import Mem0Client
from consumer.mem0.downstream import Downstream, DownstreamState
from consumer.pipeline.executor import Executor
from consumer.pipeline.flush import DeadLetterSink, Flush, Load, Record
from consumer.settings import Settings
from consumer.telemetry.metrics import Metrics
from consumer.telemetry.progress import ProgressLog

__all__ = ["ConsumerApp"]

log = logging.getLogger(__name__)
T = TypeVar("T")
TP = tuple[str, int]

# How long a revoke may wait for in-flight work of the partitions it takes away; what does not
# finish by then is dropped, and the new owner redoes it.
_REVOKE_BUDGET_S = 5.0
# Once the in-flight budget is spent, take more in when a full flush fits again, or at the
# latest once in-flight events and operations fall below this share of their limits: a flush is
# then taken in while the others still run, where waiting for half the budget made the work go
# in waves.
_RESUME_SHARE = 0.5
# A spent budget first only holds consuming off: librdkafka keeps its prefetched messages. Only
# if it lasts this long are the partitions paused (which drops them, and a resume fetches them
# again: ~0.2 s each time, the id clean-up's main idle at every cycle), so that polling goes on
# to serve rebalances.
_HOLD_BEFORE_PAUSE_S = 2.0
_DLQ_RETRY_CAP_S = 30.0


class ConsumerApp:
    def __init__(
        self,
        settings: Settings,
        *,
        consumer: Consumer,
        producer: AsyncProducer,
        client: Mem0Client,
        decoder: Decoder,
        metrics: Metrics,
        receipts: ReceiptSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        guard = DlqGuard(
            window=settings.dlq_guard_window,
            max_share=settings.dlq_guard_max_share,
            min_events=settings.dlq_guard_min_events,
            # Taking stops at the event budget; a poll's batch may overshoot it.
            horizon=2 * settings.max_in_flight_events,
        )
        self._dead_letters = DeadLetterSink(
            producer,
            topic=settings.dlq_topic,
            group=settings.group_id,
            metrics=metrics,
            guard=guard,
        )
        self._receipts = receipts
        self._client = client
        self._decoder = decoder
        self._metrics = metrics
        self._clock = clock
        self._kafka = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka")
        self._tracker: OffsetTracker[TP] = OffsetTracker()
        self._buffer: list[Record] = []
        self._buffer_bytes = 0
        self._buffer_started = 0.0
        self._assignment: set[TP] = set()
        self._paused: set[TP] = set()
        self._holding_since: float | None = None  # when the in-flight budget was spent
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._progress = asyncio.Event()  # set whenever work finishes: room may have freed
        self._load = Load(eased=self._progress.set)  # the Mem0 work behind the events in flight
        self._decode_turn = asyncio.Lock()  # flushes decode one at a time (see Flush.run)
        self._summaries = ProgressLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._downstream: Downstream | None = None
        self._executor: Executor | None = None
        self._stopping = False

    # -- public -------------------------------------------------------------------------------

    def assigned_partitions(self) -> frozenset[TP]:
        """The partitions this member owns now; call it on the event loop."""
        return frozenset(self._assignment)

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: an assignment, a downstream that is not halted, no tripped guard."""
        if not self._assignment:
            return False, "no partition assigned"
        if self._downstream is not None and self._downstream.state is DownstreamState.HALTED:
            return False, self._downstream.describe_halt()
        if self._dead_letters.held:
            return False, "dead-letter guard tripped"
        return True, "ok"

    async def run(
        self,
        stop: asyncio.Event,
        *,
        downstream: Downstream,
        executor: Executor,
        force: asyncio.Event | None = None,
    ) -> None:
        """Consume until `stop` is set, then drain what is in flight, commit, and close.

        Setting `force` (a second signal) cuts the drain short; only finished work is committed
        either way.
        """
        self._loop = asyncio.get_running_loop()
        self._downstream = downstream
        self._executor = executor
        settings = self._settings
        await self._on_kafka(
            self._consumer.subscribe,
            list(settings.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        last_commit = self._clock()
        max_wait = settings.flush_max_wait_ms / 1000
        try:
            while not stop.is_set():
                now = self._clock()
                wait = max_wait if not self._buffer else self._buffer_started + max_wait - now
                # A flush is no larger than the in-flight budget has room for.
                cap = max(1, min(settings.flush_max_events, self._room()))
                room = max(1, cap - len(self._buffer))
                timeout = max(0.0, min(wait, 0.5))
                if self._paused or self._holding_since is not None:
                    # Paused partitions bring nothing, and a spent budget takes nothing: a
                    # blocking poll would only hide the moment work finishes and room frees.
                    # Wait for that instead.
                    self._progress.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._progress.wait(), timeout)
                    timeout = 0.0
                if self._holding_since is None or self._paused:
                    # Paused, the poll does not block and still serves rebalances.
                    self._take(await self._on_kafka(self._consumer.consume, room, timeout))
                now = self._clock()
                if self._buffer and (
                    len(self._buffer) >= cap
                    or self._buffer_bytes >= settings.flush_max_bytes
                    or now - self._buffer_started >= max_wait
                ):
                    self._dispatch()
                if now - last_commit >= settings.commit_interval_ms / 1000:
                    await self._commit()
                    last_commit = now
                await self._apply_backpressure()
        finally:
            await self._shut_down(force or asyncio.Event())

    # -- consuming ----------------------------------------------------------------------------

    async def _on_kafka(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._kafka, lambda: call(*args, **kwargs))

    def _take(self, messages: list[Message]) -> None:
        if not messages:
            return
        # Per message only what must be: a poll brings thousands, mostly in runs of one
        # partition, so the partition's state is looked up once per run.
        buffer, assignment, tracker = self._buffer, self._assignment, self._tracker
        if not buffer:
            self._buffer_started = self._clock()
        guard = self._dead_letters.guard
        first = ordinal = guard.consumed
        size = 0
        run: TP | None = None  # the partition of the run, set at its first message
        state, epoch = PartitionOffsets(), 0
        for message in messages:
            error = message.error()
            if error is not None:
                log.warning("consumer error: %s", error.str(), extra={"code": error.code()})
                continue
            tp = (message.topic(), message.partition())
            if tp != run:
                if tp not in assignment:
                    continue  # revoked while this batch was being fetched
                state, epoch = tracker.track(tp)
                run = tp
            offset = message.offset() or 0  # None only on errors
            state.add(offset)
            buffer.append(Record(message, run, offset, epoch, ordinal))
            ordinal += 1
            value = message.value()
            if value:
                size += len(value)
        guard.consume(ordinal - first)
        self._buffer_bytes += size

    def _dispatch(self) -> None:
        records, self._buffer, self._buffer_bytes = self._buffer, [], 0
        self._in_flight += len(records)
        self._load.unplanned += len(records)
        self._metrics.in_flight_events.set(self._in_flight)
        assert self._executor is not None
        flush = Flush(
            records,
            decoder=self._decoder,
            caps=self._client.caps,
            executor=self._executor,
            dead_letters=self._dead_letters,
            metrics=self._metrics,
            settle=self._done,
            report=self._summaries.flush_done,
            receipts=self._receipts,
            turn=self._decode_turn,
            load=self._load,
        )
        task = asyncio.get_running_loop().create_task(flush.run())
        self._tasks.add(task)
        task.add_done_callback(self._flush_finished)

    def _flush_finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug, not a bad event: its records stay uncommitted, so nothing is lost, but the
            # partition stalls behind them; say so loudly.
            log.error("flush failed; its offsets stay uncommitted", exc_info=task.exception())

    def _room(self) -> int:
        """Events that may still be taken in before either in-flight budget is spent.

        Buffered events weigh one operation each, as unplanned ones do (see `Load`).
        """
        settings, buffered = self._settings, len(self._buffer)
        return min(
            settings.max_in_flight_events - self._in_flight - buffered,
            settings.max_in_flight_operations - self._load.work - buffered,
        )

    def _room_again(self) -> bool:
        """Whether, after the budget was spent, enough has finished to take more in."""
        settings = self._settings
        return self._room() >= settings.flush_max_events or (
            self._in_flight < settings.max_in_flight_events * _RESUME_SHARE
            and self._load.work < settings.max_in_flight_operations * _RESUME_SHARE
        )

    async def _apply_backpressure(self) -> None:
        now = self._clock()
        if self._holding_since is None:
            if self._room() <= 0:
                self._holding_since = now
        elif self._room_again():
            self._holding_since = None
        # While Mem0 is not answering well, or dead letters are held, more events would only
        # pile up in memory: they wait in Kafka instead.
        struggling = self._dead_letters.held or (
            self._downstream is not None and self._downstream.struggling()
        )
        held_long = (
            self._holding_since is not None and now - self._holding_since >= _HOLD_BEFORE_PAUSE_S
        )
        if held_long or (struggling and self._in_flight > 0):
            to_pause = self._assignment - self._paused
            if to_pause:
                await self._on_kafka(self._consumer.pause, _partitions(to_pause))
                self._paused |= to_pause
                self._metrics.partitions_paused.set(len(self._paused))
        elif self._paused and self._holding_since is None and self._room_again():
            to_resume = self._paused & self._assignment
            if to_resume:
                await self._on_kafka(self._consumer.resume, _partitions(to_resume))
            self._paused.clear()
            self._metrics.partitions_paused.set(0)

    def _done(self, records: list[Record]) -> None:
        mark_done = self._tracker.mark_done
        for record in records:
            mark_done(record.tp, record.offset, record.epoch)
        self._in_flight -= len(records)
        self._metrics.in_flight_events.set(self._in_flight)
        self._progress.set()

    # -- committing ---------------------------------------------------------------------------

    async def _commit(self) -> None:
        positions = self._tracker.committable()
        if not positions:
            return
        try:
            await self._on_kafka(
                self._consumer.commit, offsets=_offsets(positions), asynchronous=False
            )
        except KafkaException as exc:
            log.warning("commit failed, retrying at the next interval: %s", exc.args[0])
            return
        self._tracker.confirm(positions)
        self._metrics.mark_commit(time.time())

    # -- rebalancing (these run on the kafka thread, inside consume) --------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._call_on_loop(self._assign(tps))
        log.info("partitions assigned", extra={"count": len(tps)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        # While shutting down, in-flight work has had its chance already.
        budget = 0.0 if self._stopping else _REVOKE_BUDGET_S
        positions = self._call_on_loop(self._release(tps, budget, commit=True))
        if positions:
            try:
                consumer.commit(offsets=_offsets(positions), asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc.args[0])
        log.info("partitions revoked", extra={"count": len(tps)})

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost partitions may already belong to another member: commit nothing for them.
        tps = {(p.topic, p.partition) for p in partitions}
        self._call_on_loop(self._release(tps, 0.0, commit=False))
        log.warning("partitions lost", extra={"count": len(tps)})

    def _call_on_loop(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _assign(self, tps: set[TP]) -> None:
        self._tracker.assign(tps)
        self._assignment |= tps
        self._metrics.partitions_assigned.set(len(self._assignment))

    async def _release(self, tps: set[TP], budget_s: float, *, commit: bool) -> dict[TP, int]:
        """Stop new work for these partitions, let in-flight work finish within the budget,
        and return the positions to commit for them (none when `commit` is false)."""
        self._assignment -= tps
        self._paused -= tps
        self._metrics.partitions_assigned.set(len(self._assignment))
        for topic, partition in tps:
            self._metrics.forget_partition(topic, partition)
        kept = [record for record in self._buffer if record.tp not in tps]
        dropped = len(self._buffer) - len(kept)
        self._buffer = kept
        self._buffer_bytes = sum(len(r.message.value() or b"") for r in kept)
        deadline = self._clock() + budget_s
        while self._pending(tps) > dropped and self._clock() < deadline:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - self._clock())
            except TimeoutError:
                break
        positions = self._tracker.committable(tps) if commit else {}
        self._tracker.revoke(tps)
        return positions

    def _pending(self, tps: set[TP]) -> int:
        return sum(
            self._tracker.partitions[tp].in_flight for tp in tps if tp in self._tracker.partitions
        )

    # -- shutting down ------------------------------------------------------------------------

    async def _shut_down(self, force: asyncio.Event) -> None:
        self._stopping = True
        # Buffered records were never started: leave them uncommitted for the next owner.
        if self._tasks:
            log.info("draining in-flight work", extra={"tasks": len(self._tasks)})
            if self._dead_letters.held:
                force.set()  # held dead letters would wait for ever: nothing to drain
            forced = asyncio.ensure_future(force.wait())
            drained = asyncio.ensure_future(_all_settled(self._tasks))
            await asyncio.wait(
                {drained, forced},
                timeout=self._settings.shutdown_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            forced.cancel()
            if not drained.done():
                log.warning("shutdown: in-flight work abandoned, it stays uncommitted")
                drained.cancel()
                await asyncio.gather(drained, return_exceptions=True)
        await self._commit()
        self._summaries.emit()
        await self._on_kafka(self._consumer.close)
        self._kafka.shutdown(wait=True)


async def _all_settled(tasks: set[asyncio.Task[None]]) -> bool:
    await asyncio.gather(*tasks, return_exceptions=True)
    return True


def _partitions(tps: set[TP]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic, partition in sorted(tps)]


def _offsets(positions: dict[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, offset) for (t, p), offset in sorted(positions.items())]
