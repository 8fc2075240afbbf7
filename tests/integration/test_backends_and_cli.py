"""The other paths in: the self-hosted backend, Schema Registry framing, `produce`, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from consumer.avro.codec import READER_FILE, Encoder, SchemaStore, default_schema_dir
from consumer.core.events import EventType
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


def test_oss_backend_ands_identifiers_and_fans_out_ids(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    memories = seed(
        sandbox,
        [
            *[{"user_id": "u1", "run_id": "r1", "memory": "x"}] * 3,
            {"user_id": "u1", "run_id": "r2", "memory": "x"},
            {"user_id": "u2", "run_id": "r1", "memory": "x"},
            *[{"user_id": "u3", "memory": "x"}] * 3,
        ],
    )
    u3 = [i for i, m in memories.items() if m["user_id"] == "u3"]
    events = [
        event(EventType.SESSION_EXPIRED, run_id="r1", user_id="u1"),
        event(EventType.MEMORIES_DELETED, memory_ids=u3[:2]),
        event(EventType.SCOPE_DELETED, user_id="u2", metadata={"k": "v"}),  # no metadata on OSS
    ]
    ends = publish(kafka, topics.input, encoded(events))
    settings = make_settings(kafka, sandbox.url, topics, MEM0_BACKEND="oss")
    with RunningConsumer(settings) as consumer:
        wait_committed(kafka, topics.group, ends)
        unsupported = consumer.metric(
            "mem0_deletion_dlq_messages_total", reason="unsupported_scope"
        )

    left = {m["id"]: m for m in sandbox.memories()}
    assert {(m["user_id"], m.get("run_id")) for m in left.values()} == {
        ("u1", "r2"),
        ("u2", "r1"),
        ("u3", None),
    }
    assert unsupported == 1
    # Less the start-up check's probe: a filter delete of a random UUID user.
    probe = sandbox.calls()[0]
    assert probe["operation"] == "oss_delete_all" and probe["query"]["user_id"] not in ("u1", "u2")
    operations = [c["operation"] for c in sandbox.calls()[1:]]
    assert operations.count("oss_delete_all") == 1
    assert operations.count("oss_delete") == 2
    assert "oss_list" in operations  # verified by listing after the delete_all
    assert not [op for op in operations if not op.startswith("oss_")]


def test_schema_registry_framing(kafka: str, topics: Topics, sandbox: Sandbox) -> None:
    memories = seed(sandbox, [{"user_id": "reg-user", "memory": "x"}, {"user_id": "other"}])
    with RegistryServer() as registry:
        schema_text = (default_schema_dir() / READER_FILE).read_text()
        schema_id = registry.add(f"{topics.input}-value", schema_text)
        encoder = Encoder(SchemaStore.from_directory())
        gone = event(EventType.USER_DELETED, user_id="reg-user")
        unknown_id = event(EventType.USER_DELETED, user_id="other")
        values = [
            (b"reg-user", encoder.confluent(gone, schema_id)),
            (b"other", encoder.confluent(unknown_id, schema_id + 100)),
        ]
        ends = publish(kafka, topics.input, values)
        settings = make_settings(kafka, sandbox.url, topics, SCHEMA_REGISTRY_URL=registry.url)
        with RunningConsumer(settings):
            wait_committed(kafka, topics.group, ends)

    left = remaining_ids(sandbox)
    assert left == {i for i, m in memories.items() if m["user_id"] == "other"}
    letters = read_all(kafka, topics.dlq, expected=1)
    assert [header_dict(m)["dlq.reason"] for m in letters] == [b"unknown_schema"]


def test_produce_command_publishes_what_the_consumer_deletes(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    memories = seed(
        sandbox,
        [{"user_id": "p1", "memory": "x"}, {"user_id": "p2", "run_id": "s", "memory": "x"}],
    )
    lines = "\n".join(
        json.dumps(line)
        for line in [
            {"type": "user_deleted", "user_id": "p1", "reason": "GDPR"},
            {"type": "SessionExpired", "run_id": "s", "user_id": "p2"},
            {"type": "user_deleted", "user_id": "*"},
        ]
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer",
            "produce",
            "--bootstrap-servers",
            kafka,
            "--topics",
            topics.input,
        ],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == {"topic": topics.input, "published": 3, "bad_lines": 0}

    # The produced offsets are not known here, so wait on the effects instead: every memory
    # gone and the wildcard event dead-lettered.
    with RunningConsumer(make_settings(kafka, sandbox.url, topics)) as consumer:
        deadline = time.monotonic() + 60
        while remaining_ids(sandbox) or not consumer.metric(
            "mem0_deletion_events_total", type="user_deleted", outcome="dead_lettered"
        ):
            assert time.monotonic() < deadline, "the produced events were not carried out"
            time.sleep(0.05)
    assert len(memories) == 2
    reasons = [header_dict(m)["dlq.reason"] for m in read_all(kafka, topics.dlq, 1)]
    assert reasons == [b"invalid_scope"]


def test_produce_reports_bad_lines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "produce", "--bootstrap-servers", "127.0.0.1:1"],
        input='{"type": "nonsense"}\n',
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "line 1:" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEM0_BACKEND": "cloud"}, "MEM0_BACKEND"),
        ({"MEM0_BACKEND": "platform", "MEM0_API_KEY": ""}, "MEM0_API_KEY"),
        ({"MEM0_API_KEY": "k", "METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"MEM0_API_KEY": "k", "KAFKA_NO_SUCH_PROPERTY": "1"}, "no.such.property"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(env: dict[str, str], message: str) -> None:
    clean = {"PATH": "/usr/bin:/bin", "MEM0_TELEMETRY": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "run"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]
