"""`consumer_lag`: per assigned partition, the high watermark minus the group's committed offset.

The consume loop's Kafka client is not thread-safe and each of its calls blocks, so the lag is
read through a client of its own: a consumer in the same group that never subscribes and never
commits, used only for `committed` and `get_watermark_offsets`, on its own thread. The loop
pays nothing for it; a slow broker delays the gauge, never the consumer.

A partition with nothing committed counts from its low watermark (where `auto.offset.reset=
earliest` starts). Some brokers (Tansu) report a high watermark short of the end after a
multi-record batch, so the lag is clamped at 0 rather than ever shown negative.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import KafkaException, TopicPartition

from consumer.telemetry.metrics import Metrics

__all__ = ["LagClient", "LagMonitor", "lag_client_config", "partition_lag"]

log = logging.getLogger(__name__)

TP = tuple[str, int]


class LagClient(Protocol):
    """The part of `confluent_kafka.Consumer` the monitor uses."""

    def committed(self, partitions: list[TopicPartition], timeout: float = ...) -> Any: ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> Any: ...

    def poll(self, timeout: float = ...) -> Any: ...

    def close(self) -> None: ...


def lag_client_config(consumer_config: Mapping[str, object]) -> dict[str, object]:
    """The consumer's configuration (brokers, security, group) for a read-only side client."""
    config = dict(consumer_config)
    # A second member with the same static id would fence the real one, were it ever to join.
    config.pop("group.instance.id", None)
    config["enable.auto.commit"] = False
    config["client.id"] = f"{config.get('client.id', 'mem0-deletion-consumer')}-lag"
    return config


def partition_lag(low: int, high: int, committed: int) -> int:
    """Messages between the committed position (the low watermark if none) and the end."""
    position = committed if committed >= 0 else low
    return max(0, high - position)


class LagMonitor:
    """Sets `consumer_lag` for the partitions `assigned()` returns, every `interval_s`.

    It measures at once when the assignment changes, so a new partition's series appears
    within about `tick_s`; it drops the series of a partition no longer assigned. `assigned`
    is called on the event loop, where the app changes its assignment.
    """

    def __init__(
        self,
        client: LagClient,
        assigned: Callable[[], Collection[TP]],
        metrics: Metrics,
        *,
        interval_s: float = 10.0,
        timeout_s: float = 5.0,
        tick_s: float = 1.0,
    ) -> None:
        self._client = client
        self._assigned = assigned
        self._metrics = metrics
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._tick_s = min(tick_s, interval_s)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lag")
        self._reported: set[TP] = set()
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lag")

    async def stop(self) -> None:
        """Stop measuring and close the side client (after a measurement under way ends)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.get_running_loop().run_in_executor(self._thread, self._client.close)
        self._thread.shutdown(wait=False)

    async def refresh(self) -> dict[TP, int]:
        """Measure now, set the gauges of the partitions still assigned; the lags measured."""
        wanted = sorted(self._assigned())
        loop = asyncio.get_running_loop()
        lags = await loop.run_in_executor(self._thread, self._measure, wanted) if wanted else {}
        # The assignment may have changed while the broker answered: revoked partitions must
        # not come back (the app already dropped their series).
        current = set(self._assigned())
        for topic, partition in self._reported - current:
            self._metrics.forget_partition(topic, partition)
        self._reported &= current
        for (topic, partition), lag in lags.items():
            if (topic, partition) in current:
                self._metrics.set_lag(topic, partition, lag)
                self._reported.add((topic, partition))
        return lags

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        measured: frozenset[TP] = frozenset()
        due = 0.0
        while True:
            assigned = frozenset(self._assigned())
            if assigned != measured or (assigned and loop.time() >= due):
                try:
                    await self.refresh()
                except Exception:  # a bug here must not take the consumer down with it
                    log.exception("measuring the lag failed")
                measured, due = assigned, loop.time() + self._interval_s
            # The side client is never polled otherwise, and librdkafka queues its log lines
            # and error events for a poll: with the broker away they piled up (about 16 KiB/s)
            # until close. Served every tick, they reach the logger as they come.
            await loop.run_in_executor(self._thread, self._client.poll, 0)
            await asyncio.sleep(self._tick_s)

    # -- on the lag thread -------------------------------------------------------------------

    def _measure(self, wanted: list[TP]) -> dict[TP, int]:
        asked = [TopicPartition(topic, partition) for topic, partition in wanted]
        try:
            answers = self._client.committed(asked, timeout=self._timeout_s)
        except KafkaException as exc:
            self._failed("reading committed offsets", exc)
            return {}
        lags: dict[TP, int] = {}
        for answer in answers:
            if answer.error is not None:
                continue
            tp = TopicPartition(answer.topic, answer.partition)
            try:
                marks = self._client.get_watermark_offsets(
                    tp, timeout=self._timeout_s, cached=False
                )
            except KafkaException as exc:
                self._failed("reading watermarks", exc)
                return lags  # the broker is struggling: try the rest next time
            if marks is None:  # timed out
                self._failed("reading watermarks", "timed out")
                return lags
            low, high = marks
            lags[(answer.topic, answer.partition)] = partition_lag(low, high, answer.offset)
        if self._failing:
            self._failing = False
            log.info("lag measurement recovered")
        return lags

    def _failed(self, what: str, error: object) -> None:
        # One line when it starts failing, not one every interval while the broker is away.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        detail = error.args[0] if isinstance(error, KafkaException) and error.args else error
        log.log(level, "lag measurement failed: %s: %s", what, detail)
