"""One frozen settings object, read from flags, an explicit environment mapping and a TOML file.

Precedence is flag > environment > configuration file > default. Every bad value raises
`SettingsError`, whose text is one line naming the environment variable (CONTRACT section 8: the
CLI prints it, exit 2).

The configuration file (`--config PATH` or `DELETION_CONSUMER_CONFIG`) is TOML whose keys are the
environment variables' names (`METRICS_PORT = 9400`, `DELETION_TOPICS = ["a", "b"]`,
`KAFKA_SASL_PASSWORD_FILE = "/run/secrets/kafka"`), plus a `[kafka]` table of librdkafka
properties under their own dotted names (`sasl.mechanism = "SCRAM-SHA-512"`). An unknown key is
an error, so a typo never passes silently.

librdkafka properties pass through the way Confluent's images do it: `KAFKA_<NAME>` becomes
`<name>` lower-cased, `_` -> `.`, `__` -> `_`, `___` -> `-` (`KAFKA_SESSION_TIMEOUT_MS` is
`session.timeout.ms`, `KAFKA_LOG__LEVEL` is `log_level`); `KAFKA_<NAME>_FILE` reads the value
from a file; `--kafka-property key=value` adds or overrides. Secrets (`MEM0_API_KEY`,
`LOG_HASH_KEY`, and any property named like a password, secret or key) are never rendered.
`MEM0_API_KEY_FILE` and `LOG_HASH_KEY_FILE` read those secrets from files. The API key is never
sent over plain `http://` to a host that is not loopback unless `MEM0_ALLOW_INSECURE_HTTP` says so.

When `LOG_HASH_KEY` is empty, identifiers in logs are hashed with a random key made when this
process starts, so their hashes are comparable within one process only.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import math
import re
import secrets
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "CONFIG_ENV",
    "Secret",
    "Settings",
    "SettingsError",
    "add_arguments",
    "from_args",
    "is_setting",
    "property_variable",
]

T = TypeVar("T")
Backend = Literal["platform", "oss"]

MASK = "********"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text")
# The Mem0 calls' HTTP client: auto is the lean one, or aiohttp when a proxy is set.
HTTP_CLIENTS = ("auto", "lean", "aiohttp", "httpx")
KAFKA_PROPERTY_FLAG = "--kafka-property"
CONFIG_ENV = "DELETION_CONSUMER_CONFIG"

# Made once per process: with no LOG_HASH_KEY, hashes are comparable within this process only.
_PROCESS_HASH_KEY = secrets.token_bytes(32)


def _read_text(path: str) -> str:
    """A secret file's text without its trailing newline."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


class SettingsError(Exception):
    """A setting with a bad value; `name` is its environment variable, str() is one line."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class Secret:
    """A string that prints as a mask; `reveal()` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __repr__(self) -> str:
        return repr(str(self))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, repr=False)
