"""A confluent-kafka producer whose deliveries are awaitable.

Delivery reports are served when the producer is polled, and a task on the event loop polls
it: every 2 ms while records await their acknowledgement, every half second (for librdkafka's
logs and errors) when none do, so `await producer.send(...)` returns only once the broker
acknowledged the record (or raises if it could not). Not a thread: a report served on another
thread must take the GIL from the event loop for each record, and the last report of a batch
reached the loop 37 ms late on average in an id clean-up (bench/e2e.py), holding its receipts
back and the loop's own polls of Kafka with them. `send_batch` does the same for many records
with one waiter, settled by the last report (a future and a task per receipt cost more than
the rest of the receipt's work together).

`produce_until_delivered` (one record) and `produce_all_until_delivered` (many) are the places
that retry a write the broker did not take: the dead-letter and receipt writes must land before
their offset is committed, so they wait out a broker that is down rather than give up (0.5 s,
doubling to 30 s, for ever). Every `DeliveryError` is retried, a non-retriable one too, as each
sink did before: giving up would mean committing past a record that was never written, and
while the write is retried its offset waits, so nothing is lost; the log line shows the error
to whoever must fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from consumer.core.errors import ConsumerError
from consumer.core.retry import wait_out_delays

__all__ = [
    "AsyncProducer",
    "BatchSender",
    "DeliveryError",
    "Message",
    "Refusal",
    "Sender",
    "produce_all_until_delivered",
    "produce_until_delivered",
    "queue_all",
]

Headers = Sequence[tuple[str, bytes | None]]
# A record as confluent-kafka's `produce_batch` takes it, {"key": ..., "value": ...}: the batch
# writers build these and nothing else, as a tuple per record and a dict made of it cost a
# tenth of a receipt.
Message = dict[str, bytes]
Refusal = tuple[Message, str]  # a record the broker did not take, and its error


class DeliveryError(ConsumerError):
    """The broker did not take the record; `retriable` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable  # known only when raised: librdkafka's error says


# How often deliveries are polled while records await them, and while none do.
BUSY_POLL_S = 0.002
_IDLE_POLL_S = 0.5


