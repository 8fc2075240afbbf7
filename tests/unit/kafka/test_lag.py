"""The lag monitor, against a fake side client: clamping, uncommitted partitions, revokes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from consumer.kafka.lag import LagMonitor, lag_client_config, partition_lag
from consumer.telemetry.metrics import Metrics

TP = tuple[str, int]


class FakeClient:
    """Answers `committed` and `get_watermark_offsets` from dicts; records its threads."""

    def __init__(self, committed: dict[TP, int], marks: dict[TP, tuple[int, int]]) -> None:
        self.committed_offsets = committed
        self.marks = marks
        self.threads: set[str] = set()
        self.fail = False
        self.closed = False
        self.polled = threading.Semaphore(0)

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> Any:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return [
            TopicPartition(
                p.topic, p.partition, self.committed_offsets.get((p.topic, p.partition), -1001)
            )
            for p in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> Any:
        self.threads.add(threading.current_thread().name)
        return self.marks[(partition.topic, partition.partition)]

    def poll(self, timeout: float = -1) -> Any:
        self.threads.add(threading.current_thread().name)
        self.polled.release()
        return None

    def close(self) -> None:
        self.closed = True


def lag(registry: CollectorRegistry, topic: str, partition: int) -> float | None:
    return registry.get_sample_value(
        "mem0_deletion_consumer_lag", {"topic": topic, "partition": str(partition)}
    )


def test_partition_lag_counts_from_the_commit_or_the_start_and_never_goes_negative() -> None:
    assert partition_lag(low=0, high=100, committed=40) == 60
    assert partition_lag(low=10, high=100, committed=-1001) == 90  # nothing committed yet
    assert partition_lag(low=0, high=98, committed=100) == 0  # a short high watermark (Tansu)


def test_side_client_config_never_commits_nor_shares_a_static_identity() -> None:
    config = lag_client_config(
        {"bootstrap.servers": "b:9092", "group.id": "g", "group.instance.id": "pod-1"}
    )
    assert config["group.id"] == "g" and config["bootstrap.servers"] == "b:9092"
    assert config["enable.auto.commit"] is False
    assert "group.instance.id" not in config
    assert str(config["client.id"]).endswith("-lag")


def test_refresh_sets_assigned_partitions_off_the_loop_thread_and_drops_revoked_ones() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    client = FakeClient(
        committed={("t", 0): 40, ("t", 1): 100},
        marks={("t", 0): (0, 100), ("t", 1): (0, 98), ("t", 2): (5, 25)},
    )
    assigned: set[TP] = {("t", 0), ("t", 1), ("t", 2)}

    async def scenario() -> None:
        monitor = LagMonitor(client, lambda: set(assigned), metrics)
        assert await monitor.refresh() == {("t", 0): 60, ("t", 1): 0, ("t", 2): 20}
        assert (lag(registry, "t", 0), lag(registry, "t", 1), lag(registry, "t", 2)) == (60, 0, 20)
        assigned.discard(("t", 2))
        client.committed_offsets[("t", 0)] = 100
        await monitor.refresh()
        assert lag(registry, "t", 0) == 0
        assert lag(registry, "t", 2) is None  # revoked: its series is gone
        await monitor.stop()

    asyncio.run(scenario())
    assert client.threads and all(name.startswith("lag") for name in client.threads)
    assert client.closed


def test_a_failing_broker_keeps_the_last_values_and_logs_once(caplog: Any) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    client = FakeClient(committed={("t", 0): 1}, marks={("t", 0): (0, 11)})

    async def scenario() -> None:
        monitor = LagMonitor(client, lambda: {("t", 0)}, metrics)
        await monitor.refresh()
        client.fail = True
        for _ in range(3):
            assert await monitor.refresh() == {}
        assert lag(registry, "t", 0) == 10
        client.fail = False
        await monitor.refresh()
        await monitor.stop()

    with caplog.at_level("DEBUG", logger="consumer.kafka.lag"):
        asyncio.run(scenario())
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "lag measurement failed" in warnings[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"] == [
        "lag measurement recovered"
    ]


def test_the_running_monitor_measures_a_new_assignment_at_once() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    client = FakeClient(committed={}, marks={("t", 0): (0, 7)})
    assigned: set[TP] = set()

    async def scenario() -> None:
        monitor = LagMonitor(client, lambda: set(assigned), metrics, interval_s=60, tick_s=0.01)
        monitor.start()
        await asyncio.sleep(0.05)
        assert lag(registry, "t", 0) is None
        assigned.add(("t", 0))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if lag(registry, "t", 0) is not None:
                break
        assert lag(registry, "t", 0) == 7
        await monitor.stop()

    asyncio.run(scenario())


def test_the_side_client_is_polled_every_tick_even_with_nothing_assigned() -> None:
    """librdkafka queues a client's log lines and errors for its poll: unpolled, a side client
    held them all while the broker was away, growing without bound."""
    client = FakeClient(committed={}, marks={})

    async def scenario() -> None:
        monitor = LagMonitor(client, set, Metrics(CollectorRegistry()), tick_s=0.01)
        monitor.start()
        loop = asyncio.get_running_loop()
        for _ in range(3):  # three ticks' polls, each waited for (not a timed sleep)
            assert await loop.run_in_executor(None, client.polled.acquire, True, 5.0)
        await monitor.stop()

    asyncio.run(scenario())
    assert client.threads == {name for name in client.threads if name.startswith("lag")}
