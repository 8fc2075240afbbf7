"""How the Schema Registry client's properties are named in settings, and what they hold.

The registry is reached through confluent-kafka's `SchemaRegistryClient`, configured the way
every Confluent tool is (`basic.auth.user.info`, `bearer.auth.*`, `ssl.ca.location`, ...). Its
properties pass through like librdkafka's (`kafka_properties.py`), under another prefix:
`SCHEMA_REGISTRY_<NAME>` is `<name>` lower-cased with `_` -> `.` (`__` -> `_`, `___` -> `-`),
so `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO` is `basic.auth.user.info`; `_FILE` reads the value
from a file, `--schema-registry-property key=value` adds or overrides, and the configuration
file may hold a `[schema_registry]` table. The URL has a setting of its own,
`SCHEMA_REGISTRY_URL`.

What is here: the naming (`registry_variable`, `is_registry_passed_through`), which properties
are secrets (`is_secret_registry_property`: `config` and `repr` mask them), and the values the
client wants as numbers or files (`registry_value`: the client refuses a number given as text).
Whether a property exists is the client's to say, offline (`registry_check.py`): `KNOWN` only
feeds the "did you mean" of an unknown one. One property is ours, not the client's:
`basic.auth.credentials.source` (`USER_INFO`, the default; `URL`; or `SASL_INHERIT`, the
Kafka SASL user and password, as Confluent's serializers have it), read when the client's
configuration is made (`consumer/avro/registry_config.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

from consumer.settings import parsers as p
from consumer.settings.kafka_properties import is_secret_property, property_variable
from consumer.settings.parsers import Invalid, shown

__all__ = [
    "CREDENTIALS_SOURCE",
    "CREDENTIALS_SOURCES",
    "DEDICATED_REGISTRY_PROPERTIES",
    "KNOWN",
    "REGISTRY_PREFIX",
    "is_registry_passed_through",
    "is_secret_registry_property",
    "registry_value",
    "registry_variable",
]

REGISTRY_PREFIX = "SCHEMA_REGISTRY_"

# Properties that have a setting of their own, and that setting: never passed through.
DEDICATED_REGISTRY_PROPERTIES: Mapping[str, str] = MappingProxyType({"url": "SCHEMA_REGISTRY_URL"})

# Ours: where basic auth takes its credentials (Confluent's serializers' property and values).
CREDENTIALS_SOURCE = "basic.auth.credentials.source"
CREDENTIALS_SOURCES = ("USER_INFO", "URL", "SASL_INHERIT")

# What `SchemaRegistryClient` 2.16 reads (confluent_kafka/schema_registry/_sync/
# schema_registry_client.py, `_BaseRestClient` and the bearer builders), and ours above. The
# `CUSTOM` bearer source needs a Python function: not a setting.
KNOWN = frozenset(
    """
    basic.auth.user.info bearer.auth.credentials.source bearer.auth.token
    bearer.auth.logical.cluster bearer.auth.identity.pool.id bearer.auth.client.id
    bearer.auth.client.secret bearer.auth.scope bearer.auth.issuer.endpoint.url
    bearer.auth.issuer.endpoint.query ssl.ca.location ssl.certificate.location
    ssl.key.location ssl.key.password proxy timeout cache.capacity cache.latest.ttl.sec
    max.retries retries.wait.ms retries.max.wait.ms
    """.split()  # noqa: SIM905 (a word list reads better than 20 quoted lines)
) | {CREDENTIALS_SOURCE}

# Kubernetes service links: a Service named "schema-registry" injects SCHEMA_REGISTRY_PORT,
# SCHEMA_REGISTRY_SERVICE_HOST, SCHEMA_REGISTRY_PORT_8081_TCP_ADDR, ... into every pod.
_SERVICE_LINK = re.compile(r"SCHEMA_REGISTRY_(PORT|SERVICE_HOST|SERVICE_PORT)(_.*)?")
# Secrets the names alone do not give away; `.credentials.source` names a mode, not a secret.
_ALSO_SECRET = frozenset({"basic.auth.user.info"})
_MODE = ".credentials.source"


def _readable_file(text: str) -> str:
    path = text.strip()
    if not path:
        raise Invalid("must name a file")
    if not os.path.exists(path):
        raise Invalid(f"no such file {shown(path)}")
    if not os.access(path, os.R_OK):
        raise Invalid(f"cannot read {shown(path)}")
    return path


def _upper_choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper()
        if value not in allowed:
            raise Invalid(f"must be one of {', '.join(allowed)}, got {shown(text)}")
        return value

    return parse


# Values the client takes as numbers (it raises TypeError on text), files it opens when it is
# built, and the modes it knows; every other property is passed as the text it was given.
_VALUES: Mapping[str, Callable[[str], object]] = MappingProxyType(
    {
        "timeout": p.number(0, 3600, above=True),
        "cache.capacity": p.integer(1, 10_000_000),
        "cache.latest.ttl.sec": p.number(0, 30 * 86_400, above=True),
        "max.retries": p.integer(0, 1000),
        "retries.wait.ms": p.integer(0, 3_600_000),
        "retries.max.wait.ms": p.integer(0, 3_600_000),
        "ssl.ca.location": _readable_file,  # a file or a directory of certificates
        "ssl.certificate.location": _readable_file,
        "ssl.key.location": _readable_file,
        "bearer.auth.credentials.source": _upper_choice(
            ("STATIC_TOKEN", "OAUTHBEARER", "OAUTHBEARER_AZURE_IMDS")
        ),
        CREDENTIALS_SOURCE: _upper_choice(CREDENTIALS_SOURCES),
    }
)


def registry_variable(prop: str) -> str:
    """The `SCHEMA_REGISTRY_*` variable that sets a registry client property."""
    return REGISTRY_PREFIX + property_variable(prop).removeprefix("KAFKA_")


def is_registry_passed_through(name: str) -> bool:
    """Whether a `SCHEMA_REGISTRY_*` variable is taken for a property (service links are not;
    the URL's own variable is an option, told apart by the caller)."""
    return name.startswith(REGISTRY_PREFIX) and not _SERVICE_LINK.fullmatch(name)


def is_secret_registry_property(prop: str) -> bool:
    """`basic.auth.user.info`, and anything named like a password, secret, key or token
    (`bearer.auth.token`, `bearer.auth.client.secret`, `ssl.key.*`): never rendered."""
    name = prop.lower()
    return name in _ALSO_SECRET or (is_secret_property(name) and not name.endswith(_MODE))


def registry_value(prop: str, text: str) -> object:
    """The value the client takes for `prop`: a number, a checked file or mode, else the text.
    Raises `Invalid` (one line, never quoting a secret) for a value it would refuse."""
    parse = _VALUES.get(prop)
    if parse is None:
        if is_secret_registry_property(prop) and not text.strip():
            raise Invalid("must not be empty")
        return text
    return parse(text)
