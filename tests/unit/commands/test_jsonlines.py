"""JSON lines to Avro records for `produce`: what is accepted, kept raw, and refused."""

from __future__ import annotations

import json
from itertools import count
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.avro.codec import Decoder, Encoder, SchemaStore
from consumer.commands.jsonlines import Defaults, parse_lines, parse_record, schema_default_note
from consumer.core.events import REASONS, EventType, Scope

NOW = 1_750_000_000_000
STORE = SchemaStore.from_directory()


def _parse(line: dict[str, Any] | str) -> dict[str, Any]:
    text = line if isinstance(line, str) else json.dumps(line)
    return parse_record(text, now_ms=NOW, new_id=lambda: "generated-id")


def _common(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "generated-id",
        "occurred_at": NOW,
        "source": "unknown",
        "reason": "OTHER",
        **overrides,
    }


def test_user_deleted_with_defaults() -> None:
    assert _parse({"type": "user_deleted", "user_id": "alice"}) == _common(
        payload=("memory.deletion.UserDeleted", {"user_id": "alice"})
    )


def test_session_expired() -> None:
    assert _parse({"type": "session_expired", "run_id": "r1", "user_id": "alice"}) == _common(
        payload=(
            "memory.deletion.SessionExpired",
            {"run_id": "r1", "user_id": "alice", "agent_id": None},
        )
    )


def test_scope_deleted() -> None:
    line = {"type": "scope_deleted", "user_id": "a", "agent_id": "b", "metadata": {"k": "v"}}
    assert _parse(line) == _common(
        payload=(
            "memory.deletion.ScopeDeleted",
            {
                "user_id": "a",
                "agent_id": "b",
                "run_id": None,
                "app_id": None,
                "metadata": {"k": "v"},
            },
        )
    )


def test_memories_deleted_with_every_common_field() -> None:
    line = {
        "type": "memories_deleted",
        "memory_ids": ["m1", "m2"],
        "event_id": "e-1",
        "occurred_at": 123,
        "source": "billing",
        "reason": "GDPR",
    }
    assert _parse(line) == {
        "event_id": "e-1",
        "occurred_at": 123,
        "source": "billing",
        "reason": "GDPR",
        "payload": (
            "memory.deletion.MemoriesDeleted",
            {"memory_ids": ["m1", "m2"], "user_id": None, "include_linked": False},
        ),
    }


@pytest.mark.parametrize(("value", "linked"), [(True, True), (False, False), (None, False)])
def test_memories_deleted_with_include_linked(value: bool | None, linked: bool) -> None:
    line = {"type": "memories_deleted", "memory_ids": ["m"], "include_linked": value}
    record = _parse(line)
    assert record["payload"][1]["include_linked"] is linked
    event = Decoder(STORE).decode(Encoder(STORE).single_object(record))
    assert event.include_linked is linked


@pytest.mark.parametrize("name", ["UserDeleted", "memory.deletion.UserDeleted", "user_deleted"])
def test_type_by_any_of_its_names(name: str) -> None:
    assert _parse({"type": name, "user_id": "u"})["payload"][0] == "memory.deletion.UserDeleted"


def test_each_line_gets_a_fresh_id() -> None:
    ids = count(1)
    lines = ['{"type": "user_deleted", "user_id": "u"}'] * 2
    records = list(parse_lines(lines, now_ms=lambda: NOW, new_id=lambda: f"id-{next(ids)}"))
    assert [r["event_id"] for r in records] == ["id-1", "id-2"]


@pytest.mark.parametrize(
    ("value", "millis"),
    [
        (0, 0),
        (-1500, -1500),
        ("1970-01-01T00:00:01Z", 1000),
        ("2025-01-31T12:00:00.123456+02:00", 1738317600123),
        ("2025-01-31T10:00:00.123", 1738317600123),  # no zone: UTC
        ("1969-12-31T23:59:59.9995Z", -1),  # floors, like every other millisecond clock
    ],
)
def test_occurred_at(value: int | str, millis: int) -> None:
    assert _parse({"type": "user_deleted", "user_id": "u", "occurred_at": value})[
        "occurred_at"
    ] == (millis)


