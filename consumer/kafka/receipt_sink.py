"""Writes receipts to `RECEIPTS_TOPIC`, keyed by event id, and returns once the broker has them.

The flush settles a record only after its receipt is acknowledged, so every committed event has
its receipt on the topic. A write that fails is retried until it succeeds (the offset waits);
a crash between the acknowledgement and the commit writes the receipt again on redelivery:
a receipt may be written twice, never zero times.

One batch is out at a time, with one waiter for all its writers; what is asked meanwhile
gathers in the next, which goes once that one is acknowledged (at the loop's next turn when
none is out). Many operations finish together (a burst of scopes finishes one event per
operation), so a receipt costs its encoding and its share of a batch, not a future, a task
and a wake-up of its own; and the producer, a `BatchProducer`, awaits a batch's
acknowledgement as a whole (kafka/batch_producer.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.core.receipts import CompletedReceipts, Receipt
from consumer.kafka.producer import BatchSender, Message, produce_all_until_delivered

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
        # Taking writes until it goes: at the loop's next turn, or when the batch out is done.
        self._open: _OpenBatch | None = None
        # The batch out (at most one), held: the loop keeps only weak references to tasks.
        self._sending: set[asyncio.Task[None]] = set()

    async def write(
        self, receipts: Sequence[Receipt] = (), completed: CompletedReceipts | None = None
    ) -> None:
        """Write them, `receipts` and the `completed` ones (in a batch with the others asked
        for meanwhile); returns when every one is acknowledged."""
        encoder = self._encoder
        messages: list[Message] = []
        if completed:
            messages += await encoder.encode_completed(completed)
        if receipts:
            messages += await encoder.encode_messages(receipts)
        if not messages:
            return
        batch = self._open
        if batch is None:
            batch = self._open = _OpenBatch(asyncio.get_running_loop().create_future())
            if not self._sending:  # else it goes once the batch out is acknowledged
                asyncio.get_running_loop().call_soon(self._send_open)
        batch.messages += messages
        # Shielded: a writer cancelled (a revoke) must not cancel the others' batch.
        await asyncio.shield(batch.done)

    def _send_open(self) -> None:
        if self._sending or self._open is None:  # it goes once the batch out is done; or went
            return
        batch, self._open = self._open, None
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        waiting = self._open
        if waiting is not None and task.cancelled():  # the loop shutting down: none goes
            self._open = None
            waiting.done.cancel()
            return
        self._send_open()  # what was asked meanwhile

    async def _send(self, batch: _OpenBatch) -> None:
        try:
            # Not acknowledged, so not finished: retried until it is, the offsets waiting.
            await produce_all_until_delivered(
                self._producer, self._topic, batch.messages, what="receipt", log=log
            )
        except asyncio.CancelledError:  # the loop shutting down
            batch.done.cancel()
            raise
        except Exception as exc:  # a bug: the writers fail with it
            batch.done.set_exception(exc)
            raise
        batch.done.set_result(None)


class _OpenBatch:
    __slots__ = ("done", "messages")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.messages: list[Message] = []
        self.done = done
