"""The planner: events of one flush -> operations that delete exactly what the events ask.

The property tests apply a plan to an in-memory store in plain Python and compare what it
deleted with what the events asked for, using an oracle written independently of the planner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.capabilities import OSS, PLATFORM, Capabilities
from consumer.core.events import DeletionEvent, EventType, Scope, event_from_record
from consumer.core.planner import (
    DeleteAll,
    DeleteEntity,
    DeleteIds,
    Operation,
    Plan,
    ResolveScope,
    plan,
)
from consumer.core.validation import validate

BACKENDS = pytest.mark.parametrize("caps", [PLATFORM, OSS], ids=["platform", "oss"])
ENTITY_KEYS = ("user_id", "agent_id", "run_id", "app_id")

# Canonical UUIDs; the memory store and the events draw from the same pool, so they overlap.
UUIDS = [f"3f2b7c1e-{n:04x}-4c3a-9d59-0f1c6e4b2a{n:02x}" for n in range(8)]

_counter = iter(range(10**9))


def _eid() -> str:
    return f"evt-{next(_counter)}"


def user(user_id: str | None, *, event_id: str | None = None) -> DeletionEvent:
    return DeletionEvent(event_id or _eid(), 1, EventType.USER_DELETED, Scope.of(user_id=user_id))


def session(
    run_id: str | None,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    event_id: str | None = None,
) -> DeletionEvent:
    scope = Scope.of(run_id=run_id, user_id=user_id, agent_id=agent_id)
    return DeletionEvent(event_id or _eid(), 1, EventType.SESSION_EXPIRED, scope)


def scoped(event_id: str | None = None, **filters: Any) -> DeletionEvent:
    return DeletionEvent(event_id or _eid(), 1, EventType.SCOPE_DELETED, Scope.of(**filters))


def memories(*ids: str, event_id: str | None = None, linked: bool = False) -> DeletionEvent:
    raw = {"memory_ids": list(ids), "user_id": None, "include_linked": linked}
    return event_from_record(
        {
            "event_id": event_id or _eid(),
            "occurred_at": 1,
            "payload": ("MemoriesDeleted", raw),
        }
    )


def served(result: Plan) -> set[int]:
    return {ref for op in result.operations for ref in op.refs}


def entity(user_id: str, refs: tuple[int, ...]) -> DeleteEntity:
    return DeleteEntity(Scope.of(user_id=user_id), refs)


def user_ops(caps: Capabilities, user_id: str, refs: tuple[int, ...]) -> list[Operation]:
    """A user erasure: its memories, and on the Platform its entity record too."""
    scope = DeleteAll(Scope.of(user_id=user_id), refs)
    return [scope, entity(user_id, refs)] if caps.user_entities else [scope]


# One event type at a time, on both backends


@BACKENDS
def test_user_deleted_is_one_delete_all_with_one_identifier(caps: Capabilities) -> None:
    result = plan([user(" alice ")], caps)
    assert result.operations == user_ops(caps, "alice", (0,))
    assert not result.rejected and not result.duplicates


@BACKENDS
def test_session_with_only_a_run_is_one_delete_all(caps: Capabilities) -> None:
    result = plan([session("r1")], caps)
    assert result.operations == [DeleteAll(Scope.of(run_id="r1"), (0,))]


def test_session_of_a_user_is_resolved_on_the_platform() -> None:
    result = plan([session("r1", user_id="alice")], PLATFORM)
    assert result.operations == [ResolveScope(Scope.of(run_id="r1", user_id="alice"), (0,))]


def test_session_of_a_user_is_one_anded_delete_all_on_oss() -> None:
    result = plan([session("r1", user_id="alice", agent_id="bot")], OSS)
    expected = Scope.of(run_id="r1", user_id="alice", agent_id="bot")
    assert result.operations == [DeleteAll(expected, (0,))]


def test_scope_with_metadata_is_resolved_on_the_platform() -> None:
    result = plan([scoped(user_id="u", metadata={"topic": "travel"})], PLATFORM)
    expected = Scope.of(user_id="u", metadata={"topic": "travel"})
    assert result.operations == [ResolveScope(expected, (0,))]


def test_scope_with_only_one_identifier_is_a_delete_all() -> None:
    event = scoped(agent_id="bot")
    assert plan([event], PLATFORM).operations == [DeleteAll(Scope.of(agent_id="bot"), (0,))]


@pytest.mark.parametrize(
    "filters",
    [
        {"user_id": "u", "metadata": {"topic": "travel"}},
        {"app_id": "x"},
        {"user_id": "u", "app_id": "x"},
    ],
)
def test_metadata_and_app_id_are_unsupported_on_oss(filters: dict[str, Any]) -> None:
    result = plan([scoped(**filters)], OSS)
    assert result.operations == []
    assert result.rejected[0].reason == "unsupported_scope"
    assert plan([scoped(**filters)], PLATFORM).operations  # the Platform can do them


@BACKENDS
def test_memories_deleted_becomes_a_batch(caps: Capabilities) -> None:
    result = plan([memories(UUIDS[0], UUIDS[1])], caps)
    assert result.operations == [DeleteIds.of((UUIDS[0], UUIDS[1]), ((0,), (0,)))]


# Refusals


INVALID: list[tuple[str, DeletionEvent]] = [
    ("user_none", user(None)),
    ("user_empty", user("")),
    ("user_blank", user(" \t ")),
    ("session_blank", session("  ")),
    ("session_blank_run_with_user", session(" ", user_id="alice")),
    ("session_blank_run_with_agent", session("", agent_id="bot")),
    ("scope_all_null", scoped()),
    ("scope_all_empty", scoped(user_id="", agent_id="", run_id="", app_id="")),
    ("scope_all_blank", scoped(user_id=" ", agent_id="\n", run_id="\t", app_id="  ")),
    ("scope_metadata_only", scoped(metadata={"topic": "travel"})),
    ("user_wildcard", user("*")),
    ("user_wildcard_inside", user("al*ce")),
    ("session_wildcard", session("r*")),
    ("session_user_wildcard", session("r", user_id="*")),
    ("scope_agent_wildcard", scoped(user_id="u", agent_id="*")),
    ("scope_run_wildcard", scoped(user_id="u", run_id="r*")),
    ("scope_app_wildcard", scoped(user_id="u", app_id="*")),
    ("scope_metadata_wildcard", scoped(user_id="u", metadata={"topic": "*"})),
    ("ids_none", memories()),
    ("ids_blank", memories("", "  ", "\t")),
    ("ids_wildcard", memories(UUIDS[0], "*")),
    ("ids_wildcard_inside", memories(UUIDS[0][:-1] + "*")),
]


@BACKENDS
@pytest.mark.parametrize(("name", "event"), INVALID, ids=[name for name, _ in INVALID])
def test_invalid_events_are_rejected_and_get_no_call(
    caps: Capabilities, name: str, event: DeletionEvent
) -> None:
    result = plan([event], caps)
    assert result.operations == []
    assert list(result.rejected) == [0]
    assert result.rejected[0].reason == "invalid_scope"
    assert result.rejected[0].message
    assert validate(event, caps) == result.rejected[0]


def test_an_invalid_event_does_not_stop_the_valid_ones() -> None:
    events = [user("*"), user("alice"), memories(), memories(UUIDS[0])]
    result = plan(events, PLATFORM)
    assert set(result.rejected) == {0, 2}
    assert result.operations == [
        *user_ops(PLATFORM, "alice", (1,)),
        DeleteIds.of((UUIDS[0],), ((3,),)),
    ]


@BACKENDS
@pytest.mark.parametrize("memory_id", ["mem-1", "42", "not_a_uuid", UUIDS[0].replace("-", "")])
def test_a_non_uuid_id_is_refused_on_both_backends(caps: Capabilities, memory_id: str) -> None:
    # Mem0 makes every id a UUID; the self-hosted default store answers 502 `unknown` to
    # anything else, which would be retried before it is given up on.
    result = plan([memories(UUIDS[0], memory_id)], caps)
    assert result.operations == []
    assert result.rejected[0].reason == "invalid_scope"
    assert result.rejected[0].message == "a memory id is not a UUID"


def test_an_upper_case_uuid_is_a_uuid() -> None:
    assert not plan([memories(UUIDS[0].upper())], PLATFORM).rejected


@pytest.mark.parametrize(
    "memory_id",
    ["../memories?user_id=alice", "x?user_id=alice", "a/b", "..", ".", "a#b", "%2e%2e", "a b"],
)
def test_an_id_that_would_change_the_url_is_refused_on_oss(memory_id: str) -> None:
    # On OSS an id goes into `DELETE /memories/{id}`: `../memories?user_id=alice` would
    # otherwise become a delete_all of alice's memories.
    result = plan([memories(memory_id)], OSS)
    assert result.operations == []
    assert result.rejected[0].reason == "invalid_scope"


# Duplicates


@BACKENDS
def test_a_redelivered_event_is_a_duplicate_of_the_first(caps: Capabilities) -> None:
    first = user("alice", event_id="e1")
    events = [first, memories(UUIDS[0], event_id="e2"), first, memories(UUIDS[0], event_id="e2")]
    result = plan(events, caps)
    assert result.duplicates == {2: 0, 3: 1}
    assert result.operations == [
        *user_ops(caps, "alice", (0,)),
        DeleteIds.of((UUIDS[0],), ((1,),)),
    ]
    assert not result.rejected


def test_equal_after_normalisation_is_a_duplicate() -> None:
    events = [scoped("e1", user_id="u", run_id="r"), scoped("e1", run_id=" r ", user_id="u ")]
    assert plan(events, PLATFORM).duplicates == {1: 0}


def test_a_duplicate_of_a_rejected_event_is_only_a_duplicate() -> None:
    events = [user("*", event_id="e1"), user("*", event_id="e1")]
    result = plan(events, PLATFORM)
    assert set(result.rejected) == {0}
    assert result.duplicates == {1: 0}


def test_same_id_with_another_request_is_carried_out_too() -> None:
    events = [user("alice", event_id="e1"), user("bob", event_id="e1")]
    result = plan(events, PLATFORM)
    assert result.duplicates == {}
    assert result.operations == [
        DeleteAll(Scope.of(user_id="alice"), (0,)),
        DeleteAll(Scope.of(user_id="bob"), (1,)),
        entity("alice", (0,)),
        entity("bob", (1,)),
    ]


def test_same_id_same_scope_but_other_timestamp_is_not_a_duplicate() -> None:
    one = user("alice", event_id="e1")
    two = replace(one, occurred_at_ms=2)
    result = plan([one, two], PLATFORM)
    assert result.duplicates == {}
    # Equal scopes still make a single call that serves both.
    assert result.operations == user_ops(PLATFORM, "alice", (0, 1))


def test_a_copy_is_compared_with_the_first_of_its_id_only() -> None:
    a = user("alice", event_id="e1")
    b = user("bob", event_id="e1")
    result = plan([a, b, b, a], PLATFORM)
    assert result.duplicates == {3: 0}
    assert served(result) == {0, 1, 2}


# Covering


def test_a_user_delete_covers_that_users_sessions_and_scopes() -> None:
    events = [
        session("r1", user_id="alice"),
        scoped(user_id="alice", metadata={"k": "v"}),
        user("alice"),
        session("r2", user_id="bob"),
    ]
    result = plan(events, PLATFORM)
    assert result.operations == [
        DeleteAll(Scope.of(user_id="alice"), (0, 1, 2)),
        ResolveScope(Scope.of(run_id="r2", user_id="bob"), (3,)),
        # Only the user erasure asked for the entity, not the scopes it covers.
        entity("alice", (2,)),
    ]


def test_the_narrowest_covering_scope_is_kept_once_with_all_refs() -> None:
    events = [
        scoped(user_id="u", run_id="r", metadata={"k": "v"}),
        session("r", user_id="u"),
        session("r", user_id="u"),
    ]
    result = plan(events, PLATFORM)
    assert result.operations == [ResolveScope(Scope.of(user_id="u", run_id="r"), (0, 1, 2))]


def test_overlapping_scopes_that_do_not_cover_each_other_stay_apart() -> None:
    events = [session("r", user_id="u"), scoped(user_id="u", agent_id="a"), user("v")]
    result = plan(events, OSS)
    assert sorted(map(repr, result.operations)) == sorted(
        map(
            repr,
            [
                DeleteAll(Scope.of(user_id="u", run_id="r"), (0,)),
                DeleteAll(Scope.of(user_id="u", agent_id="a"), (1,)),
                DeleteAll(Scope.of(user_id="v"), (2,)),
            ],
        )
    )


def test_same_value_under_another_key_never_covers() -> None:
    result = plan([user("x"), session("r", agent_id="x")], OSS)
    assert len(result.operations) == 2


# Batching


def test_ids_are_merged_deduplicated_and_owned_per_id() -> None:
    events = [memories(UUIDS[0], UUIDS[1]), memories(UUIDS[1], UUIDS[2]), memories(UUIDS[0])]
    result = plan(events, PLATFORM)
    assert result.operations == [
        DeleteIds.of((UUIDS[0], UUIDS[1], UUIDS[2]), ((0, 2), (0, 1), (1,))),
    ]
    op = result.operations[0]
    assert isinstance(op, DeleteIds)
    assert op.refs == (0, 1, 2)


@pytest.mark.parametrize(("max_batch", "sizes"), [(7, [7, 7, 6]), (10, [10, 10]), (1000, [20])])
def test_ids_are_chunked_by_max_batch(max_batch: int, sizes: list[int]) -> None:
    ids = [f"3f2b7c1e-{n:04x}-4c3a-9d59-0f1c6e4b2a01" for n in range(20)]
    events = [memories(*ids[:12]), memories(*ids[8:]), memories(*ids[::3])]
    result = plan(events, Capabilities(max_batch=max_batch))
    batches = [op for op in result.operations if isinstance(op, DeleteIds)]
    assert [len(op.ids) for op in batches] == sizes
    flat = [memory_id for op in batches for memory_id in op.ids]
    assert flat == ids  # first-seen order, each once
    owners = {i: refs for op in batches for i, refs in zip(op.ids, op.owners, strict=True)}
    for n, memory_id in enumerate(ids):
        expected = tuple(
            ref for ref, chosen in enumerate([ids[:12], ids[8:], ids[::3]]) if memory_id in chosen
        )
        assert owners[memory_id] == expected, n


def test_the_platform_batch_limit_is_a_thousand() -> None:
    ids = [f"{n:08x}-0000-4c3a-9d59-0f1c6e4b2a01" for n in range(2500)]
    result = plan([memories(*ids)], PLATFORM)
    assert [len(op.ids) for op in result.operations if isinstance(op, DeleteIds)] == [
        1000,
        1000,
        500,
    ]


# Property tests against an in-memory store


@dataclass(frozen=True)
class Raw:
    """One generated event as upstream wrote it, before any normalisation."""

    event_id: str
    occurred_at: int
    record_name: str
    body: Mapping[str, Any]

    def record(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "payload": (self.record_name, dict(self.body)),
        }


# Identifier values: mostly "a"/"b" (so scopes collide and cover), some padded or blank,
# a few wildcards.
ID_TEXT = st.sampled_from(["a", "a", "b", "b", " a", "b ", "", "  ", "a*", "*"])
OPT_ID = st.one_of(st.none(), ID_TEXT)
META = st.dictionaries(
    st.sampled_from(["k", "j", ""]), st.sampled_from(["1", "1", "2", " 1", "", "*"]), max_size=3
)
# Memory ids: UUIDs shared with the store, blanks, a wildcard, non-UUIDs (fine on OSS only)
# and one that would rewrite an OSS URL.
MEMORY_IDS = [*UUIDS, UUIDS[0].upper(), "", " ", "*", "mem-1", "../memories?user_id=a"]
IS_UUID = {*UUIDS, UUIDS[0].upper()}
IS_PLAIN_SEGMENT = {*IS_UUID, "mem-1"}
EVENT_IDS = st.sampled_from(["e1", "e2", "e3", "e4", "e5"])
OCCURRED = st.sampled_from([1, 2])

RAW_EVENT = st.one_of(
    st.builds(
        Raw,
        EVENT_IDS,
        OCCURRED,
        st.just("UserDeleted"),
        st.fixed_dictionaries({"user_id": ID_TEXT}),
    ),
    st.builds(
        Raw,
        EVENT_IDS,
        OCCURRED,
        st.just("memory.deletion.SessionExpired"),
        st.fixed_dictionaries({"run_id": ID_TEXT, "user_id": OPT_ID, "agent_id": OPT_ID}),
    ),
    st.builds(
        Raw,
        EVENT_IDS,
        OCCURRED,
        st.just("ScopeDeleted"),
        st.fixed_dictionaries({k: OPT_ID for k in ENTITY_KEYS} | {"metadata": META}),
    ),
    st.builds(
        Raw,
        EVENT_IDS,
        OCCURRED,
        st.just("MemoriesDeleted"),
        st.fixed_dictionaries(
            {
                "memory_ids": st.lists(st.sampled_from(MEMORY_IDS), max_size=5),
                "user_id": OPT_ID,
                "include_linked": st.booleans(),
            }
        ),
    ),
)


@st.composite
def raw_events(draw: st.DrawFn) -> list[Raw]:
    events = draw(st.lists(RAW_EVENT, max_size=12))
    # Re-deliveries: exact copies of earlier events, anywhere later in the flush.
    for _ in range(draw(st.integers(0, 3))):
        if not events:
            break
        source = draw(st.integers(0, len(events) - 1))
        at = draw(st.integers(source + 1, len(events)))
        events.insert(at, events[source])
    return events


MEMORY = st.fixed_dictionaries(
    {
        "id": st.sampled_from(UUIDS),
        **{k: st.sampled_from(["a", "b", None]) for k in ENTITY_KEYS},
        "metadata": st.dictionaries(st.sampled_from(["k", "j"]), st.sampled_from(["1", "2"])),
    }
)
STORE = st.lists(MEMORY, max_size=8, unique_by=lambda m: str(m["id"]))
CAPS = st.builds(
    replace,
    st.sampled_from([PLATFORM, OSS]),
    max_batch=st.sampled_from([1, 2, 3, 7, 1000]),
    user_entities=st.booleans(),
)


def _clean(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


@dataclass(frozen=True)
class Asked:
    """What an event asks for, worked out from the raw record by the test."""

    kind: str
    identifiers: Mapping[str, str]
    metadata: Mapping[str, str]
    ids: tuple[str, ...]
    linked: bool = False

    @property
    def entries(self) -> set[tuple[str, str]]:
        return set(self.identifiers.items()) | {("m." + k, v) for k, v in self.metadata.items()}

    def key(self, raw: Raw) -> tuple[object, ...]:
        return (
            self.kind,
            tuple(sorted(self.identifiers.items())),
            tuple(sorted(self.metadata.items())),
            self.ids,
            self.linked,
            raw.occurred_at,
        )


def asked(raw: Raw) -> Asked:
    kind = raw.record_name.rsplit(".", 1)[-1]
    if kind == "MemoriesDeleted":
        ids = [c for i in raw.body["memory_ids"] if (c := _clean(i)) is not None]
        linked = bool(raw.body.get("include_linked", False))
        return Asked(kind, {}, {}, tuple(dict.fromkeys(ids)), linked)
    identifiers = {k: c for k in ENTITY_KEYS if (c := _clean(raw.body.get(k))) is not None}
    metadata = {
        k: c
        for k, v in raw.body.get("metadata", {}).items()
        if k.strip() and (c := _clean(v)) is not None
    }
    return Asked(kind, identifiers, metadata, ())


def expected_refusal(request: Asked, caps: Capabilities) -> str | None:
    if request.kind == "MemoriesDeleted":
        ids = request.ids
        if not ids or any("*" in i for i in ids):
            return "invalid_scope"
        allowed = IS_UUID if caps.uuid_ids else IS_PLAIN_SEGMENT
        return None if set(ids) <= allowed else "invalid_scope"
    needed = {"UserDeleted": "user_id", "SessionExpired": "run_id"}.get(request.kind)
    if not request.identifiers or (needed and needed not in request.identifiers):
        return "invalid_scope"
    if any("*" in v for v in [*request.identifiers.values(), *request.metadata.values()]):
        return "invalid_scope"
    if not caps.app_id_and_metadata and (request.metadata or "app_id" in request.identifiers):
        return "unsupported_scope"
    return None


def matches(
    memory: Mapping[str, Any], identifiers: Mapping[str, str], meta: Mapping[str, str]
) -> bool:
    return all(memory.get(k) == v for k, v in identifiers.items()) and all(
        memory["metadata"].get(k) == v for k, v in meta.items()
    )


def apply(
    operations: Sequence[Operation], store: list[dict[str, Any]]
) -> tuple[set[str], set[str]]:
    """The store ids the operations delete, and the explicit ids they send."""
    deleted: set[str] = set()
    sent: set[str] = set()
    for op in operations:
        if isinstance(op, DeleteEntity):
            continue  # an entity record, not a memory (checked apart)
        if isinstance(op, DeleteIds):
            sent.update(op.ids)
            deleted.update(m["id"] for m in store if m["id"] in op.ids)
        else:
            identifiers = dict(op.scope.entities)
            meta = dict(op.scope.metadata)
            deleted.update(m["id"] for m in store if matches(m, identifiers, meta))
    return deleted, sent


@given(raw_events(), STORE, CAPS)
@settings(max_examples=300, deadline=None)
def test_a_plan_deletes_exactly_what_the_valid_events_ask(
    raws: list[Raw], store: list[dict[str, Any]], caps: Capabilities
) -> None:
    events = [event_from_record(raw.record()) for raw in raws]
    requests = [asked(raw) for raw in raws]
    result = plan(events, caps)

    # Duplicates: same id as the first event of that id, and the same request.
    first: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for ref, raw in enumerate(raws):
        earlier = first.setdefault(raw.event_id, ref)
        if earlier != ref and requests[earlier].key(raws[earlier]) == requests[ref].key(raw):
            duplicates[ref] = earlier
    assert result.duplicates == duplicates

    refusals = {
        ref: reason
        for ref, request in enumerate(requests)
        if ref not in duplicates and (reason := expected_refusal(request, caps)) is not None
    }
    assert {ref: r.reason for ref, r in result.rejected.items()} == refusals
    carried = [ref for ref in range(len(raws)) if ref not in duplicates and ref not in refusals]

    # (a) exactly the union of what the carried-out events asked for
    wanted: set[str] = set()
    wanted_ids: set[str] = set()
    for ref in carried:
        request = requests[ref]
        wanted_ids.update(request.ids)
        wanted.update(m["id"] for m in store if m["id"] in request.ids)
        if request.kind != "MemoriesDeleted":
            wanted.update(
                m["id"] for m in store if matches(m, request.identifiers, request.metadata)
            )
    deleted, sent = apply(result.operations, store)
    assert deleted == wanted
    assert sent == wanted_ids

    # (d) every event is served, refused or a duplicate: exactly one of them
    by_ref = served(result)
    for ref in range(len(raws)):
        categories = [ref in by_ref, ref in result.rejected, ref in result.duplicates]
        assert categories.count(True) == 1, (ref, categories)
    assert by_ref == set(carried)

    # (h) an entity deletion for each user a carried-out UserDeleted names, serving exactly
    # those events, where the backend keeps entities; never otherwise
    entity_ops = [op for op in result.operations if isinstance(op, DeleteEntity)]
    users: dict[str, list[int]] = {}
    for ref in carried:
        if requests[ref].kind == "UserDeleted":
            users.setdefault(requests[ref].identifiers["user_id"], []).append(ref)
    expected_entities = (
        {(user_id, tuple(refs)) for user_id, refs in users.items()} if caps.user_entities else set()
    )
    assert {(op.entity_id, op.refs) for op in entity_ops} == expected_entities
    assert len(entity_ops) == len(expected_entities)

    scope_ops = [op for op in result.operations if isinstance(op, DeleteAll | ResolveScope)]
    batches = [op for op in result.operations if isinstance(op, DeleteIds)]
    for op in scope_ops:
        # (b) never a filter without an identifier; the Platform gets one identifier per
        # delete_all, OSS never metadata or app_id
        assert op.scope.entities
        if isinstance(op, DeleteAll) and not caps.and_delete_all:
            assert len(op.scope.entities) == 1
            assert not op.scope.metadata
        if isinstance(op, ResolveScope):
            assert caps.app_id_and_metadata  # only the Platform resolves
            assert op.scope.size > 1
        if not caps.app_id_and_metadata:
            assert not op.scope.metadata
            assert "app_id" not in op.scope.as_dict()
        # (e) covering never widens: the op's entries are within every served request's
        assert op.refs and list(op.refs) == sorted(set(op.refs))
        own = {("m." + k, v) for k, v in op.scope.metadata} | set(op.scope.entities)
        for ref in op.refs:
            assert requests[ref].kind != "MemoriesDeleted"
            assert own <= requests[ref].entries
            scope = events[ref].scope
            assert scope is not None
            assert op.scope == scope or op.scope.covers(scope)
        # The op's scope is one an event asked for, not a new one.
        assert any(events[ref].scope == op.scope for ref in op.refs)
    # Coalescing is complete: no kept scope covers another.
    for one in scope_ops:
        assert not any(one is not other and one.scope.covers(other.scope) for other in scope_ops)

    # (c) batches are never empty nor over the limit; (g) every id in exactly one batch,
    # owned by exactly the events that listed it
    sent_list = [memory_id for batch in batches for memory_id in batch.ids]
    assert len(sent_list) == len(set(sent_list))
    for batch in batches:
        assert 1 <= len(batch.ids) <= caps.max_batch
        assert len(batch.owners) == len(batch.ids)
        for memory_id, owners in zip(batch.ids, batch.owners, strict=True):
            assert owners == tuple(ref for ref in carried if memory_id in requests[ref].ids)
            # (i) an id goes with its history exactly when a carried-out event asked so
            assert batch.linked == any(
                requests[ref].linked for ref in carried if memory_id in requests[ref].ids
            )

    # (f) deterministic
    assert plan(list(events), caps) == result
    assert plan([event_from_record(raw.record()) for raw in raws], caps) == result


@given(raw_events(), STORE)
@settings(max_examples=150, deadline=None)
def test_event_order_changes_refs_but_not_what_is_deleted(
    raws: list[Raw], store: list[dict[str, Any]]
) -> None:
    events = [event_from_record(raw.record()) for raw in raws]
    forward = plan(events, PLATFORM)
    backward = plan(events[::-1], PLATFORM)
    # Which copy counts as the first differs, but the union of requests does not.
    assert apply(forward.operations, store) == apply(backward.operations, store)
