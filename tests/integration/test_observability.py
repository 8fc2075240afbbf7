"""The SRE view, end to end: one run on a real broker and the sandbox, then what it showed.

One run (module scope, to stay fast) publishes a known mix, meets a short Mem0 outage, and is
scraped over HTTP; the tests then hold /metrics to what happened (the sandbox's call log is the
witness for the calls), the ops files to the live metric names, and the logs and metrics to
containing no identifier of the test data and no API key.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.avro.codec import Encoder, SchemaStore
from consumer.commands.hash_id import id_hasher
from consumer.core.events import DeletionEvent, EventType, Scope, event_to_record, partition_key
from consumer.kafka.broker import create_topics, free_port
from consumer.sandbox import Sandbox
from consumer.telemetry import logs
from consumer.telemetry.logs import IdHasher, configure_logging
from consumer.telemetry.metrics import DLQ_REASONS, EVENT_TYPES, OUTCOMES
from tests.integration.test_faults import wait_for
from tests.integration.test_process import environment
from tests.support.harness import (
    RunningConsumer,
    Topics,
    header_dict,
    make_settings,
    new_topics,
    publish,
    read_all,
    wait_committed,
)
from tests.support.ops import exposed_names, names_used

pytestmark = pytest.mark.integration

ENCODER = Encoder(SchemaStore.from_directory())
HOUR = 3600.0
P = "mem0_deletion_"


@dataclass
class Observed:
    topics: Topics
    api_key: str
    ids: set[str]  # every user, run and memory id of the test data
    scrape: str  # /metrics once every offset was committed
    lag_scrape: str  # /metrics once the lag had been measured after the drain
    health: dict[str, int]
    calls: list[dict[str, Any]]
    letters: list[Any]
    logs: list[str]
    remaining: list[dict[str, Any]]
    started_at: float


def _event(kind: EventType, *, memory_ids: tuple[str, ...] = (), **scope: Any) -> DeletionEvent:
    return DeletionEvent(
        event_id=str(uuid.uuid4()),
        occurred_at_ms=int((time.time() - HOUR) * 1000),  # asked for an hour ago
        type=kind,
        scope=None if kind is EventType.MEMORIES_DELETED else Scope.of(**scope),
        memory_ids=memory_ids,
        source="test",
        reason="GDPR",
    )


def _record(event: DeletionEvent) -> tuple[bytes | None, bytes]:
    return partition_key(event_to_record(event)), ENCODER.single_object(event)


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def samples(scrape: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name`, keyed by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == name
    }


def by(scrape: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The non-zero samples of `name`, keyed by the values of `labels`."""
    found: dict[tuple[str, ...], float] = {}
    for key, value in samples(scrape, name).items():
        label_map = dict(key)
        if value:
            found[tuple(label_map[label] for label in labels)] = value
    return found


def _lags(scrape: str, topic: str) -> dict[str, float]:
    return {
        dict(key)["partition"]: value
        for key, value in samples(scrape, P + "consumer_lag").items()
        if dict(key)["topic"] == topic
    }


