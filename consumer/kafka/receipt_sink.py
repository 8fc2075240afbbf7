"""Writes receipts to `RECEIPTS_TOPIC`, keyed by event id, and returns once the broker has them.

The flush settles a record only after its receipt is acknowledged, so every committed event has
its receipt on the topic. A write that fails is retried until it succeeds (the offset waits);
a crash between the acknowledgement and the commit writes the receipt again on redelivery:
a receipt may be written twice, never zero times.
"""

from __future__ import annotations

import asyncio
import logging

from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.core.receipts import Receipt
from consumer.kafka.producer import AsyncProducer, produce_until_delivered

__all__ = ["ReceiptSink"]

log = logging.getLogger(__name__)


class ReceiptSink:
    def __init__(
        self, producer: AsyncProducer, *, topic: str, group: str, encoder: ReceiptEncoder
    ) -> None:
        self._producer = producer
        self._topic = topic
        self.group = group  # the consumer group the receipts name
        self._encoder = encoder

    async def write(self, receipts: list[Receipt]) -> None:
        """Write them all at once (the producer batches them); returns when all are acked."""
        await asyncio.gather(*(self._write(receipt) for receipt in receipts))

    async def _write(self, receipt: Receipt) -> None:
        value = await self._encoder.encode(receipt)
        key = receipt.event_id.encode("utf-8")
        # Not acknowledged, so not finished: retried until it is, the offset waiting meanwhile.
        await produce_until_delivered(
            self._producer,
            self._topic,
            key=key,
            value=value,
            headers=None,
            what="receipt",
            log=log,
        )
