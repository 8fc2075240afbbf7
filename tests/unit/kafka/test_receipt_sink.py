"""Receipts asked for in one turn of the event loop go out as one batch, one batch is out at a
time, and what is asked meanwhile goes in the next."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from consumer.avro.receipt_codec import ReceiptDecoder, ReceiptEncoder
from consumer.kafka.producer import Message, Refusal
from consumer.kafka.receipt_sink import ReceiptSink
from tests.unit.core.test_receipts import a_receipt


class Topic:
    """A receipts topic that acknowledges a batch when told to."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []
        self.ack = asyncio.Event()
        self.out = 0  # batches sent and not yet acknowledged

    async def send_batch(self, topic: str, records: Sequence[Message]) -> list[Refusal]:
        self.batches.append(list(records))
        self.out += 1
        assert self.out == 1, "a second batch went out before the first was acknowledged"
        await self.ack.wait()
        self.out -= 1
        return []


def keys(batch: list[Message]) -> list[bytes]:
    return [message["key"] for message in batch]


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
        assert keys(topic.batches[0]) == [b"e1", b"e2", b"e3"]
        assert not any(write.done() for write in writes)  # not acknowledged yet
        topic.ack.set()
        await asyncio.gather(*writes)
        assert len(topic.batches) == 1
        decoded = [ReceiptDecoder().decode(message["value"]) for message in topic.batches[0]]
        assert [receipt.event_id for receipt in decoded] == ["e1", "e2", "e3"]

    asyncio.run(main())


def test_a_later_write_goes_in_a_batch_of_its_own() -> None:
    async def main() -> None:
        topic = Topic()
        topic.ack.set()
        sink = sink_on(topic)
        await sink.write([a_receipt(event_id="e1")])
        await sink.write([a_receipt(event_id="e2")])
        assert [keys(batch) for batch in topic.batches] == [[b"e1"], [b"e2"]]

    asyncio.run(main())


def test_writes_made_while_a_batch_is_out_go_together_once_it_is_acknowledged() -> None:
    async def main() -> None:
        topic = Topic()
        sink = sink_on(topic)
        first = asyncio.ensure_future(sink.write([a_receipt(event_id="e1")]))
        while not topic.batches:
            await asyncio.sleep(0)
        later = [asyncio.ensure_future(sink.write([a_receipt(event_id=f"e{n}")])) for n in (2, 3)]
        for _ in range(5):  # turns of the loop: neither goes while e1's batch is out
            await asyncio.sleep(0)
        assert [keys(batch) for batch in topic.batches] == [[b"e1"]]
        topic.ack.set()
        await asyncio.gather(first, *later)
        assert [keys(batch) for batch in topic.batches] == [[b"e1"], [b"e2", b"e3"]]

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