@pytest.fixture(scope="module")
def observed(kafka: str) -> Iterator[Observed]:
    topics = new_topics()
    create_topics(kafka, [topics.input, topics.dlq], partitions=3)
    api_key = "sk-observe-" + secrets.token_hex(12)
    tag = uuid.uuid4().hex[:8]
    ann, ben, cat, dan = (f"{name}-{tag}" for name in ("ann", "ben", "cat", "dan"))
    session, other_session = f"run-{tag}", f"run-other-{tag}"
    with Sandbox(seed=7, api_key=api_key) as sandbox:
        memory_ids = sandbox.add_memories(
            [
                *[{"user_id": ann, "memory": "x"}] * 2,
                {"user_id": ben, "memory": "x"},
                *[{"user_id": cat, "run_id": session, "memory": "x"}] * 2,
                {"user_id": cat, "run_id": other_session, "memory": "x"},  # stays
                *[{"user_id": dan, "memory": "x"}] * 3,  # two deleted by id, one stays
            ]
        )
        dan_ids = memory_ids[-3:]
        for_ann = _event(EventType.USER_DELETED, user_id=ann)
        events = [
            for_ann,
            for_ann,  # re-delivered: a duplicate in the same flush
            _event(EventType.USER_DELETED, user_id=ben),
            _event(EventType.SESSION_EXPIRED, run_id=session, user_id=cat),
            _event(EventType.MEMORIES_DELETED, memory_ids=(dan_ids[0],)),
            _event(EventType.MEMORIES_DELETED, memory_ids=(dan_ids[1],)),
            _event(EventType.USER_DELETED, user_id="*"),  # invalid_scope
        ]
        records = [*map(_record, events), (b"garbage", b"\x07 not an event")]  # decode_error
        ends = publish(kafka, topics.input, records)
        port = free_port()
        settings = make_settings(
            kafka,
            sandbox.url,
            topics,
            MEM0_API_KEY=api_key,
            METRICS_PORT=str(port),
            # All eight records in one flush, so the duplicate is seen as one.
            FLUSH_MAX_EVENTS=str(len(records)),
            FLUSH_MAX_WAIT_MS="3000",
        )
        stream = io.StringIO()
        root, ours = logging.getLogger(), logging.getLogger("consumer")
        saved = (list(root.handlers), root.level, ours.level)
        configure_logging("DEBUG", "json", stream)
        started_at = time.time()
        sandbox.set_faults(outage=True)  # so that some calls fail and are retried
        try:
            with RunningConsumer(settings):
                deadline = time.monotonic() + 20
                while sum(c["fault"] == "outage" for c in sandbox.calls()) < 2:
                    assert time.monotonic() < deadline, "the consumer never reached the sandbox"
                    time.sleep(0.02)
                sandbox.set_faults(outage=False)
                wait_committed(kafka, topics.group, ends, timeout_s=30)
                health = {path: _get(port, path)[0] for path in ("/healthz", "/readyz")}
                scrape = _get(port, "/metrics")[1]
                # The lag is measured every 10 s, off the loop: wait for a drained reading.
                deadline = time.monotonic() + 15
                while True:
                    lag_scrape = _get(port, "/metrics")[1]
                    lags = _lags(lag_scrape, topics.input)
                    if len(lags) == 3 and not any(lags.values()):
                        break
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            ours.setLevel(saved[2])
        yield Observed(
            topics=topics,
            api_key=api_key,
            ids={ann, ben, cat, dan, session, other_session, *memory_ids},
            scrape=scrape,
            lag_scrape=lag_scrape,
            health=health,
            calls=sandbox.calls(),
            letters=read_all(kafka, topics.dlq, expected=2),
            logs=stream.getvalue().splitlines(),
            remaining=sandbox.memories(),
            started_at=started_at,
        )


def test_the_run_did_what_it_was_asked(observed: Observed) -> None:
    assert len(observed.remaining) == 2  # the other session's memory, and dan's third
    assert len(observed.letters) == 2
    assert observed.health == {"/healthz": 200, "/readyz": 200}


def test_event_counts_equal_what_happened(observed: Observed) -> None:
    scrape = observed.scrape
    assert by(scrape, P + "events_total", "type", "outcome") == {
        ("user_deleted", "deleted"): 2,
        ("user_deleted", "duplicate"): 1,
        ("user_deleted", "dead_lettered"): 1,
        ("session_expired", "deleted"): 1,
        ("memories_deleted", "deleted"): 2,
        ("unknown", "dead_lettered"): 1,
    }
    # Every bounded series exists, at 0 where nothing happened.
    assert len(samples(scrape, P + "events_total")) == len(EVENT_TYPES) * len(OUTCOMES)
    assert by(scrape, P + "dlq_messages_total", "reason") == {
        ("invalid_scope",): 1,
        ("decode_error",): 1,
    }
    assert len(samples(scrape, P + "dlq_messages_total")) == len(DLQ_REASONS)
    reasons = Counter(header_dict(m)["dlq.reason"] for m in observed.letters)
    assert reasons == {b"decode_error": 1, b"invalid_scope": 1}
    assert by(scrape, P + "flush_events_sum") == {(): 8}


def test_call_counts_equal_the_sandbox_call_log(observed: Observed) -> None:
    scrape, calls = observed.scrape, observed.calls
    witnessed = Counter((c["operation"], str(c["status"])) for c in calls)
    assert {"delete_all", "job_status", "list", "batch_delete"} <= {op for op, _ in witnessed}
    assert by(scrape, P + "api_requests_total", "operation", "status") == witnessed
    durations = by(scrape, P + "api_request_duration_seconds_count", "operation")
    assert durations == Counter((c["operation"],) for c in calls)
    # Each 503 of the outage was tried again, and counted as a server_error retry.
    failed = Counter(c["operation"] for c in calls if c["status"] == 503)
    assert sum(failed.values()) >= 2
    assert by(scrape, P + "api_retries_total", "operation", "reason") == {
        (operation, "server_error"): count for operation, count in failed.items()
    }


