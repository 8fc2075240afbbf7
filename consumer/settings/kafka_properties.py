"""How librdkafka properties are named in settings: the convention of Confluent's images.

`KAFKA_<NAME>` is `<name>` lower-cased with `_` -> `.`, `__` -> `_`, `___` -> `-`
(`KAFKA_SESSION_TIMEOUT_MS` is `session.timeout.ms`, `KAFKA_LOG__LEVEL` is `log_level`), and
`property_variable` the inverse, which names the variable in librdkafka's complaints
(`kafka/preflight.py`); `property_in_complaint` finds the property such a complaint is about.
Which properties are secrets (`is_secret_property`: `config` and `repr` mask them), and which
have a setting of their own (`DEDICATED_PROPERTIES`), is here too. Rendering the clients'
configurations is `kafka/config.py`'s.
"""

from __future__ import annotations

import re

__all__ = [
    "DEDICATED_PROPERTIES",
    "is_passed_through",
    "is_secret_property",
    "property_in_complaint",
    "property_name",
    "property_variable",
]

# Properties that have a setting of their own, and that setting: never passed through.
DEDICATED_PROPERTIES = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "metadata.broker.list": "KAFKA_BOOTSTRAP_SERVERS",
    "group.id": "KAFKA_GROUP_ID",
}

# KAFKA_* variables that are not librdkafka properties: Kubernetes service links (a Service
# named "kafka" injects KAFKA_PORT, KAFKA_SERVICE_HOST, ...) and the JVM tools' variables.
_NOT_PROPERTIES = re.compile(
    r"KAFKA_(PORT|SERVICE_HOST|SERVICE_PORT)(_.*)?"
    r"|KAFKA_(HOME|VERSION|OPTS|HEAP_OPTS|JVM_PERFORMANCE_OPTS|LOG4J_OPTS|JMX_OPTS|GC_LOG_OPTS)"
)
# Named like a secret anywhere in the name (`key` takes in every `ssl.key.*`, `ssl.keystore.*`
# and `sasl.kerberos.keytab`), and whole families that carry one: every `sasl.oauthbearer.*`
# (`.config` holds a principal and maybe a secret, `.extensions` tokens, `.assertion.*` a
# private key or its template), and the kinit command (which may embed a password).
_SECRET_PROPERTY = re.compile(
    r"password|passphrase|secret|key|token|credential"
    r"|^sasl\.oauthbearer\.|^sasl\.kerberos\.kinit\.cmd$"
)

# librdkafka names the property it refuses in quotes ('No such configuration property:
# "x.y"'), else in backticks or bare ("`sasl.oauthbearer.client.id` is mandatory when ...").
_QUOTED_PROPERTY = re.compile(r'"([A-Za-z0-9._-]+)"')
_DOTTED_PROPERTY = re.compile(r"(?<![\w.])[a-z][a-z0-9_]*(?:\.[a-z0-9_-]+)+(?![\w.])")


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


def is_secret_property(prop: str) -> bool:
    """Named like a password, secret, key or token, or of a family that carries one (every
    `sasl.oauthbearer.*`, `ssl.key.*`): never rendered."""
    return _SECRET_PROPERTY.search(prop.lower()) is not None


def property_in_complaint(message: str) -> str | None:
    """The property a librdkafka complaint is about: the quoted one, else the first dotted name."""
    found = _QUOTED_PROPERTY.search(message) or _DOTTED_PROPERTY.search(message)
    return None if found is None else found.group(found.lastindex or 0)
