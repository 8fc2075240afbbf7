"""librdkafka's own log lines through the service's logger: JSON, deduplicated, rate-limited.

Every Kafka client of the process gets the same `KafkaLogger` as its `logger`
(`kafka.config.with_logger`). confluent-kafka then calls `logger.log(level, "%s [%s] %s",
facility, client name, message)` with librdkafka's syslog level mapped to Python's (3 ERR to
ERROR, 4 WARNING to WARNING, 5-6 to INFO, 7 DEBUG to DEBUG); see `log_cb` in confluent-kafka's
confluent_kafka.c. The lines go to the `consumer.kafka` logger with `facility` and `client` as
fields, and repeats are limited per kind (`core/repeats.py`): a broker that stays away is one
line, then a reminder at most every minute with how often it repeated, not 20 lines a second
per client.

A kind is the level, the facility and the message with its volatile parts normalised (numbers
and durations, "after 12ms in state CONNECT"), addresses and ports kept: two brokers down are
two kinds; the consumer, its producer and its lag client failing to reach one broker are one.
DEBUG lines (asked for with KAFKA_DEBUG, a trace) pass unlimited.

Where the calls come from: a client given a `logger` has confluent-kafka set `log.queue`, and
its lines wait in the client's queue until the application polls it (`poll`, `consume`,
`flush`, `close`), then come on that thread. The service polls its clients from different
threads (the consumer's own, the event loop, the lag monitor's), hence the lock. A client that
is never polled keeps its lines queued until it is closed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from consumer.core.repeats import RepeatLimiter

__all__ = ["KafkaLogger", "kafka_logger", "line_kind"]

# How confluent-kafka formats each call: facility, client name, message.
_CALL_FORMAT = "%s [%s] %s"
# librdkafka starts a message with the thread that logged it: the broker's name, or "main".
_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")
# A number on its own, with an optional unit ("0ms", "1.5s", "3 in-flight", "1/1 brokers"), but
# not one inside an address, a port, a name or an id ("127.0.0.1:9092", "consumer-1", "ipv4#").
_NUMBER = re.compile(r"(?<![\w.:#-])\d+(?:\.\d+)?(?=(?:ms|us|s)?(?![\w.:]))")


def line_kind(message: str) -> str:
    """What makes two messages of a facility the same line: the text, its numbers as N."""
    return _NUMBER.sub("N", _THREAD.sub("", message))


class KafkaLogger:
    """The `logger` handed to librdkafka: `log(level, format, *args)`, as confluent-kafka calls.

    Thread-safe. `window_s` is the reminder period and the silence after which a kind counts as
    new; `capacity` bounds the kinds remembered.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        window_s: float = 60.0,
        capacity: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger if logger is not None else logging.getLogger("consumer.kafka")
        self._clock = clock
        self._lock = threading.Lock()
        self._repeats: RepeatLimiter[tuple[int, str, str]] = RepeatLimiter(window_s, capacity)

    def log(self, level: int, msg: object, *args: object, **_kwargs: object) -> None:
        """One librdkafka line. Never raises: an exception here would come out of a poll."""
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        facility, client, message = _parts(msg, args)
        fields: dict[str, object] = {"facility": facility, "client": client}
        if level <= logging.DEBUG:
            logger.log(level, message, extra=fields)
            return
        with self._lock:
            logged = self._repeats.offer((level, facility, line_kind(message)), self._clock())
        if logged is None:
            return
        if not logged.first:
            count = logged.occurrences
            fields["repeated"] = count
            message = f"{message} (repeated {count} times in the last {logged.since_s:.0f} s)"
        elif logged.unlogged:
            fields["repeated_before"] = logged.unlogged  # the rest of its previous episode
        logger.log(level, message, extra=fields)


def _parts(msg: object, args: tuple[object, ...]) -> tuple[str, str, str]:
    """(facility, client name, message without its thread) of one call."""
    if msg == _CALL_FORMAT and len(args) == 3:
        facility, client, text = (str(arg) for arg in args)
        return facility, client, _THREAD.sub("", text)
    try:
        text = str(msg) % args if args else str(msg)
    except (TypeError, ValueError):
        text = " ".join(str(part) for part in (msg, *args))
    return "", "", text


_PROCESS = KafkaLogger()


def kafka_logger() -> KafkaLogger:
    """The process's one `KafkaLogger`: one table of kinds for all its clients."""
    return _PROCESS
