"""Replay rules: header rewriting, the loop guard, filters, time parsing, cursor groups."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.dlq import DeadLetter, dead_letter_headers
from consumer.core.replay_rules import (
    REPLAY_COUNT_HEADER,
    Letter,
    Pacer,
    Selection,
    Tally,
    Verdict,
    cursor_group,
    decide,
    parse_when,
    replay_headers,
)
from tests.unit.core.test_purity import _closure, _is_forbidden, imported_modules

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FAILED_AT = datetime(2025, 3, 1, 11, 0, tzinfo=UTC).timestamp()
ORIGINAL = [
    ("traceparent", b"00-abc-def-01"),
    ("empty", b""),
    ("null", None),
    ("binary", b"\x00\xff\xc3\x28"),
    ("traceparent", b"duplicate name, kept too"),
]


def dead(
    original: list[tuple[str, bytes | None]],
    reason: str = "rejected",
    *,
    event_id: str = "e-1",
    offset: int = 7,
) -> Letter:
    """A dead letter with the headers the consumer writes, as replay sees it."""
    letter = DeadLetter(
        reason=reason,
        error="HTTP 400",
        topic="memory.deletions",
        partition=2,
        offset=41,
        timestamp_ms=1,
        attempts=1,
        group="g",
        event_id=event_id,
        http_status=400,
    )
    return Letter.of(0, offset, dead_letter_headers(original, letter, FAILED_AT))


# --- headers ----------------------------------------------------------------------------------


def test_a_dead_letter_is_read_from_its_headers() -> None:
    letter = dead(ORIGINAL)
    assert letter.reason == "rejected"
    assert letter.event_id == "e-1"
    assert letter.original_topic == "memory.deletions"
    assert letter.original_partition == 2
    assert letter.failed_at == datetime(2025, 3, 1, 11, 0, tzinfo=UTC)
    assert letter.replays == 0


def test_replay_keeps_the_original_headers_and_counts_one() -> None:
    assert replay_headers(dead(ORIGINAL)) == [*ORIGINAL, (REPLAY_COUNT_HEADER, b"1")]


def test_a_letter_dead_again_after_a_replay_counts_on() -> None:
    once = replay_headers(dead(ORIGINAL))
    again = dead(once)  # replayed, failed again: the replayed headers are its original ones
    assert again.replays == 1
    assert replay_headers(again) == [*ORIGINAL, (REPLAY_COUNT_HEADER, b"2")]


def test_the_latest_failure_names_the_reason() -> None:
    # A record whose original headers carried stale dlq.* headers (copied by some other tool):
    # the dlq.* headers of the last failure come last and win.
    stale = [*ORIGINAL, ("dlq.reason", b"decode_error"), ("dlq.event_id", b"old")]
    letter = dead(stale, reason="invalid_scope", event_id="new")
    assert (letter.reason, letter.event_id) == ("invalid_scope", "new")
    assert replay_headers(letter) == [*ORIGINAL, (REPLAY_COUNT_HEADER, b"1")]


names = st.text(min_size=0, max_size=12)
values = st.one_of(st.none(), st.binary(max_size=24))


@given(
    st.lists(st.tuples(names, values), max_size=12),
    st.integers(min_value=0, max_value=50),
)
def test_rewriting_keeps_every_non_dlq_header_byte_for_byte_in_order(
    original: list[tuple[str, bytes | None]], previous: int
) -> None:
    headers = [*original, (REPLAY_COUNT_HEADER, str(previous).encode())]
    letter = dead(headers)
    rewritten = replay_headers(letter)
    kept = [(k, v) for k, v in original if not k.startswith("dlq.")]
    assert rewritten[:-1] == kept
    assert rewritten[-1] == (REPLAY_COUNT_HEADER, str(previous + 1).encode())
    assert not any(k.startswith("dlq.") for k, _ in rewritten[:-1])


# --- the loop guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(("previous", "verdict"), [(0, "replay"), (2, "replay"), (3, "loop_guard")])
def test_the_loop_guard_stops_at_max_replays(previous: int, verdict: str) -> None:
    letter = dead([(REPLAY_COUNT_HEADER, str(previous).encode())])
    assert decide(letter, Selection(max_replays=3)).value == verdict


def test_force_passes_the_loop_guard_but_not_the_filters() -> None:
    letter = dead([(REPLAY_COUNT_HEADER, b"9")])
    assert decide(letter, Selection(force=True)) is Verdict.REPLAY
    assert decide(letter, Selection(force=True, reasons=frozenset({"x"}))) is Verdict.FILTERED


def test_an_unreadable_count_is_stopped() -> None:
    letter = dead([(REPLAY_COUNT_HEADER, b"lots")])
    assert letter.replays is None
    assert decide(letter, Selection()) is Verdict.LOOP_GUARD
    assert replay_headers(letter)[-1] == (REPLAY_COUNT_HEADER, b"1")  # forced: starts over


def test_max_replays_zero_replays_only_what_was_never_replayed() -> None:
    assert decide(dead([]), Selection(max_replays=0)) is Verdict.LOOP_GUARD


# --- filters ----------------------------------------------------------------------------------


def test_filters() -> None:
    letter = dead(ORIGINAL, event_id="e-9", offset=12)
    hour = timedelta(hours=1)
    failed = datetime.fromtimestamp(FAILED_AT, UTC)
    takes = [
        Selection(),
        Selection(reasons=frozenset({"rejected", "decode_error"})),
        Selection(event_ids=frozenset({"e-9"})),
        Selection(since=failed, until=failed + hour),
        Selection(partitions=frozenset({0})),
        Selection(from_offset=12, to_offset=12),
    ]
    leaves = [
        Selection(reasons=frozenset({"invalid_scope"})),
        Selection(event_ids=frozenset({"e-1"})),
        Selection(since=failed + timedelta(milliseconds=1)),
        Selection(until=failed),  # until is exclusive
        Selection(partitions=frozenset({1})),
        Selection(from_offset=13),
        Selection(to_offset=11),
    ]
    assert [decide(letter, s) for s in takes] == [Verdict.REPLAY] * len(takes)
    assert [decide(letter, s) for s in leaves] == [Verdict.FILTERED] * len(leaves)


def test_a_time_filter_leaves_out_a_letter_without_a_failure_time() -> None:
    letter = replace(dead(ORIGINAL), failed_at=None)
    assert decide(letter, Selection()) is Verdict.REPLAY
    assert decide(letter, Selection(since=NOW - timedelta(days=999))) is Verdict.FILTERED


def test_a_letter_without_dlq_headers_has_no_reason() -> None:
    letter = Letter.of(0, 0, [("dlq.failed_at", b"not a time")])
    assert letter.reason is None and letter.failed_at is None and letter.original_topic is None
    assert decide(letter, Selection(reasons=frozenset({"rejected"}))) is Verdict.FILTERED


# --- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("7d", NOW - timedelta(days=7)),
        ("1d12h", NOW - timedelta(days=1, hours=12)),
        ("2w", NOW - timedelta(weeks=2)),
        ("45s", NOW - timedelta(seconds=45)),
        ("2025-02-28T10:00:00Z", datetime(2025, 2, 28, 10, tzinfo=UTC)),
        ("2025-02-28T10:00:00+02:00", datetime(2025, 2, 28, 8, tzinfo=UTC)),
        ("2025-02-28T10:00", datetime(2025, 2, 28, 10, tzinfo=UTC)),  # no offset: UTC
        ("2025-02-28", datetime(2025, 2, 28, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "-2h", "yesterday", "2025-13-01"])
def test_parse_when_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_when(text, NOW)


# --- cursor groups ----------------------------------------------------------------------------


def test_cursor_groups() -> None:
    base = "mem0-deletion-consumer.commands.replay"
    everything = cursor_group(base, Selection())
    rejected = cursor_group(base, Selection(reasons=frozenset({"rejected"})))
    two = cursor_group(base, Selection(reasons=frozenset({"rejected", "decode_error"})))
    one_event = cursor_group(base, Selection(event_ids=frozenset({"e-1"})))
    assert everything == base
    assert rejected == f"{base}.rejected"
    assert two == f"{base}.decode_error+rejected"
    assert one_event.startswith(f"{base}.sel-") and len(one_event) == len(base) + 15
    # The same selection is the same cursor; any other filter is another one.
    assert one_event == cursor_group(base, Selection(event_ids=frozenset({"e-1"})))
    others = {
        cursor_group(base, Selection(event_ids=frozenset({"e-2"}))),
        cursor_group(base, Selection(force=True)),
        cursor_group(base, Selection(max_replays=5)),
        cursor_group(base, Selection(), to="staging"),
        cursor_group(base, Selection(since=NOW)),
        cursor_group(base, Selection(from_offset=3)),
    }
    assert len(others | {everything, rejected, two, one_event}) == 10
    # A window counts as written: `--since 2h` run again later is the same selection.
    later = Selection(since=NOW + timedelta(hours=5))
    assert cursor_group(base, Selection(since=NOW), since="2h") == cursor_group(
        base, later, since="2h"
    )
    assert cursor_group(base, later, since="2h") != cursor_group(base, later, since="3h")


# --- tally and pacing -------------------------------------------------------------------------


def test_tally() -> None:
    tally = Tally()
    tally.count(dead([]), Verdict.REPLAY, "memories_deleted")
    tally.count(dead([], reason="decode_error"), Verdict.REPLAY, "unknown")
    tally.count(dead([]), Verdict.REPLAY, "memories_deleted")
    tally.count(dead([]), Verdict.FILTERED, "")
    guarded = dead([])
    tally.count(guarded, Verdict.LOOP_GUARD, "")
    assert (tally.read, tally.replayed, tally.skipped_filter, tally.skipped_loop_guard) == (
        5,
        3,
        1,
        1,
    )
    assert tally.table() == [("decode_error", "unknown", 1), ("rejected", "memories_deleted", 2)]
    assert tally.loop_guarded == [guarded]


def test_pacer() -> None:
    unlimited = Pacer(0)
    assert [unlimited.delay(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    pacer = Pacer(4)  # one every 0.25 s
    assert [pacer.delay(10.0) for _ in range(3)] == [0.0, 0.25, 0.5]
    assert pacer.delay(20.0) == 0.0  # an idle spell is not saved up as a burst


def test_the_rules_import_no_io_library() -> None:
    for inner in _closure("consumer.core.replay_rules"):
        assert not [name for name in imported_modules(inner) if _is_forbidden(name)], inner
