"""Writes receipts to `RECEIPTS_TOPIC`, keyed by event id, and returns once the broker has them.

The flush settles a record only after its receipt is acknowledged, so every committed event has
its receipt on the topic. A write that fails is retried until it succeeds (the offset waits);
a crash between the acknowledgement and the commit writes the receipt again on redelivery:
a receipt may be written twice, never zero times.

The writes asked for in one turn of the event loop go out as one batch with one waiter (many
operations finish together: a burst of scopes finishes one event per operation), so a receipt
costs its encoding and its share of a batch, not a future, a task and a wake-up of its own.
"""

from __future__ import annotations

import asyncio
import logging

from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.core.receipts import Receipt
from consumer.kafka.producer import BatchSender, KeyValue, produce_all_until_delivered

__all__ = ["ReceiptSink"]

log = logging.getLogger(__name__)


class ReceiptSink:
    def __init__(
        self, producer: BatchSender, *, topic: str, group: str, encoder: ReceiptEncoder
    ) -> None:
        self._producer = producer
        self._topic = topic
        self.group = group  # the consumer group the receipts name
        self._encoder = encoder
        self._open: _OpenBatch | None = None  # taking writes until the loop's next turn
        self._sending: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def write(self, receipts: list[Receipt]) -> None:
        """Write them (in a batch with the others asked for meanwhile); returns when every one
        is acknowledged."""
        values = await self._encoder.encode_many(receipts)
        batch = self._open
        if batch is None:
            batch = self._open = _OpenBatch(asyncio.get_running_loop().create_future())
            asyncio.get_running_loop().call_soon(self._send_open)
        batch.records.extend(
            (receipt.event_id.encode("utf-8"), value)
            for receipt, value in zip(receipts, values, strict=True)
        )
        # Shielded: a writer cancelled (a revoke) must not cancel the others' batch.
        await asyncio.shield(batch.done)

    def _send_open(self) -> None:
        batch, self._open = self._open, None
        assert batch is not None
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: _OpenBatch) -> None:
        try:
            # Not acknowledged, so not finished: retried until it is, the offsets waiting.
            await produce_all_until_delivered(
                self._producer, self._topic, batch.records, what="receipt", log=log
            )
        except asyncio.CancelledError:  # the loop shutting down
            batch.done.cancel()
            raise
        except Exception as exc:  # a bug: the writers fail with it
            batch.done.set_exception(exc)
            raise
        batch.done.set_result(None)


class _OpenBatch:
    __slots__ = ("done", "records")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.records: list[KeyValue] = []
        self.done = done
