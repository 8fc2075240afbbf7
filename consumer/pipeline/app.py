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
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from confluent_kafka import KafkaException, Message, TopicPartition

from consumer.core.offsets import PartitionOffsets
from consumer.mem0.downstream import Downstream, DownstreamState
from consumer.pipeline.flush import Flush, FlushParts
from consumer.pipeline.in_flight import TP, Record

__all__ = ["ConsumerApp", "KafkaConsumer", "LoopLimits"]

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class KafkaConsumer(Protocol):
    """The part of `confluent_kafka.Consumer` the loop uses (a test's fake has just these)."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[[Any, list[TopicPartition]], None] | None = ...,
        on_revoke: Callable[[Any, list[TopicPartition]], None] | None = ...,
        on_lost: Callable[[Any, list[TopicPartition]], None] | None = ...,
    ) -> None: ...

    def consume(self, num_messages: int, timeout: float) -> list[Message]: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LoopLimits:
    """The settings the loop reads: what makes a flush, the in-flight budgets, the intervals."""

    topics: tuple[str, ...]
    flush_max_events: int
    flush_max_bytes: int
    flush_max_wait_s: float
    max_in_flight_events: int
    max_in_flight_operations: int
    commit_interval_s: float
    shutdown_timeout_s: float


class ConsumerApp:
    """The loop of one group member: built with its parts (see `service.serve`), then `run`."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        parts: FlushParts,
        limits: LoopLimits,
        *,
        downstream: Downstream,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._parts = parts
        self._limits = limits
        self._downstream = downstream
        self._dead_letters = parts.dead_letters
        self._metrics = parts.metrics
        self._in_flight = parts.in_flight
        self._tracker = parts.in_flight.tracker
        self._clock = clock
        self._kafka = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka")
        self._buffer: list[Record] = []
        self._buffer_bytes = 0
        self._buffer_started = 0.0
        self._assignment: set[TP] = set()
        self._paused: set[TP] = set()
        self._holding_since: float | None = None  # when the in-flight budget was spent
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # -- public -------------------------------------------------------------------------------

    def assigned_partitions(self) -> frozenset[TP]:
        """The partitions this member owns now; call it on the event loop."""
        return frozenset(self._assignment)

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: an assignment, a downstream that is not halted, no tripped guard."""
        if not self._assignment:
            return False, "no partition assigned"
        if self._downstream.state is DownstreamState.HALTED:
            return False, self._downstream.describe_halt()
        if self._dead_letters.held:
            return False, "dead-letter guard tripped"
        return True, "ok"

    async def run(self, stop: asyncio.Event, *, force: asyncio.Event | None = None) -> None:
        """Consume until `stop` is set, then drain what is in flight, commit, and close.

        Setting `force` (a second signal) cuts the drain short; only finished work is committed
        either way.
        """
        self._loop = asyncio.get_running_loop()
        limits = self._limits
        progress = self._in_flight.progress
        await self._on_kafka(
            self._consumer.subscribe,
            list(limits.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        last_commit = self._clock()
        max_wait = limits.flush_max_wait_s
        try:
            while not stop.is_set():
                now = self._clock()
                wait = max_wait if not self._buffer else self._buffer_started + max_wait - now
                # A flush is no larger than the in-flight budget has room for.
                cap = max(1, min(limits.flush_max_events, self._room()))
                room = max(1, cap - len(self._buffer))
                timeout = max(0.0, min(wait, 0.5))
                if self._paused or self._holding_since is not None:
                    # Paused partitions bring nothing, and a spent budget takes nothing: a
                    # blocking poll would only hide the moment work finishes and room frees.
                    # Wait for that instead.
                    progress.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(progress.wait(), timeout)
                    timeout = 0.0
                if self._holding_since is None or self._paused:
                    # Paused, the poll does not block and still serves rebalances.
                    self._take(await self._on_kafka(self._consumer.consume, room, timeout))
                now = self._clock()
                if self._buffer and (
                    len(self._buffer) >= cap
                    or self._buffer_bytes >= limits.flush_max_bytes
                    or now - self._buffer_started >= max_wait
                ):
                    self._dispatch()
                if now - last_commit >= limits.commit_interval_s:
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
        self._in_flight.dispatched(len(records))
        task = asyncio.get_running_loop().create_task(Flush(records, self._parts).run())
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

        Buffered events weigh one operation each, as unplanned ones do (see `InFlight`).
        """
        limits, in_flight, buffered = self._limits, self._in_flight, len(self._buffer)
        return min(
            limits.max_in_flight_events - in_flight.events - buffered,
            limits.max_in_flight_operations - in_flight.work - buffered,
        )

    def _room_again(self) -> bool:
        """Whether, after the budget was spent, enough has finished to take more in."""
        limits, in_flight = self._limits, self._in_flight
        return self._room() >= limits.flush_max_events or (
            in_flight.events < limits.max_in_flight_events * _RESUME_SHARE
            and in_flight.work < limits.max_in_flight_operations * _RESUME_SHARE
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
        struggling = self._dead_letters.held or self._downstream.struggling()
        held_long = (
            self._holding_since is not None and now - self._holding_since >= _HOLD_BEFORE_PAUSE_S
        )
        if held_long or (struggling and self._in_flight.events > 0):
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

    def _on_assign(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._call_on_loop(self._assign(tps))
        log.info("partitions assigned", extra={"count": len(tps)})

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        # While shutting down, in-flight work has had its chance already.
        budget = 0.0 if self._stopping else _REVOKE_BUDGET_S
        positions = self._call_on_loop(self._release(tps, budget, commit=True))
        if positions:
            try:
                self._consumer.commit(offsets=_offsets(positions), asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc.args[0])
        log.info("partitions revoked", extra={"count": len(tps)})

    def _on_lost(self, _consumer: object, partitions: list[TopicPartition]) -> None:
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
        progress = self._in_flight.progress
        while self._pending(tps) > dropped and self._clock() < deadline:
            progress.clear()
            try:
                await asyncio.wait_for(progress.wait(), deadline - self._clock())
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
                timeout=self._limits.shutdown_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            forced.cancel()
            if not drained.done():
                log.warning("shutdown: in-flight work abandoned, it stays uncommitted")
                drained.cancel()
                await asyncio.gather(drained, return_exceptions=True)
        await self._commit()
        self._parts.summaries.emit()
        await self._on_kafka(self._consumer.close)
        self._kafka.shutdown(wait=True)


async def _all_settled(tasks: set[asyncio.Task[None]]) -> bool:
    await asyncio.gather(*tasks, return_exceptions=True)
    return True


def _partitions(tps: set[TP]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic, partition in sorted(tps)]


def _offsets(positions: dict[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, offset) for (t, p), offset in sorted(positions.items())]
