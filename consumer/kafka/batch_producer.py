"""A producer of batches whose acknowledgement is awaited per batch, not per record (receipts).

`AsyncProducer.send_batch` counts a delivery report per record: librdkafka queues one, and
confluent-kafka builds a Message and calls Python for each, the largest part of a receipt's
cost once its encoding was compiled (bench/e2e.py, an id clean-up). Here librdkafka reports
failures only (`delivery.report.only.error`), and one batch is out at a time, so a batch is
acknowledged once the producer holds nothing: `len()` counts the records not yet acknowledged
and the reports not yet served, and the poller serves them. The records refused are those
reported, each with its error, and `produce_all_until_delivered` sends them again.

One batch at a time is no limit on throughput: the receipt sink gathers what is asked while a
batch is out into the next one (kafka/receipt_sink.py), so a batch grows with the load. The
producer is the receipts' own: a record sent on it by anything else would hold every batch
back until it was acknowledged too, and `send` (one record, its own report) cannot work with
success reports off, so it refuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError

from consumer.kafka.producer import (
    BUSY_POLL_S,
    AsyncProducer,
    Headers,
    Message,
    Refusal,
    queue_all,
)

__all__ = ["BatchProducer"]


class BatchProducer(AsyncProducer):
    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        # After the pass-through (kafka/config.py): with success reports on, `len()` would
        # count every record's report until served, which is slower and no less correct, but
        # only this setting makes the wait below the acknowledgement.
        super().__init__({**config, "delivery.report.only.error": True}, loop)
        self._turn = asyncio.Lock()

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> None:
        raise TypeError("a BatchProducer sends batches only (no report per record)")

    async def send_batch(self, topic: str, messages: Sequence[Message]) -> list[Refusal]:
        async with self._turn:  # one batch out at a time: when nothing is left, it is done
            refused: list[Refusal] = []

            def failed(error: KafkaError | None, message: Any) -> None:  # failures only
                if error is not None:
                    refused.append(({"key": message.key(), "value": message.value()}, error.str()))

            producer = self._producer
            self._polling()
            await queue_all(producer, topic, messages, failed, lambda m, e: refused.append((m, e)))
            # The poller serves the reports; nothing left means every record was answered.
            while len(producer):
                await asyncio.sleep(BUSY_POLL_S)
            return refused
