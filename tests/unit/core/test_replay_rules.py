"""Replay rules: header rewriting, the loop guard, filters, time parsing, cursor groups, and
reading a dead letter strictly: whatever its headers, `Letter.of` never raises, and a letter
that is not as the consumer writes it is skipped as malformed (issue 16)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.dlq import OWN_HEADERS, DeadLetter, DlqReason, dead_letter_headers
from consumer.core.replay_rules import (
    LISTED,
    REPLAY_COUNT_HEADER,
    Letter,
    Pacer,
    Selection,
    Tally,
    Verdict,
    cursor_group,
    decide,
    loop_guard_lines,
    malformed_lines,
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


def written_before(original: list[tuple[str, bytes | None]], reason: str = "rejected") -> Letter:
    """A dead letter as versions before issue 16 wrote it: the record's own headers copied as
    they came, `dlq.*` ones too, then the consumer's. Such letters stay in a DLQ."""
    letter = DeadLetter(reason, "HTTP 400", "memory.deletions", 2, 41, 1, 1, "g")
    return Letter.of(0, 7, [*original, *dead_letter_headers([], letter, FAILED_AT)])


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
    # they are renamed in its dead letter, so the dlq.* headers of the last failure are the
    # letter's only ones.
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
    # Only in a letter written before issue 16: the consumer now writes a count it can read.
    letter = written_before([(REPLAY_COUNT_HEADER, b"lots")])
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


# --- hostile headers (issue 16) ----------------------------------------------------------------


def test_a_forged_count_in_an_older_letter_stops_at_the_guard_and_can_be_forced() -> None:
    # "²" is a digit to str.isdigit, not to int(): replay raised at this letter on every run.
    for count in ("²".encode(), b"9" * 5000, b"-1", b"01", b" 1"):
        letter = written_before([(REPLAY_COUNT_HEADER, count)])
        assert (letter.replays, letter.flaw) == (None, None), count
        assert decide(letter, Selection()) is Verdict.LOOP_GUARD
        assert decide(letter, Selection(force=True)) is Verdict.REPLAY
        assert replay_headers(letter) == [(REPLAY_COUNT_HEADER, b"1")]


def test_a_producers_dlq_headers_are_not_the_letters() -> None:
    forged: list[tuple[str, bytes | None]] = [(REPLAY_COUNT_HEADER, "²".encode())]
    forged += [("dlq.event_id", b"forged")]
    forged += [("dlq.reason", b"decode_error"), ("dlq.original.partition", b"x")]
    letter = dead(forged, reason="invalid_scope", event_id="e-7")
    assert (letter.flaw, letter.replays, letter.reason) == (None, 0, "invalid_scope")
    assert (letter.event_id, letter.original_partition) == ("e-7", 2)
    assert decide(letter, Selection()) is Verdict.REPLAY
    assert replay_headers(letter) == [(REPLAY_COUNT_HEADER, b"1")]


def _letter_with(
    changes: dict[str, list[bytes | None]], extra: tuple[tuple[str, bytes | None], ...] = ()
) -> Letter:
    """The consumer's headers of a good letter, with these names' values replaced."""
    written = DeadLetter(DlqReason.REJECTED, "x", "t", 2, 41, 1, 1, "g", "e-1")
    good = dead_letter_headers([], written, 0)
    headers: list[tuple[str, bytes | None]] = []
    for name, value in good:
        if name in changes:
            headers += [(name, new) for new in changes[name]]
        else:
            headers.append((name, value))
    return Letter.of(0, 5, [*headers, *extra])


@pytest.mark.parametrize(
    ("changes", "flaw"),
    [
        ({"dlq.reason": []}, "missing dlq.reason"),
        ({"dlq.reason": [b"rejected", b"rejected"]}, "duplicated dlq.reason"),
        ({"dlq.reason": [b"gone_fishing"]}, "unknown dlq.reason"),
        ({"dlq.reason": [b"\xff"]}, "non-UTF-8 dlq.reason"),
        ({"dlq.reason": [None]}, "null dlq.reason"),
        ({"dlq.original.partition": ["²".encode()]}, "malformed dlq.original.partition"),
        ({"dlq.original.partition": [b"-1"]}, "malformed dlq.original.partition"),
        ({"dlq.original.partition": [b"2147483648"]}, "malformed dlq.original.partition"),
        ({"dlq.original.partition": [b"9" * 5000]}, "malformed dlq.original.partition"),
        ({"dlq.original.offset": [b"forty-one"]}, "malformed dlq.original.offset"),
        ({"dlq.original.offset": []}, "missing dlq.original.offset"),
        ({"dlq.original.topic": [b"no such/topic"]}, "malformed dlq.original.topic"),
        ({"dlq.original.topic": [b".."]}, "malformed dlq.original.topic"),
        ({"dlq.failed_at": [b"yesterday"]}, "malformed dlq.failed_at"),
        ({"dlq.event_id": [b"e-1", b"e-2"]}, "duplicated dlq.event_id"),
        ({"dlq.event_id": [None]}, "null dlq.event_id"),
        ({"dlq.event_id": [b""]}, "malformed dlq.event_id"),
        ({"dlq.error": [b"x", b"y"]}, "duplicated dlq.error"),
    ],
)
def test_a_letter_not_as_the_consumer_writes_it_is_skipped_as_malformed(
    changes: dict[str, list[bytes | None]], flaw: str
) -> None:
    letter = _letter_with(changes)
    assert letter.flaw == flaw
    assert decide(letter, Selection()) is Verdict.MALFORMED
    assert decide(letter, Selection(force=True)) is Verdict.MALFORMED  # force: the guard only
    assert decide(letter, Selection(partitions=frozenset({1}))) is Verdict.FILTERED


