"""Metrics: every contract series exists at 0, labels stay bounded; the health endpoint."""

from __future__ import annotations

import http.client
import platform
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from consumer.mem0.downstream import DownstreamState
from consumer.telemetry.health import HealthServer
from consumer.telemetry.metrics import (
    DISTRIBUTION,
    DLQ_REASONS,
    ERASURE_BUCKETS,
    EVENT_TYPES,
    OPERATIONS,
    OUTCOMES,
    Metrics,
    build_version,
    new_registry,
    observe_many,
    retry_reason,
)

P = "mem0_deletion_"
ALLOWED_LABELS = {
    "type",
    "outcome",
    "operation",
    "status",
    "reason",
    "topic",
    "partition",
    "result",
    "cause",  # downstream_halted: auth_refused or admin_role_required
}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(P + name, labels)


def test_labelled_contract_series_exist_at_zero(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    assert set(EVENT_TYPES) == {
        "user_deleted",
        "session_expired",
        "scope_deleted",
        "memories_deleted",
        "unknown",
    }
    for kind in EVENT_TYPES:
        for outcome in OUTCOMES:
            assert value(registry, "events_total", type=kind, outcome=outcome) == 0
    for reason in DLQ_REASONS:
        assert value(registry, "dlq_messages_total", reason=reason) == 0
    for op in OPERATIONS:
        assert value(registry, "api_request_duration_seconds_count", operation=op) == 0
        assert value(registry, "api_requests_total", operation=op, status="200") == 0
    for kind in ("user_deleted", "session_expired", "scope_deleted", "memories_deleted"):
        assert value(registry, "time_to_erasure_seconds_count", type=kind) == 0


def test_unlabelled_contract_series_exist_at_zero(registry: CollectorRegistry) -> None:
    Metrics(registry)
    for name in (
        "flush_events_count",
        "flush_operations_count",
        "in_flight_operations",
        "downstream_state",
        "last_commit_timestamp_seconds",
    ):
        assert value(registry, name) == 0, name
    families = {family.name for family in registry.collect()}
    for name in (
        "events",
        "api_requests",
        "api_request_duration_seconds",
        "api_retries",
        "dlq_messages",
        "flush_events",
        "flush_operations",
        "time_to_erasure_seconds",
        "consumer_lag",
        "in_flight_operations",
        "downstream_state",
        "last_commit_timestamp_seconds",
    ):
        assert P + name in families, name


def test_labels_carry_no_identifiers(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.set_lag("memory.deletions", 3, 10)
    metrics.observe_retry("delete_all", "rate_limited")
    for family in registry.collect():
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, (family.name, sample.labels)


def test_histogram_buckets(registry: CollectorRegistry, metrics: Metrics) -> None:
    def bounds(name: str, **labels: str) -> list[float]:
        family = next(f for f in registry.collect() if f.name == P + name)
        return [
            float(s.labels["le"])
            for s in family.samples
            if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    api = bounds("api_request_duration_seconds", operation="delete")
    assert api[0] == 0.001 and api[-2] == 60
    flush = bounds("flush_events")
    assert flush[0] == 1 and flush[-2] == 100_000
    erasure = bounds("time_to_erasure_seconds", type="user_deleted")
    assert erasure[0] == 0.1 and erasure[-2] == 30 * 86_400


def test_pre_bound_children_and_helpers(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.events[("user_deleted", "deleted")].inc()
    metrics.dlq["decode_error"].inc(2)
    metrics.erasure["user_deleted"].observe(1.5)
    metrics.observe_api_request("delete_all", "200", 0.02)
    metrics.observe_api_request("delete_all", "429", 0.01)
    metrics.observe_retry("delete_all", retry_reason(429))
    metrics.observe_flush(events=120, operations=3)
    metrics.set_lag("memory.deletions", 0, 42)
    metrics.downstream_state.set(DownstreamState.HALTED)
    metrics.mark_commit(1_700_000_000.0)

    assert value(registry, "events_total", type="user_deleted", outcome="deleted") == 1
    assert value(registry, "dlq_messages_total", reason="decode_error") == 2
    assert value(registry, "time_to_erasure_seconds_sum", type="user_deleted") == 1.5
    assert value(registry, "api_requests_total", operation="delete_all", status="200") == 1
    assert value(registry, "api_requests_total", operation="delete_all", status="429") == 1
    assert value(registry, "api_request_duration_seconds_count", operation="delete_all") == 2
    assert value(registry, "api_retries_total", operation="delete_all", reason="rate_limited") == 1
    assert value(registry, "flush_events_sum") == 120
    assert value(registry, "flush_operations_sum") == 3
    assert value(registry, "consumer_lag", topic="memory.deletions", partition="0") == 42
    assert value(registry, "downstream_state") == 2
    assert value(registry, "last_commit_timestamp_seconds") == 1_700_000_000.0

    metrics.forget_partition("memory.deletions", 0)
    metrics.forget_partition("memory.deletions", 0)  # twice is harmless
    assert value(registry, "consumer_lag", topic="memory.deletions", partition="0") is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, "transport"),
        (408, "timeout"),
        (429, "rate_limited"),
        (503, "server_error"),
        (425, "other"),
    ],
)
def test_retry_reason(status: int | None, reason: str) -> None:
    assert retry_reason(status) == reason


def test_two_registries_do_not_clash() -> None:
    Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())


