"""Where settings come from: flags, then the environment, then the TOML file, then the default.

`build` reads every option of the table (`options.OPTIONS`) through the same `Sources.value`,
so precedence is one rule, not one per setting:

- a flag that is not None wins; then a variable that is set, even to "" (`RECEIPTS_TOPIC=`
  turns receipts off and hides the file's value); then the file's key; then the default;
- a secret is read per layer as its value or its `<NAME>_FILE`, the first layer that has
  either wins, and one layer may not give both;
- librdkafka properties layer the other way round, each over the one below: the file's
  `KAFKA_*` keys, its `[kafka]` table, the environment's `KAFKA_*`, `--kafka-property`.

The configuration file (`--config PATH` or `DELETION_CONSUMER_CONFIG`) is TOML whose keys are
the variables' names (`METRICS_PORT = 9400`, `DELETION_TOPICS = ["a", "b"]`), plus a `[kafka]`
table of properties under their own dotted names (`sasl.mechanism = "SCRAM-SHA-512"`). An
unknown key is an error, so a typo never passes silently. Values become the text a variable
would hold, and go through the same parsers.

Every problem is a `SettingsError` naming the variable (or `--kafka-property`, or
`[kafka] <property>`); the rules that relate two settings run last (`checks.py`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from consumer.settings import checks
from consumer.settings.kafka_properties import is_passed_through, property_name
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

__all__ = ["KAFKA_PROPERTY_FLAG", "build", "is_setting", "read_text"]

T = TypeVar("T")

KAFKA_PROPERTY_FLAG = "--kafka-property"

_PROPERTY = re.compile(r"[A-Za-z0-9._-]+")
# Properties that have a setting of their own.
_DEDICATED = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "metadata.broker.list": "KAFKA_BOOTSTRAP_SERVERS",
    "group.id": "KAFKA_GROUP_ID",
}
_MUST_STAY_FALSE = frozenset({"enable.auto.commit", "enable.auto.offset.store"})


def read_text(path: str) -> str:
    """A secret file's text without its trailing newline."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


def is_setting(name: str) -> bool:
    """Whether an environment variable (or configuration file key) is read as a setting."""
    if name in FLAG_DESTS:
        return True
    if not is_passed_through(name):
        return False
    prop = property_name(name.removesuffix("_FILE").removeprefix("KAFKA_"))
    return _PROPERTY.fullmatch(prop) is not None


def build(
    env: Mapping[str, str],
    flags: Mapping[str, object],
    read_file: Callable[[str], str] | None,
    *,
    needs_mem0: bool,
) -> Settings:
    """Every option from its sources, then the pass-through, then the cross-field checks."""
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
    settings = Settings(**values, kafka_properties=MappingProxyType(_kafka_properties(src)))
    checks.check(settings, needs_mem0=needs_mem0)
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
        self.file_kafka: dict[str, str] = {}  # its [kafka] table, by property name

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
        for key, value in data.items():
            if key == "kafka":
                if not isinstance(value, dict):
                    raise SettingsError(
                        CONFIG_ENV, f"{path!r}: kafka must be a table of librdkafka properties"
                    )
                self.file_kafka = _flatten(path, value)
            elif key == CONFIG_ENV or not is_setting(key):
                raise SettingsError(CONFIG_ENV, _unknown_key(path, key))
            else:
                self.file[key] = _toml_text(path, key, value)


def _unknown_key(path: str, key: str) -> str:
    hint = ""
    if key != key.upper() and is_setting(key.upper()):
        hint = f" (keys are the variables' names: {key.upper()})"
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


def _flatten(path: str, table: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    """`[kafka]` with `sasl.mechanism = ...` parses as nested tables: back to dotted names."""
    out: dict[str, str] = {}
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(_flatten(path, value, name + "."))
        else:
            out[name] = _toml_text(path, f"[kafka] {name}", value)
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


# --- the librdkafka pass-through ------------------------------------------------------------


def _check_property(name: str, prop: str, value: str) -> None:
    if not _PROPERTY.fullmatch(prop):
        raise SettingsError(name, f"invalid property name {shown(prop)}")
    if prop in _DEDICATED:
        raise SettingsError(name, f"{prop} is set with {_DEDICATED[prop]}")
    if prop in _MUST_STAY_FALSE and value.strip().lower() != "false":
        raise SettingsError(name, f"{prop} must stay false: offsets are stored after the work")


def _kafka_properties(src: _Sources) -> dict[str, str]:
    """Lowest layer first, so each overrides the one below: file, environment, flags."""
    props = _variable_properties(src, src.file)
    for prop, value in src.file_kafka.items():
        _check_property(f"[kafka] {prop}", prop, value)
        props[prop] = value
    props.update(_variable_properties(src, src.env))
    for item in _flag_items(src.flags.get("kafka_property")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(KAFKA_PROPERTY_FLAG, "expected KEY=VALUE")
        _check_property(KAFKA_PROPERTY_FLAG, key.strip(), value)
        props[key.strip()] = value
    return props


def _variable_properties(src: _Sources, variables: Mapping[str, str]) -> dict[str, str]:
    """`KAFKA_<NAME>` and `KAFKA_<NAME>_FILE` entries of one layer (environment or file)."""
    props: dict[str, str] = {}
    for name in sorted(variables):
        # KAFKA_BOOTSTRAP_SERVERS and KAFKA_GROUP_ID are options of their own.
        if name in BY_ENV or not is_passed_through(name):
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
        prop = property_name(base.removeprefix("KAFKA_"))
        _check_property(name, prop, value)
        props[prop] = value
    return props


def _flag_items(value: object) -> list[str]:
    """`--kafka-property` values: a list from argparse, or a mapping or string from a caller."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [str(value)]
    return [str(item) for item in value]
