"""PURE: the events of one flush -> the fewest Mem0 operations that delete exactly what they ask.

The planner never widens a scope: it drops a request only when another request of the same flush
already covers it, merges memory ids into batches, and refuses (with a reason) anything that
could delete more than the event named. It does no I/O and reads no clock, so property tests
can prove it.

Events are referred to by their position in the flush (a `Ref`); each operation carries the refs
it serves, so an event is finished when all of its operations are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

from consumer.events import DeletionEvent, EventType, Scope

__all__ = [
    "OSS",
    "PLATFORM",
    "Capabilities",
    "DeleteAll",
    "DeleteIds",
    "Operation",
    "Plan",
    "Ref",
    "Rejection",
    "ResolveScope",
    "plan",
    "validate",
]

Ref = int

_IDS = EventType.MEMORIES_DELETED

# Mem0 memory ids are UUIDs; the Platform answers 400 for anything else.
# Only the canonical 8-4-4-4-12 form is accepted, so what we send is what the API documents.
_UUID = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
# Where ids are not checked as UUIDs, an id still goes into a URL path (`/memories/{id}`): only
# RFC 3986 unreserved characters, and not a dot segment, so that an id such as
# `../memories?user_id=alice` cannot turn into a delete_all of someone's memories.
_PATH_SEGMENT = r"[A-Za-z0-9._~-]+"
_DOT_SEGMENTS = frozenset({".", ".."})
# Space-separated lists of either, matched in one call (see `_validate_ids`).
_UUIDS = re.compile(rf"\A{_UUID}(?: {_UUID})*\Z")
_PATH_SEGMENTS = re.compile(rf"\A{_PATH_SEGMENT}(?: {_PATH_SEGMENT})*\Z")
# The identifier a payload type is about: without it the event would name a wider scope than
# its type says (a SessionExpired with a blank run_id would otherwise delete the whole user).
_REQUIRED_KEY = {EventType.USER_DELETED: "user_id", EventType.SESSION_EXPIRED: "run_id"}

# Covering is found by looking up every subset of a scope's entries; past this many entries the
# lookup would explode, and skipping it only costs a redundant (still exact) call.
_MAX_COVER_ENTRIES = 8


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a Mem0 backend can do, as far as planning is concerned."""

    max_batch: int = 1000
    # The self-hosted server ANDs several identifiers in one delete_all; the Platform's docs warn
    # that it may not, so there a compound scope is resolved to ids instead.
    and_delete_all: bool = False
    # The self-hosted server filters by user, agent and run only.
    app_id_and_metadata: bool = True
    uuid_ids: bool = True
    # Without a batch endpoint, explicit ids fan out to single deletes.
    batch_endpoint: bool = True


PLATFORM = Capabilities()
OSS = Capabilities(
    and_delete_all=True, app_id_and_metadata=False, uuid_ids=False, batch_endpoint=False
)


# Operations are built by the thousand per flush; plain slotted classes build several times
# faster than frozen ones. Treat them as immutable all the same.


@dataclass(slots=True)
class DeleteAll:
    """One filter delete: a single identifier on the Platform, ANDed identifiers on OSS."""

    scope: Scope
    refs: tuple[Ref, ...]


@dataclass(slots=True)
class ResolveScope:
    """A compound scope: list the ids with an AND filter, batch-delete them, until none is left."""

    scope: Scope
    refs: tuple[Ref, ...]


