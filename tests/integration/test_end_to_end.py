"""Events in, Mem0 deletes out: a real broker, the real consumer, the sandbox over HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from consumer.avro.codec import Encoder, SchemaStore
from consumer.core.events import DeletionEvent, EventType, Scope, event_to_record, partition_key
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

pytestmark = pytest.mark.integration

ENCODER = Encoder(SchemaStore.from_directory())


def event(kind: EventType, **fields: Any) -> DeletionEvent:
    ids = tuple(fields.pop("memory_ids", ()))
    return DeletionEvent(
        event_id=str(uuid.uuid4()),
        occurred_at_ms=int(time.time() * 1000) - 5_000,
        type=kind,
        scope=None if kind is EventType.MEMORIES_DELETED else Scope.of(**fields),
        memory_ids=ids,
        source="test",
        reason="GDPR",
    )


def encoded(events: list[DeletionEvent]) -> list[tuple[bytes | None, bytes]]:
    return [(partition_key(event_to_record(e)), ENCODER.single_object(e)) for e in events]


def seed(sandbox: Sandbox, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = sandbox.add_memories(rows)
    return {memory_id: {**row, "id": memory_id} for memory_id, row in zip(ids, rows, strict=True)}


def remaining_ids(sandbox: Sandbox) -> set[str]:
    return {m["id"] for m in sandbox.memories()}


def test_each_event_type_deletes_exactly_its_memories(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    memories = seed(
        sandbox,
        [
            *[{"user_id": "u1", "agent_id": "a1", "memory": "x"}] * 3,
            *[{"user_id": "u2", "run_id": "r1", "memory": "x"}] * 2,
            {"user_id": "u2", "run_id": "r2", "memory": "x"},
            {"user_id": "u9", "run_id": "r1", "memory": "x"},  # same run, other user: stays
            {"user_id": "u3", "agent_id": "a1", "metadata": {"k": "v"}, "memory": "x"},
            {"user_id": "u3", "agent_id": "a1", "metadata": {"k": "w"}, "memory": "x"},
            {"user_id": "u3", "agent_id": "a2", "metadata": {"k": "v"}, "memory": "x"},
            *[{"user_id": "u4", "memory": "x"}] * 4,
            {"user_id": "u5", "memory": "control"},
        ],
    )
    u4 = [i for i, m in memories.items() if m["user_id"] == "u4"]
    events = [
        event(EventType.USER_DELETED, user_id="u1"),
        event(EventType.SESSION_EXPIRED, run_id="r1", user_id="u2"),
        event(EventType.SCOPE_DELETED, user_id="u3", agent_id="a1", metadata={"k": "v"}),
        event(EventType.MEMORIES_DELETED, memory_ids=u4[:3]),
    ]
    expected_gone = {
        i
        for i, m in memories.items()
        for e in events
        if (e.scope is not None and e.scope.matches(m)) or i in e.memory_ids
    }
    assert len(expected_gone) == 3 + 2 + 1 + 3
    ends = publish(kafka, topics.input, encoded(events))

    with RunningConsumer(make_settings(kafka, sandbox.url, topics)) as consumer:
        wait_committed(kafka, topics.group, ends)
        deleted = consumer.metric(
            "mem0_deletion_events_total", type="user_deleted", outcome="deleted"
        )

    assert remaining_ids(sandbox) == set(memories) - expected_gone
    assert deleted == 1
    calls = sandbox.calls()
    delete_alls = [c for c in calls if c["operation"] == "delete_all"]
    # One identifier per Platform delete_all: the user deletion only; compound scopes resolve.
    assert [c["query"] for c in delete_alls] == [{"user_id": "u1"}]
    # Verification reads a sample of the deleted ids back, and the user's entity: gone, they
    # answer 404.
    read_backs = ("get", "entity_get")
    assert all(c["status"] == (404 if c["operation"] in read_backs else 200) for c in calls)
    assert {c["operation"] for c in calls} >= {
        "delete_all",
        "job_status",
        "list",
        "batch_delete",
        "get",
        "entity_delete",
        "entity_get",
    }


def test_compound_scope_deletes_exactly_its_and(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # The sandbox ORs the identifiers of a multi-identifier delete_all, as the Platform may:
    # a consumer relying on AND there would delete the other user's and the other run's memories.
    memories = seed(
        sandbox,
        [
            *[{"user_id": "ann", "run_id": "s1", "memory": "x"}] * 250,  # more than one page
            {"user_id": "ann", "run_id": "s2", "memory": "x"},
            {"user_id": "ben", "run_id": "s1", "memory": "x"},
        ],
    )
    ends = publish(
        kafka, topics.input, encoded([event(EventType.SESSION_EXPIRED, run_id="s1", user_id="ann")])
    )
    with RunningConsumer(make_settings(kafka, sandbox.url, topics)):
        wait_committed(kafka, topics.group, ends)

    left = {m["id"]: m for m in sandbox.memories()}
    assert {(m["user_id"], m["run_id"]) for m in left.values()} == {("ann", "s2"), ("ben", "s1")}
    assert len(left) == 2 and set(left) <= set(memories)
    assert not [c for c in sandbox.calls() if c["operation"] == "delete_all"]


def test_invalid_events_land_in_the_dlq_with_bytes_and_headers(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    kept = seed(sandbox, [{"user_id": "keep", "memory": "x"}])
    wildcard = event(EventType.USER_DELETED, user_id="*")
    not_uuid = event(EventType.MEMORIES_DELETED, memory_ids=("mem_123",))
    garbage = b"\x07 not an event"
    values = [*encoded([wildcard, not_uuid]), (b"k-garbage", garbage)]
    ends = publish(kafka, topics.input, values, trace=b"abc")

    with RunningConsumer(make_settings(kafka, sandbox.url, topics)) as consumer:
        wait_committed(kafka, topics.group, ends)
        dlq_invalid = consumer.metric("mem0_deletion_dlq_messages_total", reason="invalid_scope")

    letters = read_all(kafka, topics.dlq, expected=3)
    assert len(letters) == 3
    assert dlq_invalid == 2
    by_value = {m.value(): m for m in letters}
    assert set(by_value) == {v for _, v in values}
    for key, value in values:
        letter = by_value[value]
        headers = header_dict(letter)
        assert letter.key() == key
        assert headers["trace"] == b"abc"  # original headers kept byte for byte
        assert headers["dlq.original.topic"] == topics.input.encode()
        assert headers["dlq.consumer.group"] == topics.group.encode()
        assert headers["dlq.failed_at"].endswith(b"Z")
    reasons = {m.value(): header_dict(m)["dlq.reason"] for m in letters}
    assert reasons[garbage] == b"decode_error"
    assert reasons[values[0][1]] == b"invalid_scope"
    assert header_dict(by_value[values[0][1]])["dlq.event_id"] == wildcard.event_id.encode()
    assert reasons[values[1][1]] == b"invalid_scope"
    # No call was made for any of them.
    assert [c for c in sandbox.calls() if c["operation"] != "ping"] == []
    assert remaining_ids(sandbox) == set(kept)


def test_outage_commits_nothing_and_a_restarted_consumer_finishes(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    memories = seed(sandbox, [{"user_id": f"user-{n}", "memory": "x"} for n in range(6)])
    sandbox.set_faults(outage=True)
    events = [event(EventType.USER_DELETED, user_id=f"user-{n}") for n in range(6)]
    ends = publish(kafka, topics.input, encoded(events))
    settings = make_settings(kafka, sandbox.url, topics, SHUTDOWN_TIMEOUT_S="1")

    with RunningConsumer(settings):
        deadline = time.monotonic() + 30
        # Wait for the consumer to have met the outage more than once on every user.
        while len([c for c in sandbox.calls() if c["fault"] == "outage"]) < 12:
            assert time.monotonic() < deadline, "the consumer never reached the sandbox"
            time.sleep(0.05)

    from consumer.kafka.broker import committed_positions

    committed = committed_positions(kafka, topics.group, ends)
    assert all(position < 0 for position in committed.values()), committed
    assert read_all(kafka, topics.dlq, expected=1, timeout_s=1.0) == []
    assert remaining_ids(sandbox) == set(memories)

    sandbox.set_faults(outage=False)
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    assert remaining_ids(sandbox) == set()


def test_a_poison_id_in_a_batch_of_1000_dead_letters_only_its_event(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    ids = list(seed(sandbox, [{"user_id": f"u{n % 7}", "memory": "x"} for n in range(1000)]))
    poison = ids[617]
    sandbox.set_faults(poison_ids=frozenset({poison}))
    events = [
        event(EventType.MEMORIES_DELETED, memory_ids=ids[n : n + 10]) for n in range(0, 1000, 10)
    ]
    ends = publish(kafka, topics.input, encoded(events))
    # One flush of all 100 events, so all 1000 ids share one batch.
    settings = make_settings(
        kafka, sandbox.url, topics, FLUSH_MAX_EVENTS="100", FLUSH_MAX_WAIT_MS="5000"
    )
    with RunningConsumer(settings) as consumer:
        wait_committed(kafka, topics.group, ends)
        flushes = consumer.metric("mem0_deletion_flush_events_count")

    assert flushes == 1
    assert remaining_ids(sandbox) == {poison}
    letters = read_all(kafka, topics.dlq, expected=1)
    assert len(letters) == 1
    headers = header_dict(letters[0])
    assert headers["dlq.reason"] == b"rejected"
    assert headers["dlq.event_id"] == events[61].event_id.encode()
    assert headers["dlq.http_status"] == b"400"
    batches = [c for c in sandbox.calls() if c["operation"] == "batch_delete"]
    # Halving isolates one id in about 2*log2(1000) + 1 calls.
    assert len(batches) <= 2 * 10 + 1
    assert max(len(c["body"]["memories"]) for c in batches) == 1000
