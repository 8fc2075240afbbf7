"""Dead-letter headers: the original ones first and unchanged (those named `dlq.*` renamed, so
that a producer cannot plant the consumer's word: issue 16), then the `dlq.*` ones."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.dlq import (
    DLQ_REASONS,
    OWN_HEADERS,
    REPLAY_COUNT_HEADER,
    DeadLetter,
    Headers,
    dead_letter_headers,
    headers_of,
    one_line,
    printable,
    replay_count,
)

FAILED_AT = 1_700_000_000.123
LETTER = DeadLetter(
    reason="rejected",
    error="HTTP 400 on batch_delete: bad id",
    topic="memory.deletions",
    partition=2,
    offset=41,
    timestamp_ms=1_699_999_999_000,
    attempts=3,
    group="mem0-deletion-consumer",
    event_id="0b5c1f0e-1111-4c3a-9d59-0f1c6e4b2a01",
    http_status=400,
)
ORIGINAL: Headers = [
    ("traceparent", b"00-abc-def-01"),
    ("empty", b""),
    ("null", None),
    ("binary", b"\x00\xff\xc3\x28"),
    ("traceparent", b"duplicate name, kept too"),
]
RFC3339_UTC = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z\Z")
CONTRACT_HEADERS = {
    "dlq.reason",
    "dlq.error",
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
    "dlq.attempts",
    "dlq.failed_at",
    "dlq.consumer.group",
    "dlq.event_id",
    "dlq.http_status",
}


def added(headers: Headers, original: Headers = ORIGINAL) -> dict[str, str]:
    tail = headers[len(original) :]
    names = [name for name, _ in tail]
    assert len(names) == len(set(names)), "a dlq header is repeated"
    out: dict[str, str] = {}
    for name, value in tail:
        assert isinstance(value, bytes)
        out[name] = value.decode("utf-8")
    return out


def test_original_headers_come_first_byte_for_byte() -> None:
    headers = dead_letter_headers(list(ORIGINAL), LETTER, FAILED_AT)
    assert headers[: len(ORIGINAL)] == ORIGINAL
    assert headers[2] == ("null", None)
    assert all(name.startswith("dlq.") for name, _ in headers[len(ORIGINAL) :])


def test_the_input_list_is_not_modified() -> None:
    original = list(ORIGINAL)
    dead_letter_headers(original, LETTER, FAILED_AT)
    assert original == ORIGINAL


def test_every_contract_header_with_its_value() -> None:
    values = added(dead_letter_headers(ORIGINAL, LETTER, FAILED_AT))
    assert set(values) == CONTRACT_HEADERS
    assert values == {
        "dlq.reason": "rejected",
        "dlq.error": "HTTP 400 on batch_delete: bad id",
        "dlq.original.topic": "memory.deletions",
        "dlq.original.partition": "2",
        "dlq.original.offset": "41",
        "dlq.original.timestamp": "1699999999000",
        "dlq.attempts": "3",
        "dlq.failed_at": "2023-11-14T22:13:20.123Z",
        "dlq.consumer.group": "mem0-deletion-consumer",
        "dlq.event_id": "0b5c1f0e-1111-4c3a-9d59-0f1c6e4b2a01",
        "dlq.http_status": "400",
    }


def test_optional_headers_are_left_out_when_unknown() -> None:
    letter = DeadLetter(
        reason="decode_error",
        error="truncated body",
        topic="memory.deletions",
        partition=0,
        offset=0,
        timestamp_ms=None,
        attempts=0,
        group="g",
    )
    values = added(dead_letter_headers([], letter, FAILED_AT), original=[])
    assert set(values) == CONTRACT_HEADERS - {
        "dlq.event_id",
        "dlq.http_status",
        "dlq.original.timestamp",
    }
    assert values["dlq.attempts"] == "0"
    assert values["dlq.original.offset"] == "0"


@pytest.mark.parametrize("reason", DLQ_REASONS)
def test_every_reason_is_written_as_is(reason: str) -> None:
    letter = DeadLetter(reason, "x", "t", 0, 0, None, 1, "g")
    assert added(dead_letter_headers([], letter, FAILED_AT), original=[])["dlq.reason"] == reason


def test_the_reasons_are_those_of_the_contract() -> None:
    assert set(DLQ_REASONS) == {
        "decode_error",
        "unknown_schema",
        "invalid_scope",
        "unsupported_scope",
        "rejected",
        "retries_exhausted",
        "verification_failed",
    }


@given(st.floats(0, 4_102_444_800, allow_nan=False))  # up to 2100
@settings(max_examples=100)
def test_failed_at_is_rfc3339_utc(failed_at: float) -> None:
    stamp = added(dead_letter_headers([], LETTER, failed_at), original=[])["dlq.failed_at"]
    assert RFC3339_UTC.match(stamp), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    assert abs(parsed.timestamp() - failed_at) < 0.001


def test_failed_at_of_the_epoch() -> None:
    stamp = added(dead_letter_headers([], LETTER, 0.0), original=[])["dlq.failed_at"]
    assert stamp == "1970-01-01T00:00:00.000Z"


# a record's own dlq.* headers (issue 16)


def test_a_records_own_dlq_headers_are_kept_renamed_in_place() -> None:
    original: Headers = [
        ("traceparent", b"t"),
        ("dlq.reason", b"decode_error"),
        ("dlq.event_id", None),
        (REPLAY_COUNT_HEADER, "²".encode()),
        ("dlq.original-header.x", b"\xff"),
        ("dlqx", b"not ours"),
    ]
    headers = dead_letter_headers(original, LETTER, FAILED_AT)
    assert headers[: len(original)] == [
        ("traceparent", b"t"),
        ("dlq.original-header.dlq.reason", b"decode_error"),
        ("dlq.original-header.dlq.event_id", None),
        ("dlq.original-header.dlq.replay.count", "²".encode()),
        ("dlq.original-header.dlq.original-header.x", b"\xff"),
        ("dlqx", b"not ours"),
    ]
    values = added(headers, original)  # each once, the consumer's
    assert set(values) == CONTRACT_HEADERS  # the unreadable count is not carried
    assert (values["dlq.reason"], values["dlq.event_id"]) == ("rejected", LETTER.event_id)


@pytest.mark.parametrize(
    ("counts", "carried"),
    [
        ([b"1"], "1"),
        ([b"2"], "2"),
        ([b"999999999"], "999999999"),
        ([b"0"], None),  # never replayed: nothing to say
        ([], None),
        (["²".encode()], None),
        ([b"01"], None),
        ([b"-1"], None),
        ([b"+1"], None),
        ([b"1 "], None),
        ([b"1000000000"], None),
        ([b"9" * 5000], None),  # int() would refuse it: more than 4300 digits
        ([None], None),
        ([b"1", b"1"], None),  # replay writes one
    ],
)
def test_a_replay_count_is_carried_only_as_replay_writes_it(
    counts: list[bytes | None], carried: str | None
) -> None:
    original: Headers = [(REPLAY_COUNT_HEADER, count) for count in counts]
    values = added(dead_letter_headers(original, LETTER, FAILED_AT), original)
    assert values.get(REPLAY_COUNT_HEADER) == carried


@given(
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from([*OWN_HEADERS, "dlq."]), st.text(max_size=20)),
            st.one_of(st.none(), st.binary(max_size=12), st.sampled_from([b"1", b"7"])),
        ),
        max_size=20,
    )
)
def test_no_dlq_header_of_a_record_survives_under_its_name(original: Headers) -> None:
    headers = dead_letter_headers(original, LETTER, FAILED_AT)
    kept = headers[: len(original)]
    renamed = [(f"dlq.original-header.{k}" if k.startswith("dlq.") else k, v) for k, v in original]
    assert kept == renamed
    tail = [k for k, _ in headers[len(original) :]]
    assert len(tail) == len(set(tail)) and set(tail) <= set(OWN_HEADERS)


@pytest.mark.parametrize(
    ("value", "count"),
    [(b"0", 0), (b"12", 12), (b"", None), (None, None), ("٣".encode(), None), (b"0x1", None)],
)
def test_replay_count(value: bytes | None, count: int | None) -> None:
    assert replay_count(value) == count


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    assert printable("e-1 é") == "e-1 é"
    assert printable("a\x1b[31mb\r\n\u202e") == "a\\x1b[31mb\\r\\n\\u202e"


# dlq.error


def test_error_is_folded_to_one_line() -> None:
    letter = DeadLetter(
        "rejected", "line one\nline two\r\n\tindented\u2028sep  ", "t", 0, 0, None, 1, "g"
    )
    value = added(dead_letter_headers([], letter, FAILED_AT), original=[])["dlq.error"]
    assert value == "line one line two indented sep"


def test_a_long_multibyte_error_is_cut_at_a_character_within_1_kib() -> None:
    text = "\u00e9" * 600 + "\U0001f600" * 300  # 1200 + 1200 bytes of UTF-8
    letter = DeadLetter("rejected", text, "t", 0, 0, None, 1, "g")
    headers = dead_letter_headers([], letter, FAILED_AT)
    raw = dict(headers)["dlq.error"]
    assert raw is not None
    assert len(raw) <= 1024
    decoded = raw.decode("utf-8")  # strict: no character was cut in half
    assert text.startswith(decoded)
    assert len(raw) >= 1024 - 3


def test_a_lone_surrogate_does_not_make_the_letter_unwritable() -> None:
    letter = DeadLetter("decode_error", "bad byte \udcff here", "t", 0, 0, None, 1, "g")
    raw = dict(dead_letter_headers([], letter, FAILED_AT))["dlq.error"]
    assert raw is not None
    assert raw.decode("utf-8") == "bad byte ? here"


@given(st.text(), st.integers(1, 2048))
@settings(max_examples=200)
def test_one_line_is_one_line_of_valid_utf8_within_the_limit(text: str, limit: int) -> None:
    out = one_line(text, limit)
    encoded = out.encode("utf-8")
    assert len(encoded) <= limit
    assert len(out.splitlines()) <= 1
    assert out == out.lstrip()
    assert "  " not in out
    assert " ".join(text.split()).startswith(out)


@given(st.text(min_size=1))
def test_a_short_message_is_only_folded(text: str) -> None:
    folded = " ".join(text.split())
    if len(folded.encode("utf-8")) <= 1024:
        assert one_line(text) == folded


# headers_of


class FakeMessage:
    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def headers(self) -> Any:
        return self._headers


@pytest.mark.parametrize("raw", [None, []])
def test_headers_of_a_message_without_headers(raw: Any) -> None:
    assert headers_of(FakeMessage(raw)) == []


def test_headers_of_keeps_order_and_null_values() -> None:
    raw = [("a", b"1"), ("b", None), ("a", "text")]
    assert headers_of(FakeMessage(raw)) == [("a", b"1"), ("b", None), ("a", b"text")]
    assert headers_of(FakeMessage({"x": b"y"})) == [("x", b"y")]
