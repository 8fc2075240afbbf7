"""Receipts asked for in one turn of the event loop go out as one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from consumer.avro.receipt_codec import ReceiptDecoder, ReceiptEncoder
from consumer.kafka.producer import KeyValue, Refusal
from consumer.kafka.receipt_sink import ReceiptSink
from tests.unit.core.test_receipts import a_receipt


class Topic:
    """A receipts topic that acknowledges a batch when told to."""

    def __init__(self) -> None:
        self.batches: list[list[KeyValue]] = []
        self.ack = asyncio.Event()

    async def send_batch(self, topic: str, records: Sequence[KeyValue]) -> list[Refusal]:
        self.batches.append(list(records))
        await self.ack.wait()
        return []


def sink_on(topic: Topic) -> ReceiptSink:
    return ReceiptSink(topic, topic="receipts", group="g", encoder=ReceiptEncoder())


def test_writes_of_one_turn_are_one_batch_and_each_returns_once_it_is_acknowledged() -> None:
    async def main() -> None:
        topic = Topic()
        sink = sink_on(topic)
        first = [a_receipt(event_id="e1"), a_receipt(event_id="e2")]
        writes = [
            asyncio.ensure_future(sink.write(first)),
            asyncio.ensure_future(sink.write([a_receipt(event_id="e3")])),
        ]
        while not topic.batches:
            await asyncio.sleep(0)
        assert [key for key, _ in topic.batches[0]] == [b"e1", b"e2", b"e3"]
        assert not any(write.done() for write in writes)  # not acknowledged yet
        topic.ack.set()
        await asyncio.gather(*writes)
        assert len(topic.batches) == 1
        decoded = [ReceiptDecoder().decode(value) for _, value in topic.batches[0]]
        assert [receipt.event_id for receipt in decoded] == ["e1", "e2", "e3"]

    asyncio.run(main())


def test_a_later_write_goes_in_a_batch_of_its_own() -> None:
    async def main() -> None:
        topic = Topic()
        topic.ack.set()
        sink = sink_on(topic)
        await sink.write([a_receipt(event_id="e1")])
        await sink.write([a_receipt(event_id="e2")])
        assert [[key for key, _ in batch] for batch in topic.batches] == [[b"e1"], [b"e2"]]

    asyncio.run(main())


def test_a_cancelled_writer_does_not_cancel_the_batch_of_the_others() -> None:
    async def main() -> None:
        topic = Topic()
        sink = sink_on(topic)
        cancelled = asyncio.ensure_future(sink.write([a_receipt(event_id="e1")]))
        kept = asyncio.ensure_future(sink.write([a_receipt(event_id="e2")]))
        while not topic.batches:
            await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        topic.ack.set()
        await kept
        assert cancelled.cancelled()

    asyncio.run(main())
