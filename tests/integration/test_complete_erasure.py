"""Complete erasure against the Mem0 of today: what the API stores out of the ordinary reads'
sight (merged and expired records, entity records, superseded memories, listings past their
default page), its roles, its error codes and its jobs. A real broker, the real consumer, the
sandbox over HTTP; each test fails where the API would leave data behind or where an erasure
would be dead-lettered for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from consumer.__main__ import main
from consumer.avro.receipt_codec import ReceiptDecoder
from consumer.core.events import DeletionEvent, EventType
from consumer.core.receipts import COMPLETED, Receipt
from consumer.kafka.broker import committed_positions, free_port
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

pytestmark = pytest.mark.integration

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def wait_for(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def receipts(kafka: str, topics: Topics, expected: int) -> dict[str, Receipt]:
    decoder = ReceiptDecoder()
    found = [decoder.decode(m.value()) for m in read_all(kafka, topics.receipts, expected)]
    return {receipt.event_id: receipt for receipt in found}


def no_dead_letters(kafka: str, topics: Topics) -> bool:
    return read_all(kafka, topics.dlq, expected=1, timeout_s=1.0) == []


def users_entities(sandbox: Sandbox) -> set[str]:
    return {e["name"] for e in sandbox.entities() if e["type"] == "user"}


# -- the Platform ---------------------------------------------------------------------------


def test_a_compound_scope_leaves_no_merged_record(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    """Dream keeps merged duplicates hidden from every read unless asked: a listing without
    `include_merged` neither deletes them nor sees them when it verifies."""
    rows = []
    for n in range(40):
        rows += [
            {"user_id": f"m{n}", "run_id": f"r{n}", "memory": "kept"},
            {"user_id": f"m{n}", "run_id": f"r{n}", "memory": "dup", "merged": True},
            {"user_id": f"m{n}", "run_id": "other", "memory": "control", "merged": True},
        ]
    memories = seed(sandbox, rows)
    controls = {i for i, m in memories.items() if m["run_id"] == "other"}
    events = [event(EventType.SCOPE_DELETED, user_id=f"m{n}", run_id=f"r{n}") for n in range(40)]
    ends = publish(kafka, topics.input, encoded(events))
    settings = make_settings(kafka, sandbox.url, topics, RECEIPTS_TOPIC=topics.receipts)
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    assert remaining_ids(sandbox) == controls
    found = receipts(kafka, topics, len(events))
    assert all(r.outcome == COMPLETED and r.verified for r in found.values())
    lists = [c for c in sandbox.calls() if c["operation"] == "list"]
    assert lists and all(c["body"]["include_merged"] is True for c in lists)


def test_a_user_erasure_deletes_the_users_entity_and_its_receipt_says_so(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    seed(
        sandbox,
        [
            {"user_id": "alice", "memory": "a"},
            {"user_id": "alice", "memory": "b", "merged": True},
            {"user_id": "alice", "memory": "c", "expiration_date": YESTERDAY},
            {"user_id": "bob", "memory": "stays"},
        ],
    )
    sandbox.add_entities([{"type": "user", "id": "carol"}])  # an entity with no memories left
    assert users_entities(sandbox) == {"alice", "bob", "carol"}
    alice = event(EventType.USER_DELETED, user_id="alice")
    carol = event(EventType.USER_DELETED, user_id="carol")
    scoped = event(EventType.SCOPE_DELETED, user_id="bob", agent_id="nobody")
    ends = publish(kafka, topics.input, encoded([alice, carol, scoped]))
    settings = make_settings(kafka, sandbox.url, topics, RECEIPTS_TOPIC=topics.receipts)
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    assert {m["user_id"] for m in sandbox.memories()} == {"bob"}
    # A scope deletion asks for memories only: bob's entity stays.
    assert users_entities(sandbox) == {"bob"}
    found = receipts(kafka, topics, 3)
    # The two operations run at once; the receipt lists them as they finished.
    by_kind = {op.kind: op for op in found[alice.event_id].operations}
    assert sorted(by_kind) == ["delete_all", "delete_entity"]
    entity_op = by_kind["delete_entity"]
    assert entity_op.identifiers == ("user_id",) and entity_op.verified and entity_op.job_id
    assert found[alice.event_id].verified
    assert [op.kind for op in found[scoped.event_id].operations] == ["resolve_scope"]
    assert no_dead_letters(kafka, topics)


def test_erase_user_entity_false_keeps_the_entity(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    seed(sandbox, [{"user_id": "dora", "memory": "a"}])
    ends = publish(kafka, topics.input, encoded([event(EventType.USER_DELETED, user_id="dora")]))
    settings = make_settings(kafka, sandbox.url, topics, ERASE_USER_ENTITY="false")
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    assert remaining_ids(sandbox) == set()
    assert users_entities(sandbox) == {"dora"}
    assert not [c for c in sandbox.calls() if c["operation"] == "entity_delete"]


def linked_event(*ids: str, linked: bool) -> DeletionEvent:
    plain = event(EventType.MEMORIES_DELETED, memory_ids=ids)
    plain.include_linked = linked
    return plain


def test_include_linked_deletes_what_each_id_superseded_and_counts_it(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    newest, plain_new = sandbox.add_memories([{"memory": "new"}, {"memory": "new too"}])
    middle, oldest_plain = sandbox.add_memories(
        [
            {"memory": "older", "superseded_by": newest},
            {"memory": "older too", "superseded_by": plain_new},
        ]
    )
    sandbox.add_memories([{"memory": "oldest", "superseded_by": middle}])
    with_history = linked_event(newest, linked=True)
    without = linked_event(plain_new, linked=False)
    ends = publish(kafka, topics.input, encoded([with_history, without]))
    settings = make_settings(kafka, sandbox.url, topics, RECEIPTS_TOPIC=topics.receipts)
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    # The history of the linked id went with it; the plain delete took only its id.
    assert remaining_ids(sandbox) == {oldest_plain}
    found = receipts(kafka, topics, 2)
    (op,) = found[with_history.event_id].operations
    assert op.kind == "delete_linked" and op.cascade_count == 2
    (plain_op,) = found[without.event_id].operations
    assert plain_op.kind == "delete_ids" and plain_op.cascade_count is None
    linked_calls = [c for c in sandbox.calls() if c["query"].get("delete_linked") == "true"]
    assert len(linked_calls) == 1


def test_a_job_not_readable_at_first_is_waited_for_not_dead_lettered(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    seed(sandbox, [{"user_id": f"j{n}", "memory": "x"} for n in range(5)])
    sandbox.set_faults(job_hidden_ms=300, job_delay_ms=100)
    events = [event(EventType.USER_DELETED, user_id=f"j{n}") for n in range(5)]
    ends = publish(kafka, topics.input, encoded(events))
    with RunningConsumer(make_settings(kafka, sandbox.url, topics)):
        wait_committed(kafka, topics.group, ends)
    assert remaining_ids(sandbox) == set()
    assert any(c["status"] == 404 for c in sandbox.calls() if c["operation"] == "job_status")
    assert no_dead_letters(kafka, topics)


# -- the self-hosted server -------------------------------------------------------------------


def deletes_of(sandbox: Sandbox, user_id: str) -> list[dict[str, Any]]:
    """The filter deletes of one user (the start-up check's probe names a random one)."""
    calls = sandbox.calls()
    return [
        c
        for c in calls
        if c["operation"] == "oss_delete_all" and c["query"] == {"user_id": user_id}
    ]


def oss(kafka: str, sandbox: Sandbox, topics: Topics, **env: str) -> Any:
    return make_settings(kafka, sandbox.url, topics, MEM0_BACKEND="oss", **env)


def test_an_old_server_with_expired_memories_past_the_first_hundred_leaves_nothing(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    """Servers before mem0ai 2.0.15 delete 100 matches per call; listings show 20 and hide the
    expired ones unless asked. With 110 memories a user, the last 10 expired, a loop that
    trusted the default listing stopped with memories left and committed."""
    sandbox.set_faults(oss_delete_all_limit=100)
    rows = []
    users = [f"old{n}" for n in range(14)]
    for user_id in users:
        rows += [{"user_id": user_id, "memory": "x"}] * 100
        rows += [{"user_id": user_id, "memory": "x", "expiration_date": YESTERDAY}] * 10
    rows.append({"user_id": "keep", "memory": "control"})
    memories = seed(sandbox, rows)
    assert len(memories) == 1541
    ends = publish(
        kafka, topics.input, encoded([event(EventType.USER_DELETED, user_id=u) for u in users])
    )
    with RunningConsumer(oss(kafka, sandbox, topics)):
        wait_committed(kafka, topics.group, ends)
    assert {m["user_id"] for m in sandbox.memories()} == {"keep"}
    lists = [c for c in sandbox.calls() if c["operation"] == "oss_list"]
    assert lists and all(
        c["query"].get("top_k") == "1000" and c["query"].get("show_expired") == "true"
        for c in lists
    )
    assert no_dead_letters(kafka, topics)


def test_a_key_without_the_admin_role_stops_start_up_naming_the_key(
    kafka: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox(seed=7, user_api_keys=["reader-key"]) as sandbox:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "DELETION_TOPICS": topics.input,
            "DLQ_TOPIC": topics.dlq,
            "RECEIPTS_TOPIC": "",
            "MEM0_BACKEND": "oss",
            "MEM0_BASE_URL": sandbox.url,
            "MEM0_API_KEY": "reader-key",
            "METRICS_PORT": "0",
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            code = main(["run"])
        lines = [line for line in capsys.readouterr().err.splitlines() if "MEM0_API_KEY" in line]
        assert code == 2
        assert lines and "admin role" in lines[-1]
        deletes = [c for c in sandbox.calls() if c["method"] == "DELETE"]
        assert [c["status"] for c in deletes] == [403]  # the probe: nothing deleted


@pytest.fixture
def demotable() -> Iterator[Sandbox]:
    """A sandbox whose admin key can be demoted at run time."""
    with Sandbox(seed=7, api_key="sandbox-key") as server:
        yield server


def test_a_key_that_loses_the_admin_role_halts_without_flapping_then_an_admin_key_finishes(
    kafka: str, topics: Topics, demotable: Sandbox
) -> None:
    sandbox = demotable
    seed(sandbox, [{"user_id": f"h{n}", "memory": "x"} for n in range(5)])
    port = free_port()
    settings = oss(
        kafka,
        sandbox,
        topics,
        METRICS_PORT=str(port),
        MEM0_PROBE_INTERVAL_S="0.2",
        SHUTDOWN_TIMEOUT_S="1",
    )
    events = [event(EventType.USER_DELETED, user_id=f"h{n}") for n in range(5)]
    with RunningConsumer(settings) as consumer:
        # Started with the role (the start-up check passed); then an operator takes it away.
        wait_for(
            lambda: any(c["method"] == "DELETE" and c["status"] == 200 for c in sandbox.calls()),
            "the start-up check",
        )
        sandbox.set_keys(api_key="new-admin-key", user_api_keys=["sandbox-key"])
        ends = publish(kafka, topics.input, encoded(events))
        halted = "mem0_deletion_downstream_halted"
        wait_for(lambda: consumer.metric(halted, cause="admin_role_required") == 1, "the halt")
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 503 and "admin role" in ready.text
        states = []
        before = len(sandbox.calls())
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # sampled over a window: never resumed
            states.append(consumer.metric("mem0_deletion_downstream_state"))
            time.sleep(0.02)
        assert set(states) == {2}
        probes = sandbox.calls()[before:]
        assert probes and all(
            c["method"] == "DELETE" and c["path"] == "/memories" and c["status"] == 403
            for c in probes
        )
        assert all(p < 0 for p in committed_positions(kafka, topics.group, ends).values())
    assert len(remaining_ids(sandbox)) == 5
    admin = oss(kafka, sandbox, topics, MEM0_API_KEY="new-admin-key")
    with RunningConsumer(admin):
        wait_committed(kafka, topics.group, ends)
    assert remaining_ids(sandbox) == set()
    assert no_dead_letters(kafka, topics)


@pytest.mark.parametrize(
    ("code", "reason"), [("provider_bad_request", "rejected"), ("provider_auth_failed", "rejected")]
)
def test_a_permanent_502_code_dead_letters(
    kafka: str, topics: Topics, sandbox: Sandbox, code: str, reason: str
) -> None:
    seed(sandbox, [{"user_id": "p", "memory": "x"}])
    sandbox.set_faults(error_rate=1.0, error_codes=[502], oss_error_code=code)
    ends = publish(kafka, topics.input, encoded([event(EventType.USER_DELETED, user_id="p")]))
    with RunningConsumer(oss(kafka, sandbox, topics)):
        wait_committed(kafka, topics.group, ends)
    (letter,) = read_all(kafka, topics.dlq, expected=1)
    headers = header_dict(letter)
    assert headers["dlq.reason"] == reason.encode()
    assert headers["dlq.http_status"] == b"502"
    assert len(deletes_of(sandbox, "p")) == 1  # not retried


def test_a_502_unknown_gives_up_after_its_bound_even_with_no_time_budget(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    seed(sandbox, [{"user_id": "u", "memory": "x"}])
    sandbox.set_faults(error_rate=1.0, error_codes=[502], oss_error_code="unknown")
    ends = publish(kafka, topics.input, encoded([event(EventType.USER_DELETED, user_id="u")]))
    settings = oss(kafka, sandbox, topics, MEM0_UNKNOWN_ERROR_RETRIES="2", RETRY_MAX_DURATION_S="0")
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    (letter,) = read_all(kafka, topics.dlq, expected=1)
    assert header_dict(letter)["dlq.reason"] == b"retries_exhausted"
    assert len(deletes_of(sandbox, "u")) == 3  # the first try and two retries


def test_a_transient_502_code_is_retried_until_it_passes(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    seed(sandbox, [{"user_id": "t", "memory": "x"}])
    sandbox.set_faults(error_rate=1.0, error_codes=[502], oss_error_code="vector_store_unavailable")
    ends = publish(kafka, topics.input, encoded([event(EventType.USER_DELETED, user_id="t")]))
    with RunningConsumer(oss(kafka, sandbox, topics, MEM0_UNKNOWN_ERROR_RETRIES="0")):
        wait_for(lambda: len([c for c in sandbox.calls() if c["status"] == 502]) >= 4, "four 502s")
        sandbox.set_faults(error_rate=0.0)
        wait_committed(kafka, topics.group, ends)
    assert remaining_ids(sandbox) == set()
    assert no_dead_letters(kafka, topics)


def test_oss_receipts_show_every_operation(kafka: str, topics: Topics, sandbox: Sandbox) -> None:
    seed(sandbox, [{"user_id": "o", "memory": "x"}])
    user = event(EventType.USER_DELETED, user_id="o")
    ends = publish(kafka, topics.input, encoded([user]))
    with RunningConsumer(oss(kafka, sandbox, topics, RECEIPTS_TOPIC=topics.receipts)):
        wait_committed(kafka, topics.group, ends)
    (op,) = receipts(kafka, topics, 1)[user.event_id].operations
    # No entity records on the self-hosted server: the filter delete is all there is.
    assert op.kind == "delete_all" and op.verified
