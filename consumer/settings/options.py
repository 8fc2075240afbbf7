"""The one table of settings: each option declared once, as a field of the frozen `Settings`.

A field's declaration says everything about its setting: the annotation is its type, and
`option(...)` gives its environment variable (also its TOML key and, lower-cased with dashes,
its flag), its parser, its default and its help; `secret(...)` declares a secret (kept as text,
masked when shown, readable from `<NAME>_FILE` too). Everything else is drawn from the table:

- `sources.py` reads each option from flags, the environment and the file, in that order;
- `flags.py` makes one flag per option (`add_arguments`), its help drawn from the same text;
- `Settings.describe()` renders the effective configuration (`deletion-consumer config`);
- `docs.readme_table()` renders README.md's table of settings, which a test holds to this one.

`option()` is typed as what its parser returns or its default, so mypy holds both to the
annotation. Rules that relate two settings live in `checks.py`, not here.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TypeVar

from consumer.core.errors import ConsumerError
from consumer.settings import parsers as p
from consumer.settings.kafka_properties import is_secret_property
from consumer.settings.parsers import MASK, Backend, redact_url
from consumer.settings.registry_properties import is_secret_registry_property, registry_variable

__all__ = [
    "BY_ENV",
    "CONFIG_ENV",
    "FLAG_DESTS",
    "OPTIONS",
    "Option",
    "Secret",
    "Settings",
    "SettingsError",
    "render",
]

T = TypeVar("T")  # what the parser returns
D = TypeVar("D")  # the default: both must fit the annotation

CONFIG_ENV = "DELETION_CONSUMER_CONFIG"

# Made once per process: with no LOG_HASH_KEY, hashes are comparable within this process only.
_PROCESS_HASH_KEY = secrets.token_bytes(32)


class SettingsError(ConsumerError):
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


@dataclass(frozen=True)
class Option:
    """One row of the table. `help` is Markdown: README.md shows it, `--help` without markup."""

    env: str
    help: str
    parse: Callable[[str], object] | None  # None: a secret, kept as it is
    flag: str = ""  # when not the variable's name (`--bootstrap-servers`, not `--kafka-...`)
    metavar: str = ""
    default_doc: str = ""  # README's default column, where the default's rendering says too little
    unset: str = ""  # describe() of an empty value
    dest: str = ""  # the Settings field, filled in from the class below

    @property
    def secret(self) -> bool:
        return self.parse is None

    @property
    def boolean(self) -> bool:
        return self.parse is p.boolean

    @property
    def option_string(self) -> str:
        return self.flag or _flag_of(self.env)

    @property
    def option_strings(self) -> tuple[str, ...]:
        """Its flags: the table's first (`--bootstrap-servers`), then the variable's name, which
        every setting has as a flag (`--kafka-bootstrap-servers`)."""
        named = _flag_of(self.env)
        return (self.option_string,) if self.option_string == named else (self.option_string, named)

    @property
    def file_env(self) -> str:
        """A secret's companion: the variable (and key, and flag) naming a file that holds it."""
        return self.env + "_FILE"

    @property
    def file_dest(self) -> str:
        return self.dest + "_file"


_OPTION = "option"


def option(
    env: str,
    parse: Callable[[str], T],
    default: D,
    help: str,
    *,
    flag: str = "",
    metavar: str = "",
) -> T | D:
    """A setting: its variable, parser, default and help; the field's annotation is its type.

    It returns a `dataclasses.field`, typed as what the parser returns or the default, so mypy
    holds both to the annotation (ruff's RUF009 cannot tell this call from a shared default).
    """
    return field(
        default=default,
        metadata={_OPTION: Option(env, help, parse, flag=flag, metavar=metavar)},
    )


def secret(env: str, help: str, *, default_doc: str, unset: str = "") -> Secret:
    """A secret: from `env`, or from the file `<env>_FILE` names; never shown."""
    spec = Option(env, help, None, default_doc=default_doc, unset=unset)
    return field(default_factory=Secret, metadata={_OPTION: spec})