def test_the_first_flaw_is_the_one_reported_and_unknown_dlq_headers_are_ignored() -> None:
    letter = _letter_with({"dlq.reason": [], "dlq.original.topic": [b"a b"]})
    assert letter.flaw == "missing dlq.reason"
    later = _letter_with({}, (("dlq.some.future.header", b"\xff"), ("dlq.original-header.x", None)))
    assert later.flaw is None and decide(later, Selection()) is Verdict.REPLAY


own_names = st.sampled_from([*OWN_HEADERS, "dlq.original-header.dlq.reason", "dlq."])
good_values = st.sampled_from(
    [b"0", b"1", b"2", b"rejected", b"memory.deletions", b"2025-03-01T11:00:00.000Z", b"e-1"]
)
any_headers = st.lists(
    st.tuples(
        st.one_of(own_names, st.text(max_size=24)),
        st.one_of(st.none(), st.binary(max_size=24), good_values),
    ),
    max_size=30,
)
selections = st.builds(
    Selection,
    reasons=st.frozensets(st.sampled_from(["rejected", "decode_error"])),
    event_ids=st.frozensets(st.sampled_from(["e-1", "forged"])),
    since=st.none() | st.just(NOW - timedelta(days=1)),
    partitions=st.frozensets(st.integers(0, 2)),
    max_replays=st.integers(0, 3),
    force=st.booleans(),
)


@given(any_headers, selections)
def test_no_header_list_makes_the_decision_raise(
    headers: list[tuple[str, bytes | None]], selection: Selection
) -> None:
    letter = Letter.of(1, 9, headers)
    verdict = decide(letter, selection)
    if verdict in (Verdict.REPLAY, Verdict.LOOP_GUARD):
        assert letter.flaw is None  # nothing is replayed, nor forceable, on unvouched values
    if verdict is Verdict.MALFORMED:
        assert letter.flaw is not None
    rewritten = replay_headers(letter)
    assert [k for k, _ in rewritten if k.startswith("dlq.")] == [REPLAY_COUNT_HEADER]
    tally = Tally()
    tally.count(letter, verdict, "unknown")
    assert tally.read == 1
    assert len(loop_guard_lines([letter])) == len(malformed_lines([letter])) == 1


@given(any_headers, st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1))
def test_whatever_a_record_carries_its_dead_letter_reads_back_as_written(
    original: list[tuple[str, bytes | None]], partition: int, offset: int
) -> None:
    topic = "memory.deletions"
    written = DeadLetter(DlqReason.REJECTED, "x", topic, partition, offset, 1, 2, "g", "e-1")
    letter = Letter.of(0, 3, dead_letter_headers(original, written, FAILED_AT))
    assert letter.flaw is None
    assert (letter.reason, letter.event_id, letter.original_topic) == (
        "rejected",
        "e-1",
        "memory.deletions",
    )
    assert letter.original_partition == partition and letter.replays is not None
    kept = [(k, v) for k, v in original if not k.startswith("dlq.")]
    assert replay_headers(letter) == [*kept, (REPLAY_COUNT_HEADER, b"%d" % (letter.replays + 1))]


def test_malformed_letters_are_counted_by_flaw_and_a_few_listed() -> None:
    tally = Tally()
    for n in range(LISTED + 5):
        letter = replace(_letter_with({"dlq.reason": []}), offset=n)
        tally.count(letter, decide(letter, Selection()), "")
    tally.count(_letter_with({"dlq.event_id": [None]}), Verdict.MALFORMED, "")
    assert (tally.read, tally.skipped_malformed, tally.replayed) == (LISTED + 6, LISTED + 6, 0)
    assert tally.by_flaw == {"missing dlq.reason": LISTED + 5, "null dlq.event_id": 1}
    assert len(tally.malformed) == LISTED
    lines = malformed_lines(tally.malformed, limit=2)
    assert lines == [
        "partition 0 offset 0 event e-1: missing dlq.reason",
        "partition 0 offset 1 event e-1: missing dlq.reason",
        f"... and {LISTED - 2} more",
    ]


def test_an_event_id_is_shown_escaped() -> None:
    letter = replace(dead([]), event_id="e\x1b[2J\n")
    assert loop_guard_lines([letter]) == [
        "partition 0 offset 7 event e\\x1b[2J\\n replayed 0 times"
    ]
    assert loop_guard_lines([replace(letter, replays=None)])[0].endswith("count unreadable")


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