class AsyncProducer:
    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self._producer = Producer(config)
        self._loop = loop
        self._poller: asyncio.Task[None] | None = None  # started by the first send
        self._produced = asyncio.Event()  # wakes an idle poller

    def _polling(self) -> None:
        """Make sure the poller runs (it waits on this loop), and wake it."""
        if self._poller is None:
            self._poller = self._loop.create_task(self._poll())
        self._produced.set()

    async def _poll(self) -> None:
        producer, produced = self._producer, self._produced
        while True:
            producer.poll(0)
            if len(producer):  # records not yet acknowledged
                await asyncio.sleep(BUSY_POLL_S)
                continue
            produced.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(produced.wait(), _IDLE_POLL_S)

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> None:
        future: asyncio.Future[None] = self._loop.create_future()

        def delivered(error: KafkaError | None, _message: object) -> None:
            _on_loop(self._loop, _settle, future, error)

        self._polling()
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers or ()), on_delivery=delivered
                )
                break
            except BufferError:
                # The local queue is full: let the poller drain it.
                await asyncio.sleep(0.05)
            except KafkaException as exc:
                raise DeliveryError(str(exc.args[0]), retriable=False) from exc
        await future

    async def send_batch(self, topic: str, messages: Sequence[Message]) -> list[Refusal]:
        """Produce every message (no headers) and return once the broker answered for each:
        those it refused, each with its error; empty when all landed."""
        batch = _Batch(self._loop, len(messages))
        self._polling()
        await queue_all(self._producer, topic, messages, batch.delivered, batch.refused_now)
        await batch.done
        return batch.refused

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding deliveries; the number still undelivered."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush (from any thread: the reports it serves reach the loop safely), then stop
        polling; the number of records still undelivered."""
        left = self.flush(timeout_s)
        poller = self._poller
        if poller is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to stop
                self._loop.call_soon_threadsafe(poller.cancel)
        return left

    async def aclose(self, timeout_s: float = 10.0) -> int:
        """`close` from the event loop: the flush off it, and the poller stopped before this
        returns (so no task is left pending when the loop ends)."""
        left = await self._loop.run_in_executor(None, self.flush, timeout_s)
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        return left


async def queue_all(
    producer: Producer,
    topic: str,
    messages: Sequence[Message],
    on_delivery: Callable[[KafkaError | None, Any], None],
    refuse: Callable[[Message, str], None],
) -> None:
    """Queue every message on `producer` (its poller running), `on_delivery` reporting each.

    One `produce_batch` queues them all (half the cost of a `produce` each); those the full
    local queue turned away are queued again once the poller has drained some, and those
    librdkafka would not even queue (too large, say) go to `refuse` with the error.
    """
    pending = list(messages)
    while pending:
        queued = producer.produce_batch(topic, pending, on_delivery=on_delivery)
        if queued == len(pending):
            return
        full: list[Message] = []
        for message in pending:
            error: Any = message.pop("_error", None)  # set by produce_batch on a refusal
            if error is None:
                continue
            if error.code() == KafkaError._QUEUE_FULL:
                full.append(message)
            else:
                refuse(message, error.str())
        pending = full
        if pending:
            await asyncio.sleep(0.05)


class _Batch:
    """The delivery reports of one `send_batch`, counted as they are served (on the event loop,
    or on the thread a `close` flushes from); the last settles the batch.

    No lock: the count is an `itertools.count` and the refusals a list, whose `next` and
    `append` are each one step under the GIL, so reports served on two threads at once still
    count once each. A report is one call of `delivered` per record (a lock and a second call
    were a third of a receipt's delivery cost).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._size = size
        self._served = itertools.count(1).__next__  # the number of this report, from 1
        self.refused: list[Refusal] = []
        self.done: asyncio.Future[None] = loop.create_future()
        if size == 0:
            self.done.set_result(None)

    def delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self.refused.append(({"key": message.key(), "value": message.value()}, error.str()))
        if self._served() == self._size:
            _on_loop(self._loop, _finish, self.done)

    def refused_now(self, message: Message, error: str) -> None:
        """A record librdkafka would not even queue (too large, say): refused without a report."""
        self.refused.append((message, error))
        if self._served() == self._size:
            _on_loop(self._loop, _finish, self.done)


class Sender(Protocol):
    """What `produce_until_delivered` needs of a producer (an `AsyncProducer`, a test's fake)."""

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> None: ...


async def produce_until_delivered(
    producer: Sender,
    topic: str,
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
    what: str,
    log: logging.Logger,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Send one record and return once the broker acknowledged it, retrying every refusal.

    `what` names the record in the log line ("receipt" gives "receipt write failed, retrying
    in 0.5s: ..."), logged at ERROR on `log`, the caller's logger, so the line says whose
    write it was. Anything but a `DeliveryError` propagates.
    """
    delays = wait_out_delays()
    while True:
        try:
            await producer.send(topic, key=key, value=value, headers=headers)
            return
        except DeliveryError as exc:
            # Not acknowledged, so not finished: the caller's offset stays uncommitted meanwhile.
            delay = next(delays)
            log.error("%s write failed, retrying in %.1fs: %s", what, delay, exc)
            await sleep(delay)


class BatchSender(Protocol):
    """What `produce_all_until_delivered` needs of a producer."""

    async def send_batch(self, topic: str, messages: Sequence[Message]) -> list[Refusal]: ...


async def produce_all_until_delivered(
    producer: BatchSender,
    topic: str,
    messages: Sequence[Message],
    *,
    what: str,
    log: logging.Logger,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Send every message and return once the broker acknowledged all; those it refused are
    sent again (only those), after the same delays as `produce_until_delivered`."""
    delays = wait_out_delays()
    while messages:
        refused = await producer.send_batch(topic, messages)
        if refused:
            # Not acknowledged, so not finished: the caller's offsets stay uncommitted meanwhile.
            delay = next(delays)
            log.error(
                "%s write failed for %d of %d records, retrying in %.1fs: %s",
                what,
                len(refused),
                len(messages),
                delay,
                refused[0][1],
            )
            await sleep(delay)
        messages = [message for message, _error in refused]


def _on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run `callback` now if this is the loop's thread (the poller's reports), else on it."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback(*args)
    else:
        loop.call_soon_threadsafe(callback, *args)


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryError(error.str(), retriable=bool(error.retriable())))
