"""librdkafka configuration of the clients, from settings.

Settings hold librdkafka properties as they were given (`Settings.kafka_properties`, by
property name; how they are named and which ones may be given is settings' business,
`settings/kafka_properties.py` and `settings/sources.py`). This module renders them:
`consumer_config` and `producer_config`, our choices first, the pass-through over them, each
client without the other kind's properties (librdkafka warns at every start otherwise).
`with_logger` adds the process's librdkafka logger (telemetry/kafka_logs.py): every client is
built through it, so that no librdkafka line reaches stderr raw or unlimited. The two
configurations stay plain librdkafka properties, without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from consumer.settings import Settings
from consumer.telemetry.kafka_logs import kafka_logger

__all__ = [
    "CONSUMER_ONLY",
    "PRODUCER_ONLY",
    "consumer_config",
    "consumer_only",
    "producer_config",
    "with_logger",
]

# From librdkafka's CONFIGURATION.md (the C/P column): setting a property on the wrong kind of
# client only earns a warning, but a noisy one at every start.
PRODUCER_ONLY = frozenset(
    """
    transactional.id transaction.timeout.ms enable.idempotence enable.gapless.guarantee
    queue.buffering.max.messages queue.buffering.max.kbytes queue.buffering.max.ms linger.ms
    message.send.max.retries retries queue.buffering.backpressure.threshold compression.codec
    compression.type compression.level batch.num.messages batch.size delivery.report.only.error
    sticky.partitioning.linger.ms request.required.acks acks request.timeout.ms
    message.timeout.ms delivery.timeout.ms queuing.strategy produce.offset.report partitioner
    """.split()  # noqa: SIM905 (a word list reads better than 50 quoted lines)
)
CONSUMER_ONLY = frozenset(
    """
    group.id group.instance.id partition.assignment.strategy session.timeout.ms
    heartbeat.interval.ms group.protocol.type group.protocol group.remote.assignor
    coordinator.query.interval.ms max.poll.interval.ms enable.auto.commit auto.commit.interval.ms
    auto.commit.enable enable.auto.offset.store queued.min.messages queued.max.messages.kbytes
    max.partition.fetch.bytes offset.store.method offset.store.path
    offset.store.sync.interval.ms isolation.level enable.partition.eof check.crcs
    auto.offset.reset consume.callback.max.messages
    """.split()  # noqa: SIM905 (a word list reads better than 50 quoted lines)
)  # and every fetch.* property


# --- the clients' configurations --------------------------------------------------------------


def consumer_only(prop: str) -> bool:
    return prop in CONSUMER_ONLY or prop.startswith("fetch.")


def consumer_config(settings: Settings) -> dict[str, object]:
    """librdkafka consumer configuration: offsets stored by hand, pass-through last."""
    config: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        # The consumer pauses its partitions while its in-flight budget is spent, which
        # leaves librdkafka's fetch queue over its threshold; librdkafka then postpones
        # the next fetch by this long (1 s by default), and every resume began with a
        # second of idleness: a 100k-event backlog drained 30% slower (bench/e2e.py).
        "fetch.queue.backoff.ms": 20,
        # How long a fetch may wait at the broker for data. Kafka answers as soon as a record
        # is there, but some brokers (Tansu, this project's test broker) hold the fetch to
        # its end: librdkafka's 500 ms then stood between every event and its erasure (a
        # third of the time to receipt at a steady 400 events/s, bench/latency.py). An idle
        # consumer fetches more often for it: 20 requests a second per broker, not 2.
        "fetch.wait.max.ms": 50,
    }
    props = settings.kafka_properties
    if props.get("group.protocol") == "consumer":
        # KIP-848 groups assign on the broker and reject this property.
        del config["partition.assignment.strategy"]
    config.update((k, v) for k, v in props.items() if k not in PRODUCER_ONLY)
    session = props.get("session.timeout.ms")
    if session is not None and "heartbeat.interval.ms" not in props:
        # librdkafka's default heartbeat (3 s) is no shorter than a short session timeout,
        # and the group then drops the member between two heartbeats; a third is the
        # ratio Kafka recommends.
        # (A session timeout that is no number is left for librdkafka to name.)
        with contextlib.suppress(ValueError):
            if int(session) // 3 < 3000:
                config["heartbeat.interval.ms"] = max(100, int(session) // 3)
    return config


def producer_config(settings: Settings, *, linger_ms: float = 5) -> dict[str, object]:
    """librdkafka producer configuration (DLQ, receipts), without consumer-only properties.

    `linger_ms` is ours, and the pass-through's `linger.ms` wins over it: the receipts'
    producer takes 1, as the receipt sink gathers its batches itself and sends one at a time
    (kafka/batch_producer.py), where a linger would only add its wait to each.
    """
    config: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        # The Java client's partitioner (librdkafka's default is CRC32): a receipt's partition
        # is then computable from its event id by `receipts` and by any Kafka tool, so a
        # lookup reads one partition (core/partitioning.py).
        "partitioner": "murmur2_random",
    }
    config.update((k, v) for k, v in settings.kafka_properties.items() if not consumer_only(k))
    return config


def with_logger(config: Mapping[str, object]) -> dict[str, object]:
    """`config` for a client to build: with librdkafka's lines through the process's logger.

    Without it librdkafka writes its lines to stderr as they come (`%3|...|FAIL|...`, about 20
    a second per client while a broker is away); with it they are JSON and limited.
    """
    return {**config, "logger": kafka_logger()}
