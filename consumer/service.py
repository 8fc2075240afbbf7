"""Builds the consumer's parts from settings and runs them: what `run` and `demo` share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from consumer.avro.codec import Decoder, SchemaStore
from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.avro.registry import SchemaRegistryClient
from consumer.core.retry import RetryPolicy
from consumer.core.verification import VerifyPolicy
from consumer.kafka.lag import LagMonitor, lag_client_config
from consumer.kafka.preflight import build_client, check_admin_role, check_topics
from consumer.kafka.producer import AsyncProducer
from consumer.kafka.receipt_sink import ReceiptSink
from consumer.mem0.client import Mem0Client, OssClient, PlatformClient, make_http_client
from consumer.mem0.downstream import Downstream
from consumer.pipeline.app import ConsumerApp
from consumer.pipeline.executor import Executor
from consumer.settings import Settings, SettingsError
from consumer.telemetry.health import HealthServer
from consumer.telemetry.metrics import Metrics, retry_reason

__all__ = ["make_mem0_client", "serve"]

log = logging.getLogger(__name__)


def make_mem0_client(
    settings: Settings,
    *,
    observe: Callable[[str, str, float], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Mem0Client:
    key = settings.mem0_api_key.reveal()
    if settings.mem0_backend == "oss":
        headers = {"X-API-Key": key} if key else {}
        kind: type[Mem0Client] = OssClient
    else:
        headers = {"Authorization": f"Token {key}"}
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


# librdkafka validates properties when a client is built: a bad one is a bad setting.
_kafka_client = build_client


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
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    client = make_mem0_client(settings, observe=metrics.observe_api_request, transport=transport)
    schema_registry = (
        SchemaRegistryClient(settings.schema_registry_url) if settings.schema_registry_url else None
    )
    decoder = Decoder(SchemaStore.from_directory(), schema_registry)
    # librdkafka's own log lines go through Python logging (JSON), not straight to stderr.
    kafka_log = {"logger": logging.getLogger("consumer.kafka")}
    consumer = _kafka_client(Consumer, {**settings.consumer_config(), **kafka_log})
    loop = asyncio.get_running_loop()
    producer = _kafka_client(
        lambda config: AsyncProducer(config, loop), {**settings.producer_config(), **kafka_log}
    )
    try:
        await check_topics(settings, consumer.list_topics)
        await check_admin_role(client)
    except SettingsError:
        consumer.close()
        producer.close(0)
        await client.aclose()
        raise
    receipts = None
    if settings.receipts_topic:
        # In the input's encoding: registry framing when there is a registry.
        encoder = ReceiptEncoder(
            registry=schema_registry, subject=f"{settings.receipts_topic}-value"
        )
        receipts = ReceiptSink(
            producer, topic=settings.receipts_topic, group=settings.group_id, encoder=encoder
        )
    app = ConsumerApp(
        settings,
        consumer=consumer,
        producer=producer,
        client=client,
        decoder=decoder,
        metrics=metrics,
        receipts=receipts,
    )
    downstream = Downstream(
        client,
        probe_interval_s=settings.mem0_probe_interval_s,
        on_change=metrics.downstream_state.set,
        on_halt_cause=metrics.set_halt_cause,
    )
    policy = RetryPolicy(
        base_s=settings.retry_base_ms / 1000,
        cap_s=settings.retry_cap_s,
        retry_after_cap_s=settings.retry_after_cap_s,
        max_duration_s=settings.retry_max_duration_s or None,
    )
    executor = Executor(
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
    health = None
    if settings.metrics_port:
        health = HealthServer(settings.metrics_port, registry, app.readiness)
        health.start()
    log.info("consumer starting", extra={"settings": settings.describe()})
    if on_ready is not None:
        on_ready(app, health)
    # The lag is read by a side client of its own, so the loop never waits on it.
    lag = LagMonitor(
        _kafka_client(Consumer, lag_client_config({**settings.consumer_config(), **kafka_log})),
        app.assigned_partitions,
        metrics,
    )
    lag.start()
    try:
        await app.run(stop, downstream=downstream, executor=executor, force=force)
    finally:
        await lag.stop()
        await downstream.aclose()
        left = await asyncio.get_running_loop().run_in_executor(None, producer.close, 10.0)
        if left:
            log.error("producer closed with undelivered records", extra={"count": left})
        await client.aclose()
        if schema_registry is not None:
            schema_registry.close()
        if health is not None:
            health.stop()
        log.info("consumer stopped")