def _flag_of(env: str) -> str:
    return "--" + env.lower().replace("_", "-")


@dataclass(frozen=True, repr=False)
class Settings:
    """The effective configuration; build it with `from_sources` or `flags.from_args`."""

    # One option a few lines, not one argument a line:
    # fmt: off
    config_file: str | None = option(
        CONFIG_ENV, p.optional(p.non_empty), None,
        "the TOML configuration file: keys are these variables' names, `[kafka]` holds "
        "librdkafka properties and `[schema_registry]` the registry client's; flags and "
        "variables override it", flag="--config", metavar="PATH",
    )
    bootstrap_servers: str = option(
        "KAFKA_BOOTSTRAP_SERVERS", p.non_empty, "localhost:9092", "brokers, `host:port,...`",
        flag="--bootstrap-servers",
    )
    group_id: str = option(
        "KAFKA_GROUP_ID", p.non_empty, "mem0-deletion-consumer",
        "consumer group; scale out by running more instances in it", flag="--group-id",
    )
    topics: tuple[str, ...] = option(
        "DELETION_TOPICS", p.topics, ("memory.deletions",),
        "input topics, comma-separated (`^regex` allowed)", flag="--topics",
    )
    dlq_topic: str = option("DLQ_TOPIC", p.topic, "memory.deletions.dlq", "dead letters")
    receipts_topic: str | None = option(
        "RECEIPTS_TOPIC", p.optional(p.topic), "memory.deletions.receipts",
        "one [receipt](#receipts-proof-of-erasure) per finished event (empty: none)",
    )
    schema_registry_url: str | None = option(
        "SCHEMA_REGISTRY_URL", p.optional(p.http_url), None,
        "Confluent Schema Registry URL; unset: single-object encoding only. Its client's "
        "properties pass through as `SCHEMA_REGISTRY_<NAME>` "
        "(`SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`, `SCHEMA_REGISTRY_SSL_CA_LOCATION`, ...: "
        "[Schema Registry](#schema-registry))",
    )
    mem0_backend: Backend = option(  # noqa: RUF009 (a field: see option)
        "MEM0_BACKEND", p.backend, "platform",
        "`platform` (hosted API) or `oss` (self-hosted REST server)",
    )
    mem0_base_url: str = option(
        "MEM0_BASE_URL", p.http_url, "https://api.mem0.ai", "Mem0 API base URL",
    )
    mem0_api_key: Secret = secret(  # noqa: RUF009 (a field: see option)
        "MEM0_API_KEY",
        "API key, or a file holding it; prefer either to the flag (command lines are visible "
        "to others)", default_doc="required for `platform`",
    )
    mem0_allow_insecure_http: bool = option(
        "MEM0_ALLOW_INSECURE_HTTP", p.boolean, False,
        "allow sending the API key over plain `http://` to a host that is not loopback "
        "(a sandbox on a trusted network only)",
    )
    metrics_port: int = option(
        "METRICS_PORT", p.integer(0, 65535), 9400,
        "port of `/metrics`, `/healthz`, `/readyz` (`0`: no endpoint)",
    )
    # Every interface by default: the kubelet's probes and Prometheus reach the pod's address,
    # not its loopback; the endpoint bounds what a client can hold (telemetry/health.py).
    metrics_host: str = option(
        "METRICS_HOST", p.host, "0.0.0.0",  # noqa: S104 (probed from outside the pod)
        "address the endpoint binds: every interface by default, as Kubernetes probes and "
        "Prometheus reach it from outside the pod; `127.0.0.1` keeps it on the machine, `::` "
        "listens on IPv6 too",
    )
    flush_max_events: int = option(
        "FLUSH_MAX_EVENTS", p.integer(1, 1_000_000), 5000, "flush window: events per flush at most",
    )
    flush_max_bytes: int = option(
        "FLUSH_MAX_BYTES", p.integer(1, 1 << 30), 8 * 1024 * 1024,
        "flush window: message bytes per flush at most",
    )
    # A backlog fills a flush at once, so the wait only matters for a trickle, where it is time
    # to erasure: at 150 ms it was a quarter of an event's wait at a steady 400 events/s
    # (bench/latency.py), for ids folded into fewer batches (0.04 batch calls per event at
    # 25 ms, against 0.01 at 150).
    flush_max_wait_ms: int = option(
        "FLUSH_MAX_WAIT_MS", p.integer(0, 60_000), 25, "flush window: longest wait before a flush",
    )
    # Calls in flight bound a burst of scopes (two calls each at least, latency-bound): at 5 ms
    # per call 32 held the burst near 1.5k events/s, 64 took it to 2.7k (bench/e2e.py, when the
    # default was raised); 429s still slow it down through the adaptive pacing, whatever this is.
    mem0_max_concurrency: int = option(
        "MEM0_MAX_CONCURRENCY", p.integer(1, 1024), 64,
        "Mem0 calls in flight (and pooled connections); 429s slow the pace whatever this is",
    )
    mem0_http_client: str = option(
        "MEM0_HTTP_CLIENT", p.choice(p.HTTP_CLIENTS), "auto",
        "the Mem0 calls' HTTP client: `auto` is the lean built-in one "
        "(`consumer/mem0/lean_http.py`), or aiohttp when `HTTPS_PROXY`/`HTTP_PROXY` applies to "
        "the URL; `lean`, `aiohttp` or `httpx` force one (a way out should a network device "
        "disagree with the lean client)",
    )
    mem0_batch_size: int = option(
        "MEM0_BATCH_SIZE", p.integer(1, 1000), 1000, "ids per `batch_delete` (1 to 1000)",
    )
    mem0_timeout_s: float = option(
        "MEM0_TIMEOUT_S", p.number(0, 600, above=True), 30.0, "timeout of one Mem0 call, seconds",
    )
    mem0_job_poll_interval_ms: int = option(
        "MEM0_JOB_POLL_INTERVAL_MS", p.integer(1, 60_000), 100,
        "first poll of a Platform job until jobs have been seen finishing; then polls go out "
        "around the median time recent jobs took, backing off to 2 s past twice that",
    )
    # Nothing documents how soon a new Platform job is readable: a 404 this soon is waited out.
    mem0_job_not_found_grace_s: float = option(
        "MEM0_JOB_NOT_FOUND_GRACE_S", p.number(0, 3600), 10.0,
        "a Platform job that answers 404 this soon (seconds) after its delete is taken for one "
        "not yet readable and polled again; later, the delete is issued again (it is "
        "idempotent) rather than dead-lettered",
    )
    # A self-hosted 502 `unknown` may be deterministic: tried this many more times, at most.
    mem0_unknown_error_retries: int = option(
        "MEM0_UNKNOWN_ERROR_RETRIES", p.integer(0, 1000), 5,
        "retries of a self-hosted 502 whose `code` is `unknown` (it may be deterministic) "
        "before the event is dead-lettered as `retries_exhausted`, whatever "
        "`RETRY_MAX_DURATION_S` says",
    )
    erase_user_entity: bool = option(
        "ERASE_USER_ENTITY", p.boolean, True,
        "Platform: a `UserDeleted` also deletes the user's entity record "
        "(`DELETE /v2/entities/user/{id}/`, a job), verified by reading it back; `false` for a "
        "project that must keep entity records",
    )
    verify_deletes: bool = option(
        "VERIFY_DELETES", p.boolean, True,
        "check each delete afterwards (list the scope once its job `SUCCEEDED`, read a sample "
        "of a batch back) and delete again what is left",
    )
    verify_sample_share: float = option(
        "VERIFY_SAMPLE_SHARE", p.number(0, 1), 0.001,  # one id of a full batch of 1000
        "share of a batch's ids read back (`GET`), 0 to 1; at least one id when above 0 (so one "
        "per batch by default: a check that costs 1 call per 1000 ids)",
    )
    verify_max_rounds: int = option(
        "VERIFY_MAX_ROUNDS", p.integer(0, 100), 3,
        "re-deletes of what a check found left before the event is dead-lettered as "
        "`verification_failed`",
    )
    retry_base_ms: int = option(
        "RETRY_BASE_MS", p.integer(1, 60_000), 200,
        "first retry delay (exponential backoff with full jitter)",
    )
    retry_cap_s: float = option(
        "RETRY_CAP_S", p.number(0, 3600, above=True), 30.0,
        "longest retry delay, seconds (at least `RETRY_BASE_MS`)",
    )
    retry_after_cap_s: float = option(
        "RETRY_AFTER_CAP_S", p.number(0, 86_400), 300.0,
        "the longest `Retry-After` honoured, seconds",
    )
    retry_max_duration_s: float = option(
        "RETRY_MAX_DURATION_S", p.number(0, 30 * 86_400), 0.0,  # 0: retry for ever
        "give up (DLQ `retries_exhausted`) after this long, seconds; `0`: never, the events "
        "wait in Kafka",
    )
    # Events bound the memory of what is in flight (messages, events: ~1 KB each); operations
    # bound the Mem0 work queued behind them (a task and its state each, ~8 KB, and the time a
    # revoke waits). A user deletion plans one or two operations (its memories; on the Platform,
    # its entity record too), ids fold a thousand to one.
    max_in_flight_events: int = option(
        "MAX_IN_FLIGHT_EVENTS", p.integer(1, 10_000_000), 100_000,
        "events taken in and not yet committable; past this, no more are taken (each costs "
        "~1 KB, so this bounds memory)",
    )
    max_in_flight_operations: int = option(
        "MAX_IN_FLIGHT_OPERATIONS", p.integer(1, 10_000_000), 20_000,
        "Mem0 operations planned or queued (an event counts as one until planned); past this, "
        "no more events are taken. An operation is ~8 KB in flight and a user deletion one or "
        "two of them (its memories, and on the Platform its entity record), so this bounds a "
        "burst's memory and how long a revoke waits; 1000 ids fold into one",
    )
    commit_interval_ms: int = option(
        "COMMIT_INTERVAL_MS", p.integer(0, 600_000), 1000,
        "how often finished offsets are committed",
    )
    shutdown_timeout_s: float = option(
        "SHUTDOWN_TIMEOUT_S", p.number(0, 3600), 30.0,
        "how long SIGTERM waits for in-flight work, seconds",
    )
    mem0_probe_interval_s: float = option(
        "MEM0_PROBE_INTERVAL_S", p.number(0, 3600, above=True), 15.0,
        "while halted by 401/403, seconds between probes",
    )
    dlq_guard_max_share: float = option(
        "DLQ_GUARD_MAX_SHARE", p.number(0, 1, above=True), 0.5,  # 1: never trips
        "the dead-letter guard stops dead-lettering past this share of recent events (above 0, "
        "at most 1; `1`: off)",
    )
    dlq_guard_window: int = option(
        "DLQ_GUARD_WINDOW", p.integer(1, 10_000_000), 1000,
        "recent events the dead-letter guard looks at",
    )
    dlq_guard_min_events: int = option(
        "DLQ_GUARD_MIN_EVENTS", p.integer(1, 10_000_000), 100,
        "finished events before the dead-letter guard judges",
    )
    log_level: str = option(
        "LOG_LEVEL", p.log_level, "INFO",
        "`DEBUG`, `INFO`, `WARNING` or `ERROR`; logs go to stderr",
    )
    log_format: str = option(
        "LOG_FORMAT", p.choice(p.LOG_FORMATS), "json", "`json` (one object per line) or `text`",
    )
    log_ids_in_clear: bool = option(
        "LOG_IDS_IN_CLEAR", p.boolean, False,
        "log user/agent/run/memory ids in clear instead of a keyed hash",
    )
    log_hash_key: Secret = secret(  # noqa: RUF009 (a field: see option)
        "LOG_HASH_KEY",
        "key of the identifier hash in logs, or a file holding it; empty: random per process "
        "(hashes comparable within one process only)", default_doc="random per process",
        unset="(random per process)",
    )
    # Not an option: the librdkafka pass-through (KAFKA_*, [kafka], --kafka-property).
    kafka_properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Nor this: the registry client's (SCHEMA_REGISTRY_*, [schema_registry],
    # --schema-registry-property), by property name, as text (registry_properties.py).
    schema_registry_properties: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # fmt: on

    @classmethod
    def from_sources(
        cls,
        env: Mapping[str, str],
        flags: Mapping[str, object] | None = None,
        *,
        read_file: Callable[[str], str] | None = None,
        needs_mem0: bool = True,
        check_clients: bool = False,
    ) -> Settings:
        """Settings from an environment mapping and flags keyed by field name (None: unset).

        The configuration file is named by the `config_file` flag or `DELETION_CONSUMER_CONFIG`.
        `read_file` reads it and the *_FILE secrets (by default the file's text without its
        trailing newline); tests pass a fake and never touch os.environ. `needs_mem0`: the
        Platform backend's key is required. `check_clients`: librdkafka judges the properties
        of the clients `run` builds, without connecting (`client_check.py`).
        """
        from consumer.settings import sources  # it builds this class: imported when used

        return sources.build(
            env, flags or {}, read_file, needs_mem0=needs_mem0, check_clients=check_clients
        )

    def describe(self) -> dict[str, str]:
        """The effective configuration by variable name, secrets masked; properties last:
        librdkafka's by property name, the registry client's by variable (both have an
        `ssl.ca.location`)."""
        out: dict[str, str] = {}
        for opt in OPTIONS:
            value = getattr(self, opt.dest)
            out[opt.env] = opt.unset if opt.unset and not value else render(value)
        out.update(_masked(self.kafka_properties))
        out.update(_masked_registry(self.schema_registry_properties))
        return out

    def id_hash_key(self) -> bytes:
        """The key for hashing identifiers in logs: LOG_HASH_KEY, else the per-process key."""
        return self.log_hash_key.reveal().encode() or _PROCESS_HASH_KEY

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value: object = getattr(self, f.name)
            if f.name == "kafka_properties":
                value = _masked(self.kafka_properties)
            elif f.name == "schema_registry_properties":
                value = _masked_registry(self.schema_registry_properties)
            elif isinstance(value, str) and f.name.endswith("_url"):
                value = redact_url(value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"


OPTIONS: tuple[Option, ...] = tuple(
    replace(f.metadata[_OPTION], dest=f.name) for f in fields(Settings) if _OPTION in f.metadata
)
BY_ENV: Mapping[str, Option] = MappingProxyType({opt.env: opt for opt in OPTIONS})
# Each name a layer may set, to the flag's destination: the variables, and the secrets' files.
FLAG_DESTS: Mapping[str, str] = MappingProxyType(
    {opt.env: opt.dest for opt in OPTIONS}
    | {opt.file_env: opt.file_dest for opt in OPTIONS if opt.secret}
)


def render(value: object) -> str:
    """A value as `config` shows it (and a variable would hold it), URLs' user info masked."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    return str(value)


def _masked(props: Mapping[str, str]) -> dict[str, str]:
    """Secret properties as the mask; in the others, the user info of any URL."""
    return {k: (MASK if is_secret_property(k) else render(v)) for k, v in sorted(props.items())}


def _masked_registry(props: Mapping[str, str]) -> dict[str, str]:
    """The registry client's properties by variable, masked like `_masked` (`proxy` is a URL)."""
    return {
        registry_variable(k): (MASK if is_secret_registry_property(k) else render(v))
        for k, v in sorted(props.items())
    }
