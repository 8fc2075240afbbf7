"""Receipts and verification end to end: a real broker, the real consumer, the sandbox over HTTP.

Every finished input record that decoded has exactly one receipt (a duplicate too, pointing at
the record whose work served it), written before its offset is committed, decodable with
`schemas/deletion_receipt.avsc`, and free of identifier values. A job that reports SUCCEEDED
but leaves memories behind is deleted again, then dead-lettered as `verification_failed`. The
`receipts` lookup reads past any record it cannot decode or show.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import replace
from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

from consumer.__main__ import main
from consumer.avro.codec import default_schema_dir
from consumer.avro.receipt_codec import RECEIPT_FILE, ReceiptDecoder, ReceiptEncoder
from consumer.avro.registry import SchemaRegistryClient
from consumer.core.events import EventType
from consumer.core.receipts import COMPLETED, DEAD_LETTERED, Position, Receipt
from consumer.kafka.broker import committed_positions
from consumer.sandbox import Sandbox
from tests.integration.test_end_to_end import encoded, event, remaining_ids, seed
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

P = "mem0_deletion_"
LIMIT = 1260  # KAFKA_MESSAGE_MAX_BYTES between an event's size and its receipt's


def receipts_of(kafka: str, topics: Topics, expected: int, **kwargs: Any) -> list[Any]:
    return read_all(kafka, topics.receipts, expected=expected, **kwargs)


def decoded(messages: list[Any], decoder: ReceiptDecoder | None = None) -> list[Receipt]:
    reader = decoder or ReceiptDecoder()
    return [reader.decode(m.value()) for m in messages]


def with_receipts(kafka: str, sandbox: Sandbox, topics: Topics, **env: str) -> Any:
    return make_settings(kafka, sandbox.url, topics, RECEIPTS_TOPIC=topics.receipts, **env)


def test_every_record_of_a_mixed_run_has_one_receipt_with_the_right_outcome(
    kafka: str, topics: Topics, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:12]
    ann, ben, cat, dan, eve = (f"{name}-{tag}" for name in ("ann", "ben", "cat", "dan", "eve"))
    run, other_run, agent, topic_value = f"run-{tag}", f"run2-{tag}", f"agent-{tag}", f"t-{tag}"
    memories = seed(
        sandbox,
        [
            *[{"user_id": ann, "memory": "x"}] * 3,
            *[{"user_id": ben, "run_id": run, "memory": "x"}] * 2,
            {"user_id": ben, "run_id": other_run, "memory": "x"},  # stays
            {"user_id": cat, "agent_id": agent, "metadata": {"topic": topic_value}},
            *[{"user_id": dan, "memory": "x"}] * 3,
            *[{"user_id": eve, "memory": "x"}] * 2,
        ],
    )
    dan_ids = [i for i, m in memories.items() if m["user_id"] == dan]
    eve_ids = [i for i, m in memories.items() if m["user_id"] == eve]
    sandbox.set_faults(poison_ids=frozenset({eve_ids[0]}))
    for_ann = event(EventType.USER_DELETED, user_id=ann)
    session = event(EventType.SESSION_EXPIRED, run_id=run, user_id=ben)
    scope = event(
        EventType.SCOPE_DELETED, user_id=cat, agent_id=agent, metadata={"topic": topic_value}
    )
    by_ids = event(EventType.MEMORIES_DELETED, memory_ids=dan_ids[:2])
    poisoned = event(EventType.MEMORIES_DELETED, memory_ids=eve_ids[:1])
    wildcard = event(EventType.USER_DELETED, user_id="*")
    events = [for_ann, for_ann, session, scope, by_ids, poisoned, wildcard]
    records = [*encoded(events), (b"garbage", b"\x07 not an event")]
    ends = publish(kafka, topics.input, records)
    settings = with_receipts(
        kafka, sandbox, topics, FLUSH_MAX_EVENTS=str(len(records)), FLUSH_MAX_WAIT_MS="3000"
    )
    with RunningConsumer(settings) as consumer:
        committed = wait_committed(kafka, topics.group, ends)
        # Written before the commit: every committed record already has its receipt.
        messages = receipts_of(kafka, topics, expected=len(events), timeout_s=5, idle_s=0.5)
        verifications = {
            result: consumer.metric(P + "verifications_total", result=result)
            for result in ("passed", "redeleted", "failed")
        }

    receipts = decoded(messages)
    # One receipt per input record that decoded (the garbage has no event id to key one by).
    positions = Counter((r.input.topic, r.input.partition, r.input.offset) for r in receipts)
    assert len(receipts) == len(events) and set(positions.values()) == {1}
    assert all(r.input.offset < committed[(r.input.topic, r.input.partition)] for r in receipts)
    assert [m.key() for m in messages] == [r.event_id.encode() for r in receipts]
    by_event: dict[str, list[Receipt]] = {}
    for receipt in receipts:
        by_event.setdefault(receipt.event_id, []).append(receipt)
    assert Counter({k: len(v) for k, v in by_event.items()}) == Counter(
        {e.event_id: events.count(e) for e in events}
    )

    # The duplicate reports the same work and points at the record that did it.
    first, second = sorted(by_event[for_ann.event_id], key=lambda r: r.input.offset)
    assert first.duplicate_of is None and second.duplicate_of == first.input
    assert second.operations == first.operations and second.outcome == COMPLETED

    expected = {
        # A user erasure deletes the user's entity too, beside its memories.
        for_ann.event_id: (
            COMPLETED,
            None,
            [("delete_all", ("user_id",)), ("delete_entity", ("user_id",))],
        ),
        session.event_id: (COMPLETED, None, [("resolve_scope", ("user_id", "run_id"))]),
        scope.event_id: (
            COMPLETED,
            None,
            [("resolve_scope", ("user_id", "agent_id", "metadata"))],
        ),
        by_ids.event_id: (COMPLETED, None, [("delete_ids", ("memory_id",))]),
        poisoned.event_id: (DEAD_LETTERED, "rejected", [("delete_ids", ("memory_id",))]),
        wildcard.event_id: (DEAD_LETTERED, "invalid_scope", []),
    }
    for event_id, (outcome, dlq_reason, operations) in expected.items():
        for receipt in by_event[event_id]:
            assert receipt.outcome == outcome, receipt
            assert receipt.dlq_reason == dlq_reason
            # Operations that run at once are listed as they finished.
            assert sorted((op.kind, op.identifiers) for op in receipt.operations) == operations
            assert receipt.consumer_group == topics.group
            assert receipt.reason == "GDPR" and receipt.source == "test"
            if outcome == COMPLETED:
                assert receipt.verified and all(op.verified for op in receipt.operations)
                assert receipt.time_to_erasure_ms is not None
                assert receipt.time_to_erasure_ms >= 5000  # occurred_at is 5 s before publishing
                assert receipt.completed_at_ms - receipt.occurred_at_ms == (
                    receipt.time_to_erasure_ms
                )
            else:
                assert not receipt.verified and receipt.time_to_erasure_ms is None
    ann_ops = {op.kind: op for op in first.operations}
    for ann_op in ann_ops.values():  # the delete_all and the entity deletion: jobs both
        assert ann_op.job_id and ann_op.last_http_status == 200 and ann_op.calls >= 3
    # One id batch served both id events: each lists it, with the batch's calls.
    assert by_event[by_ids.event_id][0].operations == by_event[poisoned.event_id][0].operations
    assert by_event[poisoned.event_id][0].operations[0].last_http_status is not None

    # Verification: a listing after the job, a sample of the batch read back, compound scopes.
    calls = Counter(c["operation"] for c in sandbox.calls())
    assert calls["get"] >= 1 and calls["list"] >= 3
    # The user's memories and entity, the compound scopes, the batch.
    assert verifications == {"passed": 5, "redeleted": 0, "failed": 0}
    assert remaining_ids(sandbox) == {
        i for i, m in memories.items() if m.get("run_id") == other_run or i in eve_ids
    } | {dan_ids[2]}

    # No identifier value anywhere in a receipt: the keys and values as bytes.
    identifiers = {ann, ben, cat, dan, eve, run, other_run, agent, topic_value, *memories}
    for message in messages:
        raw = (message.key() or b"") + (message.value() or b"")
        leaked = sorted(i for i in identifiers if i.encode() in raw)
        assert not leaked, leaked

    # Receipts decode with the schema file itself, single-object framed with its fingerprint.
    schema = json.loads((default_schema_dir() / RECEIPT_FILE).read_text())
    parsed = parse_schema(schema)
    digest = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    for message in messages:
        value = message.value()
        assert value[:2] == b"\xc3\x01" and value[2:10] == digest
        body = BytesIO(value[10:])
        record = schemaless_reader(body, parsed, None)
        assert body.tell() == len(value) - 10
        assert record["event_id"] in by_event and record["outcome"] in (COMPLETED, DEAD_LETTERED)

    # The audit trail: `receipts` scans the topic and prints what it holds for an event.
    flags = ["--bootstrap-servers", kafka, "--receipts-topic", topics.receipts]
    missing = str(uuid.uuid4())
    code = main(
        ["receipts", *flags, "--event-id", for_ann.event_id, "--event-id", missing, "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 1 and f"no receipt for event {missing}" in err
    printed = [json.loads(line) for line in out.splitlines()]
    assert sorted(row["input"]["offset"] for row in printed) == [
        first.input.offset,
        second.input.offset,
    ]
    assert {row["outcome"] for row in printed} == {COMPLETED}
    assert all(row["occurred_at_iso"].endswith("Z") for row in printed)
    assert main(["receipts", *flags, "--event-id", poisoned.event_id]) == 0
    out, _ = capsys.readouterr()
    assert f"receipt for event {poisoned.event_id}" in out and "DEAD_LETTERED (rejected)" in out


def test_a_job_that_leaves_memories_behind_is_redeleted_then_dead_lettered(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    user = f"left-{uuid.uuid4().hex[:8]}"
    memories = seed(sandbox, [{"user_id": user, "memory": "x"}] * 2)
    sandbox.set_faults(leave_behind_rate=1.0)  # every job SUCCEEDS and deletes nothing
    gone = event(EventType.USER_DELETED, user_id=user)
    ends = publish(kafka, topics.input, encoded([gone]))
    # The user's entity job would delete the memories its delete_all left: this test is about
    # the delete_all's own check, so the entity stays out of it.
    settings = with_receipts(
        kafka, sandbox, topics, VERIFY_MAX_ROUNDS="2", ERASE_USER_ENTITY="false"
    )
    with RunningConsumer(settings) as consumer:
        wait_committed(kafka, topics.group, ends)
        failed = consumer.metric(P + "verifications_total", result="failed")
        dead = consumer.metric(P + "dlq_messages_total", reason="verification_failed")

    calls = [c for c in sandbox.calls() if c["operation"] in ("delete_all", "list")]
    # The job; the grouped listing (an OR of the scopes finishing together: here just this
    # one) finds memories, so the scope is listed alone; then a listing after each job: two
    # re-deletes, then it gives up.
    assert [c["operation"] for c in calls] == ["delete_all", "list"] + [
        "list",
        "delete_all",
    ] * 2 + ["list"]
    assert calls[1]["body"]["filters"] == {"OR": [{"user_id": user}]}
    assert calls[2]["body"]["filters"] == {"AND": [{"user_id": user}]}
    assert remaining_ids(sandbox) == set(memories)
    assert (failed, dead) == (1, 1)
    (letter,) = read_all(kafka, topics.dlq, expected=1)
    assert header_dict(letter)["dlq.reason"] == b"verification_failed"
    (receipt,) = decoded(receipts_of(kafka, topics, expected=1))
    assert (receipt.outcome, receipt.dlq_reason, receipt.verified) == (
        DEAD_LETTERED,
        "verification_failed",
        False,
    )
    (operation,) = receipt.operations
    assert operation.kind == "delete_all" and operation.job_id and not operation.verified


def test_scopes_finishing_together_are_verified_by_one_grouped_listing(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    users = [f"g{n}-{uuid.uuid4().hex[:6]}" for n in range(40)]
    seed(sandbox, [{"user_id": user, "memory": "x"} for user in users])
    events = [event(EventType.USER_DELETED, user_id=user) for user in users]
    ends = publish(kafka, topics.input, encoded(events))
    settings = with_receipts(
        kafka, sandbox, topics, FLUSH_MAX_EVENTS=str(len(events)), FLUSH_MAX_WAIT_MS="3000"
    )
    with RunningConsumer(settings) as consumer:
        wait_committed(kafka, topics.group, ends)
        passed = consumer.metric(P + "verifications_total", result="passed")
        messages = receipts_of(kafka, topics, expected=len(events))

    assert remaining_ids(sandbox) == set()
    assert passed == 2 * len(users)  # each user's memories, and its entity read back
    assert all(r.verified for r in decoded(messages))
    listings = [c for c in sandbox.calls() if c["operation"] == "list"]
    grouped = [c["body"]["filters"]["OR"] for c in listings]
    # Every scope was in a grouped listing, and far fewer listings than scopes were made.
    assert sorted(f["user_id"] for group in grouped for f in group) == sorted(users)
    assert len(listings) <= len(users) // 4, len(listings)


def test_verify_deletes_false_makes_no_verification_call(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    user = f"unchecked-{uuid.uuid4().hex[:8]}"
    memories = seed(sandbox, [{"user_id": user, "memory": "x"}] * 2 + [{"user_id": "x"}] * 4)
    ids = [i for i, m in memories.items() if m["user_id"] == "x"]
    sandbox.set_faults(leave_behind_rate=1.0)
    events = [
        event(EventType.USER_DELETED, user_id=user),
        event(EventType.MEMORIES_DELETED, memory_ids=ids),
    ]
    ends = publish(kafka, topics.input, encoded(events))
    # Without the entity job, which would delete the memories the delete_all left.
    settings = with_receipts(
        kafka,
        sandbox,
        topics,
        VERIFY_DELETES="false",
        VERIFY_SAMPLE_SHARE="1",
        ERASE_USER_ENTITY="false",
    )
    with RunningConsumer(settings) as consumer:
        wait_committed(kafka, topics.group, ends)
        checked = sum(
            consumer.metric(P + "verifications_total", result=result)
            for result in ("passed", "redeleted", "failed")
        )

    operations = Counter(c["operation"] for c in sandbox.calls())
    assert operations["list"] == operations["get"] == 0 and checked == 0
    # Unchecked, the job's leftovers go unnoticed: that is what verification is for.
    assert remaining_ids(sandbox) == {i for i, m in memories.items() if m["user_id"] == user}
    receipts = decoded(receipts_of(kafka, topics, expected=2))
    assert sorted(r.event_id for r in receipts) == sorted(e.event_id for e in events)
    assert all(r.outcome == COMPLETED and not r.verified for r in receipts)


def test_no_offset_is_committed_before_its_receipt_is_acknowledged(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # Events just under the producer's size limit; their receipts (which repeat the long
    # `source`) just over it: receipts cannot be written until the limit is raised.
    users = [f"big-{n}-{uuid.uuid4().hex[:8]}" for n in range(3)]
    memories = seed(sandbox, [{"user_id": u, "memory": "x"} for u in users])
    events = [replace(event(EventType.USER_DELETED, user_id=u), source="s" * 1100) for u in users]
    records = encoded(events)
    # About 1190 bytes an event (key and value), 1330 a receipt.
    assert max(len(key or b"") + len(value) for key, value in records) < LIMIT - 40
    ends = publish(kafka, topics.input, records)
    tight = with_receipts(
        kafka, sandbox, topics, KAFKA_MESSAGE_MAX_BYTES=str(LIMIT), SHUTDOWN_TIMEOUT_S="0.5"
    )
    with RunningConsumer(tight):
        deadline = time.monotonic() + 20
        while remaining_ids(sandbox):  # the deletes go through...
            assert time.monotonic() < deadline, "the deletes never happened"
            time.sleep(0.05)
        time.sleep(1.0)  # ...and ten commit intervals pass: the offsets must not move
        assert all(p < 0 for p in committed_positions(kafka, topics.group, ends).values())
    assert receipts_of(kafka, topics, expected=1, timeout_s=1.0) == []
    assert len(memories) == 3

    with RunningConsumer(with_receipts(kafka, sandbox, topics)):
        wait_committed(kafka, topics.group, ends)
    receipts = decoded(receipts_of(kafka, topics, expected=3, timeout_s=5, idle_s=0.5))
    assert sorted(r.event_id for r in receipts) == sorted(e.event_id for e in events)
    assert all(r.outcome == COMPLETED for r in receipts)


def test_with_a_schema_registry_receipts_are_registry_framed(
    kafka: str, topics: Topics, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(sandbox, [{"user_id": "reg-receipt", "memory": "x"}])
    gone = event(EventType.USER_DELETED, user_id="reg-receipt")
    ends = publish(kafka, topics.input, encoded([gone]))
    with RegistryServer() as registry:
        settings = with_receipts(kafka, sandbox, topics, SCHEMA_REGISTRY_URL=registry.url)
        with RunningConsumer(settings):
            wait_committed(kafka, topics.group, ends)
        (message,) = receipts_of(kafka, topics, expected=1)
        value = message.value()
        schema_id = int.from_bytes(value[1:5], "big")
        assert value[0] == 0 and registry.hits[f"/subjects/{topics.receipts}-value/versions"] == 1
        assert json.loads(registry.schema(schema_id) or "{}")["name"] == "DeletionReceipt"
        with SchemaRegistryClient(registry.url) as client:
            (receipt,) = decoded([message], ReceiptDecoder(client))
        assert receipt.event_id == gone.event_id and receipt.outcome == COMPLETED
        flags = ["--bootstrap-servers", kafka, "--receipts-topic", topics.receipts]
        flags += ["--schema-registry-url", registry.url, "--event-id", gone.event_id]
        assert main(["receipts", *flags]) == 0
    assert "COMPLETED, verified" in capsys.readouterr().out


def test_no_one_record_stops_a_receipts_lookup(
    kafka: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 16: a receipt whose time no date can show (a producer's `occurred_at` is copied
    # into its receipt) made `receipts` raise; its text fields went to the terminal raw.
    event_id = str(uuid.uuid4())
    good = Receipt(
        event_id=event_id,
        outcome=COMPLETED,
        event_type="user_deleted",
        reason="GDPR",
        source="app\x1b[2J",  # anyone's text: an escape sequence that clears the screen
        occurred_at_ms=1_700_000_000_000,
        completed_at_ms=1_700_000_001_000,
        time_to_erasure_ms=1000,
        operations=(),
        verified=False,
        dlq_reason=None,
        consumer_group=topics.group,
        input=Position(topics.input, 0, 1),
    )
    far = replace(good, occurred_at_ms=2**62, time_to_erasure_ms=None)
    encoder = ReceiptEncoder()
    key = event_id.encode()
    records = [(key, b"not a receipt"), (key, None), (key, encoder.single_object(far))]
    publish(kafka, topics.receipts, [*records, (key, encoder.single_object(good))])
    flags = ["--bootstrap-servers", kafka, "--receipts-topic", topics.receipts]

    assert main(["receipts", *flags, "--event-id", event_id]) == 0
    out, err = capsys.readouterr()
    assert err.count("unreadable") == 2 and "offset 0: unreadable" in err
    assert out.count(f"receipt for event {event_id}") == 2
    assert f"{2**62} ms after the epoch (out of range for a date)" in out
    assert "\x1b" not in out and "from app\\x1b[2J" in out

    assert main(["receipts", *flags, "--event-id", event_id, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["occurred_at_iso"] for row in rows] == [None, "2023-11-14T22:13:20.000Z"]
    assert [row["receipts_offset"] for row in rows] == [2, 3]
