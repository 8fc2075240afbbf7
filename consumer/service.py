"""The composition root: builds every part of the consumer from settings, hands each its
collaborators through its constructor, and runs them; what `run` and `demo` share.

Nothing else reads `Settings` to decide how parts are wired: the loop, a flush, the executor
and the sinks receive what they use, so each can be built alone in a test.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from consumer.avro.codec import Decoder, SchemaStore
from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.avro.registry import SchemaRegistryClient
from consumer.avro.registry_config import registry_client
from consumer.core.guard import DlqGuard
from consumer.core.offsets import OffsetTracker
from consumer.core.retry import RetryPolicy
from consumer.core.verification import VerifyPolicy
from consumer.kafka.batch_producer import BatchProducer
from consumer.kafka.config import consumer_config, producer_config, with_logger
from consumer.kafka.dead_letter_sink import DeadLetterSink
from consumer.kafka.lag import LagMonitor, lag_client_config
from consumer.kafka.preflight import build_client, check_admin_role, check_topics
from consumer.kafka.producer import AsyncProducer
from consumer.kafka.receipt_sink import ReceiptSink
from consumer.kafka.topic_scan import in_slices
from consumer.mem0.client import Mem0Client, auth_headers, make_http_client
from consumer.mem0.downstream import Downstream
from consumer.mem0.oss_client import OssClient
from consumer.mem0.platform_client import PlatformClient
from consumer.pipeline.app import ConsumerApp, LoopLimits
from consumer.pipeline.executor import Executor
from consumer.pipeline.flush import FlushParts
from consumer.pipeline.in_flight import InFlight
from consumer.settings import Settings
from consumer.telemetry.health import HealthServer
from consumer.telemetry.metrics import Metrics, new_registry, retry_reason
from consumer.telemetry.progress import ProgressLog

__all__ = ["loop_limits", "make_mem0_client", "serve"]

log = logging.getLogger(__name__)


def make_mem0_client(
    settings: Settings,
    *,
    observe: Callable[[str, str, float], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Mem0Client:
    headers = auth_headers(settings.mem0_backend, settings.mem0_api_key.reveal())
    if settings.mem0_backend == "oss":
        kind: type[Mem0Client] = OssClient
    else:
        kind = PlatformClient
    http = make_http_client(
        settings.mem0_base_url,
        headers,
        timeout_s=settings.mem0_timeout_s,
        max_connections=settings.mem0_max_concurrency,
        transport=transport,
        kind=settings.mem0_http_client,
    )
    return kind(
        http,
        max_concurrency=settings.mem0_max_concurrency,
        observe=observe,
        erase_user_entity=settings.erase_user_entity,
    )


def make_executor(
    settings: Settings, client: Mem0Client, downstream: Downstream, metrics: Metrics
) -> Executor:
    policy = RetryPolicy(
        base_s=settings.retry_base_ms / 1000,
        cap_s=settings.retry_cap_s,
        retry_after_cap_s=settings.retry_after_cap_s,
        max_duration_s=settings.retry_max_duration_s or None,
    )
    return Executor(
        client,
        downstream,
        policy,
        job_poll_s=settings.mem0_job_poll_interval_ms / 1000,
        job_not_found_grace_s=settings.mem0_job_not_found_grace_s,
        uncertain_retries=settings.mem0_unknown_error_retries,
        on_retry=lambda operation, status: metrics.observe_retry(operation, retry_reason(status)),
        verify=VerifyPolicy(
            enabled=settings.verify_deletes,
            sample_share=settings.verify_sample_share,
            max_rounds=settings.verify_max_rounds,
        ),
        on_verify=metrics.observe_verification,
    )


def make_dead_letters(
    settings: Settings, producer: AsyncProducer, metrics: Metrics
) -> DeadLetterSink:
    guard = DlqGuard(
        window=settings.dlq_guard_window,
        max_share=settings.dlq_guard_max_share,
        min_events=settings.dlq_guard_min_events,
        # Taking stops at the event budget; a poll's batch may overshoot it.
        horizon=2 * settings.max_in_flight_events,
    )
    return DeadLetterSink(
        producer, topic=settings.dlq_topic, group=settings.group_id, metrics=metrics, guard=guard
    )


def make_receipts(
    settings: Settings, producer: BatchProducer | None, schema_registry: SchemaRegistryClient | None
) -> ReceiptSink | None:
    if producer is None or not settings.receipts_topic:
        return None
    # In the input's encoding: registry framing when there is a registry.
    encoder = ReceiptEncoder(registry=schema_registry, subject=f"{settings.receipts_topic}-value")
    return ReceiptSink(
        producer, topic=settings.receipts_topic, group=settings.group_id, encoder=encoder
    )


def loop_limits(settings: Settings) -> LoopLimits:
    """What the loop reads of the settings."""
    return LoopLimits(
        topics=settings.topics,
        flush_max_events=settings.flush_max_events,
        flush_max_bytes=settings.flush_max_bytes,
        flush_max_wait_s=settings.flush_max_wait_ms / 1000,
        max_in_flight_events=settings.max_in_flight_events,
        max_in_flight_operations=settings.max_in_flight_operations,
        commit_interval_s=settings.commit_interval_ms / 1000,
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )


# librdkafka validates properties when a client is built: a bad one is a bad setting.
_kafka_client = build_client


async def _checks_unless_stopped(
    settings: Settings, list_topics: Callable[..., Any], client: Mem0Client, stop: asyncio.Event
) -> bool:
    """The start-up checks, raced against `stop`: True when they passed and no stop was asked,
    False at once when `stop` is set first; a `SettingsError` when a check failed.

    Each check may wait 10 s on a cluster or a Mem0 that does not answer; a SIGTERM then must
    not wait for them (a supervisor's grace period is spent by then).
    """
    if stop.is_set():
        return False
    # Debug only: a check that fails is a bad setting, told in one line and nothing else.
    log.debug("checking the topics and the Mem0 key before starting")
    listing = _AbandonableListing(list_topics)
    checks = asyncio.ensure_future(_start_up_checks(settings, listing, client))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((checks, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not checks.done():
            checks.cancel()
            await asyncio.wait((checks,))
            await listing.abandon()  # so the consumer is never closed under the listing's thread
    if checks.cancelled():
        return False
    checks.result()  # raises what a check raised
    return not stop.is_set()


async def _start_up_checks(
    settings: Settings, list_topics: Callable[..., Any], client: Mem0Client
) -> None:
    await check_topics(settings, list_topics)
    await check_admin_role(client)


class _AbandonableListing:
    """A client's `list_topics` for the topic check, in waits short enough for a stop to end.

    librdkafka's metadata call cannot be interrupted, and it runs on a thread: waited for whole
    (10 s against a cluster that does not answer), it would hold a stop that long, and the
    process's exit after it (asyncio.run joins its threads), and the client could not be closed
    while the thread uses it. So it waits a slice at a time (`topic_scan.in_slices`, as the
    scans do) and stops between two slices once abandoned.
    """

    def __init__(self, list_topics: Callable[..., Any]) -> None:
        self._list_topics = list_topics
        self._abandoned = threading.Event()
        self._in_use = threading.Lock()

    def __call__(self, *, timeout: float) -> Any:
        with self._in_use:
            return in_slices(
                lambda seconds: self._list_topics(timeout=seconds), timeout, between=self._check
            )

    def _check(self) -> None:
        if self._abandoned.is_set():
            raise _Abandoned

    async def abandon(self) -> None:
        """End a listing under way; returns once no thread is in the client's call."""
        self._abandoned.set()
        await asyncio.to_thread(self._wait_idle)

    def _wait_idle(self) -> None:
        with self._in_use:
            pass


class _Abandoned(Exception):
    """The topic check was abandoned for a stop: not the cluster's failure, nothing to log."""


async def _close_unstarted(
    consumer: Consumer,
    producers: list[AsyncProducer],
    client: Mem0Client,
    decoder: Decoder,
    schema_registry: SchemaRegistryClient | None,
) -> None:
    """Close what serve built before the loop ran (nothing was read, nothing is to commit)."""
    consumer.close()
    for producer in producers:
        producer.close(0)
    await client.aclose()
    decoder.close()
    if schema_registry is not None:
        schema_registry.close()


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    force: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_ready: Callable[[ConsumerApp, HealthServer | None], None] | None = None,
) -> None:
    """Run the consumer until `stop` is set; returns once drained, committed and closed."""
    registry = registry if registry is not None else new_registry()
    metrics = Metrics(registry)
    client = make_mem0_client(settings, observe=metrics.observe_api_request, transport=transport)
    schema_registry = registry_client(settings)
    # Registry lookups off the event loop, rate-limited (avro/schema_ids.py).
    decoder = Decoder(SchemaStore.from_directory(), schema_registry, defer_lookups=True)
    # librdkafka's own log lines go through Python logging (JSON, limited), not to stderr.
    consumer = _kafka_client(Consumer, with_logger(consumer_config(settings)))
    loop = asyncio.get_running_loop()
    producer = _kafka_client(
        lambda config: AsyncProducer(config, loop), with_logger(producer_config(settings))
    )
    # The receipts' own producer: it awaits a batch's acknowledgement as a whole, which a
    # dead letter's record on it would hold back (kafka/batch_producer.py).
    receipt_producer = None
    if settings.receipts_topic:
        receipt_producer = _kafka_client(
            lambda config: BatchProducer(config, loop),
            with_logger(producer_config(settings, linger_ms=1)),
        )
    producers = [producer] if receipt_producer is None else [producer, receipt_producer]
    try:
        checked = await _checks_unless_stopped(settings, consumer.list_topics, client, stop)
    except BaseException:  # a SettingsError (exit 2), or serve itself cancelled
        await _close_unstarted(consumer, producers, client, decoder, schema_registry)
        raise
    if not checked:
        # Asked to stop during the checks: nothing was read, so there is nothing to drain or
        # commit, and "consumer starting" would be untrue.
        await _close_unstarted(consumer, producers, client, decoder, schema_registry)
        log.info("consumer stopped before it started")
        return
    downstream = Downstream(
        client,
        probe_interval_s=settings.mem0_probe_interval_s,
        on_change=metrics.downstream_state.set,
        on_halt_cause=metrics.set_halt_cause,
    )
    parts = FlushParts(
        decoder=decoder,
        caps=client.caps,
        executor=make_executor(settings, client, downstream, metrics),
        dead_letters=make_dead_letters(settings, producer, metrics),
        metrics=metrics,
        in_flight=InFlight(OffsetTracker(), metrics),
        summaries=ProgressLog(),
        receipts=make_receipts(settings, receipt_producer, schema_registry),
    )
    app = ConsumerApp(consumer, parts, loop_limits(settings), downstream=downstream)
    health = None
    if settings.metrics_port:
        health = HealthServer(
            settings.metrics_port, registry, app.readiness, host=settings.metrics_host
        )
        health.start()
    log.info("consumer starting", extra={"settings": settings.describe()})
    if on_ready is not None:
        on_ready(app, health)
    # The lag is read by a side client of its own, so the loop never waits on it.
    lag = LagMonitor(
        _kafka_client(Consumer, lag_client_config(with_logger(consumer_config(settings)))),
        app.assigned_partitions,
        metrics,
    )
    lag.start()
    try:
        await app.run(stop, force=force)
    finally:
        await lag.stop()
        await downstream.aclose()
        for each in producers:
            left = await each.aclose(10.0)
            if left:
                log.error("producer closed with undelivered records", extra={"count": left})
        await client.aclose()
        decoder.close()
        if schema_registry is not None:
            schema_registry.close()
        if health is not None:
            health.stop()
        log.info("consumer stopped")
