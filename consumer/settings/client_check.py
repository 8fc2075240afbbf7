"""librdkafka's own judgement of the Kafka properties, as `run` builds its clients, offline.

librdkafka checks its properties only when a client is built: an unknown property, a bad
value, a key or certificate it cannot load, OIDC properties that do not belong together. `run`
builds its consumer and producer before it reaches the network, so `config`, which must refuse
what `run` refuses, has librdkafka build the same two clients (`consumer_config`,
`producer_config`) and closes them at once; `run` does it too, as its settings are read, so
both say the same line.

Offline: a client given brokers connects as soon as it is built (the consumer looks for its
group's coordinator, the idempotent producer asks for its id: 21 connections for 20 pairs,
measured), so these clients get no `bootstrap.servers` (librdkafka does not judge that value
when it builds a client anyway). An OIDC client fetches its token as soon as it is built, so
the token endpoint becomes a `file://` URL, a protocol librdkafka refuses before any I/O (it
still checks that an endpoint is set; it never judges the URL when building). Their log lines
go nowhere: `run` logs its own clients' lines.

A refusal names the property as the user wrote it (`Origin`): the variable (`KAFKA_X` or
`KAFKA_X_FILE`), `--kafka-property`, or the configuration file's key; an unknown property in
the file is an unknown key of the file, with a suggestion (`suggestions.py`). A property nobody
set (a mandatory one librdkafka misses) is named by the variable that would set it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from consumer.settings.kafka_properties import property_in_complaint, property_variable
from consumer.settings.librdkafka_names import PROPERTY_ALIASES
from consumer.settings.options import CONFIG_ENV, Settings, SettingsError
from consumer.settings.suggestions import property_hint, variable_hint

if TYPE_CHECKING:
    import logging

__all__ = ["Origin", "check_clients"]

_BROKERS = ("bootstrap.servers", "metadata.broker.list")
_OIDC_ENDPOINT = "sasl.oauthbearer.token.endpoint.url"
_NO_IO_URL = "file:///"  # librdkafka's HTTP client has the file protocol disabled
# librdkafka's text for a property it does not have (RD_KAFKA_CONF_UNKNOWN).
_UNKNOWN = "No such configuration property"


@dataclass(frozen=True)
class Origin:
    """Where a librdkafka property was set, as the user wrote it."""

    name: str  # KAFKA_LINGER_MS, KAFKA_SASL_PASSWORD_FILE, [kafka] linger.ms, --kafka-property
    config_file: str | None = None  # the configuration file that holds it, if any

    def refusal(self, prop: str, message: str) -> SettingsError:
        """librdkafka's `message` about `prop` as a bad setting named after this origin."""
        if not message.startswith(_UNKNOWN):
            return SettingsError(self.name, message)
        by_property = not self.name.startswith("KAFKA_")  # [kafka] x.y, --kafka-property
        hint = property_hint(prop) if by_property else variable_hint(self.name)
        if self.config_file is None:
            return SettingsError(self.name, message + hint)
        return SettingsError(CONFIG_ENV, f"unknown key {self.name!r} in {self.config_file!r}{hint}")


def check_clients(settings: Settings, origins: Mapping[str, Origin]) -> None:
    """Build `run`'s consumer and producer offline and close them; a `SettingsError` for the
    first property librdkafka refuses. `origins`: where each passed-through property was set."""
    # Imported here, as every command imports settings and only `run` and `config` check:
    # confluent-kafka took 90 ms to import (`-X importtime`, least of 5), and consumer.kafka
    # imports this package (the settings are built before the clients that read them).
    from confluent_kafka import Consumer, KafkaException, Producer

    from consumer.kafka.config import consumer_config, producer_config

    def consumer(config: dict[str, Any]) -> None:
        Consumer(config).close()

    def producer(config: dict[str, Any]) -> None:
        Producer(config)  # destroyed as it goes: it holds no message

    clients: tuple[tuple[Callable[[dict[str, Any]], None], dict[str, object]], ...] = (
        (consumer, consumer_config(settings)),
        (producer, producer_config(settings)),
    )
    for build, config in clients:
        try:
            build(_offline(config))
        except KafkaException as exc:
            raise _named(exc, origins) from exc


def _offline(config: Mapping[str, object]) -> dict[str, Any]:
    """`config` for a client that connects nowhere and logs nothing (see the module)."""
    offline: dict[str, Any] = {k: v for k, v in config.items() if k not in _BROKERS}
    if _OIDC_ENDPOINT in offline and str(offline[_OIDC_ENDPOINT]).strip():
        offline[_OIDC_ENDPOINT] = _NO_IO_URL
    offline["logger"] = _silent()
    return offline


@cache
def _silent() -> logging.Logger:
    """A logger of its own, not registered: with no handler at all, Python's last resort would
    print librdkafka's warnings to stderr, and `config` and `run` must say one line."""
    import logging  # not at the top: only `run` and `config` build clients here

    silent = logging.Logger("consumer.settings.client_check")
    silent.addHandler(logging.NullHandler())
    return silent


def _named(exc: Exception, origins: Mapping[str, Origin]) -> SettingsError:
    """librdkafka's complaint, one line, named after where its property was set."""
    error = exc.args[0] if exc.args else exc
    message = " ".join(str(error.str() if hasattr(error, "str") else error).split())
    prop = property_in_complaint(message)
    if prop is None:
        return SettingsError("KAFKA_*", message)
    # librdkafka names the property an alias stands for: the user may have written either.
    written = [prop, *(alias for alias, meant in PROPERTY_ALIASES.items() if meant == prop)]
    set_as = next((name for name in written if name in origins), None)
    if set_as is None:  # not set by anyone (a mandatory property missing), or one of ours
        return SettingsError(property_variable(prop), message)
    if set_as != prop:
        message += f" ({set_as} stands for {prop})"
    return origins[set_as].refusal(set_as, message)