@dataclass(slots=True)
class DeleteIds:
    """Explicit ids, at most `max_batch`; `first[i]` is the first event that asked for `ids[i]`,
    and `shared` holds every asker of the (rare) ids that several events asked for."""

    ids: tuple[str, ...]
    first: tuple[Ref, ...]
    shared: dict[str, tuple[Ref, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, ids: Sequence[str], owners: Sequence[Sequence[Ref]]) -> DeleteIds:
        """Built from every id's askers (the form tests and callers find easiest)."""
        return cls(
            tuple(ids),
            tuple(refs[0] for refs in owners),
            {i: tuple(refs) for i, refs in zip(ids, owners, strict=True) if len(refs) > 1},
        )

    @property
    def owners(self) -> tuple[tuple[Ref, ...], ...]:
        """The events that asked for each id, in `ids` order."""
        shared = self.shared
        return tuple(
            shared.get(memory_id) or (ref,)
            for memory_id, ref in zip(self.ids, self.first, strict=True)
        )

    @property
    def refs(self) -> tuple[Ref, ...]:
        every = set(self.first)
        for refs in self.shared.values():
            every.update(refs)
        return tuple(sorted(every))


Operation = DeleteAll | ResolveScope | DeleteIds


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that gets no call: it goes to the dead-letter topic with this reason."""

    reason: str  # invalid_scope or unsupported_scope
    message: str


@dataclass(slots=True)
class Plan:
    operations: list[Operation] = field(default_factory=list)
    rejected: dict[Ref, Rejection] = field(default_factory=dict)
    # A re-delivered event (same id, same request) -> the earlier event it repeats.
    duplicates: dict[Ref, Ref] = field(default_factory=dict)


def validate(event: DeletionEvent, caps: Capabilities) -> Rejection | None:
    """Why an event must not be carried out, or None when it is safe."""
    if event.type is _IDS:
        return _validate_ids(event.memory_ids, caps)
    scope = event.scope
    if scope is None or not scope.entities:
        return Rejection("invalid_scope", "the filter has no identifier")
    entities = scope.entities
    required = _REQUIRED_KEY.get(event.type)
    # The common case, one identifier and no metadata, checked without building anything.
    if len(entities) == 1 and not scope.metadata:
        key, value = entities[0]
        if required is not None and key != required:
            return Rejection("invalid_scope", f"the filter has no {required}")
        if "*" in value:
            return Rejection("invalid_scope", "an identifier contains the wildcard '*'")
        if key == "app_id" and not caps.app_id_and_metadata:
            return Rejection("unsupported_scope", "the backend cannot filter by app_id")
        return None
    if required is not None and required not in scope.as_dict():
        return Rejection("invalid_scope", f"the filter has no {required}")
    if any("*" in value for value in scope.values()) or any("*" in k for k, _ in scope.metadata):
        return Rejection("invalid_scope", "an identifier contains the wildcard '*'")
    if not caps.app_id_and_metadata:
        if scope.metadata:
            return Rejection("unsupported_scope", "the backend cannot filter by metadata")
        if any(key == "app_id" for key, _ in entities):
            return Rejection("unsupported_scope", "the backend cannot filter by app_id")
    return None


def _validate_ids(memory_ids: tuple[str, ...], caps: Capabilities) -> Rejection | None:
    if not memory_ids:
        return Rejection("invalid_scope", "no memory id")
    # Fast path: one regex over all ids joined by a space, which neither pattern admits (the
    # count check catches an id that itself contains one).
    joined = " ".join(memory_ids)
    pattern = _UUIDS if caps.uuid_ids else _PATH_SEGMENTS
    if (
        joined.count(" ") == len(memory_ids) - 1
        and pattern.match(joined)
        and (caps.uuid_ids or _DOT_SEGMENTS.isdisjoint(memory_ids))
    ):
        return None
    # Slow path, only for events that fail: say which rule they broke.
    if any("*" in memory_id for memory_id in memory_ids):
        return Rejection("invalid_scope", "a memory id contains the wildcard '*'")
    if caps.uuid_ids:
        return Rejection("invalid_scope", "a memory id is not a UUID")
    return Rejection("invalid_scope", "a memory id is not a plain path segment")


def plan(events: Sequence[DeletionEvent], caps: Capabilities) -> Plan:
    """The operations for one flush; deterministic for the same input."""
    result = Plan()
    first_by_id: dict[str, Ref] = {}
    scopes: dict[Scope, list[Ref]] = {}
    first_asker: dict[str, Ref] = {}
    askers: dict[str, list[Ref]] = {}  # only ids that more than one event asked for

    for ref, event in enumerate(events):
        earlier = first_by_id.setdefault(event.event_id, ref)
        # Same id and same request: a re-delivery. Same id with another request is not trusted
        # as a duplicate; both are carried out, since deleting twice is harmless.
        if earlier != ref and events[earlier] == event:
            result.duplicates[ref] = earlier
            continue
        rejection = validate(event, caps)
        if rejection is not None:
            result.rejected[ref] = rejection
        elif event.scope is not None:
            scopes.setdefault(event.scope, []).append(ref)
        else:
            for memory_id in event.memory_ids:
                first = first_asker.setdefault(memory_id, ref)
                if first != ref:
                    askers.setdefault(memory_id, [first]).append(ref)

    result.operations.extend(_scope_operations(scopes, caps))
    result.operations.extend(_id_batches(first_asker, askers, caps.max_batch))
    return result


def _scope_operations(scopes: dict[Scope, list[Ref]], caps: Capabilities) -> list[Operation]:
    """One operation per scope that no broader scope of the flush covers."""
    singles: list[DeleteAll] = []
    compound: list[Scope] = []
    # A single-identifier scope has no broader scope: it is an operation of its own, and the
    # cover search below is only for compound ones (a few per flush at most, usually).
    for scope, refs in scopes.items():
        if len(scope.entities) == 1 and not scope.metadata:
            singles.append(DeleteAll(scope, tuple(refs)))
        else:
            compound.append(scope)
    if not compound:
        return list(singles)

    # Kept scopes by their entries: the singles by their one (key, value), the compound ones
    # by the frozenset of their entries.
    single_at = {op.scope.entities[0]: i for i, op in enumerate(singles)}
    kept: dict[frozenset[tuple[str, str]], tuple[Scope, list[Ref]]] = {}
    grown: dict[int, list[Ref]] = {}  # singles that absorbed covered scopes
    merged: set[Scope] = set()
    # Smallest first: a kept scope is then never covered by one kept later, and each dropped
    # scope joins the first (smallest) kept scope that covers it.
    for scope in sorted(compound, key=lambda s: (s.size, s.entities, s.metadata)):
        entries = scope.entries()
        single = next((single_at[e] for e in sorted(entries) if e in single_at), None)
        if single is not None:
            grown.setdefault(single, list(singles[single].refs)).extend(scopes[scope])
            continue
        cover = _covering(entries, kept) if len(entries) <= _MAX_COVER_ENTRIES else None
        if cover is None:
            kept[entries] = (scope, scopes[scope])
        else:
            owner, refs = kept[cover]
            if owner not in merged:
                refs = list(refs)  # never extend the caller's list
                kept[cover] = (owner, refs)
                merged.add(owner)
            refs.extend(scopes[scope])

    for index, refs in grown.items():
        singles[index] = DeleteAll(singles[index].scope, tuple(sorted(refs)))
    operations: list[Operation] = list(singles)
    for scope, refs in kept.values():
        ordered = tuple(sorted(refs)) if scope in merged else tuple(refs)
        if caps.and_delete_all and not scope.metadata:
            operations.append(DeleteAll(scope, ordered))
        else:
            operations.append(ResolveScope(scope, ordered))
    return operations


def _covering(
    entries: frozenset[tuple[str, str]],
    kept: dict[frozenset[tuple[str, str]], tuple[Scope, list[Ref]]],
) -> frozenset[tuple[str, str]] | None:
    """The smallest kept compound scope whose entries are a proper subset of these, if any."""
    items = sorted(entries)
    for size in range(2, len(items)):
        for subset in combinations(items, size):
            candidate = frozenset(subset)
            if candidate in kept:
                return candidate
    return None


def _id_batches(
    first_asker: dict[str, Ref], askers: dict[str, list[Ref]], max_batch: int
) -> list[Operation]:
    """Every requested id exactly once, in batches of at most `max_batch`, in first-seen order."""
    ids = list(first_asker)
    firsts = list(first_asker.values())
    batches: list[Operation] = []
    for start in range(0, len(ids), max_batch):
        chunk = ids[start : start + max_batch]
        shared = {i: tuple(askers[i]) for i in chunk if i in askers} if askers else {}
        batches.append(DeleteIds(tuple(chunk), tuple(firsts[start : start + max_batch]), shared))
    return batches
