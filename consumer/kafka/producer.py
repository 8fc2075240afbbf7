"""A confluent-kafka producer whose deliveries are awaitable.

Delivery reports arrive on librdkafka's side when the producer is polled; a daemon thread polls
and hands each report to the event loop, so `await producer.send(...)` returns only once the
broker acknowledged the record (or raises if it could not).

`produce_until_delivered` is the one place that retries a write the broker did not take: the
dead-letter and receipt writes must land before their offset is committed, so they wait out a
broker that is down rather than give up (0.5 s, doubling to 30 s, for ever). Every
`DeliveryError` is retried, a non-retriable one too, as each sink did before: giving up would
mean committing past a record that was never written, and while the write is retried its
offset waits, so nothing is lost; the log line shows the error to whoever must fix it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from consumer.core.errors import ConsumerError
from consumer.core.retry import wait_out_delays

__all__ = [
    "AsyncProducer",
    "DeliveryError",
    "Sender",
    "produce_until_delivered",
]

Headers = Sequence[tuple[str, bytes | None]]


class DeliveryError(ConsumerError):
    """The broker did not take the record; `retriable` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable  # known only when raised: librdkafka's error says


class AsyncProducer:
    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self._producer = Producer(config)
        self._loop = loop
        self._running = True
        self._thread = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> None:
        future: asyncio.Future[None] = self._loop.create_future()

        def delivered(error: KafkaError | None, _message: object) -> None:
            self._loop.call_soon_threadsafe(_settle, future, error)

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers or ()), on_delivery=delivered
                )
                break
            except BufferError:
                # The local queue is full: let the poll thread drain it.
                await asyncio.sleep(0.05)
            except KafkaException as exc:
                raise DeliveryError(str(exc.args[0]), retriable=False) from exc
        await future

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding deliveries; the number still undelivered."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 10.0) -> int:
        left = self.flush(timeout_s)
        self._running = False
        self._thread.join(timeout=1.0)
        return left


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


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryError(error.str(), retriable=bool(error.retriable())))
