"""A confluent-kafka producer whose deliveries are awaitable.

Delivery reports arrive on librdkafka's side when the producer is polled; a daemon thread polls
and hands each report to the event loop, so `await producer.send(...)` returns only once the
broker acknowledged the record (or raises if it could not).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

__all__ = ["AsyncProducer", "DeliveryError"]

Headers = Sequence[tuple[str, bytes | None]]


class DeliveryError(Exception):
    """The broker did not take the record; `retriable` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


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


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryError(error.str(), retriable=bool(error.retriable())))