def test_gauges_and_erasure_times_after_the_run(observed: Observed) -> None:
    scrape = observed.scrape
    assert by(scrape, P + "downstream_state") == {}  # 0: ok again after the outage
    assert by(scrape, P + "in_flight_operations") == {}
    assert by(scrape, P + "dlq_guard_tripped") == {}
    (last_commit,) = by(scrape, P + "last_commit_timestamp_seconds").values()
    assert observed.started_at <= last_commit <= time.time()
    # From occurred_at (an hour before publishing) to the confirming response.
    counts = by(scrape, P + "time_to_erasure_seconds_count", "type")
    assert counts == {("user_deleted",): 2, ("session_expired",): 1, ("memories_deleted",): 2}
    for (kind,), total in by(scrape, P + "time_to_erasure_seconds_sum", "type").items():
        assert counts[(kind,)] * HOUR <= total <= counts[(kind,)] * (HOUR + 120), kind


def test_lag_is_measured_per_assigned_partition_and_drains_to_zero(observed: Observed) -> None:
    lags = _lags(observed.lag_scrape, observed.topics.input)
    assert lags == {"0": 0, "1": 0, "2": 0}
    assert all(value >= 0 for value in _lags(observed.scrape, observed.topics.input).values())


def test_every_metric_of_the_dashboard_and_the_alerts_is_in_the_live_scrape(
    observed: Observed,
) -> None:
    live = exposed_names(observed.lag_scrape)
    for source, names in names_used().items():
        assert names <= live, f"{source}: {sorted(names - live)} not in /metrics"


def test_logs_are_json_lines_and_few(observed: Observed) -> None:
    entries = [json.loads(line) for line in observed.logs]
    assert entries and all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    messages = Counter(e["msg"] for e in entries)
    assert messages["partitions assigned"] >= 1
    # One flush carried all eight events: one summary (it dead-lettered), one progress line.
    (flush,) = [e for e in entries if e["msg"] == "flush finished"]
    assert {k: flush[k] for k in ("events", "deleted", "dead_lettered", "duplicates")} == {
        "events": 8,
        "deleted": 5,
        "dead_lettered": 2,
        "duplicates": 1,
    }
    (progress,) = [e for e in entries if e["msg"] == "progress"]
    assert progress["flushes"] == 1 and progress["events"] == 8
    # Dead letters one by one at DEBUG only.
    letters = [e for e in entries if e["msg"] == "dead letter written"]
    assert sorted(e["reason"] for e in letters) == ["decode_error", "invalid_scope"]
    assert all(e["level"] == "DEBUG" for e in letters)


def test_no_identifier_nor_the_api_key_in_logs_metrics_or_dead_letters(
    observed: Observed,
) -> None:
    texts = {
        "logs": "\n".join(observed.logs),
        "/metrics": observed.scrape + observed.lag_scrape,
        "dlq headers": repr([header_dict(m) for m in observed.letters]),
    }
    assert observed.ids and observed.logs
    for where, text in texts.items():
        assert observed.api_key not in text, f"the API key is in the {where}"
        leaked = sorted(i for i in observed.ids if i in text)
        assert not leaked, f"identifiers in the {where}: {leaked}"


