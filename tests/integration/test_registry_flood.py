"""A flood of junk naming unknown schema ids, among valid erasures (issue 16): a real broker, the
real consumer, the sandbox, and a schema registry (tests/support/registry_server.py) counting
what it is asked.

Before, each distinct unknown id cost a registry GET on the event loop, and the junk's dead
letters passed the guard's share: it tripped, and every erasure stopped until a restart.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from consumer.avro.codec import READER_FILE, Encoder, SchemaStore, default_schema_dir
from consumer.avro.framing import frame_confluent
from consumer.avro.schema_ids import LOOKUP_BURST, LOOKUP_RATE
from consumer.core.events import DeletionEvent, EventType, Scope
from consumer.sandbox import Sandbox
from tests.support.harness import (
    RunningConsumer,
    Topics,
    header_dict,
    make_settings,
    publish,
    read_all,
    wait_committed,
)
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.integration

ENCODER = Encoder(SchemaStore.from_directory())
VALID = 100
# After each valid erasure, in its partition: records naming ids no registry has, each its own...
UNKNOWN_PER_VALID = 4
# ...and one with the valid id and a body that is no event.
GARBLED_PER_VALID = 1


def erasure(user: str) -> DeletionEvent:
    return DeletionEvent(
        event_id=str(uuid.uuid4()),
        occurred_at_ms=int(time.time() * 1000) - 5_000,
        type=EventType.USER_DELETED,
        scope=Scope.of(user_id=user),
        source="test",
        reason="GDPR",
    )


def test_a_flood_of_unknown_schema_ids_stops_no_erasure_and_costs_bounded_lookups(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    users = [f"flood-user-{n}" for n in range(VALID)]
    sandbox.add_memories([{"user_id": u, "memory": "x"} for u in [*users, "bystander"]])
    junk_ids = iter(range(1_000_000, 2_000_000))
    with RegistryServer() as registry:
        schema_id = registry.add(
            f"{topics.input}-value", (default_schema_dir() / READER_FILE).read_text()
        )
        values: list[tuple[bytes | None, bytes]] = []
        junk: list[bytes] = []
        for user in users:
            # The junk shares the erasure's key, so its partition: every partition interleaves.
            key = user.encode()
            values.append((key, ENCODER.confluent(erasure(user), schema_id)))
            for _ in range(UNKNOWN_PER_VALID):
                junk.append(frame_confluent(os.urandom(24), next(junk_ids)))
            for _ in range(GARBLED_PER_VALID):
                junk.append(frame_confluent(b"\xff" * 24, schema_id))
            values.extend((key, value) for value in junk[-UNKNOWN_PER_VALID - GARBLED_PER_VALID :])
        ends = publish(kafka, topics.input, values)
        settings = make_settings(kafka, sandbox.url, topics, SCHEMA_REGISTRY_URL=registry.url)
        started = time.monotonic()
        with RunningConsumer(settings) as consumer:
            wait_committed(kafka, topics.group, ends, timeout_s=60)
            elapsed = time.monotonic() - started
            tripped = consumer.metric("mem0_deletion_dlq_guard_tripped")
            reasons = {
                reason: consumer.metric("mem0_deletion_dlq_messages_total", reason=reason)
                for reason in ("unknown_schema", "decode_error")
            }
        lookups = sum(n for path, n in registry.hits.items() if path.startswith("/schemas/ids/"))

    assert tripped == 0
    assert {m["user_id"] for m in sandbox.memories()} == {"bystander"}
    assert reasons == {
        "unknown_schema": VALID * UNKNOWN_PER_VALID,
        "decode_error": VALID * GARBLED_PER_VALID,
    }
    letters = read_all(kafka, topics.dlq, expected=len(junk), idle_s=0.5)
    assert sorted(m.value() for m in letters) == sorted(junk)  # byte for byte
    assert {header_dict(m)["dlq.reason"] for m in letters} == {b"unknown_schema", b"decode_error"}
    # Bounded by the rate, not by the 400 ids named: the token bucket's burst, then its rate.
    assert lookups <= LOOKUP_BURST + LOOKUP_RATE * elapsed
    assert lookups < VALID * UNKNOWN_PER_VALID // 2, lookups
