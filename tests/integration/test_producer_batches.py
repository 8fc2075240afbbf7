"""A batch of records produced with one waiter: every record lands, a refused one is named,
and only the refused are sent again. Both batch producers are held to it: `AsyncProducer`
(a report per record) and `BatchProducer` (reports of failures only, one batch out at a time)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from consumer.kafka.batch_producer import BatchProducer
from consumer.kafka.broker import free_port
from consumer.kafka.producer import (
    AsyncProducer,
    Message,
    Refusal,
    produce_all_until_delivered,
)
from tests.support.harness import Topics, read_all

PRODUCERS = pytest.mark.parametrize("make", [AsyncProducer, BatchProducer])
Make = type[AsyncProducer]


def messages(pairs: Sequence[tuple[bytes, bytes]]) -> list[Message]:
    return [{"key": key, "value": value} for key, value in pairs]


@PRODUCERS
def test_a_batch_returns_once_every_record_is_on_the_topic(
    kafka: str, topics: Topics, make: Make
) -> None:
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(2000)]

    async def main() -> list[Refusal]:
        producer = make(
            {"bootstrap.servers": kafka, "acks": "all", "linger.ms": 5},
            asyncio.get_running_loop(),
        )
        try:
            return await producer.send_batch(topics.receipts, messages(records))
        finally:
            producer.close(5)

    assert asyncio.run(main()) == []
    landed = read_all(kafka, topics.receipts, expected=len(records))
    assert sorted((m.key(), m.value()) for m in landed) == sorted(records)


def test_batches_sent_together_on_a_batch_producer_each_return_once_theirs_landed(
    kafka: str, topics: Topics
) -> None:
    """One batch is out at a time: the second waits for the first, and each returns only when
    nothing of its own is left unacknowledged."""

    async def main() -> list[list[Refusal]]:
        producer = BatchProducer({"bootstrap.servers": kafka}, asyncio.get_running_loop())
        try:
            batches = [
                messages([(f"{n}-{i}".encode(), b"v") for i in range(500)]) for n in range(3)
            ]
            return await asyncio.gather(
                *(producer.send_batch(topics.receipts, batch) for batch in batches)
            )
        finally:
            producer.close(5)

    assert asyncio.run(main()) == [[], [], []]
    assert len(read_all(kafka, topics.receipts, expected=1500)) == 1500


def test_a_batch_producer_reports_records_no_broker_took() -> None:
    """With success reports off, a failure must still be reported: records that time out with
    no broker to take them come back refused, not acknowledged."""

    async def main() -> list[Refusal]:
        producer = BatchProducer(
            {
                "bootstrap.servers": f"127.0.0.1:{free_port()}",
                "message.timeout.ms": 300,
                "log_level": 0,  # its connection failures are expected
            },
            asyncio.get_running_loop(),
        )
        try:
            return await asyncio.wait_for(
                producer.send_batch("t", messages([(b"a", b"1"), (b"b", b"2")])), 10
            )
        finally:
            producer.close(0)

    refused = asyncio.run(main())
    assert sorted(message["key"] for message, _error in refused) == [b"a", b"b"]
    assert all("timed out" in error.lower() for _message, error in refused)


def test_a_batch_producer_refuses_a_single_send(kafka: str) -> None:
    async def main() -> None:
        producer = BatchProducer({"bootstrap.servers": kafka}, asyncio.get_running_loop())
        try:
            await producer.send("t", key=b"k", value=b"v", headers=None)
        finally:
            producer.close(1)

    with pytest.raises(TypeError, match="batches only"):
        asyncio.run(main())


@PRODUCERS
def test_records_a_full_local_queue_turned_away_are_queued_again(
    kafka: str, topics: Topics, make: Make
) -> None:
    records = [(f"k{i}".encode(), b"v") for i in range(300)]

    async def main() -> list[Refusal]:
        producer = make(
            {"bootstrap.servers": kafka, "queue.buffering.max.messages": 20},
            asyncio.get_running_loop(),
        )
        try:
            return await asyncio.wait_for(
                producer.send_batch(topics.receipts, messages(records)), 30
            )
        finally:
            producer.close(5)

    assert asyncio.run(main()) == []
    landed = read_all(kafka, topics.receipts, expected=len(records))
    assert sorted(m.key() for m in landed) == sorted(key for key, _ in records)


@PRODUCERS
def test_a_record_the_producer_will_not_queue_is_refused_and_the_rest_land(
    kafka: str, topics: Topics, make: Make
) -> None:
    too_large = {"key": b"big", "value": b"x" * 200_000}
    records = [{"key": b"a", "value": b"1"}, too_large, {"key": b"b", "value": b"2"}]

    async def main() -> list[Refusal]:
        producer = make(
            {"bootstrap.servers": kafka, "message.max.bytes": 100_000},
            asyncio.get_running_loop(),
        )
        try:
            return await producer.send_batch(topics.receipts, records)
        finally:
            producer.close(5)

    refused = asyncio.run(main())
    assert [record for record, _error in refused] == [too_large]
    assert "size" in refused[0][1].lower()
    landed = read_all(kafka, topics.receipts, expected=2)
    assert sorted(m.key() for m in landed) == [b"a", b"b"]


@PRODUCERS
def test_an_empty_batch_returns_at_once(kafka: str, make: Make) -> None:
    async def main() -> list[Refusal]:
        producer = make({"bootstrap.servers": kafka}, asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(producer.send_batch("unused", []), 1)
        finally:
            producer.close(1)

    assert asyncio.run(main()) == []


class RefusingOnce:
    """Refuses the records with odd keys the first time it sees them."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []

    async def send_batch(self, topic: str, records: Sequence[Message]) -> list[Refusal]:
        first_time = not self.batches
        self.batches.append(list(records))
        if not first_time:
            return []
        refused = [r for r in records if r["key"] in {b"1", b"3"}]
        return [(r, "Broker: Not enough in-sync replicas") for r in refused]


