"""`deletion-consumer report` on a receipts topic made by the real consumer, checked against a
hand count of what was published.

The topic holds completed erasures (verified, and unverified with VERIFY_DELETES=false),
dead-lettered ones (a rejected delete, an invalid scope), one dead-lettered, replayed (the
`replay` command) and then completed, a duplicate record, and a record that is no receipt; two
reasons and more, two sources, requests on two UTC days (one 40 days old: past the deadline).
Every figure of the JSON form is compared with a count made here from the events themselves;
where the dead letters are, with the DLQ as read here. The report commits nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.__main__ import main
from consumer.avro.receipt_codec import ReceiptDecoder, ReceiptEncoder
from consumer.core.events import DeletionEvent, EventType
from consumer.core.receipts import COMPLETED, Position, dead_lettered
from consumer.kafka.broker import committed_positions
from consumer.replay import add_replay_arguments, run_replay
from consumer.sandbox import Sandbox
from consumer.settings import Settings
from tests.integration.test_end_to_end import encoded, event, seed
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

HOUR = 3_600_000
DAY = 24 * HOUR
COUNT_KEYS = (
    "requests",
    "completed",
    "unverified",
    "dead_lettered",
    "outstanding",
    "over_deadline",
    "over_target",
)


@dataclass(frozen=True)
class Expected:
    """What an event published here must come to, by the rules of the report."""

    event: DeletionEvent
    completed: bool
    unverified: bool = False
    dead_lettered: bool = False
    over_deadline: bool = False  # 40 days old: done late, or outstanding and older
    over_target: bool = False  # two hours old against a one-hour target

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.event.occurred_at_ms / 1000, UTC).date().isoformat()

    def counts(self) -> dict[str, int]:
        return {
            "requests": 1,
            "completed": int(self.completed),
            "unverified": int(self.unverified),
            "dead_lettered": int(self.dead_lettered),
            "outstanding": int(not self.completed),
            "over_deadline": int(self.over_deadline),
            "over_target": int(self.over_target),
        }


def hand_count(expected: list[Expected], key: str) -> dict[str, dict[str, int]]:
    """Counts by day, reason or source, as the report must show them."""
    table: dict[str, Counter[str]] = {}
    for item in expected:
        name = {"day": item.day, "reason": item.event.reason, "source": item.event.source}[key]
        table.setdefault(name, Counter()).update(item.counts())
    return {name: {k: counts[k] for k in COUNT_KEYS} for name, counts in table.items()}


def replay_one(settings: Settings, event_id: str) -> dict[str, Any]:
    """`replay --event-id` in-process; its JSON summary."""
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    args = parser.parse_args(["--event-id", event_id, "--json"])
    assert run_replay(args, settings, out=out, err=err) == 0, err.getvalue()
    summary: dict[str, Any] = json.loads(out.getvalue())
    return summary


def input_ends(kafka: str, topic: str, count: int) -> dict[tuple[str, int], int]:
    records = read_all(kafka, topic, expected=count, timeout_s=10)
    assert len(records) == count
    return ends_of(records)


def at(source_event: DeletionEvent, occurred_at_ms: int, reason: str, source: str) -> DeletionEvent:
    return replace(source_event, occurred_at_ms=occurred_at_ms, reason=reason, source=source)


def test_the_report_matches_a_hand_count_of_what_was_published(
    kafka: str,
    topics: Topics,
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    now = int(time.time() * 1000)
    old, recent, fresh = now - 40 * DAY, now - 2 * HOUR, now - 60_000
    tag = uuid.uuid4().hex[:8]
    users = [f"{name}-{tag}" for name in ("ann", "ben")]
    memories = list(seed(sandbox, [{"user_id": f"m{n}-{tag}", "memory": "x"} for n in range(3)]))
    seed(sandbox, [{"user_id": user, "memory": "x"} for user in users])
    rejected_id, replayed_id, plain_id = memories
    sandbox.set_faults(poison_ids=frozenset({rejected_id, replayed_id}))

    kinds = EventType
    done = at(event(kinds.USER_DELETED, user_id=users[0]), recent, "GDPR", "app-a")
    done_ids = at(event(kinds.MEMORIES_DELETED, memory_ids=[plain_id]), old, "CCPA", "app-b")
    rejected = at(event(kinds.MEMORIES_DELETED, memory_ids=[rejected_id]), old, "GDPR", "app-b")
    wildcard = at(event(kinds.USER_DELETED, user_id="*"), recent, "CCPA", "app-a")
    replayed = at(event(kinds.MEMORIES_DELETED, memory_ids=[replayed_id]), old, "GDPR", "app-a")
    unchecked = at(event(kinds.USER_DELETED, user_id=users[1]), fresh, "USER_REQUEST", "app-b")
    expected = [
        Expected(done, completed=True, over_target=True),
        Expected(done_ids, completed=True, over_deadline=True, over_target=True),
        Expected(
            rejected, completed=False, dead_lettered=True, over_deadline=True, over_target=True
        ),
        Expected(wildcard, completed=False, dead_lettered=True, over_target=True),
        Expected(
            replayed, completed=True, dead_lettered=True, over_deadline=True, over_target=True
        ),
        Expected(unchecked, completed=True, unverified=True),
    ]

    # 1. Verified: two completions, a duplicate record, three dead letters.
    first = [done, done, done_ids, rejected, wildcard, replayed]
    ends = publish(kafka, topics.input, encoded(first))
    settings = make_settings(kafka, sandbox.url, topics, RECEIPTS_TOPIC=topics.receipts)
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, ends)
    letters = wait_letters(kafka, topics.dlq, 3)
    # 2. The cause of one is fixed: it is replayed, and completes (verified).
    sandbox.set_faults(poison_ids=frozenset({rejected_id}))
    assert replay_one(settings, replayed.event_id)["replayed"] == 1
    with RunningConsumer(settings):
        wait_committed(kafka, topics.group, input_ends(kafka, topics.input, len(first) + 1))
    # 3. Verification switched off: a completion that says `verified` false.
    publish(kafka, topics.input, encoded([unchecked]))
    unverified = make_settings(
        kafka, sandbox.url, topics, RECEIPTS_TOPIC=topics.receipts, VERIFY_DELETES="false"
    )
    with RunningConsumer(unverified):
        wait_committed(kafka, topics.group, input_ends(kafka, topics.input, len(first) + 2))
    # And a record on the receipts topic that is none.
    (junk_position,) = publish(kafka, topics.receipts, [(b"junk", b"not a receipt")]).items()

    receipts_read = read_all(kafka, topics.receipts, expected=len(first) + 3, timeout_s=10)
    assert len(receipts_read) == len(first) + 3  # one per input record, replay included; junk
    decoder = ReceiptDecoder()
    receipts = [decoder.decode(m.value()) for m in receipts_read if m.key() != b"junk"]
    assert Counter(r.event_id for r in receipts)[done.event_id] == 2

    flags = ["--bootstrap-servers", kafka, "--group-id", topics.group, "--topics", topics.input]
    flags += ["--receipts-topic", topics.receipts, "--dlq-topic", topics.dlq]
    started = time.monotonic()
    assert main(["report", *flags, "--since", "60d", "--target", "1h", "--json"]) == 0
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    report = json.loads(out)

    # What was read; the junk record named by its position.
    scan = report["scan"]
    assert (scan["receipts_read"], scan["receipts_unreadable"]) == (len(receipts), 1)
    assert (scan["dead_letters_read"], scan["dlq_unavailable"]) == (3, None)
    (topic_partition, end) = junk_position
    assert f"receipts partition {topic_partition[1]}, offset {end - 1}: unreadable" in err

    # Every count, against the hand count.
    totals = {k: sum(item.counts()[k] for item in expected) for k in COUNT_KEYS}
    assert report["totals"] == totals
    assert totals == {
        "requests": 6,
        "completed": 4,
        "unverified": 1,
        "dead_lettered": 3,
        "outstanding": 2,
        "over_deadline": 3,
        "over_target": 5,
    }
    for key, rows in (("day", "by_day"), ("reason", "by_reason"), ("source", "by_source")):
        shown = {row[key]: {k: row[k] for k in COUNT_KEYS} for row in report[rows]}
        assert shown == hand_count(expected, key), rows
    assert len(report["by_day"]) >= 2 and len(report["by_source"]) == 2

    # The outstanding erasures, oldest first, and where their dead letters are.
    where = {
        header_dict(m)["dlq.event_id"].decode(): (m.partition(), m.offset(), header_dict(m))
        for m in letters
    }
    listed = report["outstanding"]
    assert [row["event_id"] for row in listed] == [rejected.event_id, wildcard.event_id]
    assert [row["dlq_reason"] for row in listed] == ["rejected", "invalid_scope"]
    for row in listed:
        partition, offset, headers = where[row["event_id"]]
        letter = row["dead_letter"]
        assert (letter["partition"], letter["offset"]) == (partition, offset)
        assert letter["reason"] == headers["dlq.reason"].decode() == row["dlq_reason"]
        assert letter["failed_at"] == headers["dlq.failed_at"].decode()
        assert row["occurred_at_ms"] in (old, recent)
    assert [(row["past_deadline"], row["past_target"]) for row in listed] == [
        (True, True),
        (False, True),
    ]
    assert report["past_deadline"] == 1 and report["past_target"] == 2
    by_age = {bucket["label"]: bucket["count"] for bucket in report["outstanding_by_age"]}
    assert by_age == {"under 1 day": 1, "1-7 days": 0, "7-30 days": 0, "over 30 days": 1}

    # Time to erasure: to the first COMPLETED receipt of each completed erasure.
    first_done: dict[str, int] = {}
    for r in sorted(receipts, key=lambda r: r.completed_at_ms):
        if r.outcome == COMPLETED and r.event_id not in first_done:
            assert r.time_to_erasure_ms is not None
            first_done[r.event_id] = r.time_to_erasure_ms
    completed = [item for item in expected if item.completed]
    assert sorted(first_done) == sorted(item.event.event_id for item in completed)
    latency = report["time_to_erasure"]
    assert latency["all"]["completed"] == 4
    assert latency["all"]["max_ms"] == max(first_done.values())
    for key, rows, name_of in (
        ("event_type", "by_event_type", lambda e: e.type.value),
        ("reason", "by_reason", lambda e: e.reason),
        ("day", "by_day", lambda e: Expected(e, True).day),
    ):
        waits: dict[str, list[int]] = {}
        for item in completed:
            waits.setdefault(name_of(item.event), []).append(first_done[item.event.event_id])
        shown = {row[key]: (row["completed"], row["max_ms"]) for row in latency[rows]}
        assert shown == {name: (len(w), max(w)) for name, w in waits.items()}, rows
        for row in latency[rows]:
            assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert first_done[replayed.event_id] >= 40 * DAY  # the wait on the DLQ is part of it

    # The range is of request times: from a day ago, the old requests are out.
    assert main(["report", *flags, "--since", "1d", "--json"]) == 0
    narrow = json.loads(capsys.readouterr().out)
    assert narrow["totals"]["requests"] == 3 and narrow["totals"]["over_target"] == 0
    assert [row["event_id"] for row in narrow["outstanding"]] == [wildcard.event_id]

    # The text form, and the HTML file beside it.
    page = tmp_path / "report.html"
    assert main(["report", *flags, "--target", "1h", "--html", str(page)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Erasure report: requests from the first receipt to ")
    assert "Outstanding erasures: 2 (latest receipt DEAD_LETTERED; oldest request first)" in text
    assert rejected.event_id in text and wildcard.event_id in text
    assert page.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")

    # It only read: the group it reads with has committed nothing, on either topic.
    everything = [(t, p) for t in (topics.receipts, topics.dlq) for p in range(3)]
    for group in (f"{topics.group}.report", topics.group + ".receipts-lookup"):
        assert all(o < 0 for o in committed_positions(kafka, group, everything).values())
    assert took < 15, took


def test_a_missing_dlq_is_said_and_a_missing_receipts_topic_fails(
    kafka: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--bootstrap-servers", kafka, "--group-id", topics.group, "--topics", topics.input]
    missing = f"no.such.topic.{uuid.uuid4().hex[:8]}"
    lost = at(event(EventType.USER_DELETED, user_id="*"), int(time.time() * 1000), "GDPR", "x")
    # A receipt written by hand: the DLQ it names is not there to be read.
    receipt = dead_lettered(
        lost,
        (),
        dlq_reason="invalid_scope",
        failed_at_ms=lost.occurred_at_ms + 5,
        group=topics.group,
        position=Position(topics.input, 0, 0),
    )
    publish(kafka, topics.receipts, [(b"k", ReceiptEncoder().single_object(receipt))])
    argv = ["report", *flags, "--receipts-topic", topics.receipts, "--dlq-topic", missing]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scan"]["dlq_unavailable"] == f"the DLQ topic {missing!r} does not exist"
    assert [row["dead_letter"] for row in report["outstanding"]] == [None]
    assert main(argv) == 0
    assert "not read in full (the DLQ topic" in capsys.readouterr().out

    argv = ["report", *flags, "--receipts-topic", missing, "--dlq-topic", topics.dlq]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"deletion-consumer report: the receipts topic {missing!r} does not exist\n"
