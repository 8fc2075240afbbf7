"""`replay` on a real broker with the real consumer and the sandbox: dead letters go back once
their cause is fixed, exactly once per selection, and a poison record stops at the loop guard."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from consumer.core.dlq import DeadLetter, DlqReason, dead_letter_headers, headers_of
from consumer.core.events import EventType
from consumer.kafka.broker import committed_positions
from consumer.replay import add_replay_arguments, run_replay
from consumer.sandbox import Sandbox
from consumer.settings import Settings
from tests.integration.test_end_to_end import encoded, event, remaining_ids, seed
from tests.support.harness import (
    RunningConsumer,
    Topics,
    ends_of,
    header_dict,
    make_settings,
    publish,
    read_all,
    wait_committed,
    wait_letters,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COUNT = "dlq.replay.count"
REPLAYED = "mem0_deletion_replayed_events_total"


def replay(settings: Settings, *argv: str) -> dict[str, Any]:
    """`replay` in-process; its JSON summary."""
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = run_replay(parser.parse_args([*argv, "--json"]), settings, out=out, err=err)
    assert code == 0, err.getvalue()
    summary: dict[str, Any] = json.loads(out.getvalue())
    return summary


def replay_cli(kafka: str, topics: Topics, *argv: str) -> dict[str, Any]:
    """`deletion-consumer replay` as an operator runs it; its JSON summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DLQ_", "DELET"))}
    env["LOG_LEVEL"] = "WARNING"
    command = [sys.executable, "-m", "consumer", "replay", "--bootstrap-servers", kafka]
    command += ["--group-id", topics.group, "--topics", topics.input, "--dlq-topic", topics.dlq]
    done = subprocess.run(
        [*command, *argv, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_rejected_letters_go_back_once_the_cause_is_fixed(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    ids = list(seed(sandbox, [{"user_id": f"u{n}", "memory": "x"} for n in range(4)]))
    poison = ids[:3]
    sandbox.set_faults(poison_ids=frozenset(poison))
    rejected = [event(EventType.MEMORIES_DELETED, memory_ids=[i]) for i in poison]
    wildcard = event(EventType.USER_DELETED, user_id="*")  # invalid_scope: not to be replayed
    events = [*rejected, wildcard, event(EventType.MEMORIES_DELETED, memory_ids=ids[3:])]
    values = [(b"key-%d" % n, value) for n, (_, value) in enumerate(encoded(events))]
    ends = publish(kafka, topics.input, values, trace=b"abc")
    settings = make_settings(kafka, sandbox.url, topics)

    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    letters = wait_letters(kafka, topics.dlq, 4)
    assert Counter(header_dict(m)["dlq.reason"] for m in letters) == {
        b"rejected": 3,
        b"invalid_scope": 1,
    }
    assert remaining_ids(sandbox) == set(poison)
    sandbox.set_faults(poison_ids=frozenset())  # the cause is fixed
    dlq_partitions = [(topics.dlq, p) for p in range(3)]

    # A dry run says what would go back, and changes nothing.
    dry = replay_cli(kafka, topics, "--reason", "rejected", "--dry-run")
    assert (dry["read"], dry["replayed"], dry["skipped_filter"]) == (4, 3, 1)
    assert dry["by_reason_and_type"] == [
        {"reason": "rejected", "type": "memories_deleted", "count": 3}
    ]
    assert dry["group"] == f"{topics.group}.replay.rejected"
    assert all(p < 0 for p in committed_positions(kafka, dry["group"], dlq_partitions).values())
    assert len(read_all(kafka, topics.input, expected=6, timeout_s=2.0)) == 5

    # The replay, in two goes: a replay that stops resumes where it was.
    first = replay_cli(kafka, topics, "--reason", "rejected", "--limit", "2")
    assert first["replayed"] == 2
    rest = replay(settings, "--reason", "rejected")
    assert rest["replayed"] == 1
    assert first["replayed"] + rest["replayed"] == 3
    assert first["skipped_filter"] + rest["skipped_filter"] == 1
    assert first["read"] + rest["read"] == 4

    inputs = read_all(kafka, topics.input, expected=8)
    assert len(inputs) == 8
    republished = [m for m in inputs if COUNT in header_dict(m)]
    key_of = {value: key for key, value in values}
    assert sorted(m.value() for m in republished) == sorted(v for _, v in values[:3])
    for record in republished:
        assert record.key() == key_of[record.value()]
        assert [(k, v) for k, v in (record.headers() or [])] == [("trace", b"abc"), (COUNT, b"1")]

    with RunningConsumer(settings) as consumer:
        wait_committed(kafka, topics.group, ends_of(inputs))
    assert remaining_ids(sandbox) == set()
    # What the dashboard sets against the dead letters: the replays that completed.
    assert consumer.metric(REPLAYED, outcome="completed") == 3
    assert consumer.metric(REPLAYED, outcome="dead_lettered") == 0
    assert len(read_all(kafka, topics.dlq, expected=5, timeout_s=1.0)) == 4  # none failed again

    # The same replay again republishes nothing.
    again = replay(settings, "--reason", "rejected")
    assert (again["read"], again["replayed"]) == (0, 0)
    assert len(read_all(kafka, topics.input, expected=9, timeout_s=1.0)) == 8
    # The invalid_scope letter was left out, not used up: its own selection still finds it.
    other = replay(settings, "--reason", "invalid_scope", "--dry-run")
    assert (other["replayed"], other["skipped_filter"]) == (1, 3)


def test_the_loop_guard_stops_a_record_that_keeps_failing(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    ids = list(seed(sandbox, [{"user_id": "u", "memory": "x"}]))
    sandbox.set_faults(poison_ids=frozenset(ids))  # never lifted
    poisoned = event(EventType.MEMORIES_DELETED, memory_ids=ids)
    publish(kafka, topics.input, encoded([poisoned]))
    settings = make_settings(kafka, sandbox.url, topics)

    # The consumer runs all along: replaying beside it is safe, and a run never chases the
    # dead letters its own replays cause.
    with RunningConsumer(settings) as consumer:
        wait_letters(kafka, topics.dlq, 1)
        for n in (1, 2):
            summary = replay(settings, "--max-replays", "2")
            assert (summary["read"], summary["replayed"]) == (1, 1)
            letters = wait_letters(kafka, topics.dlq, n + 1)
            counts = sorted(header_dict(m).get(COUNT) or b"0" for m in letters)
            assert counts == [str(c).encode() for c in range(n + 1)]
        stopped = replay(settings, "--max-replays", "2")
        assert (stopped["read"], stopped["replayed"], stopped["skipped_loop_guard"]) == (1, 0, 1)
        [guarded] = stopped["loop_guarded"]
        assert guarded["event_id"] == poisoned.event_id
        time.sleep(0.5)
        assert len(read_all(kafka, topics.dlq, expected=4, timeout_s=1.0)) == 3
        # Reported once: the next run has nothing left to read.
        assert replay(settings, "--max-replays", "2")["read"] == 0

        # An operator can still push that one record through, by its position.
        forced = replay(
            settings,
            "--force",
            "--partition",
            str(guarded["partition"]),
            "--from-offset",
            str(guarded["offset"]),
            "--to-offset",
            str(guarded["offset"]),
        )
        assert (forced["read"], forced["replayed"]) == (1, 1)
        letters = wait_letters(kafka, topics.dlq, 4)
    assert sorted(header_dict(m).get(COUNT) or b"0" for m in letters) == [b"0", b"1", b"2", b"3"]
    assert remaining_ids(sandbox) == set(ids)
    # The first letter is no replay; the three replays each failed again.
    assert consumer.metric(REPLAYED, outcome="dead_lettered") == 3
    assert consumer.metric(REPLAYED, outcome="completed") == 0


def test_replay_reads_to_the_true_end_of_a_multi_record_batch(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # One batch of 20 letters on one partition: Tansu's ListOffsets then answers 1, not 20.
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 200})
    for n in range(20):
        letter = DeadLetter("decode_error", "bad", topics.input, 0, n, None, 0, topics.group)
        headers = dead_letter_headers([("n", str(n).encode())], letter, time.time())
        producer.produce(topics.dlq, key=None, value=b"\x07%d" % n, headers=headers, partition=0)
    assert producer.flush(10) == 0
    settings = make_settings(kafka, sandbox.url, topics)

    # --to another topic (the receipts topic stands in for a staging topic).
    done = replay(settings, "--to", topics.receipts)
    assert (done["read"], done["replayed"]) == (20, 20)
    kinds = done["by_reason_and_type"]
    assert kinds == [{"reason": "decode_error", "type": "unknown", "count": 20}]
    copies = read_all(kafka, topics.receipts, expected=20)
    assert sorted(m.value() for m in copies) == sorted(b"\x07%d" % n for n in range(20))
    assert replay(settings, "--to", topics.receipts)["read"] == 0
    # Another destination is another selection, with its own cursor.
    assert replay(settings, "--dry-run")["replayed"] == 20
    # A DLQ range inside that batch; a start past every partition's end (the empty ones too).
    inside = replay(settings, "--partition", "0", "--from-offset", "5", "--to-offset", "9")
    assert (inside["read"], inside["replayed"]) == (5, 5)
    assert replay(settings, "--from-offset", "100")["read"] == 0


def test_a_producer_cannot_forge_or_break_a_dead_letters_own_headers(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # Issue 16: a producer's `dlq.*` headers were copied into the dead letter as they came. A
    # `dlq.replay.count` of "²" (a digit to str.isdigit, not to int) made replay raise at that
    # offset on every run, --force included; a planted `dlq.event_id` became the letter's own
    # where the consumer had none to write (a record that does not decode).
    forged_id = str(uuid.uuid4())
    forged = {COUNT: "²".encode(), "dlq.event_id": forged_id.encode(), "dlq.reason": b"rejected"}
    wildcard = event(EventType.USER_DELETED, user_id="*")  # invalid_scope, its id known
    values = [*encoded([wildcard]), (b"k", b"not an event at all")]  # and a decode_error
    ends = publish(kafka, topics.input, values, trace=b"abc", **forged)
    settings = make_settings(kafka, sandbox.url, topics)
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    letters = wait_letters(kafka, topics.dlq, 2)

    for letter in letters:
        headers = headers_of(letter)
        names = [name for name, _ in headers]
        own = dict(headers)
        # The consumer's own values, each once; the producer's kept, renamed, byte for byte.
        assert names.count("dlq.reason") == 1 and COUNT not in names
        assert own["dlq.reason"] in (b"invalid_scope", b"decode_error")
        if own["dlq.reason"] == b"invalid_scope":
            assert names.count("dlq.event_id") == 1
            assert own["dlq.event_id"] == wildcard.event_id.encode()
        else:
            assert "dlq.event_id" not in names
        assert [(k, v) for k, v in headers if k.startswith("dlq.original-header.")] == [
            (f"dlq.original-header.{name}", value) for name, value in forged.items()
        ]

    # The forged event id selects nothing; the real one selects its letter.
    assert replay(settings, "--event-id", forged_id, "--dry-run")["replayed"] == 0
    assert replay(settings, "--event-id", wildcard.event_id, "--dry-run")["replayed"] == 1
    # The run completes and reports both letters.
    done = replay(settings)
    assert (done["read"], done["replayed"], done["skipped_loop_guard"]) == (2, 2, 0)
    assert done["by_reason_and_type"] == [
        {"reason": "decode_error", "type": "unknown", "count": 1},
        {"reason": "invalid_scope", "type": "user_deleted", "count": 1},
    ]
    inputs = read_all(kafka, topics.input, expected=4)
    republished = [m for m in inputs if header_dict(m).get(COUNT) != forged[COUNT]]
    assert len(republished) == 2
    for record in republished:  # the original headers, none of the forged ones, counted once
        assert list(record.headers() or []) == [("trace", b"abc"), (COUNT, b"1")]

    # A genuine replay's count still carries on: failed again, the letters say 1, and the loop
    # guard stops them at --max-replays 1.
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends_of(inputs))
    again = wait_letters(kafka, topics.dlq, 4)
    assert sorted(header_dict(m).get(COUNT) or b"0" for m in again) == [b"0", b"0", b"1", b"1"]
    guarded = replay(settings, "--max-replays", "1", "--dry-run")  # a selection of its own
    assert (guarded["read"], guarded["replayed"], guarded["skipped_loop_guard"]) == (4, 2, 2)
    assert sorted(str(g["event_id"]) for g in guarded["loop_guarded"]) == sorted(
        ["None", wildcard.event_id]
    )
    # --force completes over every letter too.
    forced = replay(settings, "--max-replays", "1", "--force")
    assert (forced["read"], forced["replayed"], forced["skipped_malformed"]) == (4, 4, 0)


def test_a_record_that_is_no_dead_letter_of_ours_is_skipped_and_reported(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    # Issue 16: whatever is on the DLQ topic, replay completes; what it cannot vouch for is
    # counted by its first flaw, listed by position, and committed past like a filtered letter.
    good = DeadLetter(DlqReason.REJECTED, "HTTP 400", topics.input, 0, 3, None, 1, topics.group)
    headers = dead_letter_headers([], good, time.time())
    damaged = [(k, "²".encode() if k == "dlq.original.partition" else v) for k, v in headers]
    producer = Producer({"bootstrap.servers": kafka})
    for value, record_headers in ((b"junk", None), (b"x", damaged), (b"y", headers)):
        producer.produce(topics.dlq, value=value, headers=record_headers, partition=0)
    assert producer.flush(10) == 0
    settings = make_settings(kafka, sandbox.url, topics)

    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    assert run_replay(parser.parse_args(["--dry-run"]), settings, out=out, err=err) == 0
    text = out.getvalue()
    assert "skipped as malformed   2" in text and "    1 missing dlq.reason" in text
    assert "partition 0 offset 1: malformed dlq.original.partition" in text

    done = replay(settings, "--to", topics.receipts)
    assert (done["read"], done["replayed"], done["skipped_malformed"]) == (3, 1, 2)
    assert done["malformed_by_flaw"] == [
        {"flaw": "malformed dlq.original.partition", "count": 1},
        {"flaw": "missing dlq.reason", "count": 1},
    ]
    assert done["malformed"] == [
        {"partition": 0, "offset": 0, "flaw": "missing dlq.reason"},
        {"partition": 0, "offset": 1, "flaw": "malformed dlq.original.partition"},
    ]
    assert [m.value() for m in read_all(kafka, topics.receipts, expected=1)] == [b"y"]
    assert replay(settings, "--to", topics.receipts)["read"] == 0  # reported once
