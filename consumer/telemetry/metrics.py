"""Every metric of the README's Health and metrics, on an injected registry, label values
created at start; and `new_registry`, the registry the service exposes them on.

Labels are bounded by construction: event types, outcomes, Mem0 operations, DLQ reasons, retry
reasons, HTTP status codes, topics and partitions. No user, agent, run or memory id is ever a
label value. The hot path uses the pre-bound children (`events`, `dlq`, `api_duration`, ...)
so it pays no label lookup per event.
"""

from __future__ import annotations

import contextlib
import platform
from bisect import bisect_left
from collections.abc import Iterable
from importlib import metadata
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from consumer.core.dlq import DLQ_REASONS
from consumer.core.events import EventType
from consumer.core.verification import RESULTS as VERIFICATION_RESULTS
from consumer.mem0.downstream import DownstreamState

__all__ = [
    "API_STATUSES",
    "DISTRIBUTION",
    "DLQ_REASONS",
    "EVENT_TYPES",
    "HALT_CAUSES",
    "OPERATIONS",
    "OUTCOMES",
    "PREFIX",
    "REPLAY_OUTCOMES",
    "RETRY_REASONS",
    "UNKNOWN_TYPE",
    "VERIFICATION_RESULTS",
    "Metrics",
    "build_version",
    "new_registry",
    "retry_reason",
]

PREFIX = "mem0_deletion_"

UNKNOWN_TYPE = "unknown"  # an event that did not decode has no type
EVENT_TYPES = (*(kind.value for kind in EventType), UNKNOWN_TYPE)
OUTCOMES = ("deleted", "dead_lettered", "duplicate")
# How a record that `replay` put back finished: `replayed_events_total{outcome}`.
REPLAY_OUTCOMES = ("completed", "dead_lettered")
OPERATIONS = (
    "delete_all",
    "job_status",
    "batch_delete",
    "delete",
    "list",
    "get",
    "entity_delete",
    "entity_get",
)
# Why the downstream is halted (the AuthError causes of consumer.mem0.client):
# `downstream_halted{cause}`.
HALT_CAUSES = ("auth_refused", "admin_role_required")
# The reasons of README "Dead letters", defined once with the dead-letter headers.
# Why a call was tried again; `retry_reason` maps a status onto these.
RETRY_REASONS = ("transport", "timeout", "rate_limited", "server_error", "job_failed", "other")
# The statuses created at start; others (404, 429, 5xx...) appear when first seen.
API_STATUSES = ("200", "error")

# The `downstream_state` values, as its help text lists them: "0 ok, 1 backing off, 2 halted".
_STATE_HELP = ", ".join(f"{s.value} {s.name.lower().replace('_', ' ')}" for s in DownstreamState)

