"""Test harness: publish to a real broker, run the real consumer in a thread, wait for commits."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from consumer.core.dlq import headers_of
from consumer.kafka.broker import committed_positions
from consumer.settings import Settings

TP = tuple[str, int]


@dataclass
class Topics:
    input: str
    dlq: str
    receipts: str
    group: str


# The suffixes `new_topics()` handed out in this process. Every topic and group a test makes is
# named after one, so they tell what the run made on a shared cluster from what others keep
# there: tests/conftest.py deletes the run's own when the session ends.
_ISSUED_SUFFIXES: set[str] = set()


def new_topics() -> Topics:
    suffix = uuid.uuid4().hex[:10]
    _ISSUED_SUFFIXES.add(suffix)
    return Topics(
        input=f"memory.deletions.{suffix}",
        dlq=f"memory.deletions.dlq.{suffix}",
        receipts=f"memory.deletions.receipts.{suffix}",
        group=f"test-{suffix}",
    )


def made_by_this_run(name: str) -> bool:
    """Whether a topic or group is named after a suffix `new_topics()` gave in this process:
    `memory.deletions.dlq.<suffix>`, `<receipts>.wide`, `test-<suffix>`, `test-<suffix>.replay`,
    `test-<suffix>.receipts-lookup`... (the suffix a word of the name, not a part of one)."""
    return not _ISSUED_SUFFIXES.isdisjoint(re.split(r"[^0-9A-Za-z_]+", name))


def publish(
    bootstrap: str, topic: str, values: Iterable[tuple[bytes | None, bytes | None]], **headers: Any
) -> dict[TP, int]:
    """Publish (key, value) pairs; returns one past the last offset written per partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    ends: dict[TP, int] = {}
    errors: list[str] = []

    def delivered(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            errors.append(error.str())
            return
        tp = (message.topic(), message.partition())
        ends[tp] = max(ends.get(tp, 0), message.offset() + 1)

    header_list = [(k, v) for k, v in headers.items()] or None
    for key, value in values:
        producer.produce(topic, key=key, value=value, headers=header_list, on_delivery=delivered)
    producer.flush(30)
    assert not errors, errors
    return ends


def read_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 15.0, idle_s: float = 0.0
) -> list[Any]:
    """Read a topic from the start: at least `expected` records, then on until nothing new has
    come for `idle_s`; or whatever arrived by the timeout."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = reader.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            if len(records) >= expected and time.monotonic() - last >= idle_s:
                break
            message = reader.poll(0.1)
            if message is not None and not message.error():
                records.append(message)
                last = time.monotonic()
        return records
    finally:
        reader.close()


def header_dict(message: Any) -> dict[str, bytes | None]:
    return dict(headers_of(message))


class RunningConsumer:
    """The real consumer (`consumer.service.serve`) on its own event loop in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="consumer-under-test", daemon=True)

    def _main(self) -> None:
        from consumer.service import serve

        async def body() -> None:
            self._stop = asyncio.Event()
            self._started.set()
            await serve(self.settings, self._stop, registry=self.registry)

        try:
            self._loop.run_until_complete(body())
        except BaseException as exc:
            self.error = exc
            self._started.set()
        finally:
            self._loop.close()

    def start(self) -> RunningConsumer:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the consumer did not stop"
        if self.error is not None:
            raise self.error

    def __enter__(self) -> RunningConsumer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def wait_committed(
    bootstrap: str, group: str, ends: Mapping[TP, int], timeout_s: float = 60.0
) -> dict[TP, int]:
    """Block until the group has committed every `ends` position; the positions seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        committed = committed_positions(bootstrap, group, ends)
        if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
            return committed
        if time.monotonic() > deadline:
            raise AssertionError(f"not committed in {timeout_s}s: {committed} < {dict(ends)}")
        time.sleep(0.1)


def make_settings(bootstrap: str, sandbox_url: str, topics: Topics, **env: str) -> Settings:
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": topics.group,
        "KAFKA_SESSION_TIMEOUT_MS": "3000",
        "DELETION_TOPICS": topics.input,
        "DLQ_TOPIC": topics.dlq,
        "RECEIPTS_TOPIC": "",
        "MEM0_BASE_URL": sandbox_url,
        "MEM0_API_KEY": "sandbox-key",
        "METRICS_PORT": "0",
        "FLUSH_MAX_WAIT_MS": "30",
        "COMMIT_INTERVAL_MS": "100",
        "MEM0_JOB_POLL_INTERVAL_MS": "10",
        "RETRY_BASE_MS": "20",
        "RETRY_CAP_S": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    base.update(env)
    return Settings.from_sources(base)


def ends_of(records: list[Any]) -> dict[tuple[str, int], int]:
    """One past the last offset per partition, as `publish` returns them."""
    ends: dict[tuple[str, int], int] = {}
    for record in records:
        tp = (record.topic(), record.partition())
        ends[tp] = max(ends.get(tp, 0), record.offset() + 1)
    return ends


def wait_letters(kafka: str, topic: str, count: int, timeout_s: float = 20.0) -> list[Any]:
    """Exactly `count` records of `topic` (a DLQ), once they are all there."""
    deadline = time.monotonic() + timeout_s
    while True:
        letters = read_all(kafka, topic, expected=count, timeout_s=2.0)
        if len(letters) >= count or time.monotonic() > deadline:
            assert len(letters) == count, f"{len(letters)} dead letters, expected {count}"
            return letters
        time.sleep(0.1)
