"""PURE: the events of one flush -> the fewest Mem0 operations that delete exactly what they ask.

The planner never widens a scope: it drops a request only when another request of the same flush
already covers it, merges memory ids into batches, and refuses (with a reason) anything that
could delete more than the event named. It does no I/O and reads no clock, so property tests
can prove it.

Events are referred to by their position in the flush (a `Ref`); each operation carries the refs
it serves, so an event is finished when all of its operations are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, combinations, repeat

from consumer.events import DeletionEvent, EventType, Scope
from consumer.memory_ids import all_path_segments, all_uuids

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
_ScopeKey = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]

_IDS = EventType.MEMORIES_DELETED

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
    if required is not None and required not in dict(entities):
        return Rejection("invalid_scope", f"the filter has no {required}")
    # Keys and values joined, one C-level search (entity keys never hold a '*').
    if "*" in "".join(chain.from_iterable(entities)) or (
        scope.metadata and "*" in "".join(chain.from_iterable(scope.metadata))
    ):
        return Rejection("invalid_scope", "an identifier contains the wildcard '*'")
    if not caps.app_id_and_metadata:
        if scope.metadata:
            return Rejection("unsupported_scope", "the backend cannot filter by metadata")
        if any(key == "app_id" for key, _ in entities):
            return Rejection("unsupported_scope", "the backend cannot filter by app_id")
    return None


def _validate_ids(memory_ids: Sequence[str], caps: Capabilities) -> Rejection | None:
    if not memory_ids:
        return Rejection("invalid_scope", "no memory id")
    if _ids_valid(memory_ids, caps):
        return None
    # Only for events that fail: say which rule they broke.
    if any("*" in memory_id for memory_id in memory_ids):
        return Rejection("invalid_scope", "a memory id contains the wildcard '*'")
    if caps.uuid_ids:
        return Rejection("invalid_scope", "a memory id is not a UUID")
    return Rejection("invalid_scope", "a memory id is not a plain path segment")


def _ids_valid(memory_ids: Sequence[str], caps: Capabilities) -> bool:
    return all_uuids(memory_ids) if caps.uuid_ids else all_path_segments(memory_ids)


def plan(events: Sequence[DeletionEvent], caps: Capabilities) -> Plan:
    """The operations for one flush; deterministic for the same input."""
    result = Plan()
    first_by_id: dict[str, Ref] = {}
    # Single-identifier scopes (nearly all of them) by their one (key, value): a tuple hashes in
    # C, where a Scope would call its dataclass __hash__ for every event.
    singles: dict[tuple[str, str], tuple[Scope, list[Ref]]] = {}
    # The others by their entries (tuples hash in C), with the scope.
    compound: dict[_ScopeKey, tuple[Scope, list[Ref]]] = {}
    # The id requests, in two parallel lists: checked and merged together, below.
    id_refs: list[Ref] = []
    id_lists: list[tuple[str, ...]] = []
    app_id_ok = caps.app_id_and_metadata

    for ref, event in enumerate(events):
        earlier = first_by_id.setdefault(event.event_id, ref)
        # Same id and same request: a re-delivery. Same id with another request is not trusted
        # as a duplicate; both are carried out, since deleting twice is harmless.
        if earlier != ref and events[earlier] == event:
            result.duplicates[ref] = earlier
            continue
        kind = event.type
        if kind is _IDS and event.memory_ids:
            id_refs.append(ref)
            id_lists.append(event.memory_ids)
            continue
        scope = event.scope
        if scope is not None and not scope.metadata and len(scope.entities) == 1:
            # `validate`'s rules for one identifier, inline; anything else takes the long way.
            entry = scope.entities[0]
            key, value = entry
            required = _REQUIRED_KEY.get(kind)
            if (
                (required is None or key == required)
                and "*" not in value
                and (app_id_ok or key != "app_id")
            ):
                known = singles.get(entry)
                if known is None:
                    singles[entry] = (scope, [ref])
                else:
                    known[1].append(ref)
                continue
        rejection = validate(event, caps)
        if rejection is not None:
            result.rejected[ref] = rejection
        elif scope is not None:
            scope_key = (scope.entities, scope.metadata)
            known = compound.get(scope_key)
            if known is None:
                compound[scope_key] = (scope, [ref])
            else:
                known[1].append(ref)

    if singles or compound:
        result.operations.extend(_scope_operations(singles, compound, caps))
    if id_refs:
        result.operations.extend(_id_operations(id_refs, id_lists, caps, result.rejected))
    return result


def _id_operations(
    refs: list[Ref],
    lists: list[tuple[str, ...]],
    caps: Capabilities,
    rejected: dict[Ref, Rejection],
) -> list[Operation]:
    """The batches for the id requests, checked together (one pass over all ids)."""
    ids = list(chain.from_iterable(lists))
    if not _ids_valid(ids, caps):
        # Some event is bad: find it (them) and go on without.
        verdicts = [_validate_ids(memory_ids, caps) for memory_ids in lists]
        for ref, rejection in zip(refs, verdicts, strict=True):
            if rejection is not None:
                rejected[ref] = rejection
        refs = [r for r, bad in zip(refs, verdicts, strict=True) if bad is None]
        lists = [i for i, bad in zip(lists, verdicts, strict=True) if bad is None]
        ids = list(chain.from_iterable(lists))
    return _id_batches(ids, refs, lists, caps.max_batch)


def _scope_operations(
    singles: dict[tuple[str, str], tuple[Scope, list[Ref]]],
    compound: dict[_ScopeKey, tuple[Scope, list[Ref]]],
    caps: Capabilities,
) -> list[Operation]:
    """One operation per scope that no broader scope of the flush covers.

    A single-identifier scope has no broader scope: it is an operation of its own, and the cover
    search is only for compound ones (a few per flush at most, usually). `singles`' lists may
    grow here: they are the planner's own.
    """
    if not compound:
        return [DeleteAll(scope, tuple(refs)) for scope, refs in singles.values()]

    # Kept compound scopes by the frozenset of their entries.
    kept: dict[frozenset[tuple[str, str]], tuple[Scope, list[Ref]]] = {}
    grown: set[tuple[str, str]] = set()  # singles that absorbed covered scopes
    merged: set[Scope] = set()
    # Smallest first: a kept scope is then never covered by one kept later, and each dropped
    # scope joins the first (smallest) kept scope that covers it.
    for key in sorted(compound, key=_smallest_first):
        scope, scope_refs = compound[key]
        # A single-identifier scope of the flush covers it: join that one (the first such
        # identifier in ENTITY_KEYS order, so the plan stays deterministic).
        single = next((e for e in scope.entities if e in singles), None)
        if single is not None:
            singles[single][1].extend(scope_refs)
            grown.add(single)
            continue
        entries = scope.entries()
        # Only a kept scope with fewer entries (and at least two) can cover this one.
        cover = _covering(entries, kept) if 2 < len(entries) <= _MAX_COVER_ENTRIES else None
        if cover is None:
            kept[entries] = (scope, scope_refs)
        else:
            owner, refs = kept[cover]
            if owner not in merged:
                refs = list(refs)  # never extend a list another scope still names
                kept[cover] = (owner, refs)
                merged.add(owner)
            refs.extend(scope_refs)

    operations: list[Operation] = (
        [
            DeleteAll(scope, tuple(sorted(refs)) if entry in grown else tuple(refs))
            for entry, (scope, refs) in singles.items()
        ]
        if grown
        else [DeleteAll(scope, tuple(refs)) for scope, refs in singles.values()]
    )
    for scope, refs in kept.values():
        ordered = tuple(sorted(refs)) if scope in merged else tuple(refs)
        if caps.and_delete_all and not scope.metadata:
            operations.append(DeleteAll(scope, ordered))
        else:
            operations.append(ResolveScope(scope, ordered))
    return operations


def _smallest_first(key: _ScopeKey) -> int:
    # Sizes only: the sort is stable, so equal sizes keep the flush's order (deterministic).
    return len(key[0]) + len(key[1])


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
    ids: list[str], refs: list[Ref], lists: list[tuple[str, ...]], max_batch: int
) -> list[Operation]:
    """Every requested id exactly once, in batches of at most `max_batch`, in first-seen order.

    `lists[i]` are the ids event `refs[i]` asked for; `ids` is all of them in order. Usually no
    id is asked twice in a flush, and everything is done by C loops (`map`, `chain`, `set`);
    the Python loop is only for flushes where some id repeats.
    """
    askers: dict[str, list[Ref]] = {}  # only ids that more than one event asked for
    firsts = list(chain.from_iterable(map(repeat, refs, map(len, lists))))
    if len(set(ids)) < len(ids):
        first_asker: dict[str, Ref] = {}
        for ref, memory_ids in zip(refs, lists, strict=True):
            for memory_id in memory_ids:
                first = first_asker.setdefault(memory_id, ref)
                if first != ref:
                    askers.setdefault(memory_id, [first]).append(ref)
        ids, firsts = list(first_asker), list(first_asker.values())
    batches: list[Operation] = []
    for start in range(0, len(ids), max_batch):
        chunk = ids[start : start + max_batch]
        shared = {i: tuple(askers[i]) for i in chunk if i in askers} if askers else {}
        batches.append(DeleteIds(tuple(chunk), tuple(firsts[start : start + max_batch]), shared))
    return batches