# HTTP latencies: 1 ms to a minute.
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Events in / calls out per flush: 1 to 100 000, about three buckets a decade.
FLUSH_BUCKETS = (*(m * 10**e for e in range(5) for m in (1, 2, 5)), 100_000)
_MINUTE, _HOUR, _DAY = 60, 3600, 86_400
# From occurred_at to the confirming response: 100 ms to the month erasure laws allow.
ERASURE_BUCKETS = (
    *(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    *(_MINUTE, 2 * _MINUTE, 5 * _MINUTE, 10 * _MINUTE, 30 * _MINUTE),
    *(_HOUR, 2 * _HOUR, 6 * _HOUR, 12 * _HOUR),
    *(_DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY),
)


DISTRIBUTION = "mem0-deletion-consumer"
UNKNOWN_VERSION = "unknown"  # run from a source tree that was never installed


def build_version() -> str:
    """The installed distribution's version, or "unknown" (a source tree never installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def new_registry() -> CollectorRegistry:
    """The registry the service serves on /metrics, before `Metrics` adds the contract series.

    Beside them: the process (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
    `process_open_fds`, `process_start_time_seconds`, ...: what the README's memory bounds are
    watched with; `process_start_time_seconds` also starts the no-commit alert's clock),
    the platform (`python_info`), the garbage collector (`python_gc_*`, read from `gc.get_stats`
    at scrape time: nothing on the hot path), and `mem0_deletion_build_info{version,python}` at 1.

    It also turns the `_created` series of counters and histograms off. prometheus_client keeps
    that switch in ONE process-wide flag read at each scrape, so from this call on no registry
    of the process exports them (a test's bare `CollectorRegistry()` included). Nothing here
    reads them (`rate()` and `increase()` do not), and each counter and histogram child adds one.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # reads /proc: on other systems it exports nothing
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)  # registers itself on CPython only
    build_info = Gauge(
        PREFIX + "build_info",
        "1, labelled with the running version and the Python it runs on.",
        ("version", "python"),
        registry=registry,
    )
    build_info.labels(build_version(), platform.python_version()).set(1)
    return registry


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """`histogram.observe(max(0, v))` for each value, in one update per bucket.

    A flush settles thousands of events at once, and each `observe` takes two locks. This
    counts per bucket first, through prometheus_client's internals (`_upper_bounds`,
    `_buckets`, `_sum`: unchanged for years, and tests/unit/telemetry/test_metrics.py compares
    the exposition with plain `observe`); without them it falls back to `observe`.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(max(0.0, value))
        return
    counts: dict[int, int] = {}
    amount = 0.0
    for value in values:
        value = max(0.0, value)  # noqa: PLW2901
        amount += value
        index = bisect_left(bounds, value)  # the first bound >= value, as observe picks
        counts[index] = counts.get(index, 0) + 1
    total.inc(amount)
    for index, count in counts.items():
        buckets[index].inc(count)


def retry_reason(status: int | None) -> str:
    """The `api_retries_total` reason for a retried HTTP status (None: no response)."""
    if status is None:
        return "transport"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "other"


class Metrics:
    """The process's metrics, registered on `registry`; every bounded series exists at 0."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=registry)

        self.events_total = counter(
            "events_total", "Finished events by type and outcome.", ("type", "outcome")
        )
        self.api_requests_total = counter(
            "api_requests_total",
            "Mem0 calls by operation and HTTP status ('error': no response).",
            ("operation", "status"),
        )
        self.api_request_duration_seconds = histogram(
            "api_request_duration_seconds", "Mem0 call latency.", API_BUCKETS, ("operation",)
        )
        self.api_retries_total = counter(
            "api_retries_total", "Mem0 calls tried again.", ("operation", "reason")
        )
        self.dlq_messages_total = counter(
            "dlq_messages_total", "Dead letters written, by reason.", ("reason",)
        )
        self.replayed_events_total = counter(
            "replayed_events_total",
            "Records `replay` put back (they carry dlq.replay.count), finished: completed, or "
            "dead_lettered again. Against dlq_messages_total: the dead letters not done since.",
            ("outcome",),
        )
        self.flush_events = histogram("flush_events", "Events per flush.", FLUSH_BUCKETS)
        self.flush_operations = histogram(
            "flush_operations", "Mem0 calls planned per flush.", FLUSH_BUCKETS
        )
        self.time_to_erasure_seconds = histogram(
            "time_to_erasure_seconds",
            "From occurred_at to the confirming Mem0 response.",
            ERASURE_BUCKETS,
            ("type",),
        )
        self.consumer_lag = gauge(
            "consumer_lag", "Messages behind the high watermark.", ("topic", "partition")
        )
        self.in_flight_operations = gauge("in_flight_operations", "Mem0 calls in flight.")
        self.downstream_state = gauge("downstream_state", f"Mem0: {_STATE_HELP} (401/403).")
        self.downstream_halted = gauge(
            "downstream_halted",
            "1 while Mem0 calls are halted for this cause: auth_refused (401/403) or "
            "admin_role_required (a self-hosted key without the admin role).",
            ("cause",),
        )
        self.last_commit_timestamp_seconds = gauge(
            "last_commit_timestamp_seconds", "Unix time of the last successful offset commit."
        )
        # Beyond the contract: what backpressure and rebalances are doing.
        self.in_flight_events = gauge("in_flight_events", "Events polled, not yet committable.")
        self.partitions_assigned = gauge("partitions_assigned", "Input partitions assigned.")
        self.partitions_paused = gauge("partitions_paused", "Input partitions paused.")
        self.dlq_guard_tripped = gauge(
            "dlq_guard_tripped", "1 once the dead-letter guard has stopped dead-lettering."
        )
        self.verifications_total = counter(
            "verifications_total",
            "Deletes checked afterwards, by result: passed, redeleted (something was left and a "
            "re-delete removed it), failed (left after every re-delete).",
            ("result",),
        )

        # Pre-bound children: creating them is what makes each series exist at 0.
        self.events = {
            (kind, outcome): self.events_total.labels(kind, outcome)
            for kind in EVENT_TYPES
            for outcome in OUTCOMES
        }
        self.dlq = {reason: self.dlq_messages_total.labels(reason) for reason in DLQ_REASONS}
        self.replayed = {
            outcome: self.replayed_events_total.labels(outcome) for outcome in REPLAY_OUTCOMES
        }
        self.api_duration = {op: self.api_request_duration_seconds.labels(op) for op in OPERATIONS}
        self.api_requests = {
            (op, status): self.api_requests_total.labels(op, status)
            for op in OPERATIONS
            for status in API_STATUSES
        }
        self.retries = {
            (op, reason): self.api_retries_total.labels(op, reason)
            for op in OPERATIONS
            for reason in RETRY_REASONS
        }
        self.erasure = {
            kind.value: self.time_to_erasure_seconds.labels(kind.value) for kind in EventType
        }
        self.verifications = {
            result: self.verifications_total.labels(result) for result in VERIFICATION_RESULTS
        }
        self.downstream_state.set(DownstreamState.OK)
        self.halt_causes = {cause: self.downstream_halted.labels(cause) for cause in HALT_CAUSES}

    def set_halt_cause(self, cause: str | None) -> None:
        """The downstream halted for `cause`, or resumed (None)."""
        for known, child in self.halt_causes.items():
            child.set(1 if known == cause else 0)

    def observe_api_request(self, operation: str, status: str, seconds: float) -> None:
        """One Mem0 call; fits `consumer.mem0.client.Observer`. `status` is the code or 'error'."""
        key = (operation, status)
        _child(self.api_requests, self.api_requests_total, key, *key).inc()
        _child(self.api_duration, self.api_request_duration_seconds, operation, operation).observe(
            seconds
        )

    def observe_retry(self, operation: str, reason: str) -> None:
        """One call tried again; `reason` from RETRY_REASONS (see `retry_reason`)."""
        key = (operation, reason)
        _child(self.retries, self.api_retries_total, key, *key).inc()

    def observe_verification(self, result: str) -> None:
        """One operation checked afterwards; `result` from VERIFICATION_RESULTS."""
        self.verifications[result].inc()

    def observe_flush(self, events: int, operations: int) -> None:
        self.flush_events.observe(events)
        self.flush_operations.observe(operations)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition's lag series, so it does not linger at its last value."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def mark_commit(self, now: float) -> None:
        """A commit succeeded at `now` (Unix seconds; the caller owns the clock)."""
        self.last_commit_timestamp_seconds.set(now)


_Family = TypeVar("_Family", Counter, Histogram)


def _child(children: dict[Any, _Family], family: _Family, key: object, *labels: str) -> _Family:
    """The pre-bound child under `key`, bound now if its label values are first seen now (a
    status such as 404 or 503, bounded by HTTP itself; an operation the list above lacks)."""
    child = children.get(key)
    if child is None:
        child = children[key] = family.labels(*labels)
    return child