class Settings:
    """The effective configuration; build it with `from_sources` or `from_args`."""

    config_file: str | None = None
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "mem0-deletion-consumer"
    topics: tuple[str, ...] = ("memory.deletions",)
    dlq_topic: str = "memory.deletions.dlq"
    receipts_topic: str | None = "memory.deletions.receipts"
    schema_registry_url: str | None = None
    mem0_backend: Backend = "platform"
    mem0_base_url: str = "https://api.mem0.ai"
    mem0_api_key: Secret = field(default_factory=Secret)
    mem0_allow_insecure_http: bool = False
    metrics_port: int = 9400
    flush_max_events: int = 5000
    flush_max_bytes: int = 8 * 1024 * 1024
    flush_max_wait_ms: int = 150
    # Calls in flight bound a burst of scopes (two calls each, latency-bound): at 5 ms per call
    # 32 held the burst near 1.5k events/s, 64 took it to 2.7k (bench/e2e.py); 429s still
    # slow it down through the adaptive pacing, whatever this is.
    mem0_max_concurrency: int = 64
    mem0_http_client: str = "auto"
    mem0_batch_size: int = 1000
    mem0_timeout_s: float = 30.0
    mem0_job_poll_interval_ms: int = 100
    # Nothing documents how soon a new Platform job is readable: a 404 this soon is waited out.
    mem0_job_not_found_grace_s: float = 10.0
    # A self-hosted 502 `unknown` may be deterministic: tried this many more times, at most.
    mem0_unknown_error_retries: int = 5
    erase_user_entity: bool = True
    verify_deletes: bool = True
    verify_sample_share: float = 0.001  # one id of a full batch of 1000
    verify_max_rounds: int = 3
    retry_base_ms: int = 200
    retry_cap_s: float = 30.0
    retry_after_cap_s: float = 300.0
    retry_max_duration_s: float = 0.0  # 0: retry for ever
    # Events bound the memory of what is in flight (messages, events: ~1 KB each); operations
    # bound the Mem0 work queued behind them (a task and its state each, ~8 KB, and the time a
    # revoke waits). User deletions plan ~1 operation per event, ids a thousand to one.
    max_in_flight_events: int = 100_000
    max_in_flight_operations: int = 20_000
    commit_interval_ms: int = 1000
    shutdown_timeout_s: float = 30.0
    mem0_probe_interval_s: float = 15.0
    dlq_guard_max_share: float = 0.5  # 1: never trips
    dlq_guard_window: int = 1000
    dlq_guard_min_events: int = 100
    log_level: str = "INFO"
    log_format: str = "json"
    log_ids_in_clear: bool = False
    log_hash_key: Secret = field(default_factory=Secret)  # empty: random per process
    kafka_properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_sources(
        cls,
        env: Mapping[str, str],
        flags: Mapping[str, object] | None = None,
        *,
        read_file: Callable[[str], str] = _read_text,
        needs_mem0: bool = True,
    ) -> Settings:
        """Settings from an environment mapping and flags keyed by field name (None: unset).

        The configuration file is named by the `config_file` flag or `DELETION_CONSUMER_CONFIG`.
        `read_file` reads it and the *_FILE secrets; tests pass a fake and never touch os.environ.
        """
        return _build(_Sources(env, flags or {}, read_file), needs_mem0=needs_mem0)

    def describe(self) -> dict[str, str]:
        """The effective configuration by variable name, secrets masked; properties last."""
        out: dict[str, str] = {}
        for option in _OPTIONS:
            if option.kind == "file":
                continue
            value = getattr(self, option.dest)
            if option.env == "LOG_HASH_KEY" and not value:
                out[option.env] = "(random per process)"
            else:
                out[option.env] = _render(value)
        out.update(_masked(self.kafka_properties))
        return out

    def consumer_config(self) -> dict[str, object]:
        """librdkafka consumer configuration: offsets stored by hand, pass-through last."""
        config: dict[str, object] = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
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
        props = self.kafka_properties
        if props.get("group.protocol") == "consumer":
            # KIP-848 groups assign on the broker and reject this property.
            del config["partition.assignment.strategy"]
        config.update((k, v) for k, v in props.items() if k not in _PRODUCER_ONLY)
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

    def producer_config(self) -> dict[str, object]:
        """librdkafka producer configuration (DLQ, receipts), without consumer-only properties."""
        config: dict[str, object] = {
            "bootstrap.servers": self.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
        config.update((k, v) for k, v in self.kafka_properties.items() if not _consumer_only(k))
        return config

    def id_hash_key(self) -> bytes:
        """The key for hashing identifiers in logs: LOG_HASH_KEY, else the per-process key."""
        return self.log_hash_key.reveal().encode() or _PROCESS_HASH_KEY

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value: object = getattr(self, f.name)
            if f.name == "kafka_properties":
                value = _masked(self.kafka_properties)
            elif isinstance(value, str) and f.name.endswith("_url"):
                value = _redact_url(value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"


# --- options: one per setting, each an environment variable and a flag ---------------------


@dataclass(frozen=True)
class _Option:
    env: str
    dest: str  # the Settings field (or flag destination for *_FILE)
    help: str
    flag: str = ""
    kind: Literal["value", "bool", "secret", "file"] = "value"
    metavar: str = ""

    @property
    def option_string(self) -> str:
        return self.flag or "--" + self.env.lower().replace("_", "-")


# fmt: off
_OPTIONS = (
    _Option(CONFIG_ENV, "config_file",
            "TOML file of settings: keys are these variables' names, [kafka] holds librdkafka "
            "properties; flags and variables override it", flag="--config", metavar="PATH"),
    _Option("KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers", "Kafka brokers, host:port,...",
            flag="--bootstrap-servers"),
    _Option("KAFKA_GROUP_ID", "group_id", "consumer group id", flag="--group-id"),
    _Option("DELETION_TOPICS", "topics", "input topics, comma separated (^regex allowed)",
            flag="--topics"),
    _Option("DLQ_TOPIC", "dlq_topic", "dead-letter topic"),
    _Option("RECEIPTS_TOPIC", "receipts_topic", "receipts topic; empty: no receipts"),
    _Option("SCHEMA_REGISTRY_URL", "schema_registry_url",
            "Confluent Schema Registry URL; unset: single-object encoding only"),
    _Option("MEM0_BACKEND", "mem0_backend", "platform or oss"),
    _Option("MEM0_BASE_URL", "mem0_base_url", "Mem0 API base URL"),
    _Option("MEM0_API_KEY", "mem0_api_key",
            "Mem0 API key; prefer the variable or a file (command lines are visible to others)",
            kind="secret"),
    _Option("MEM0_API_KEY_FILE", "mem0_api_key_file", "read the Mem0 API key from this file",
            kind="file"),
    _Option("MEM0_ALLOW_INSECURE_HTTP", "mem0_allow_insecure_http",
            "allow sending the API key over plain http:// to a host that is not loopback "
            "(a sandbox on a private network only)", kind="bool"),
    _Option("METRICS_PORT", "metrics_port", "port of /metrics, /healthz, /readyz; 0: none"),
    _Option("FLUSH_MAX_EVENTS", "flush_max_events", "events per flush at most"),
    _Option("FLUSH_MAX_BYTES", "flush_max_bytes", "message bytes per flush at most"),
    _Option("FLUSH_MAX_WAIT_MS", "flush_max_wait_ms", "longest wait before a flush"),
    _Option("MEM0_MAX_CONCURRENCY", "mem0_max_concurrency", "Mem0 calls in flight at most"),
    _Option("MEM0_HTTP_CLIENT", "mem0_http_client",
            "HTTP client of the Mem0 calls: auto (lean, or aiohttp behind a proxy), lean, "
            "aiohttp or httpx"),
    _Option("MEM0_BATCH_SIZE", "mem0_batch_size", "memory ids per batch delete, 1..1000"),
    _Option("MEM0_TIMEOUT_S", "mem0_timeout_s", "timeout of one Mem0 call, seconds"),
    _Option("MEM0_JOB_POLL_INTERVAL_MS", "mem0_job_poll_interval_ms",
            "interval between job status polls"),
    _Option("MEM0_JOB_NOT_FOUND_GRACE_S", "mem0_job_not_found_grace_s",
            "how long a Platform job that answers 404 is taken for one not yet readable, "
            "seconds; then its delete is issued again"),
    _Option("MEM0_UNKNOWN_ERROR_RETRIES", "mem0_unknown_error_retries",
            "retries of a self-hosted 502 with code unknown before retries_exhausted"),
    _Option("ERASE_USER_ENTITY", "erase_user_entity",
            "a UserDeleted also deletes the user's Platform entity record "
            "(DELETE /v2/entities/user/{id}/)", kind="bool"),
    _Option("VERIFY_DELETES", "verify_deletes",
            "check each delete afterwards (list the scope, read a sample of ids back) and "
            "delete again what is left", kind="bool"),
    _Option("VERIFY_SAMPLE_SHARE", "verify_sample_share",
            "share of a batch's ids read back to verify it, 0..1 (0: none)"),
    _Option("VERIFY_MAX_ROUNDS", "verify_max_rounds",
            "re-deletes of what a check found left before dead-lettering as "
            "verification_failed"),
    _Option("RETRY_BASE_MS", "retry_base_ms", "first retry delay (exponential, full jitter)"),
    _Option("RETRY_CAP_S", "retry_cap_s", "longest retry delay, seconds"),
    _Option("RETRY_AFTER_CAP_S", "retry_after_cap_s", "longest Retry-After honoured, seconds"),
    _Option("RETRY_MAX_DURATION_S", "retry_max_duration_s",
            "give up (DLQ retries_exhausted) after this long, seconds; 0: never"),
    _Option("MAX_IN_FLIGHT_EVENTS", "max_in_flight_events",
            "uncommitted events before partitions pause"),
    _Option("MAX_IN_FLIGHT_OPERATIONS", "max_in_flight_operations",
            "Mem0 operations planned or queued before partitions pause"),
    _Option("COMMIT_INTERVAL_MS", "commit_interval_ms", "interval between offset commits"),
    _Option("SHUTDOWN_TIMEOUT_S", "shutdown_timeout_s", "drain time on SIGTERM, seconds"),
    _Option("MEM0_PROBE_INTERVAL_S", "mem0_probe_interval_s",
            "while halted by 401/403, seconds between probes"),
    _Option("DLQ_GUARD_MAX_SHARE", "dlq_guard_max_share",
            "stop dead-lettering past this share of recent events (0..1; 1: off)"),
    _Option("DLQ_GUARD_WINDOW", "dlq_guard_window", "recent events the DLQ guard looks at"),
    _Option("DLQ_GUARD_MIN_EVENTS", "dlq_guard_min_events",
            "finished events before the DLQ guard judges"),
    _Option("LOG_LEVEL", "log_level", "DEBUG, INFO, WARNING or ERROR"),
    _Option("LOG_FORMAT", "log_format", "json or text"),
    _Option("LOG_IDS_IN_CLEAR", "log_ids_in_clear",
            "log user/agent/run/memory ids in clear instead of keyed hashes", kind="bool"),
    _Option("LOG_HASH_KEY", "log_hash_key",
            "key for hashing ids in logs; empty: random per process (hashes comparable "
            "within one process only)", kind="secret"),
    _Option("LOG_HASH_KEY_FILE", "log_hash_key_file", "read LOG_HASH_KEY from this file",
            kind="file"),
)
# fmt: on
_BY_ENV = {option.env: option for option in _OPTIONS}
_FLAG_DESTS = frozenset({option.dest for option in _OPTIONS} | {"kafka_property"})


def is_setting(name: str) -> bool:
    """Whether an environment variable (or configuration file key) is read as a setting."""
    if name in _BY_ENV:
        return True
    if not name.startswith("KAFKA_") or _NOT_PROPERTIES.fullmatch(name):
        return False
    prop = _property_name(name.removesuffix("_FILE").removeprefix("KAFKA_"))
    return _PROPERTY.fullmatch(prop) is not None


def property_variable(prop: str) -> str:
    """The `KAFKA_*` variable that sets a librdkafka property (the inverse of the convention)."""
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One long option per setting, all defaulting to None so unset flags fall back to env."""
    group = parser.add_argument_group("configuration (each option also an environment variable)")
    defaults = Settings().describe()
    for option in _OPTIONS:
        if option.kind in ("secret", "file"):
            note = f"[env {option.env}]"  # never show a secret's value
        else:
            note = f"[env {option.env}, default {defaults[option.env] or 'unset'}]"
        help_text = f"{option.help} {note}".replace("%", "%%")
        if option.kind == "bool":
            group.add_argument(
                option.option_string,
                dest=option.dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                option.option_string,
                dest=option.dest,
                default=None,
                metavar=option.metavar or ("PATH" if option.kind == "file" else option.env),
                help=help_text,
            )
    group.add_argument(
        KAFKA_PROPERTY_FLAG,
        dest="kafka_property",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="librdkafka property, repeatable; overrides KAFKA_<NAME> variables",
    )


def from_args(
    args: argparse.Namespace, env: Mapping[str, str], *, needs_mem0: bool = True
) -> Settings:
    """Settings from parsed arguments (see `add_arguments`) over the environment."""
    flags = {k: v for k, v in vars(args).items() if k in _FLAG_DESTS}
    return Settings.from_sources(env, flags, needs_mem0=needs_mem0)


# --- sources --------------------------------------------------------------------------------


class _Invalid(ValueError):
    """A parser's complaint; the caller names the setting."""


class _Sources:
    """The layers, highest first: flags, environment, configuration file."""

    def __init__(
        self, env: Mapping[str, str], flags: Mapping[str, object], read_file: Callable[[str], str]
    ) -> None:
        self.env = env
        self.flags = flags
        self._read_file = read_file
        self.config_path: str | None = None
        self.file: dict[str, str] = {}  # the configuration file's keys, values as text
        self.file_kafka: dict[str, str] = {}  # its [kafka] table, by property name

    def _flag(self, name: str) -> str | None:
        value = self.flags.get(_BY_ENV[name].dest)
        return None if value is None else _flag_text(value)

    def text(self, name: str) -> str | None:
        flag = self._flag(name)
        if flag is not None:
            return flag
        # A variable set to "" is set (RECEIPTS_TOPIC= turns receipts off): it hides the file.
        return self.env[name] if name in self.env else self.file.get(name)

    def value(self, name: str, parse: Callable[[str], T], default: T) -> T:
        text = self.text(name)
        if text is None:
            return default
        try:
            return parse(text)
        except _Invalid as exc:
            raise SettingsError(name, str(exc)) from exc

    def secret(self, name: str) -> Secret:
        """Per layer (flags, environment, configuration file) the value or its file: first wins."""
        file_name = name + "_FILE"
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
        self.config_path = path
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


# --- building -------------------------------------------------------------------------------


def _build(src: _Sources, *, needs_mem0: bool) -> Settings:
    d = Settings()
    src.load_config()
    topics = src.value("DELETION_TOPICS", _topics, d.topics)
    dlq_topic = src.value("DLQ_TOPIC", _topic, d.dlq_topic)
    receipts_topic = src.value("RECEIPTS_TOPIC", _optional(_topic), d.receipts_topic)
    if _subscribed(dlq_topic, topics):
        raise SettingsError("DLQ_TOPIC", "must not be one of the input topics (DELETION_TOPICS)")
    if receipts_topic is not None:
        if _subscribed(receipts_topic, topics):
            raise SettingsError(
                "RECEIPTS_TOPIC", "must not be one of the input topics (DELETION_TOPICS)"
            )
        if receipts_topic == dlq_topic:
            raise SettingsError("RECEIPTS_TOPIC", "must differ from DLQ_TOPIC")

    backend = src.value("MEM0_BACKEND", _backend, d.mem0_backend)
    api_key = src.secret("MEM0_API_KEY")
    # Commands that never call Mem0 (produce, config) need no key.
    if needs_mem0 and backend == "platform" and not api_key:
        raise SettingsError("MEM0_API_KEY", "required for the platform backend")
    base_url = src.value("MEM0_BASE_URL", _http_url, d.mem0_base_url)
    allow_http = src.value("MEM0_ALLOW_INSECURE_HTTP", _bool, d.mem0_allow_insecure_http)
    if api_key and not allow_http and _in_clear_off_host(base_url):
        raise SettingsError(
            "MEM0_BASE_URL",
            f"refusing to send the API key in clear to {_shown(_redact_url(base_url))} (not "
            "loopback); use https://, or MEM0_ALLOW_INSECURE_HTTP=true for a sandbox",
        )

    retry_base_ms = src.value("RETRY_BASE_MS", _integer(1, 60_000), d.retry_base_ms)
    retry_cap_s = src.value("RETRY_CAP_S", _number(0, 3600, above=True), d.retry_cap_s)
    if retry_cap_s * 1000 < retry_base_ms:
        raise SettingsError("RETRY_CAP_S", f"must be at least RETRY_BASE_MS ({retry_base_ms} ms)")

    return Settings(
        config_file=src.config_path,
        bootstrap_servers=src.value("KAFKA_BOOTSTRAP_SERVERS", _non_empty, d.bootstrap_servers),
        group_id=src.value("KAFKA_GROUP_ID", _non_empty, d.group_id),
        topics=topics,
        dlq_topic=dlq_topic,
        receipts_topic=receipts_topic,
        schema_registry_url=src.value(
            "SCHEMA_REGISTRY_URL", _optional(_http_url), d.schema_registry_url
        ),
        mem0_backend=backend,
        mem0_base_url=base_url,
        mem0_api_key=api_key,
        mem0_allow_insecure_http=allow_http,
        metrics_port=src.value("METRICS_PORT", _integer(0, 65535), d.metrics_port),
        flush_max_events=src.value("FLUSH_MAX_EVENTS", _integer(1, 1_000_000), d.flush_max_events),
        flush_max_bytes=src.value("FLUSH_MAX_BYTES", _integer(1, 1 << 30), d.flush_max_bytes),
        flush_max_wait_ms=src.value("FLUSH_MAX_WAIT_MS", _integer(0, 60_000), d.flush_max_wait_ms),
        mem0_max_concurrency=src.value(
            "MEM0_MAX_CONCURRENCY", _integer(1, 1024), d.mem0_max_concurrency
        ),
        mem0_batch_size=src.value("MEM0_BATCH_SIZE", _integer(1, 1000), d.mem0_batch_size),
        mem0_timeout_s=src.value("MEM0_TIMEOUT_S", _number(0, 600, above=True), d.mem0_timeout_s),
        mem0_job_poll_interval_ms=src.value(
            "MEM0_JOB_POLL_INTERVAL_MS", _integer(1, 60_000), d.mem0_job_poll_interval_ms
        ),
        mem0_job_not_found_grace_s=src.value(
            "MEM0_JOB_NOT_FOUND_GRACE_S", _number(0, 3600), d.mem0_job_not_found_grace_s
        ),
        mem0_unknown_error_retries=src.value(
            "MEM0_UNKNOWN_ERROR_RETRIES", _integer(0, 1000), d.mem0_unknown_error_retries
        ),
        erase_user_entity=src.value("ERASE_USER_ENTITY", _bool, d.erase_user_entity),
        verify_deletes=src.value("VERIFY_DELETES", _bool, d.verify_deletes),
        verify_sample_share=src.value("VERIFY_SAMPLE_SHARE", _number(0, 1), d.verify_sample_share),
        verify_max_rounds=src.value("VERIFY_MAX_ROUNDS", _integer(0, 100), d.verify_max_rounds),
        retry_base_ms=retry_base_ms,
        retry_cap_s=retry_cap_s,
        retry_after_cap_s=src.value("RETRY_AFTER_CAP_S", _number(0, 86_400), d.retry_after_cap_s),
        retry_max_duration_s=src.value(
            "RETRY_MAX_DURATION_S", _number(0, 30 * 86_400), d.retry_max_duration_s
        ),
        max_in_flight_events=src.value(
            "MAX_IN_FLIGHT_EVENTS", _integer(1, 10_000_000), d.max_in_flight_events
        ),
        max_in_flight_operations=src.value(
            "MAX_IN_FLIGHT_OPERATIONS", _integer(1, 10_000_000), d.max_in_flight_operations
        ),
        commit_interval_ms=src.value(
            "COMMIT_INTERVAL_MS", _integer(0, 600_000), d.commit_interval_ms
        ),
        shutdown_timeout_s=src.value("SHUTDOWN_TIMEOUT_S", _number(0, 3600), d.shutdown_timeout_s),
        mem0_probe_interval_s=src.value(
            "MEM0_PROBE_INTERVAL_S", _number(0, 3600, above=True), d.mem0_probe_interval_s
        ),
        dlq_guard_max_share=src.value(
            "DLQ_GUARD_MAX_SHARE", _number(0, 1, above=True), d.dlq_guard_max_share
        ),
        dlq_guard_window=src.value("DLQ_GUARD_WINDOW", _integer(1, 10_000_000), d.dlq_guard_window),
        dlq_guard_min_events=src.value(
            "DLQ_GUARD_MIN_EVENTS", _integer(1, 10_000_000), d.dlq_guard_min_events
        ),
        log_level=src.value("LOG_LEVEL", _log_level, d.log_level),
        log_format=src.value("LOG_FORMAT", _choice(LOG_FORMATS), d.log_format),
        mem0_http_client=src.value("MEM0_HTTP_CLIENT", _choice(HTTP_CLIENTS), d.mem0_http_client),
        log_ids_in_clear=src.value("LOG_IDS_IN_CLEAR", _bool, d.log_ids_in_clear),
        log_hash_key=src.secret("LOG_HASH_KEY"),
        kafka_properties=MappingProxyType(_kafka_properties(src)),
    )


# --- parsers: text -> value, or _Invalid with a message that never echoes a secret ---------


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _non_empty(text: str) -> str:
    value = text.strip()
    if not value:
        raise _Invalid("must not be empty")
    return value


def _optional(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    def parse_optional(text: str) -> T | None:
        return parse(text) if text.strip() else None

    return parse_optional


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse_integer(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise _Invalid(f"must be an integer between {low} and {high}, got {_shown(text)}")
        return value

    return parse_integer


def _number(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    lo, hi = _plain(low), _plain(high)
    bounds = f"greater than {lo} and at most {hi}" if above else f"between {lo} and {hi}"

    def parse_number(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        too_low = value <= low if above else value < low
        if math.isnan(value) or too_low or value > high:
            raise _Invalid(f"must be a number {bounds}, got {_shown(text)}")
        return value

    return parse_number


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse_choice(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise _Invalid(f"must be one of {', '.join(allowed)}, got {_shown(text)}")
        return value

    return parse_choice


def _backend(text: str) -> Backend:
    value = text.strip().lower()
    if value == "platform":
        return "platform"
    if value == "oss":
        return "oss"
    raise _Invalid(f"must be platform or oss, got {_shown(text)}")


def _log_level(text: str) -> str:
    value = text.strip().upper()
    value = "WARNING" if value == "WARN" else value
    if value not in LOG_LEVELS:
        raise _Invalid(f"must be one of {', '.join(LOG_LEVELS)}, got {_shown(text)}")
    return value


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Invalid(f"must be true or false (or 1/0, yes/no), got {_shown(text)}")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{MASK}@{host}"))


def _http_url(text: str) -> str:
    value = text.strip()
    problem = f"must be an http(s) URL with a host, got {_shown(_redact_url(value))}"
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise _Invalid(problem) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise _Invalid(problem)
    return value.rstrip("/")


def _in_clear_off_host(url: str) -> bool:
    """Plain http:// to a host that is not this machine (loopback stays on the machine)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name other than localhost may resolve anywhere


_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _topic(text: str) -> str:
    value = text.strip()
    if not value:
        raise _Invalid("must not be empty")
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise _Invalid(f"invalid topic name {_shown(value)}")
    return value


def _topics(text: str) -> tuple[str, ...]:
    names: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if not name or name in names:
            continue
        # librdkafka subscribes to a regex when the name starts with ^.
        names.append(name if name.startswith("^") else _topic(name))
    if not names:
        raise _Invalid("must name at least one topic")
    return tuple(names)


def _subscribed(topic: str, topics: Iterable[str]) -> bool:
    for name in topics:
        if name.startswith("^"):
            try:
                if re.search(name, topic):
                    return True
            except re.error:
                continue
        elif name == topic:
            return True
    return False


def _render(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, str):
        return _redact_url(value) if "://" in value else value
    return str(value)


# --- librdkafka pass-through ----------------------------------------------------------------

# KAFKA_* variables that are not librdkafka properties: Kubernetes service links (a Service
# named "kafka" injects KAFKA_PORT, KAFKA_SERVICE_HOST, ...) and the JVM tools' variables.
_NOT_PROPERTIES = re.compile(
    r"KAFKA_(PORT|SERVICE_HOST|SERVICE_PORT)(_.*)?"
    r"|KAFKA_(HOME|VERSION|OPTS|HEAP_OPTS|JVM_PERFORMANCE_OPTS|LOG4J_OPTS|JMX_OPTS|GC_LOG_OPTS)"
)
_DEDICATED = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "metadata.broker.list": "KAFKA_BOOTSTRAP_SERVERS",
    "group.id": "KAFKA_GROUP_ID",
}
_MUST_STAY_FALSE = frozenset({"enable.auto.commit", "enable.auto.offset.store"})
_PROPERTY = re.compile(r"[A-Za-z0-9._-]+")
_SECRET_PROPERTY = re.compile(
    r"password|passphrase|secret|key|token|credential|oauthbearer\.config"
)

# From librdkafka's CONFIGURATION.md (the C/P column): setting a property on the wrong kind of
# client only earns a warning, but a noisy one at every start.
_PRODUCER_ONLY = frozenset(
    """
    transactional.id transaction.timeout.ms enable.idempotence enable.gapless.guarantee
    queue.buffering.max.messages queue.buffering.max.kbytes queue.buffering.max.ms linger.ms
    message.send.max.retries retries queue.buffering.backpressure.threshold compression.codec
    compression.type compression.level batch.num.messages batch.size delivery.report.only.error
    sticky.partitioning.linger.ms request.required.acks acks request.timeout.ms
    message.timeout.ms delivery.timeout.ms queuing.strategy produce.offset.report partitioner
    """.split()  # noqa: SIM905 (a word list reads better than 50 quoted lines)
)
_CONSUMER_ONLY = frozenset(
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


def _consumer_only(prop: str) -> bool:
    return prop in _CONSUMER_ONLY or prop.startswith("fetch.")


def _is_secret_property(prop: str) -> bool:
    return _SECRET_PROPERTY.search(prop) is not None


def _masked(props: Mapping[str, str]) -> dict[str, str]:
    return {k: (MASK if _is_secret_property(k) else v) for k, v in sorted(props.items())}


def _property_name(suffix: str) -> str:
    """Confluent's convention: `___` is `-`, `__` is `_`, `_` is `.`; lower case."""
    return (
        suffix.replace("___", "\0")
        .replace("__", "\1")
        .replace("_", ".")
        .replace("\0", "-")
        .replace("\1", "_")
        .lower()
    )


def _check_property(name: str, prop: str, value: str) -> None:
    if not _PROPERTY.fullmatch(prop):
        raise SettingsError(name, f"invalid property name {_shown(prop)}")
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
        if not name.startswith("KAFKA_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_GROUP_ID"):
            continue
        if _NOT_PROPERTIES.fullmatch(name):
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
        prop = _property_name(base.removeprefix("KAFKA_"))
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
