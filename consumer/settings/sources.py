"""Where settings come from: flags, then the environment, then the TOML file, then the default.

`build` reads every option of the table (`options.OPTIONS`) through the same `Sources.value`,
so precedence is one rule, not one per setting:

- a flag that is not None wins; then a variable that is set, even to "" (`RECEIPTS_TOPIC=`
  turns receipts off and hides the file's value); then the file's key; then the default;
- a secret is read per layer as its value or its `<NAME>_FILE`, the first layer that has
  either wins, and one layer may not give both;
- the clients' properties layer the other way round, each over the one below: the file's
  `KAFKA_*` keys, its `[kafka]` table, the environment's `KAFKA_*`, `--kafka-property`; and
  alike for the Schema Registry client's, `SCHEMA_REGISTRY_*`, `[schema_registry]` and
  `--schema-registry-property` (`registry_properties.py`).

The configuration file (`--config PATH` or `DELETION_CONSUMER_CONFIG`) is TOML whose keys are
the variables' names (`METRICS_PORT = 9400`, `DELETION_TOPICS = ["a", "b"]`), plus a `[kafka]`
table of properties under their own dotted names (`sasl.mechanism = "SCRAM-SHA-512"`) and a
`[schema_registry]` table (`basic.auth.user.info = "..."`). An unknown key is an error naming
it as written, with the closest known name if one is close (`suggestions.py`), so a typo never
passes silently. Which `KAFKA_*` keys and `[kafka]` properties exist only librdkafka knows, and
which registry properties only the registry client: `check_clients=True` has them judge
(`client_check.py`, `registry_check.py`), and an unknown one is then an unknown key of the
file too. Values become the text a variable would hold, and go through the same parsers (a
registry property's number or file is checked here, `registry_properties.registry_value`).

Every problem is a `SettingsError` naming the variable (or the flag, or `[kafka] <property>`,
`[schema_registry] <property>`); the rules that relate two settings run last (`checks.py`),
then the clients' judgement when asked for.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from consumer.settings import checks, client_check, registry_check
from consumer.settings.client_check import Origin
from consumer.settings.kafka_properties import (
    DEDICATED_PROPERTIES,
    is_passed_through,
    property_name,
)
from consumer.settings.options import (
    BY_ENV,
    CONFIG_ENV,
    FLAG_DESTS,
    OPTIONS,
    Option,
    Secret,
    Settings,
    SettingsError,
)
from consumer.settings.parsers import Invalid, shown
from consumer.settings.registry_properties import (
    DEDICATED_REGISTRY_PROPERTIES,
    REGISTRY_PREFIX,
    is_registry_passed_through,
    registry_value,
)
from consumer.settings.suggestions import variable_hint

__all__ = ["KAFKA_PROPERTY_FLAG", "REGISTRY_PROPERTY_FLAG", "build", "is_setting", "read_text"]

T = TypeVar("T")

KAFKA_PROPERTY_FLAG = "--kafka-property"
REGISTRY_PROPERTY_FLAG = "--schema-registry-property"

_PROPERTY = re.compile(r"[A-Za-z0-9._-]+")
# Properties the consumer's correctness rests on, and why.
_MUST_STAY_FALSE = {
    "enable.auto.commit": "offsets are stored after the work",
    "enable.auto.offset.store": "offsets are stored after the work",
    # A dead letter's write waits for its record's report (the receipts' producer sets it
    # itself, kafka/batch_producer.py): with success reports off it would wait for ever.
    "delivery.report.only.error": "a dead letter waits for its delivery report",
}


def read_text(path: str) -> str:
    """A secret file's text without its trailing newline."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


def is_setting(name: str) -> bool:
    """Whether an environment variable (or configuration file key) is read as a setting."""
    if name in FLAG_DESTS:
        return True
    family = next((f for f in _FAMILIES if f.claims(name)), None)
    if family is None:
        return False
    prop = property_name(name.removesuffix("_FILE").removeprefix(family.prefix))
    return _PROPERTY.fullmatch(prop) is not None


def build(
    env: Mapping[str, str],
    flags: Mapping[str, object],
    read_file: Callable[[str], str] | None,
    *,
    needs_mem0: bool,
    check_clients: bool = False,
) -> Settings:
    """Every option from its sources, then the pass-through, then the cross-field checks;
    `check_clients`: then librdkafka's judgement of the clients `run` builds (offline)."""
    src = _Sources(env, flags, read_file or read_text)
    src.load_config()
    defaults = Settings()
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        if opt.secret:
            values[opt.dest] = src.secret(opt)
        else:
            assert opt.parse is not None
            values[opt.dest] = src.value(opt, opt.parse, getattr(defaults, opt.dest))
    props, origins = _properties(src, _KAFKA)
    registry_props, registry_origins = _properties(src, _REGISTRY)
    settings = Settings(
        **values,
        kafka_properties=MappingProxyType(props),
        schema_registry_properties=MappingProxyType(registry_props),
    )
    checks.check(settings, needs_mem0=needs_mem0)
    if check_clients:
        client_check.check_clients(settings, origins)
        registry_check.check_registry(settings, registry_origins)
    return settings


