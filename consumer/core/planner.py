"""The events of one flush -> the fewest Mem0 operations that delete exactly what they ask.

The planner never widens a scope: it drops a request only when another request of the same flush
already covers it, merges memory ids into batches, and refuses (with a reason) anything that
could delete more than the event named. It does no I/O and reads no clock, so property tests
can prove it.

Operations: `DeleteAll` (one filter delete), `ResolveScope` (a compound scope, listed and
deleted by id), `DeleteIds` (explicit ids in batches, or one call each with their history when
`linked`), and `DeleteEntity` (an erased user's Platform entity record, beside its DeleteAll).

Events are referred to by their position in the flush (a `Ref`); each operation carries the refs
it serves, so an event is finished when all of its operations are. Which events are refused,
and why, is validation.py's; what a backend can do, capabilities.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, combinations, repeat

from consumer.core.capabilities import Capabilities
from consumer.core.events import DeletionEvent, EventType, Scope
from consumer.core.validation import REQUIRED_KEY, Rejection, explain_ids, ids_valid, validate

__all__ = [
    "DeleteAll",
    "DeleteEntity",
    "DeleteIds",
    "Operation",
    "Plan",
    "Ref",
    "ResolveScope",
    "plan",
]

Ref = int
_ScopeKey = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]

_IDS = EventType.MEMORIES_DELETED
_USER = EventType.USER_DELETED

# Covering is found by looking up every subset of a scope's entries; past this many entries the
# lookup would explode, and skipping it only costs a redundant (still exact) call.
_MAX_COVER_ENTRIES = 8


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
class DeleteEntity:
    """The entity record of an erased user (a Platform job), beside the DeleteAll of the same
    scope: the user's memories and the user's entity are two records of personal data."""

    scope: Scope  # exactly ("user_id", value)
    refs: tuple[Ref, ...]

    @property
    def entity_id(self) -> str:
        return self.scope.entities[0][1]


@dataclass(slots=True)
class DeleteIds:
    """Explicit ids, at most `max_batch`; `first[i]` is the first event that asked for `ids[i]`,
    and `shared` holds every asker of the (rare) ids that several events asked for. `linked`:
    each id goes with the memories it superseded (one call per id)."""

    ids: tuple[str, ...]
    first: tuple[Ref, ...]
    shared: dict[str, tuple[Ref, ...]] = field(default_factory=dict)
    linked: bool = False

    @classmethod
    def of(
        cls, ids: Sequence[str], owners: Sequence[Sequence[Ref]], *, linked: bool = False
    ) -> DeleteIds:
        """Built from every id's askers (the form tests and callers find easiest)."""
        return cls(
            tuple(ids),
            tuple(refs[0] for refs in owners),
            {i: tuple(refs) for i, refs in zip(ids, owners, strict=True) if len(refs) > 1},
            linked,
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


Operation = DeleteAll | ResolveScope | DeleteIds | DeleteEntity


@dataclass(slots=True)
class Plan:
    operations: list[Operation] = field(default_factory=list)
    rejected: dict[Ref, Rejection] = field(default_factory=dict)
    # A re-delivered event (same id, same request) -> the earlier event it repeats.
    duplicates: dict[Ref, Ref] = field(default_factory=dict)


def plan(events: Sequence[DeletionEvent], caps: Capabilities) -> Plan:
    """The operations for one flush; deterministic for the same input."""
    result = Plan()
    first_by_id: dict[str, Ref] = {}
    # Single-identifier scopes (nearly all of them) by their one (key, value): a tuple hashes in
    # C, where a Scope would call its dataclass __hash__ for every event.
    singles: dict[tuple[str, str], tuple[Scope, list[Ref]]] = {}
    # The others by their entries (tuples hash in C), with the scope.
    compound: dict[_ScopeKey, tuple[Scope, list[Ref]]] = {}
    # The id requests: checked and merged together, below; those that want each id's history
    # too (include_linked) apart.
    plain, linked = _IdRequests(), _IdRequests()
    # The users whose entity goes with their memories: user id -> the UserDeleted events.
    entities: dict[str, list[Ref]] = {}
    erase_entities = caps.user_entities
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
            requests = linked if event.include_linked else plain
            requests.refs.append(ref)
            requests.lists.append(event.memory_ids)
            continue
        scope = event.scope
        if scope is not None and not scope.metadata and len(scope.entities) == 1:
            # `validate`'s rules for one identifier, inline; anything else takes the long way.
            entry = scope.entities[0]
            key, value = entry
            required = REQUIRED_KEY.get(kind)
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
                if erase_entities and kind is _USER:
                    entities.setdefault(value, []).append(ref)
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

    # Each user's entity beside its DeleteAll: they run concurrently (the entity job deletes
    # the user's memories too, so neither waits on the other).
    if singles or compound:
        result.operations.extend(_scope_operations(singles, compound, caps))
    if entities:
        result.operations.extend(
            DeleteEntity(singles[("user_id", user_id)][0], tuple(refs))
            for user_id, refs in entities.items()
        )
    if plain.refs or linked.refs:
        result.operations.extend(_id_operations(plain, linked, caps, result.rejected))
    return result


@dataclass(slots=True)
class _IdRequests:
    """Id requests in two parallel lists: `lists[i]` are the ids event `refs[i]` asked for."""

    refs: list[Ref] = field(default_factory=list)
    lists: list[tuple[str, ...]] = field(default_factory=list)

    def keep_valid(self, caps: Capabilities, rejected: dict[Ref, Rejection]) -> None:
        """Check every id in one pass; reject the events that fail, keep the others."""
        if ids_valid(list(chain.from_iterable(self.lists)), caps):
            return
        # Some event is bad: find it (them) and go on without.
        verdicts = [explain_ids(memory_ids, caps) for memory_ids in self.lists]
        for ref, rejection in zip(self.refs, verdicts, strict=True):
            if rejection is not None:
                rejected[ref] = rejection
        self.refs = [r for r, bad in zip(self.refs, verdicts, strict=True) if bad is None]
        self.lists = [i for i, bad in zip(self.lists, verdicts, strict=True) if bad is None]

    def batches(self, max_batch: int, *, linked: bool = False) -> list[Operation]:
        ids = list(chain.from_iterable(self.lists))
        return _id_batches(ids, self.refs, self.lists, max_batch, linked=linked)


def _id_operations(
    plain: _IdRequests,
    linked: _IdRequests,
    caps: Capabilities,
    rejected: dict[Ref, Rejection],
) -> list[Operation]:
    """The batches for the id requests: plain ones, then those that want each id's history."""
    plain.keep_valid(caps, rejected)
    linked.keep_valid(caps, rejected)
    if linked.refs:
        _hand_over_linked(plain, linked)
    operations = plain.batches(caps.max_batch) if plain.refs else []
    if linked.refs:
        operations.extend(linked.batches(caps.max_batch, linked=True))
    return operations


def _hand_over_linked(plain: _IdRequests, linked: _IdRequests) -> None:
    """Plain requests for ids that a linked request of the flush also names: the linked delete
    serves them. Deleted plainly first, an id would take its links with it, and its linked
    delete would then find nothing (404) and leave the memories it superseded behind."""
    wanted = set(chain.from_iterable(linked.lists))
    if all(wanted.isdisjoint(memory_ids) for memory_ids in plain.lists):
        return
    kept = _IdRequests()
    for ref, memory_ids in zip(plain.refs, plain.lists, strict=True):
        if wanted.isdisjoint(memory_ids):
            kept.refs.append(ref)
            kept.lists.append(memory_ids)
            continue
        linked.refs.append(ref)
        linked.lists.append(tuple(i for i in memory_ids if i in wanted))
        rest = tuple(i for i in memory_ids if i not in wanted)
        if rest:
            kept.refs.append(ref)
            kept.lists.append(rest)
    plain.refs, plain.lists = kept.refs, kept.lists
    # Back in flush order, so that each id's askers are listed in it as everywhere else.
    pairs = sorted(zip(linked.refs, linked.lists, strict=True), key=_first)
    linked.refs, linked.lists = [ref for ref, _ in pairs], [ids for _, ids in pairs]


def _first(pair: tuple[Ref, tuple[str, ...]]) -> Ref:
    return pair[0]


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
    ids: list[str],
    refs: list[Ref],
    lists: list[tuple[str, ...]],
    max_batch: int,
    *,
    linked: bool = False,
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
        batches.append(
            DeleteIds(tuple(chunk), tuple(firsts[start : start + max_batch]), shared, linked)
        )
    return batches
