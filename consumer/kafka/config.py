"""librdkafka configuration: the pass-through naming convention and the clients' configurations.

Settings hold librdkafka properties as they were given (`Settings.kafka_properties`, by
property name; which ones may be given is settings' business, `settings/sources.py`); this module
knows librdkafka's side of them:

- the naming convention of Confluent's images, both ways: `KAFKA_<NAME>` is `<name>` lower-cased
  with `_` -> `.`, `__` -> `_`, `___` -> `-` (`KAFKA_SESSION_TIMEOUT_MS` is `session.timeout.ms`,
  `KAFKA_LOG__LEVEL` is `log_level`), and `property_variable` the inverse, which names the
  variable in librdkafka's complaints (`kafka/preflight.py`);
- which properties are secrets (`is_secret_property`: `config` and `repr` mask them);
- `consumer_config` and `producer_config`: our choices first, the pass-through over them, each
  client without the other kind's properties (librdkafka warns at every start otherwise).

It imports nothing of `consumer.settings` at run time (only its type), so settings may use the
convention at import while `kafka/preflight.py` imports settings: no cycle.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumer.settings import Settings

__all__ = [
    "consumer_config",
    "consumer_only",
    "is_passed_through",
    "is_secret_property",
    "producer_config",
    "property_name",
    "property_variable",
]

# KAFKA_* variables that are not librdkafka properties: Kubernetes service links (a Service
# named "kafka" injects KAFKA_PORT, KAFKA_SERVICE_HOST, ...) and the JVM tools' variables.
_NOT_PROPERTIES = re.compile(
    r"KAFKA_(PORT|SERVICE_HOST|SERVICE_PORT)(_.*)?"
    r"|KAFKA_(HOME|VERSION|OPTS|HEAP_OPTS|JVM_PERFORMANCE_OPTS|LOG4J_OPTS|JMX_OPTS|GC_LOG_OPTS)"
)
_SECRET_PROPERTY = re.compile(
    r"password|passphrase|secret|key|token|credential|oauthbearer\.config"
)

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


# --- the naming convention ------------------------------------------------------------------


def property_name(suffix: str) -> str:
    """The property of `KAFKA_<suffix>`: `___` is `-`, `__` is `_`, `_` is `.`; lower case."""
    return (
        suffix.replace("___", "\0")
        .replace("__", "\1")
        .replace("_", ".")
        .replace("\0", "-")
        .replace("\1", "_")
        .lower()
    )


def property_variable(prop: str) -> str:
    """The `KAFKA_*` variable that sets a librdkafka property (the inverse of the convention)."""
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def is_passed_through(name: str) -> bool:
    """Whether a `KAFKA_*` variable is taken for a property (service links and JVM ones are not)."""
    return name.startswith("KAFKA_") and not _NOT_PROPERTIES.fullmatch(name)


# --- secrets ----------------------------------------------------------------------------------


def is_secret_property(prop: str) -> bool:
    """Named like a password, secret, key or token: never rendered."""
    return _SECRET_PROPERTY.search(prop) is not None


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


def producer_config(settings: Settings) -> dict[str, object]:
    """librdkafka producer configuration (DLQ, receipts), without consumer-only properties."""
    config: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    }
    config.update((k, v) for k, v in settings.kafka_properties.items() if not consumer_only(k))
    return config