class _Sources:
    """The layers, highest first: flags, environment, configuration file."""

    def __init__(
        self, env: Mapping[str, str], flags: Mapping[str, object], read_file: Callable[[str], str]
    ) -> None:
        self.env = env
        self.flags = flags
        self._read_file = read_file
        self.file: dict[str, str] = {}  # the configuration file's keys, values as text
        # Its [kafka] and [schema_registry] tables, by table, then by property name.
        self.file_tables: dict[str, dict[str, str]] = {}
        self.file_path: str | None = None  # the file's path as given, once read

    def _flag(self, name: str) -> str | None:
        value = self.flags.get(FLAG_DESTS[name])
        return None if value is None else _flag_text(value)

    def text(self, name: str) -> str | None:
        flag = self._flag(name)
        if flag is not None:
            return flag
        # A variable set to "" is set (RECEIPTS_TOPIC= turns receipts off): it hides the file.
        return self.env[name] if name in self.env else self.file.get(name)

    def value(self, opt: Option, parse: Callable[[str], T], default: T) -> T:
        text = self.text(opt.env)
        if text is None:
            return default
        try:
            return parse(text)
        except Invalid as exc:
            raise SettingsError(opt.env, str(exc)) from exc

    def secret(self, opt: Option) -> Secret:
        """Per layer (flags, environment, configuration file) the value or its file: first wins."""
        name, file_name = opt.env, opt.file_env
        layers = (
            (self._flag(name), self._flag(file_name)),
            (self.env.get(name), self.env.get(file_name)),
            (self.file.get(name), self.file.get(file_name)),
        )
        for raw, path in layers:
            value = None if raw is None else raw.strip()
            if value and path is not None:
                raise SettingsError(file_name, f"cannot be combined with {name}")
            if path is not None:  # an empty variable beside its _FILE counts as unset
                return Secret(self.read(file_name, path).strip())
            if value is not None:
                return Secret(value)
        return Secret()

    def read(self, name: str, path: str, *, may_be_empty: bool = False) -> str:
        try:
            text = self._read_file(path)
        except (OSError, ValueError) as exc:
            raise SettingsError(name, f"cannot read {path!r}: {_reason(exc)}") from exc
        if not text.strip() and not may_be_empty:
            raise SettingsError(name, f"{path!r} is empty")
        return text

    def load_config(self) -> None:
        """Read the configuration file named by the flag or the variable, if any."""
        path = (self.text(CONFIG_ENV) or "").strip()
        if not path:
            return
        try:
            data = tomllib.loads(self.read(CONFIG_ENV, path, may_be_empty=True))
        except tomllib.TOMLDecodeError as exc:
            problem = " ".join(str(exc).split())
            raise SettingsError(CONFIG_ENV, f"{path!r} is not valid TOML: {problem}") from exc
        self.file_path = path
        tables = {family.table: family for family in _FAMILIES}
        for key, value in data.items():
            if key in tables:
                if not isinstance(value, dict):
                    raise SettingsError(
                        CONFIG_ENV, f"{path!r}: {key} must be a table of {tables[key].what}"
                    )
                self.file_tables[key] = _flatten(path, key, value)
            elif key == CONFIG_ENV or not is_setting(key):
                raise SettingsError(CONFIG_ENV, _unknown_key(path, key))
            else:
                self.file[key] = _toml_text(path, key, value)


def _unknown_key(path: str, key: str) -> str:
    if key != key.upper() and is_setting(key.upper()):
        hint = f" (keys are the variables' names: {key.upper()})"
    else:
        hint = variable_hint(key, in_file=True)
    return f"unknown key {key!r} in {path!r}{hint}"


