"""The consumer as an operator runs it: a process that drains on SIGTERM, and --workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any

import httpx
import pytest

from consumer.core.events import EventType
from consumer.kafka.broker import committed_positions, free_port
from consumer.sandbox import Sandbox
from tests.integration.test_end_to_end import encoded, event, remaining_ids, seed
from tests.integration.test_faults import wait_for
from tests.support.harness import Topics, publish, wait_committed

pytestmark = pytest.mark.integration


def environment(kafka: str, sandbox: Sandbox, topics: Topics, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KAFKA_GROUP_ID": topics.group,
        "KAFKA_SESSION_TIMEOUT_MS": "3000",
        "DELETION_TOPICS": topics.input,
        "DLQ_TOPIC": topics.dlq,
        "RECEIPTS_TOPIC": "",
        "MEM0_BASE_URL": sandbox.url,
        "MEM0_API_KEY": sandbox.api_key,
        "FLUSH_MAX_WAIT_MS": "30",
        "COMMIT_INTERVAL_MS": "100",
        "MEM0_JOB_POLL_INTERVAL_MS": "10",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def start(env: dict[str, str], *args: str) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigterm_drains_commits_and_exits_0(kafka: str, topics: Topics, sandbox: Sandbox) -> None:
    users = 200
    seed(sandbox, [{"user_id": f"t{n}", "memory": "x"} for n in range(users)])
    sandbox.set_faults(latency_ms=20)
    events = [event(EventType.USER_DELETED, user_id=f"t{n}") for n in range(users)]
    ends = publish(kafka, topics.input, encoded(events))
    env = environment(
        kafka,
        sandbox,
        topics,
        METRICS_PORT="0",
        MEM0_MAX_CONCURRENCY="4",
        MAX_IN_FLIGHT_EVENTS="20",
    )
    process = start(env)
    wait_for(lambda: len(sandbox.calls()) >= 30, "the consumer to get going")
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()[-2000:]
    left = len(remaining_ids(sandbox))
    assert 0 < left < users, "SIGTERM came too early or too late to test a drain"
    # What it finished is committed: a restarted consumer has only the rest to do.
    done = sum(max(0, p) for p in committed_positions(kafka, topics.group, ends).values())
    assert done >= users - left - 20  # at most the events in flight were abandoned
    before = len(sandbox.calls())
    process = start(env)
    try:
        wait_committed(kafka, topics.group, ends)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert remaining_ids(sandbox) == set()
    redone = {
        c["query"].get("user_id")
        for c in sandbox.calls()[before:]
        if c["operation"] == "delete_all"
    }
    assert len(redone) <= left + 20


def two_free_ports() -> int:
    """A port p with p + 1 free too (worker i serves metrics on METRICS_PORT + i)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


def test_workers_share_one_group(kafka: str, topics: Topics, sandbox: Sandbox) -> None:
    seed(sandbox, [{"user_id": f"w{n}", "memory": "x"} for n in range(30)])
    ends = publish(
        kafka,
        topics.input,
        encoded([event(EventType.USER_DELETED, user_id=f"w{n}") for n in range(30)]),
    )
    port = two_free_ports()
    process = start(environment(kafka, sandbox, topics, METRICS_PORT=str(port)), "--workers", "2")
    try:
        wait_committed(kafka, topics.group, ends)

        def both_ready() -> bool:
            try:
                return all(
                    httpx.get(f"http://127.0.0.1:{port + i}/readyz", timeout=2).status_code == 200
                    for i in range(2)
                )
            except httpx.HTTPError:
                return False

        wait_for(both_ready, "both workers to hold partitions", timeout_s=60)
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()[-2000:]
    assert remaining_ids(sandbox) == set()
