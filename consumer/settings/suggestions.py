"""The "did you mean" of an unknown setting or librdkafka property, by `difflib`'s similarity.

A misspelt variable is compared with every name a layer may set (the options, the secrets'
files, the `KAFKA_*` name of every librdkafka property and the `SCHEMA_REGISTRY_*` name of every
registry client property), a misspelt property with every property of its client
(`librdkafka_names.py`, `registry_properties.KNOWN`); a property that has a setting of its own
(`bootstrap.servers`, the registry's `url`) is suggested as that setting, since the
pass-through refuses it. Only a name at least 80%
similar is suggested: "NOPE" gets none, "MEM0_BASEURL" gets MEM0_BASE_URL.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache

from consumer.settings.kafka_properties import DEDICATED_PROPERTIES, property_variable
from consumer.settings.librdkafka_names import PROPERTY_NAMES
from consumer.settings.options import CONFIG_ENV, FLAG_DESTS
from consumer.settings.registry_properties import (
    DEDICATED_REGISTRY_PROPERTIES,
    KNOWN,
    registry_variable,
)

__all__ = [
    "closest",
    "property_hint",
    "registry_property_hint",
    "registry_variable_hint",
    "variable_hint",
]

# Below this, difflib's ratio pairs unrelated names (KAFKA_SERVICE_HOST and KAFKA_INTERCEPTORS
# are 0.67 alike); a dropped or doubled letter, or a missing `_`, stays above 0.9.
_CUTOFF = 0.8


def closest(word: str, candidates: Collection[str]) -> str | None:
    """The candidate most like `word`, or None when none is close (or `word` is one)."""
    import difflib  # not at the top: a suggestion is made only on the way to exit 2

    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=_CUTOFF)
    return matches[0] if matches and matches[0] != word else None


def variable_hint(name: str, *, in_file: bool = False) -> str:
    """ "; did you mean X?" for a variable (or configuration file key) no layer reads, or ""."""
    names = _file_keys() if in_file else _variables()
    match = closest(name.upper(), names)
    return f"; did you mean {match}?" if match else ""


def property_hint(prop: str) -> str:
    """ "; did you mean x.y?" for a property librdkafka does not know, or "" (see module)."""
    match = closest(prop.lower(), PROPERTY_NAMES)
    if match is None:
        return ""
    return f"; did you mean {DEDICATED_PROPERTIES.get(match, match)}?"


def registry_property_hint(prop: str, *, as_variable: bool = False) -> str:
    """ "; did you mean x.y?" for a property the registry client does not know, or "";
    `as_variable`: the suggestion as its `SCHEMA_REGISTRY_*` variable. Properties are compared,
    not variables: the long shared prefix would make any two variables look alike."""
    match = closest(prop.lower(), KNOWN | set(DEDICATED_REGISTRY_PROPERTIES))
    if match is None:
        return ""
    dedicated = DEDICATED_REGISTRY_PROPERTIES.get(match)
    shown = dedicated or (registry_variable(match) if as_variable else match)
    return f"; did you mean {shown}?"


def registry_variable_hint(prop: str) -> str:
    """ "; did you mean SCHEMA_REGISTRY_X?" for the variable of an unknown registry property."""
    return registry_property_hint(prop, as_variable=True)


@cache
def _variables() -> frozenset[str]:
    passed_through = {
        property_variable(prop) for prop in PROPERTY_NAMES if prop not in DEDICATED_PROPERTIES
    }
    registry = {registry_variable(prop) for prop in KNOWN}
    return frozenset(FLAG_DESTS) | passed_through | registry


@cache
def _file_keys() -> frozenset[str]:
    return _variables() - {CONFIG_ENV}  # the file cannot name another file