def test_reason_is_case_insensitive() -> None:
    assert _parse({"type": "user_deleted", "user_id": "u", "reason": "gdpr"})["reason"] == "GDPR"


def test_invalid_events_are_kept_raw_for_the_consumer_to_reject() -> None:
    assert _parse({"type": "user_deleted"})["payload"][1] == {"user_id": ""}
    assert _parse({"type": "user_deleted", "user_id": None})["payload"][1] == {"user_id": ""}
    assert _parse({"type": "session_expired"})["payload"][1]["run_id"] == ""
    assert _parse({"type": "scope_deleted", "user_id": "*"})["payload"][1]["user_id"] == "*"
    assert _parse({"type": "scope_deleted", "user_id": "  "})["payload"][1]["user_id"] == "  "
    assert _parse({"type": "memories_deleted"})["payload"][1]["memory_ids"] == []
    ids = ["not-a-uuid", "", "not-a-uuid"]
    assert (
        _parse({"type": "memories_deleted", "memory_ids": ids})["payload"][1]["memory_ids"] == ids
    )
    assert _parse({"type": "user_deleted", "user_id": "u", "event_id": ""})["event_id"] == ""


@pytest.mark.parametrize(
    "line",
    [
        {"type": "user_deleted", "user_id": "alice", "reason": "CCPA", "source": "s"},
        {"type": "session_expired", "run_id": "r", "agent_id": "a"},
        {"type": "scope_deleted", "app_id": "x", "metadata": {"k": "v"}},
        {"type": "scope_deleted"},
        {"type": "memories_deleted", "memory_ids": ["m", ""], "user_id": "u"},
        {"type": "memories_deleted", "memory_ids": ["m"], "include_linked": True},
        {"type": "user_deleted"},
    ],
)
def test_every_record_encodes_and_decodes(line: dict[str, Any]) -> None:
    record = _parse(line)
    event = Decoder(STORE).decode(Encoder(STORE).single_object(record))
    assert event.event_id == "generated-id"
    assert event.occurred_at_ms == NOW
    assert event.type is EventType(line["type"])
    assert event.include_linked is line.get("include_linked", False)
    if event.type is EventType.MEMORIES_DELETED:
        assert event.memory_ids == ("m",)
    else:
        ids = {k: v for k, v in line.items() if k.endswith("_id")}
        assert event.scope == Scope.of(**ids, metadata=line.get("metadata"))


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("not json", "JSON"),
        ('["a list"]', "object"),
        ({"user_id": "u"}, "'type'"),
        ({"type": "account_deleted"}, "'type'"),
        ({"type": 3}, "'type'"),
        ({"type": "user_deleted", "userid": "u"}, "'userid'"),
        ({"type": "user_deleted", "agent_id": "a"}, "'agent_id'"),
        ({"type": "user_deleted", "user_id": 42}, "'user_id'"),
        ({"type": "session_expired", "run_id": ["r"]}, "'run_id'"),
        ({"type": "scope_deleted", "metadata": ["k"]}, "'metadata'"),
        ({"type": "scope_deleted", "metadata": {"k": 1}}, "'metadata'"),
        ({"type": "memories_deleted", "memory_ids": "m1"}, "'memory_ids'"),
        ({"type": "memories_deleted", "memory_ids": [1]}, "'memory_ids'"),
        ({"type": "memories_deleted", "include_linked": "true"}, "'include_linked'"),
        ({"type": "memories_deleted", "include_linked": "false"}, "'include_linked'"),
        ({"type": "memories_deleted", "include_linked": 1}, "'include_linked'"),
        ({"type": "memories_deleted", "include_linked": 0}, "'include_linked'"),
        ({"type": "memories_deleted", "include_linked": [True]}, "'include_linked'"),
        ({"type": "user_deleted", "user_id": "u", "include_linked": True}, "'include_linked'"),
        ({"type": "scope_deleted", "include_linked": False}, "'include_linked'"),
        ({"type": "user_deleted", "event_id": 7}, "'event_id'"),
        ({"type": "user_deleted", "occurred_at": 1.5}, "'occurred_at'"),
        ({"type": "user_deleted", "occurred_at": True}, "'occurred_at'"),
        ({"type": "user_deleted", "occurred_at": "yesterday"}, "'occurred_at'"),
        ({"type": "user_deleted", "reason": "BECAUSE"}, "'reason'"),
        ({"type": "user_deleted", "source": {}}, "'source'"),
    ],
)
def test_errors_name_the_field(line: dict[str, Any] | str, field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        _parse(line)
    assert "\n" not in str(info.value)


def test_errors_do_not_echo_values() -> None:
    with pytest.raises(ValueError) as info:
        _parse('{"type": "user_deleted", "user_id": "alice-secret", oops}')
    assert "alice-secret" not in str(info.value)
    with pytest.raises(ValueError) as info:
        _parse({"type": "user_deleted", "user_id": ["alice-secret"]})
    assert "alice-secret" not in str(info.value)


def test_parse_lines_skips_blanks_and_numbers_errors() -> None:
    lines = ['{"type": "user_deleted", "user_id": "u"}', "", "   ", '{"type": "nope"}']
    records = parse_lines(lines, now_ms=lambda: NOW, new_id=lambda: "x")
    assert next(records)["payload"][1] == {"user_id": "u"}
    with pytest.raises(ValueError, match=r"^line 4: field 'type'"):
        next(records)


# --- what a line without `reason` or `source` gets (produce --reason, --source) ---------------

_MAYBE_REASON = st.none() | st.sampled_from(REASONS).flatmap(
    lambda reason: st.sampled_from([reason, reason.lower(), reason.title()])
)
_MAYBE_SOURCE = st.none() | st.text(max_size=12)


@given(
    line_reason=_MAYBE_REASON,
    flag_reason=_MAYBE_REASON,
    line_source=_MAYBE_SOURCE,
    flag_source=_MAYBE_SOURCE,
)
def test_the_line_wins_then_the_flag_then_the_schema_which_is_told(
    line_reason: str | None,
    flag_reason: str | None,
    line_source: str | None,
    flag_source: str | None,
) -> None:
    line: dict[str, Any] = {"type": "user_deleted", "user_id": "u"}
    if line_reason is not None:
        line["reason"] = line_reason
    if line_source is not None:
        line["source"] = line_source
    told: list[str] = []
    record = parse_record(
        json.dumps(line),
        now_ms=NOW,
        new_id=lambda: "x",
        defaults=Defaults.of(reason=flag_reason, source=flag_source),
        on_schema_default=told.append,
    )
    reason = line_reason if line_reason is not None else flag_reason
    source = line_source if line_source is not None else flag_source
    assert record["reason"] == ("OTHER" if reason is None else reason.upper())
    assert record["source"] == ("unknown" if source is None else source)
    assert sorted(told) == sorted(
        [name for name, value in (("reason", reason), ("source", source)) if value is None]
    )


def test_without_defaults_the_schema_defaults_are_applied_and_told() -> None:
    told: list[str] = []
    record = parse_record(
        '{"type": "user_deleted", "user_id": "u"}',
        now_ms=NOW,
        new_id=lambda: "x",
        on_schema_default=told.append,
    )
    assert (record["reason"], record["source"]) == ("OTHER", "unknown")
    assert sorted(told) == ["reason", "source"]


def test_a_refused_line_is_not_told_as_a_default() -> None:
    told: list[str] = []
    with pytest.raises(ValueError, match="'occurred_at'"):
        parse_record(
            '{"type": "user_deleted", "user_id": "u", "occurred_at": "yesterday"}',
            now_ms=NOW,
            new_id=lambda: "x",
            on_schema_default=told.append,
        )
    assert told == []


def test_the_reason_flag_is_checked_and_upper_cased() -> None:
    assert Defaults.of(reason="gdpr", source=None) == Defaults(reason="GDPR", source=None)
    with pytest.raises(ValueError, match=r"^--reason: expected one of USER_REQUEST, GDPR"):
        Defaults.of(reason="because", source=None)


def test_the_note_counts_the_lines_and_names_the_way_out() -> None:
    assert schema_default_note("reason", 3) == (
        "3 lines had no reason: OTHER, the schema's default; give --reason or a reason field"
    )
    assert schema_default_note("source", 1) == (
        "1 line had no source: unknown, the schema's default; give --source or a source field"
    )
    assert schema_default_note("reason", 12_000).startswith("12,000 lines had no reason")