def test_metrics_of_a_running_process_hold_its_memory_cpu_and_build(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    """`deletion-consumer run` as deployed (no registry injected, unlike the run above)."""
    port = free_port()
    env = environment(kafka, sandbox, topics, METRICS_PORT=str(port))
    spawned_at = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer", "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    scraped: list[str] = []

    def scrape() -> bool:
        if process.poll() is not None:
            assert process.stderr is not None
            raise AssertionError(f"the consumer exited: {process.stderr.read()[-2000:]}")
        try:
            status, body = _get(port, "/metrics")
        except OSError:  # not listening yet
            return False
        scraped.append(body)
        return status == 200

    try:
        wait_for(scrape, "/metrics to answer", timeout_s=60)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    body = scraped[-1]
    (rss,) = samples(body, "process_resident_memory_bytes").values()
    assert rss > 10 * 2**20  # an interpreter with the Kafka client loaded, not an empty 0
    assert samples(body, "process_cpu_seconds_total") and samples(body, "process_open_fds")
    # The served process's own start (/proc, to the second), not the test runner's.
    (started,) = samples(body, "process_start_time_seconds").values()
    assert spawned_at - 2 <= started <= time.time()
    (build,) = samples(body, P + "build_info").items()
    assert build[1] == 1 and dict(build[0])["version"] and dict(build[0])["python"]
    assert "_created" not in body
    assert samples(body, P + "events_total")  # beside the contract series, not instead


# --- identifiers in logs: hashed with LOG_HASH_KEY, and `hash-id` finds them ------------------


class Captured(logging.Handler):
    """Every record as it was made, before any formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_dead_letter_is_logged_with_its_scope_hashed_never_in_clear(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    user = f"hashed-{uuid.uuid4().hex[:8]}"
    sandbox.add_memories([{"user_id": user, "memory": "x"}])
    sandbox.set_faults(leave_behind_rate=1.0)  # its delete job SUCCEEDS and deletes nothing
    gone = _event(EventType.USER_DELETED, user_id=user)
    ends = publish(kafka, topics.input, [_record(gone)])
    key = "hash-key-" + secrets.token_hex(8)
    settings = make_settings(
        kafka,
        sandbox.url,
        topics,
        LOG_HASH_KEY=key,
        VERIFY_MAX_ROUNDS="0",
        ERASE_USER_ENTITY="false",
    )
    captured, stream = Captured(), io.StringIO()
    root, ours = logging.getLogger(), logging.getLogger("consumer")
    saved = (list(root.handlers), root.level, ours.level, logs._process_ids[0])
    # As `deletion-consumer run` does (consumer/__main__.py), with the same hasher.
    configure_logging("INFO", "json", stream, ids=id_hasher(settings))
    root.addHandler(captured)
    try:
        with RunningConsumer(settings):
            wait_committed(kafka, topics.group, ends, timeout_s=30)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])
        logs._process_ids[0] = saved[3]

    hashed = IdHasher(key.encode())(user)
    (record,) = [r for r in captured.records if r.getMessage() == "event dead-lettered"]
    assert record.levelname == "WARNING"
    assert vars(record)["reason"] == "verification_failed"
    assert vars(record)["event_id"] == gone.event_id
    assert vars(record)["scope"] == {"user_id": hashed}
    for each in captured.records:
        assert user not in repr(vars(each)) and user not in each.getMessage()
    (line,) = [json.loads(t) for t in stream.getvalue().splitlines() if "dead-lettered" in t]
    assert line["scope"] == {"user_id": hashed}
    assert user not in stream.getvalue() and key not in stream.getvalue()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hash_id_prints_the_hash_a_running_consumer_logs(
    kafka: str, topics: Topics, sandbox: Sandbox, tmp_path: Path
) -> None:
    user = f"grep-me-{uuid.uuid4().hex[:8]}"
    sandbox.add_memories([{"user_id": user, "memory": "x"}])
    sandbox.set_faults(leave_behind_rate=1.0)
    ends = publish(kafka, topics.input, [_record(_event(EventType.USER_DELETED, user_id=user))])
    (tmp_path / "hash-key").write_text(secrets.token_hex(16) + "\n")
    env = environment(
        kafka,
        sandbox,
        topics,
        LOG_HASH_KEY_FILE=str(tmp_path / "hash-key"),
        LOG_FORMAT="json",
        METRICS_PORT="0",
        VERIFY_MAX_ROUNDS="0",
        ERASE_USER_ENTITY="false",
    )
    env.pop("LOG_HASH_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer", "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_committed(kafka, topics.group, ends, timeout_s=60)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    lines = [json.loads(t) for t in stderr.splitlines() if t.startswith("{")]
    (dead,) = [line for line in lines if line["msg"] == "event dead-lettered"]
    assert user not in stderr

    printed = _cli("hash-id", user, f" {user} ", env=env)  # trimmed, as events' ids are
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [dead["scope"]["user_id"]] * 2

    # Without the key the running process's hashes cannot be reproduced: said, and exit 2.
    keyless = {k: v for k, v in env.items() if not k.startswith("LOG_HASH_KEY")}
    refused = _cli("hash-id", user, env=keyless)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("deletion-consumer: bad setting LOG_HASH_KEY: not set")
    # In clear, the logs show the id itself, and so does the command.
    clear = _cli("hash-id", user, env={**keyless, "LOG_IDS_IN_CLEAR": "true"})
    assert (clear.returncode, clear.stdout) == (0, user + "\n")
