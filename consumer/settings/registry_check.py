"""The Schema Registry client's own judgement of its properties, as `run` builds it, offline.

confluent-kafka's `SchemaRegistryClient` checks its configuration when it is built: a property
it does not have ("Unrecognized properties"), bearer properties that do not belong together or
are missing (a static token needs `bearer.auth.logical.cluster` too), credentials both in the
URL and in `basic.auth.user.info`, a CA, certificate or key its TLS context cannot load. Being
built makes no request (its HTTP client connects on the first one, an OAuth token is fetched
on the first one too), so `config`, which must refuse what `run` refuses, builds the client
`run` builds (`avro/registry_config.py`) and closes it; `run` does it as its settings are read,
so both say the same line. Only with `SCHEMA_REGISTRY_URL` set: the client took ~0.4 s to
import, which nobody without a registry pays.

A refusal names the property as the user wrote it (`client_check.Origin`): the variable
(`SCHEMA_REGISTRY_X` or its `_FILE`), `--schema-registry-property`, or the configuration
file's key, an unknown one with the closest known name (`suggestions.py`); a property nobody
set (a missing one) is named by the variable that would set it. `refusal` does the naming for
the commands that build their client later (`registry_config.registry_client`), by variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from consumer.settings.client_check import Origin
from consumer.settings.options import CONFIG_ENV, Settings, SettingsError
from consumer.settings.registry_properties import (
    DEDICATED_REGISTRY_PROPERTIES,
    REGISTRY_PREFIX,
    registry_variable,
)
from consumer.settings.suggestions import registry_property_hint, registry_variable_hint

if TYPE_CHECKING:
    from consumer.avro.registry import RegistrySettingError

__all__ = ["check_registry", "refusal"]


def check_registry(settings: Settings, origins: Mapping[str, Origin]) -> None:
    """Build the registry client `run` builds and close it; a `SettingsError` for the first
    property it refuses. `origins`: where each passed-through property was set."""
    if settings.schema_registry_url is None:
        return
    # Imported here: consumer.avro imports this package (see the module for the cost).
    from consumer.avro.registry import RegistrySettingError, SchemaRegistryClient
    from consumer.avro.registry_config import registry_config

    config = registry_config(settings)
    assert config is not None  # there is a URL
    try:
        SchemaRegistryClient(config).close()
    except RegistrySettingError as exc:
        raise refusal(exc, origins) from None


def refusal(error: RegistrySettingError, origins: Mapping[str, Origin]) -> SettingsError:
    """The client's refusal as a bad setting, named after where its property was set."""
    prop = error.prop
    if prop is None:
        return SettingsError(REGISTRY_PREFIX + "*", error.message)
    origin = origins.get(prop)
    if origin is None:
        name = DEDICATED_REGISTRY_PROPERTIES.get(prop) or registry_variable(prop)
        origin = Origin(name)
    if not error.unknown:
        return SettingsError(origin.name, error.message)
    # [schema_registry] x.y or --schema-registry-property: a property name; else a variable.
    by_property = not origin.name.startswith(REGISTRY_PREFIX)
    hint = registry_property_hint(prop) if by_property else registry_variable_hint(prop)
    if origin.config_file is not None:
        return SettingsError(
            CONFIG_ENV, f"unknown key {origin.name!r} in {origin.config_file!r}{hint}"
        )
    return SettingsError(origin.name, f"{error.message}{hint}")
