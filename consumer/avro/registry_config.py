"""The Schema Registry client's configuration from settings, and the client built from it.

`registry_config` renders `Settings` the way confluent-kafka's `SchemaRegistryClient` takes
them: the URL (`SCHEMA_REGISTRY_URL`), and every passed-through property
(`SCHEMA_REGISTRY_<NAME>`, `[schema_registry]`, `--schema-registry-property`) as the value the
client wants, numbers as numbers (`settings/registry_properties.py`). One property is ours and
is resolved here, never passed on: `basic.auth.credentials.source`, where `SASL_INHERIT` sends
the Kafka SASL user and password (`KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`) as basic auth,
as Confluent's serializers do (Aiven's registry takes the Kafka service user), and `URL` leaves
the URL's user info to the client, which reads it by default.

`registry_client` builds the adapter (`registry.py`) from that configuration, or None without a
URL; every command that asks the registry builds its client here. A configuration the client
refuses is the one-line `SettingsError` naming the variable; `run` and `config` have it judged
as their settings are read, named as written (`settings/registry_check.py`).
"""

from __future__ import annotations

from consumer.avro.registry import RegistrySettingError, SchemaRegistryClient
from consumer.settings import Settings
from consumer.settings.registry_check import refusal
from consumer.settings.registry_properties import CREDENTIALS_SOURCE, registry_value

__all__ = ["credentials_setting", "registry_client", "registry_config"]

_USER_INFO = "basic.auth.user.info"


def registry_config(settings: Settings) -> dict[str, object] | None:
    """The client's configuration (`SchemaRegistryClient(...)`), or None without a registry."""
    if settings.schema_registry_url is None:
        return None
    props = dict(settings.schema_registry_properties)
    source = props.pop(CREDENTIALS_SOURCE, "USER_INFO").strip().upper()
    config: dict[str, object] = {"url": settings.schema_registry_url}
    config.update((prop, registry_value(prop, text)) for prop, text in props.items())
    if source == "SASL_INHERIT":  # settings/checks.py made sure both are set
        kafka = settings.kafka_properties
        config[_USER_INFO] = f"{kafka['sasl.username']}:{kafka['sasl.password']}"
    return config


def credentials_setting(settings: Settings) -> str | None:
    """The settings a 401 tells to check, where the client's configuration does not say it."""
    source = settings.schema_registry_properties.get(CREDENTIALS_SOURCE, "").strip().upper()
    if source == "SASL_INHERIT":
        return "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, inherited by SASL_INHERIT"
    return None


def registry_client(settings: Settings) -> SchemaRegistryClient | None:
    """The registry's client from settings, or None without `SCHEMA_REGISTRY_URL`."""
    config = registry_config(settings)
    if config is None:
        return None
    try:
        return SchemaRegistryClient(config, credentials=credentials_setting(settings))
    except RegistrySettingError as exc:
        raise refusal(exc, {}) from None
