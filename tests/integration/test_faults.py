"""Faults the consumer must ride out without losing anything (CONTRACT section 5)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import httpx
import pytest

from consumer.core.events import EventType
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


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def faulted(sandbox: Sandbox, fault: str) -> list[dict[str, object]]:
    return [c for c in sandbox.calls() if c["fault"] == fault]


def test_an_outage_then_recovery_deletes_everything_and_dead_letters_nothing(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    memories = seed(sandbox, [{"user_id": f"o{n}", "memory": "x"} for n in range(20)])
    sandbox.set_faults(outage=True)
    ends = publish(
        kafka,
        topics.input,
        encoded([event(EventType.USER_DELETED, user_id=f"o{n}") for n in range(20)]),
    )
    with RunningConsumer(make_settings(kafka, sandbox.url, topics)) as consumer:
        wait_for(lambda: len(faulted(sandbox, "outage")) >= 40, "the consumer to meet the outage")
        assert all(p < 0 for p in committed_positions(kafka, topics.group, ends).values())
        sandbox.set_faults(outage=False)
        wait_committed(kafka, topics.group, ends)
        retried = consumer.metric(
            "mem0_deletion_api_retries_total", operation="delete_all", reason="server_error"
        )
    assert remaining_ids(sandbox) == set() and len(memories) == 20
    assert retried > 0
    assert read_all(kafka, topics.dlq, expected=1, timeout_s=1.0) == []


def test_a_long_outage_is_met_by_one_trial_call_at_a_time(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    """Many operations in flight, the API down: after a second of failures, the consumer stops
    hammering it, with one trial call at a time and a growing gap between them."""
    users = [f"t{n}" for n in range(300)]
    seed(sandbox, [{"user_id": user, "memory": "x"} for user in users])
    sandbox.set_faults(outage=True)
    ends = publish(
        kafka, topics.input, encoded([event(EventType.USER_DELETED, user_id=u) for u in users])
    )
    with RunningConsumer(make_settings(kafka, sandbox.url, topics)):
        wait_for(lambda: len(faulted(sandbox, "outage")) >= 1, "the consumer to meet the outage")
        met_at = faulted(sandbox, "outage")[0]["at"]
        assert isinstance(met_at, float)
        wait_for(lambda: time.time() > met_at + 4.0, "four seconds of outage", timeout_s=10.0)
        calls = [c["at"] for c in faulted(sandbox, "outage")]
        # From 1.5 s on (struggling starts after 1 s of failures), trials are 0.25, 0.5, 1,
        # 2 s apart: a handful of calls; hammering would be hundreds per second.
        late = [at for at in calls if isinstance(at, float) and at >= met_at + 1.5]
        assert len(late) <= 12, f"{len(late)} calls in the outage's last 2.5 s"
        sandbox.set_faults(outage=False)
        wait_committed(kafka, topics.group, ends)
    assert remaining_ids(sandbox) == set()


def test_retry_after_is_respected(kafka: str, topics: Topics, sandbox: Sandbox) -> None:
    seed(sandbox, [{"user_id": "slow", "memory": "x"}])
    sandbox.set_faults(rate_limit_rate=1.0, retry_after_s=1)
    ends = publish(kafka, topics.input, encoded([event(EventType.USER_DELETED, user_id="slow")]))
    with RunningConsumer(make_settings(kafka, sandbox.url, topics)):
        wait_for(
            lambda: (
                sum(c["operation"] == "delete_all" for c in faulted(sandbox, "rate_limit")) >= 3
            ),
            "three 429s on delete_all",
            30,
        )
        sandbox.set_faults(rate_limit_rate=0.0)
        wait_committed(kafka, topics.group, ends)
    limited = [c["at"] for c in sandbox.calls() if c["operation"] == "delete_all"]
    gaps = [b - a for a, b in itertools.pairwise(limited)]
    # Every retry waited the second the server asked for (the base backoff here is 20 ms).
    assert len(gaps) >= 3 and min(gaps) >= 0.95, gaps
    assert remaining_ids(sandbox) == set()


def test_an_auth_failure_halts_without_dead_letters_and_recovers(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    seed(sandbox, [{"user_id": f"a{n}", "memory": "x"} for n in range(5)])
    sandbox.set_faults(auth_failure=True)
    ends = publish(
        kafka,
        topics.input,
        encoded([event(EventType.USER_DELETED, user_id=f"a{n}") for n in range(5)]),
    )
    port = free_port()
    settings = make_settings(
        kafka, sandbox.url, topics, METRICS_PORT=str(port), MEM0_PROBE_INTERVAL_S="0.3"
    )
    with RunningConsumer(settings) as consumer:
        wait_for(lambda: consumer.metric("mem0_deletion_downstream_state") == 2, "the halt")
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 503 and "halted" in ready.text
        before = len(sandbox.calls())
        time.sleep(1.0)  # a window to count calls in, not a synchronisation
        during = sandbox.calls()[before:]
        # Halted: only the slow probe calls Mem0 (every 0.3 s here).
        assert 1 <= len(during) <= 6 and {c["operation"] for c in during} == {"ping"}
        assert all(p < 0 for p in committed_positions(kafka, topics.group, ends).values())
        sandbox.set_faults(auth_failure=False)
        wait_committed(kafka, topics.group, ends)
        assert consumer.metric("mem0_deletion_downstream_state") == 0
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    assert remaining_ids(sandbox) == set()
    assert read_all(kafka, topics.dlq, expected=1, timeout_s=1.0) == []


def test_a_dead_letter_the_broker_refuses_keeps_its_offset_uncommitted(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # Garbage just under the producer's size limit: the dead letter (the same value plus the
    # dlq.* headers) is over it, so the write fails until the limit is raised.
    big = b"\x07" * 1800
    ends = publish(kafka, topics.input, [(b"k", big)])
    tight = make_settings(kafka, sandbox.url, topics, KAFKA_MESSAGE_MAX_BYTES="2000")
    with RunningConsumer(tight) as consumer:
        wait_for(
            lambda: (
                consumer.metric("mem0_deletion_in_flight_events") == 1
                and consumer.metric("mem0_deletion_partitions_assigned") == 3
            ),
            "the record to be in flight",
        )
        time.sleep(1.5)  # the consumer keeps retrying the write; nothing may be committed
        assert consumer.metric("mem0_deletion_dlq_messages_total", reason="decode_error") == 0
        assert all(p < 0 for p in committed_positions(kafka, topics.group, ends).values())
    with RunningConsumer(make_settings(kafka, sandbox.url, topics)):
        wait_committed(kafka, topics.group, ends)
    letters = read_all(kafka, topics.dlq, expected=1)
    assert [m.value() for m in letters] == [big]
    assert header_dict(letters[0])["dlq.reason"] == b"decode_error"


def test_two_consumers_with_a_rebalance_in_the_middle_lose_nothing(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    users = 800
    seed(sandbox, [{"user_id": f"r{n}", "memory": "x"} for n in range(users)])
    sandbox.set_faults(latency_ms=25)  # slow enough (~10 s) for the rebalance to land mid-way
    ends = publish(
        kafka,
        topics.input,
        encoded([event(EventType.USER_DELETED, user_id=f"r{n}") for n in range(users)]),
    )
    # Few events in flight at a time, so most are still waiting in Kafka when the group changes.
    settings = make_settings(
        kafka,
        sandbox.url,
        topics,
        MEM0_MAX_CONCURRENCY="4",
        FLUSH_MAX_EVENTS="20",
        MAX_IN_FLIGHT_EVENTS="40",
    )
    first = RunningConsumer(settings).start()
    try:
        wait_for(lambda: len(sandbox.calls()) >= 40, "the first consumer to get going")
        with RunningConsumer(settings) as second:
            wait_for(
                lambda: second.metric("mem0_deletion_partitions_assigned") >= 1,
                "the second consumer to get partitions",
            )
            assert len(remaining_ids(sandbox)) > 0, "the rebalance came too late to test"
            first.stop()  # the first leaves mid-way: the second takes everything over
            wait_committed(kafka, topics.group, ends, timeout_s=90)
    finally:
        if first.error is None:
            first.stop()
    assert remaining_ids(sandbox) == set()
    assert read_all(kafka, topics.dlq, expected=1, timeout_s=1.0) == []


def test_the_dlq_guard_stops_a_bad_deploy_from_emptying_the_topic(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # A wrong schema upstream: every record is undecodable.
    ends = publish(kafka, topics.input, [(None, b"\x07garbage") for _ in range(300)])
    port = free_port()
    settings = make_settings(
        kafka,
        sandbox.url,
        topics,
        METRICS_PORT=str(port),
        DLQ_GUARD_WINDOW="100",
        DLQ_GUARD_MIN_EVENTS="100",
        DLQ_GUARD_MAX_SHARE="0.5",
    )
    with RunningConsumer(settings) as consumer:
        wait_for(lambda: consumer.metric("mem0_deletion_dlq_guard_tripped") == 1, "the guard")
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 503 and "guard" in ready.text
        written = consumer.metric("mem0_deletion_dlq_messages_total", reason="decode_error")
    committed = committed_positions(kafka, topics.group, ends)
    assert sum(max(0, p) for p in committed.values()) <= written < 300
    # Half of the last hundred consumed, at most, went to the DLQ before it stopped.
    assert written <= 50 + 100
    assert len(read_all(kafka, topics.dlq, expected=int(written), idle_s=0.5)) == written


def watch_until_committed(
    consumer: RunningConsumer, kafka: str, topics: Topics, ends: dict[tuple[str, int], int]
) -> dict[str, float]:
    """The peaks of the back-pressure gauges, sampled until every offset is committed."""
    names = ("in_flight_operations", "in_flight_events", "partitions_paused")
    peaks = dict.fromkeys(names, 0.0)
    deadline = time.monotonic() + 60
    while True:
        for name in names:
            peaks[name] = max(peaks[name], consumer.metric(f"mem0_deletion_{name}"))
        committed = committed_positions(kafka, topics.group, ends)
        if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
            return peaks
        assert time.monotonic() < deadline, "not committed in 60 s"


def test_the_operations_budget_bounds_the_mem0_work_queued(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # Plenty of room for events, little for operations: user deletions plan one each (their
    # entity records left out), so the operations budget is what holds them back.
    users = 120
    seed(sandbox, [{"user_id": f"b{n}", "memory": "x"} for n in range(users)])
    sandbox.set_faults(latency_ms=15)
    ends = publish(
        kafka,
        topics.input,
        encoded([event(EventType.USER_DELETED, user_id=f"b{n}") for n in range(users)]),
    )
    settings = make_settings(
        kafka,
        sandbox.url,
        topics,
        MEM0_MAX_CONCURRENCY="4",
        MAX_IN_FLIGHT_EVENTS="10000",
        MAX_IN_FLIGHT_OPERATIONS="8",
        ERASE_USER_ENTITY="false",
    )
    with RunningConsumer(settings) as consumer:
        peaks = watch_until_committed(consumer, kafka, topics, ends)
    assert remaining_ids(sandbox) == set()
    assert 0 < peaks["in_flight_operations"] <= 8
    # An event weighs an operation until planned: the events in flight stay near the budget.
    assert peaks["in_flight_events"] <= 16


def test_a_budget_spent_for_long_pauses_the_partitions_then_resumes(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # A spent budget first only holds consuming off (librdkafka keeps what it fetched); past
    # a couple of seconds the partitions pause, so that polling serves rebalances meanwhile.
    users = 4
    seed(sandbox, [{"user_id": f"p{n}", "memory": "x"} for n in range(users)])
    sandbox.set_faults(job_delay_ms=2500)  # each delete job runs for 2.5 s: a long hold
    ends = publish(
        kafka,
        topics.input,
        encoded([event(EventType.USER_DELETED, user_id=f"p{n}") for n in range(users)]),
    )
    settings = make_settings(
        kafka, sandbox.url, topics, MAX_IN_FLIGHT_EVENTS="2", MEM0_JOB_POLL_INTERVAL_MS="200"
    )
    with RunningConsumer(settings) as consumer:
        peaks = watch_until_committed(consumer, kafka, topics, ends)
        assert consumer.metric("mem0_deletion_partitions_paused") == 0
    assert remaining_ids(sandbox) == set()
    assert peaks["partitions_paused"] >= 1
    assert peaks["in_flight_events"] <= 2