# --- the health endpoint over real HTTP --------------------------------------------------------


class Readiness:
    def __init__(self) -> None:
        self.state = (False, "no partitions assigned")

    def __call__(self) -> tuple[bool, str]:
        return self.state


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
def server(registry: CollectorRegistry, readiness: Readiness) -> Iterator[HealthServer]:
    Metrics(registry)
    with HealthServer(0, registry, readiness, host="127.0.0.1") as health:
        yield health


def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def test_metrics_endpoint(server: HealthServer) -> None:
    status, content_type, body = get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    assert 'mem0_deletion_events_total{outcome="deleted",type="user_deleted"} 0.0' in body


def test_healthz(server: HealthServer) -> None:
    assert get(server, "/healthz")[::2] == (200, "ok\n")


def test_readyz_follows_readiness(server: HealthServer, readiness: Readiness) -> None:
    assert get(server, "/readyz")[::2] == (503, "not ready: no partitions assigned\n")
    readiness.state = (True, "")
    assert get(server, "/readyz")[::2] == (200, "ready\n")


def test_readyz_when_the_check_raises(registry: CollectorRegistry) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    with HealthServer(0, registry, broken, host="127.0.0.1") as health:
        assert get(health, "/readyz")[::2] == (503, "not ready: readiness check failed\n")


def test_unknown_path(server: HealthServer) -> None:
    assert get(server, "/nope")[0] == 404


def test_head_request(server: HealthServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("HEAD", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        assert response.read() == b""
    finally:
        connection.close()


def test_stop_frees_the_port(registry: CollectorRegistry, readiness: Readiness) -> None:
    health = HealthServer(0, registry, readiness, host="127.0.0.1")
    health.start()
    port = health.port
    assert port != 0
    health.stop()
    health.stop()  # idempotent
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()


# Values on a bucket's bound go in that bucket (`le`): draw them often.
_BOUNDS = [b for b in ERASURE_BUCKETS if b < 1e7]


@given(st.lists(st.floats(-10, 1e7, allow_nan=False) | st.sampled_from(_BOUNDS), max_size=60))
def test_observe_many_exposes_what_observing_one_by_one_does(values: list[float]) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Metrics(one).erasure["user_deleted"]
    by_many = Metrics(many).erasure["user_deleted"]
    for value in values:
        by_one.observe(max(0.0, value))
    observe_many(by_many, values)
    # Sums are added in another order: compare them as numbers, the buckets exactly.
    sample_one = {(s.name, tuple(s.labels.items())): s.value for s in _samples(one)}
    sample_many = {(s.name, tuple(s.labels.items())): s.value for s in _samples(many)}
    assert sample_one.keys() == sample_many.keys()
    for key, value in sample_one.items():
        assert sample_many[key] == pytest.approx(value, rel=1e-9, abs=1e-6), key


def _samples(registry: CollectorRegistry) -> list[Any]:
    return [
        sample
        for family in registry.collect()
        if family.name == "mem0_deletion_time_to_erasure_seconds"
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


def test_the_halt_cause_is_one_series_at_a_time(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    from consumer.mem0.errors import HALT_CAUSES
    from consumer.telemetry.metrics import HALT_CAUSES as LABELLED

    assert set(LABELLED) == set(HALT_CAUSES)
    for cause in HALT_CAUSES:
        assert value(registry, "downstream_halted", cause=cause) == 0
    metrics.set_halt_cause("admin_role_required")
    assert value(registry, "downstream_halted", cause="admin_role_required") == 1
    assert value(registry, "downstream_halted", cause="auth_refused") == 0
    metrics.set_halt_cause(None)
    assert value(registry, "downstream_halted", cause="admin_role_required") == 0


# --- the service's registry: the process beside the contract, no `_created` ------------------


def test_the_service_registry_exports_the_process_and_the_build() -> None:
    registry = new_registry()
    Metrics(registry)
    # What the README's memory bounds are watched with (Linux: read from /proc).
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 0
    assert (registry.get_sample_value("process_start_time_seconds") or 0) > 0
    assert registry.get_sample_value("process_open_fds") is not None
    build = {"version": metadata.version(DISTRIBUTION), "python": platform.python_version()}
    assert registry.get_sample_value(P + "build_info", build) == 1
    names = {sample.name for family in registry.collect() for sample in family.samples}
    assert "python_info" in names
    assert not {name for name in names if name.endswith("_created")}
    assert "_created" not in generate_latest(registry).decode()


def test_the_build_version_without_an_installed_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)  # what build_version looks up
    assert build_version() == "unknown"