def test_only_the_refused_records_are_sent_again_after_a_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = RefusingOnce()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    records = messages([(str(i).encode(), b"v") for i in range(5)])
    with caplog.at_level(logging.ERROR):
        asyncio.run(
            produce_all_until_delivered(
                sender, "t", records, what="receipt", log=logging.getLogger("t"), sleep=sleep
            )
        )
    assert sender.batches == [records, messages([(b"1", b"v"), (b"3", b"v")])]
    assert slept == [0.5]
    assert "receipt write failed for 2 of 5 records, retrying in 0.5s" in caplog.text
    assert "Not enough in-sync replicas" in caplog.text


def test_after_an_idle_spell_a_send_is_acknowledged_without_waiting_out_the_idle_poll(
    kafka: str, topics: Topics
) -> None:
    """The poller sleeps half a second between polls while nothing awaits a delivery; a send
    wakes it, so its acknowledgement is not held to the end of that half second."""

    async def main() -> float:
        producer = AsyncProducer({"bootstrap.servers": kafka}, asyncio.get_running_loop())
        try:
            await producer.send_batch(
                topics.receipts, messages([(b"warm", b"up")])
            )  # connected, idle
            idle = asyncio.get_running_loop().time()
            while asyncio.get_running_loop().time() - idle < 0.05:
                await asyncio.sleep(0.01)  # the poller is in its idle wait now
            started = asyncio.get_running_loop().time()
            await producer.send_batch(topics.receipts, messages([(b"k", b"v")]))
            return asyncio.get_running_loop().time() - started
        finally:
            producer.close(5)

    assert asyncio.run(main()) < 0.3


def test_a_close_on_another_thread_settles_what_it_flushes(kafka: str, topics: Topics) -> None:
    """The service closes the producer from an executor thread: the reports that flush serves
    there reach the waiters on the event loop."""

    async def main() -> list[Refusal]:
        loop = asyncio.get_running_loop()
        producer = AsyncProducer({"bootstrap.servers": kafka, "linger.ms": 200}, loop)
        sending = asyncio.ensure_future(
            producer.send_batch(topics.receipts, messages([(b"a", b"1"), (b"b", b"2")]))
        )
        await asyncio.sleep(0)  # queued, lingering
        left = await loop.run_in_executor(None, producer.close, 5.0)
        assert left == 0
        return await asyncio.wait_for(sending, 5)

    assert asyncio.run(main()) == []


def test_aclose_delivers_what_is_queued_and_leaves_no_task_behind(
    kafka: str, topics: Topics
) -> None:
    async def main() -> tuple[int, list[Refusal], set[asyncio.Task[Any]]]:
        loop = asyncio.get_running_loop()
        producer = AsyncProducer({"bootstrap.servers": kafka, "linger.ms": 200}, loop)
        sending = asyncio.ensure_future(
            producer.send_batch(topics.receipts, messages([(b"a", b"1")]))
        )
        await asyncio.sleep(0)  # queued, lingering
        left = await producer.aclose(5.0)
        refused = await asyncio.wait_for(sending, 5)
        others = {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}
        return left, refused, others

    left, refused, pending = asyncio.run(main())
    assert (left, refused, pending) == (0, [], set())