def _toml_text(path: str, key: str, value: object) -> str:
    """A TOML value as the text a variable would hold: true/false, numbers, lists joined by ','."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return ",".join(_toml_text(path, key, item) for item in value)
    raise SettingsError(
        CONFIG_ENV, f"{path!r}: {key} must be a string, number, boolean or list of them"
    )


def _flatten(
    path: str, title: str, table: Mapping[str, object], prefix: str = ""
) -> dict[str, str]:
    """`[kafka]` with `sasl.mechanism = ...` parses as nested tables: back to dotted names."""
    out: dict[str, str] = {}
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(_flatten(path, title, value, name + "."))
        else:
            out[name] = _toml_text(path, f"[{title}] {name}", value)
    return out


def _flag_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


# --- the clients' pass-through ---------------------------------------------------------------


def _check_property(name: str, prop: str, value: str) -> None:
    if not _PROPERTY.fullmatch(prop):
        raise SettingsError(name, f"invalid property name {shown(prop)}")
    if prop in DEDICATED_PROPERTIES:
        raise SettingsError(name, f"{prop} is set with {DEDICATED_PROPERTIES[prop]}")
    if prop in _MUST_STAY_FALSE and value.strip().lower() != "false":
        raise SettingsError(name, f"{prop} must stay false: {_MUST_STAY_FALSE[prop]}")


def _check_registry_property(name: str, prop: str, value: str) -> None:
    if not _PROPERTY.fullmatch(prop):
        raise SettingsError(name, f"invalid property name {shown(prop)}")
    if prop in DEDICATED_REGISTRY_PROPERTIES:
        raise SettingsError(name, f"{prop} is set with {DEDICATED_REGISTRY_PROPERTIES[prop]}")
    try:
        registry_value(prop, value)
    except Invalid as exc:
        raise SettingsError(name, str(exc)) from exc


@dataclass(frozen=True)
class _Family:
    """One client's pass-through: its variables' prefix, the file's table, the flag."""

    prefix: str  # KAFKA_
    table: str  # kafka: the configuration file's [kafka]
    flag: str  # --kafka-property
    flag_dest: str  # kafka_property
    what: str  # what the table holds, for a complaint
    claims: Callable[[str], bool]  # whether a variable of the prefix is a property
    check: Callable[[str, str, str], None]  # (where it was set, property, value)


_KAFKA = _Family(
    "KAFKA_", "kafka", KAFKA_PROPERTY_FLAG, "kafka_property", "librdkafka properties",
    is_passed_through, _check_property,
)  # fmt: skip
_REGISTRY = _Family(
    REGISTRY_PREFIX, "schema_registry", REGISTRY_PROPERTY_FLAG, "schema_registry_property",
    "Schema Registry client properties", is_registry_passed_through, _check_registry_property,
)  # fmt: skip
_FAMILIES = (_KAFKA, _REGISTRY)

_Properties = dict[str, tuple[str, Origin]]  # by property: its value, and where it was set


def _properties(src: _Sources, family: _Family) -> tuple[dict[str, str], dict[str, Origin]]:
    """One client's properties and where each was set. Lowest layer first, so each overrides
    the one below: file, environment, flags."""
    props = _variable_properties(src, family, src.file, src.file_path)
    for prop, value in src.file_tables.get(family.table, {}).items():
        name = f"[{family.table}] {prop}"
        family.check(name, prop, value)
        props[prop] = (value, Origin(name, src.file_path))
    props.update(_variable_properties(src, family, src.env, None))
    for item in _flag_items(src.flags.get(family.flag_dest)):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(family.flag, "expected KEY=VALUE")
        family.check(family.flag, key.strip(), value)
        props[key.strip()] = (value, Origin(family.flag))
    values = {prop: value for prop, (value, _) in props.items()}
    return values, {prop: origin for prop, (_, origin) in props.items()}


def _variable_properties(
    src: _Sources, family: _Family, variables: Mapping[str, str], config_file: str | None
) -> _Properties:
    """`<PREFIX><NAME>` and `<PREFIX><NAME>_FILE` entries of one layer (the environment, or
    the configuration file `config_file`)."""
    props: _Properties = {}
    for name in sorted(variables):
        # KAFKA_BOOTSTRAP_SERVERS, KAFKA_GROUP_ID and SCHEMA_REGISTRY_URL are options.
        if name in BY_ENV or not family.claims(name):
            continue
        if name.endswith("_FILE"):
            base = name.removesuffix("_FILE")
            if variables.get(base, "").strip():
                raise SettingsError(name, f"cannot be combined with {base}")
            value = src.read(name, variables[name])
        elif name + "_FILE" in variables and not variables[name].strip():
            continue  # an empty variable beside its _FILE counts as unset
        else:
            base, value = name, variables[name]
        prop = property_name(base.removeprefix(family.prefix))
        family.check(name, prop, value)
        props[prop] = (value, Origin(name, config_file))
    return props


def _flag_items(value: object) -> list[str]:
    """A property flag's values: a list from argparse, or a mapping or string from a caller."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [str(value)]
    return [str(item) for item in value]
