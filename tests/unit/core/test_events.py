"""The event model: scope normalisation, covering and matching, and the Avro record mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.events import (
    DeletionEvent,
    EventType,
    Scope,
    event_from_record,
    event_to_record,
    partition_key,
)

EVENT_ID = "0b5c1f0e-1111-4c3a-9d59-0f1c6e4b2a01"
MEMORY_A = "3f2b7c1e-0000-4c3a-9d59-0f1c6e4b2a01"
MEMORY_B = "3f2b7c1e-1111-4c3a-9d59-0f1c6e4b2a01"


def record(name: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "occurred_at": 1_700_000_000_123,
        "source": "accounts",
        "reason": "GDPR",
        "payload": (name, body),
        **extra,
    }


# Scope.of


def test_scope_trims_identifiers_and_keeps_the_entity_order() -> None:
    scope = Scope.of(app_id=" app ", run_id="\trun\n", user_id="  alice")
    assert scope.entities == (("user_id", "alice"), ("run_id", "run"), ("app_id", "app"))
    assert scope.metadata == ()
    assert scope.as_dict() == {"user_id": "alice", "run_id": "run", "app_id": "app"}


@pytest.mark.parametrize("blank", [None, "", " ", "\t\n ", "\u3000"])
def test_a_blank_identifier_counts_as_absent(blank: str | None) -> None:
    scope = Scope.of(user_id="alice", agent_id=blank, run_id=blank, app_id=blank)
    assert scope == Scope.of(user_id="alice")
    assert scope.entities == (("user_id", "alice"),)
    assert Scope.of(user_id=blank).is_empty
    assert Scope.of(user_id=blank).entities == ()


def test_metadata_is_trimmed_sorted_and_blank_entries_dropped() -> None:
    scope = Scope.of(
        user_id="alice",
        metadata={"zeta": " 1 ", "alpha": "2", "blank": "  ", "": "orphan", "  ": "orphan"},
    )
    assert scope.metadata == (("alpha", "2"), ("zeta", "1"))


def test_equal_requests_give_equal_scopes_that_hash_alike() -> None:
    one = Scope.of(user_id="alice ", run_id="r", metadata={"b": "2", "a": "1"})
    two = Scope.of(run_id=" r", user_id="alice", agent_id="", metadata={"a": "1 ", "b": "2"})
    assert one == two
    assert hash(one) == hash(two)
    assert len({one, two}) == 1
    assert one != Scope.of(user_id="alice", run_id="r", metadata={"a": "1"})
    assert Scope.of(user_id="a") != Scope.of(agent_id="a")


@given(
    st.dictionaries(
        st.sampled_from(["user_id", "agent_id", "run_id", "app_id"]),
        st.sampled_from(["a", " a", "a ", "b", "", " "]),
    ),
    st.dictionaries(st.sampled_from(["k", "j"]), st.sampled_from(["1", " 1", "2", ""])),
)
@settings(max_examples=60)
def test_scope_of_is_insensitive_to_padding(ids: dict[str, str], metadata: dict[str, str]) -> None:
    padded = Scope.of(**{k: f"  {v}\t" for k, v in ids.items()}, metadata=metadata)
    plain = Scope.of(
        **{k: v.strip() for k, v in ids.items()},
        metadata={k: v.strip() for k, v in reversed(list(metadata.items()))},
    )
    assert padded == plain
    assert hash(padded) == hash(plain)
    assert dict(plain.entities) == {k: v.strip() for k, v in ids.items() if v.strip()}
    assert dict(plain.metadata) == {k: v.strip() for k, v in metadata.items() if v.strip()}


def test_key_names_and_values_and_size() -> None:
    scope = Scope.of(user_id="u", run_id="r", metadata={"k": "v"})
    assert scope.key_names() == ("user_id", "run_id", "metadata")
    assert sorted(scope.values()) == ["r", "u", "v"]
    assert scope.size == 3
    assert Scope.of(user_id="u").key_names() == ("user_id",)


# covers


def test_a_scope_covers_the_narrower_scopes_that_contain_its_entries() -> None:
    user = Scope.of(user_id="u")
    session = Scope.of(user_id="u", run_id="r")
    tagged = Scope.of(user_id="u", run_id="r", metadata={"k": "v"})
    assert user.covers(session)
    assert user.covers(tagged)
    assert session.covers(tagged)
    assert user.covers(user)
    assert not session.covers(user)
    assert not tagged.covers(session)
    assert not Scope.of(user_id="v").covers(session)
    assert not Scope.of(agent_id="u").covers(session)  # same value, another key


def test_metadata_entries_never_stand_for_identifiers() -> None:
    # A metadata key named like an identifier is a different entry.
    assert not Scope.of(metadata={"user_id": "u"}).covers(Scope.of(user_id="u"))
    assert not Scope.of(user_id="u").covers(Scope.of(metadata={"user_id": "u"}))
    assert Scope.of(metadata={"k": "v"}).covers(Scope.of(user_id="u", metadata={"k": "v"}))


def test_an_empty_scope_covers_nothing() -> None:
    empty = Scope.of()
    assert empty.is_empty
    assert not empty.covers(Scope.of(user_id="u"))
    assert not empty.covers(empty)
    assert not Scope.of(user_id=" ").covers(Scope.of(user_id="u"))


SMALL_IDS = st.dictionaries(
    st.sampled_from(["user_id", "agent_id", "run_id", "app_id"]), st.sampled_from(["a", "b"])
)
SMALL_META = st.dictionaries(st.sampled_from(["k", "j"]), st.sampled_from(["1", "2"]))


@given(SMALL_IDS, SMALL_META, SMALL_IDS, SMALL_META)
@settings(max_examples=150)
def test_covers_is_entry_inclusion(
    ids_a: dict[str, str], meta_a: dict[str, str], ids_b: dict[str, str], meta_b: dict[str, str]
) -> None:
    a = Scope.of(**ids_a, metadata=meta_a)
    b = Scope.of(**ids_b, metadata=meta_b)
    inclusion = ids_a.items() <= ids_b.items() and meta_a.items() <= meta_b.items()
    assert a.covers(b) == (bool(ids_a or meta_a) and inclusion)


@given(SMALL_IDS, SMALL_META, SMALL_IDS, SMALL_META)
@settings(max_examples=150)
def test_a_covering_scope_matches_every_memory_the_covered_one_does(
    ids_a: dict[str, str], meta_a: dict[str, str], ids_b: dict[str, str], meta_b: dict[str, str]
) -> None:
    a = Scope.of(**ids_a, metadata=meta_a)
    b = Scope.of(**ids_b, metadata=meta_b)
    # The memory b asks for most narrowly: exactly b's entries.
    memory: dict[str, Any] = {**ids_b, "metadata": dict(meta_b)}
    assert b.matches(memory)
    if a.covers(b):
        assert a.matches(memory)


# matches


def test_matches_requires_every_identifier_and_metadata_entry() -> None:
    scope = Scope.of(user_id="u", run_id="r", metadata={"k": "v"})
    memory = {"id": MEMORY_A, "user_id": "u", "run_id": "r", "metadata": {"k": "v", "x": "y"}}
    assert scope.matches(memory)
    assert scope.matches({**memory, "agent_id": "anything"})
    assert not scope.matches({**memory, "run_id": "other"})
    assert not scope.matches({**memory, "run_id": None})
    assert not scope.matches({k: v for k, v in memory.items() if k != "user_id"})
    assert not scope.matches({**memory, "metadata": {"k": "w"}})
    assert not scope.matches({**memory, "metadata": None})
    assert not scope.matches({**memory, "metadata": {}})
    assert Scope.of(user_id="u").matches({"user_id": "u"})  # no metadata key at all
    assert not Scope.of(user_id="u").matches({"user_id": "U"})


# event_from_record


@pytest.mark.parametrize("prefix", ["", "memory.deletion."])
def test_user_deleted(prefix: str) -> None:
    event = event_from_record(record(prefix + "UserDeleted", {"user_id": " alice "}))
    assert event == DeletionEvent(
        EVENT_ID,
        1_700_000_000_123,
        EventType.USER_DELETED,
        Scope.of(user_id="alice"),
        source="accounts",
        reason="GDPR",
    )
    assert event.memory_ids == ()


@pytest.mark.parametrize("prefix", ["", "memory.deletion."])
def test_session_expired(prefix: str) -> None:
    body = {"run_id": "r1", "user_id": "alice", "agent_id": None}
    event = event_from_record(record(prefix + "SessionExpired", body))
    assert event.type is EventType.SESSION_EXPIRED
    assert event.scope == Scope.of(run_id="r1", user_id="alice")
    only_run = event_from_record(record(prefix + "SessionExpired", {"run_id": "r1"}))
    assert only_run.scope == Scope.of(run_id="r1")


@pytest.mark.parametrize("prefix", ["", "memory.deletion."])
def test_scope_deleted(prefix: str) -> None:
    body = {
        "user_id": None,
        "agent_id": "bot",
        "run_id": "",
        "app_id": "app",
        "metadata": {"topic": " travel ", "blank": ""},
    }
    event = event_from_record(record(prefix + "ScopeDeleted", body))
    assert event.type is EventType.SCOPE_DELETED
    assert event.scope == Scope.of(agent_id="bot", app_id="app", metadata={"topic": "travel"})
    assert event.memory_ids == ()


@pytest.mark.parametrize("prefix", ["", "memory.deletion."])
def test_memories_deleted_trims_drops_blanks_and_dedupes_in_order(prefix: str) -> None:
    body = {"memory_ids": [f" {MEMORY_B}", "", MEMORY_A, "  ", MEMORY_B], "user_id": " alice "}
    event = event_from_record(record(prefix + "MemoriesDeleted", body))
    assert event.type is EventType.MEMORIES_DELETED
    assert event.scope is None
    assert event.memory_ids == (MEMORY_B, MEMORY_A)
    assert event.informational_user_id == "alice"


def test_the_informational_user_id_never_enters_equality_or_scope() -> None:
    one = event_from_record(record("MemoriesDeleted", {"memory_ids": [MEMORY_A], "user_id": "a"}))
    two = event_from_record(record("MemoriesDeleted", {"memory_ids": [MEMORY_A], "user_id": "b"}))
    assert one == two
    assert one.scope is None and two.scope is None


@pytest.mark.parametrize("linked", [False, True])
def test_memories_deleted_reads_include_linked(linked: bool) -> None:
    body = {"memory_ids": [MEMORY_A], "user_id": None, "include_linked": linked}
    assert event_from_record(record("MemoriesDeleted", body)).include_linked is linked


def test_include_linked_is_false_when_absent_as_from_a_version_1_writer() -> None:
    event = event_from_record(record("MemoriesDeleted", {"memory_ids": [MEMORY_A]}))
    assert event.include_linked is False
    assert DeletionEvent("e", 1, EventType.MEMORIES_DELETED).include_linked is False


@pytest.mark.parametrize("value", [None, 1, 0, "true", "false", [True]])
def test_include_linked_that_is_no_boolean_is_refused(value: object) -> None:
    # Never coerced: bool("false") is True, and include_linked widens the delete.
    body = {"memory_ids": [MEMORY_A], "include_linked": value}
    with pytest.raises(ValueError, match="include_linked"):
        event_from_record(record("MemoriesDeleted", body))


def test_include_linked_is_read_for_memories_deleted_only() -> None:
    body = {"user_id": "u", "include_linked": True}
    assert event_from_record(record("ScopeDeleted", body)).include_linked is False
    assert event_from_record(record("UserDeleted", body)).include_linked is False


def test_include_linked_makes_another_request() -> None:
    # The planner recognises a re-delivery by equality: with and without the history are two
    # different asks, never one the duplicate of the other.
    plain = event_from_record(record("MemoriesDeleted", {"memory_ids": [MEMORY_A]}))
    linked = event_from_record(
        record("MemoriesDeleted", {"memory_ids": [MEMORY_A], "include_linked": True})
    )
    assert plain != linked
    assert len({plain, linked}) == 2
    assert linked == event_from_record(
        record("MemoriesDeleted", {"memory_ids": [MEMORY_A], "include_linked": True})
    )


def test_unknown_payload_record_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown payload record"):
        event_from_record(record("memory.deletion.EverythingDeleted", {}))


def test_source_and_reason_default_when_absent() -> None:
    raw = record("UserDeleted", {"user_id": "u"})
    del raw["source"], raw["reason"]
    event = event_from_record(raw)
    assert (event.source, event.reason) == ("unknown", "OTHER")


@pytest.mark.parametrize(
    ("occurred_at", "millis"),
    [
        (1_700_000_000_123, 1_700_000_000_123),
        (0, 0),
        (datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC), 1_700_000_000_123),
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (
            datetime(2023, 11, 15, 0, 13, 20, 123_000, tzinfo=timezone(timedelta(hours=2))),
            1_700_000_000_123,
        ),
    ],
)
def test_occurred_at_as_int_or_datetime(occurred_at: object, millis: int) -> None:
    event = event_from_record(record("UserDeleted", {"user_id": "u"}, occurred_at=occurred_at))
    assert event.occurred_at_ms == millis


def test_occurred_at_that_is_no_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="occurred_at"):
        event_from_record(record("UserDeleted", {"user_id": "u"}, occurred_at="yesterday"))


# event_to_record


ROUND_TRIP = [
    DeletionEvent(EVENT_ID, 5, EventType.USER_DELETED, Scope.of(user_id="alice")),
    DeletionEvent(
        EVENT_ID,
        6,
        EventType.SESSION_EXPIRED,
        Scope.of(run_id="r", user_id="u", agent_id="a"),
        source="chat",
        reason="RETENTION",
    ),
    DeletionEvent(
        EVENT_ID,
        7,
        EventType.SCOPE_DELETED,
        Scope.of(user_id="u", app_id="x", metadata={"k": "v", "a": "b"}),
        reason="ADMIN",
    ),
    DeletionEvent(
        EVENT_ID,
        8,
        EventType.MEMORIES_DELETED,
        memory_ids=(MEMORY_A, MEMORY_B),
        informational_user_id="u",
    ),
    DeletionEvent(
        EVENT_ID,
        9,
        EventType.MEMORIES_DELETED,
        memory_ids=(MEMORY_A,),
        reason="GDPR",
        include_linked=True,
    ),
]


@pytest.mark.parametrize("event", ROUND_TRIP, ids=lambda e: e.type.value)
def test_event_to_record_round_trips(event: DeletionEvent) -> None:
    raw = event_to_record(event)
    assert raw["payload"][0] == "memory.deletion." + event.type.record_name
    assert raw["occurred_at"] == event.occurred_at_ms
    back = event_from_record(raw)
    assert back == event
    assert back.informational_user_id == event.informational_user_id
    assert back.include_linked is event.include_linked


def test_memories_deleted_record_carries_include_linked() -> None:
    _name, body = event_to_record(ROUND_TRIP[4])["payload"]
    assert body == {"memory_ids": [MEMORY_A], "user_id": None, "include_linked": True}
    assert event_to_record(ROUND_TRIP[3])["payload"][1]["include_linked"] is False


def test_scope_deleted_record_carries_metadata_and_only_set_identifiers() -> None:
    _name, body = event_to_record(ROUND_TRIP[2])["payload"]
    assert body == {"user_id": "u", "app_id": "x", "metadata": {"a": "b", "k": "v"}}


# partition_key


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"user_id": "alice", "run_id": "r"}, b"alice"),
        ({"user_id": "  ", "run_id": "r"}, b"r"),
        ({"user_id": None, "run_id": "r"}, b"r"),
        ({"run_id": "r"}, b"r"),
        ({"user_id": "j\u00fcrgen"}, "j\u00fcrgen".encode()),
        ({"agent_id": "a", "app_id": "x"}, None),
        ({"user_id": "", "run_id": " "}, None),
        ({"memory_ids": [MEMORY_A], "user_id": None}, None),
        ({"memory_ids": [MEMORY_A], "user_id": "alice"}, b"alice"),
    ],
)
def test_partition_key(body: dict[str, Any], key: bytes | None) -> None:
    assert partition_key(record("ScopeDeleted", body)) == key
