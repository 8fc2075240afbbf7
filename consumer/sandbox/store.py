"""The sandbox's memories, entities and delete jobs: pure logic, no sockets, no clock, no lock.

Memories live in a dict in insertion order, with one index per entity key (value -> ids in
insertion order), so deleting or listing one user's memories never scans the whole store, and
one index of Dream's supersede links (newer id -> the ids it superseded), so a delete with its
linked memories follows the chain instead of scanning.

Entities come into being when a memory names them and stay until an entity delete removes
them: deleting memories, by id or by filter, leaves the entity behind, as on the Platform.
Jobs are delete_all jobs (a Selector) or entity deletes (an entity and its memories).

Callers pass `now` (epoch seconds) and serialise access themselves.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from consumer.sandbox.filters import Node
from consumer.sandbox.records import ENTITY_KEYS, ENTITY_TYPES, Entity, Memory, iso

__all__ = ["Job", "MemoryStore", "Selector"]

# Version 4 and RFC 4122 variant bits, as uuid.UUID(version=4) sets them.
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (4 << 76) | (0x8000 << 48)

JOB_FAILED_ERROR = "Internal error while deleting memories; please retry."


@dataclass(frozen=True, slots=True)
class Selector:
    """The filter of a delete_all: entity filters, ORed when `union`, else ANDed; metadata ANDed.

    A value of "*" means "the key is set".
    """

    entities: tuple[tuple[str, str], ...]
    metadata: tuple[tuple[str, Any], ...] = ()
    union: bool = False

    def matches_metadata(self, memory: Memory) -> bool:
        meta = memory.meta()
        return all(
            (key in meta) if value == "*" else meta.get(key) == value
            for key, value in self.metadata
        )


class Job:
    """One background delete: a delete_all (`selector`) or an entity delete (`entity`, its
    type and name). It applies once, at `due`, unless it is doomed to fail; its status is
    readable from `visible_at` on."""

    __slots__ = (
        "created_at",
        "delay",
        "deleted",
        "due",
        "entity",
        "error",
        "fail",
        "finished_at",
        "id",
        "leave_behind_rate",
        "selector",
        "status",
        "visible_at",
    )

    def __init__(
        self,
        job_id: str,
        selector: Selector | None,
        now: float,
        *,
        delay: float,
        fail: bool,
        leave_behind_rate: float,
        hidden: float = 0.0,
        entity: tuple[str, str] | None = None,
    ) -> None:
        self.id = job_id
        self.selector = selector
        self.entity = entity
        self.visible_at = now + max(0.0, hidden)
        self.created_at = now
        self.delay = max(0.0, delay)
        self.due = now + self.delay
        self.fail = fail
        self.leave_behind_rate = leave_behind_rate
        self.status = "PENDING"
        self.error: str | None = None
        self.finished_at: float | None = None
        self.deleted = 0

    def state(self, now: float) -> tuple[str, float]:
        """The status and when it last changed: PENDING for the first half of the delay."""
        if self.finished_at is not None:
            return self.status, self.finished_at
        half = self.created_at + self.delay / 2
        if now < half:
            return "PENDING", self.created_at
        return "RUNNING", half

    def to_json(self, now: float) -> dict[str, Any]:
        status, changed = self.state(now)
        return {
            "id": self.id,
            "event_type": "DELETE",
            "status": status,
            "error": self.error,
            "created_at": iso(self.created_at),
            "updated_at": iso(changed),
        }


class MemoryStore:
    """Memories, their indexes, the entities and the delete jobs."""

    def __init__(self, rng: random.Random, id_rng: random.Random) -> None:
        self._rng = rng
        self._id_rng = id_rng
        self._memories: dict[str, Memory] = {}
        self._index: dict[str, dict[str, dict[str, None]]] = {key: {} for key in ENTITY_KEYS}
        self._superseded: dict[str, dict[str, None]] = {}  # newer id -> the ids it superseded
        # Entity key ("user_id", ...) -> name -> entity: a memory's fields find theirs directly.
        self._entities: dict[str, dict[str, Entity]] = {key: {} for key in ENTITY_KEYS}
        self._entity_seq = 0
        self._jobs: dict[str, Job] = {}
        self._due: list[tuple[float, int, str]] = []
        self._seq = 0

    def new_id(self) -> str:
        """A random (version 4) UUID from the seeded stream; formatted by hand, as
        `str(uuid.UUID(...))` costs several times more and seeding a million memories adds up."""
        bits = (self._id_rng.getrandbits(128) & _V4_CLEAR) | _V4_SET
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # memories

    def add(self, records: Iterable[Mapping[str, Any]], now: float) -> list[str]:
        """Store seed records (all validated before any is stored); returns their ids."""
        built: list[Memory] = []
        taken: set[str] = set()
        for record in records:
            if not isinstance(record, Mapping):
                raise ValueError("each memory must be an object")
            memory_id = self._id_for(record.get("id"), taken)
            taken.add(memory_id)
            built.append(Memory(memory_id, self._seq + len(built), record, now))
        # Seeding a million memories runs this loop a million times: locals, no dict allocated
        # for a value the index already has, and the entity looked at only for a value new to
        # the index (while a value has memories, its entity exists: only an entity delete
        # removes one, and it removes the memories first).
        memories, superseded = self._memories, self._superseded
        tables = [(key, self._index[key], self._entities[key]) for key in ENTITY_KEYS]
        for memory in built:
            memory_id = memory.id
            memories[memory_id] = memory
            for key, index, entities in tables:
                value = memory.entity(key)
                if value is None:
                    continue
                ids = index.get(value)
                if ids is not None:
                    ids[memory_id] = None
                    continue
                index[value] = {memory_id: None}
                entity = entities.get(value)
                if entity is None:
                    self._new_entity(key, value, now)
                else:
                    entity.updated_at = now
            newer = memory.superseded_by
            if newer is not None:
                superseded.setdefault(newer, {})[memory_id] = None
        self._seq += len(built)
        return [memory.id for memory in built]

    def _id_for(self, given: object, taken: set[str]) -> str:
        if given is None:
            return self.new_id()
        try:
            memory_id = str(uuid.UUID(str(given)))
        except ValueError:
            raise ValueError(f"id is not a UUID: {given!r}") from None
        if memory_id in self._memories or memory_id in taken:
            raise ValueError(f"id already exists: {memory_id}")
        return memory_id

    def get(self, memory_id: str) -> Memory | None:
        return self._memories.get(memory_id)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._memories

    def __len__(self) -> int:
        return len(self._memories)

    def __iter__(self) -> Iterator[Memory]:
        return iter(self._memories.values())

    def delete(self, memory_id: str) -> bool:
        """Delete one memory; its entities stay, and so do the memories it superseded."""
        memory = self._memories.pop(memory_id, None)
        if memory is None:
            return False
        for key in ENTITY_KEYS:
            value = memory.entity(key)
            if value is not None:
                ids = self._index[key][value]
                del ids[memory_id]
                if not ids:
                    del self._index[key][value]
        newer = memory.superseded_by
        if newer is not None:
            older = self._superseded[newer]
            del older[memory_id]
            if not older:
                del self._superseded[newer]
        return True

    def delete_many(self, memory_ids: Iterable[str]) -> int:
        # Only the ids that exist need the index work; finding them is one C-level set
        # intersection (a batch of ids already gone was a tenth of the sandbox's time).
        present = self._memories.keys() & set(memory_ids)
        return sum(self.delete(memory_id) for memory_id in present)

    def linked(self, memory_id: str) -> list[str]:
        """The memories `memory_id` superseded, and those they superseded, and so on."""
        found: dict[str, None] = {}
        frontier = [memory_id]
        while frontier:
            for older in self._superseded.get(frontier.pop(), ()):
                if older != memory_id and older not in found:
                    found[older] = None
                    frontier.append(older)
        return list(found)

    # entities

    def _new_entity(self, key: str, name: str, now: float) -> Entity:
        entity = Entity(_TYPE_OF[key], name, self._entity_seq, now)
        self._entity_seq += 1
        self._entities[key][name] = entity
        return entity

    def add_entities(self, pairs: Iterable[tuple[str, str]], now: float) -> list[Entity]:
        """Make sure these (type, name) entities exist; returns them, old or new."""
        found = []
        for entity_type, name in pairs:
            key = ENTITY_TYPES[entity_type]
            found.append(self._entities[key].get(name) or self._new_entity(key, name, now))
        return found

    def entity(self, entity_type: str, name: str) -> Entity | None:
        return self._entities[ENTITY_TYPES[entity_type]].get(name)

    def entities(self) -> list[Entity]:
        """Every entity, in the order they came into being."""
        every = [e for by_name in self._entities.values() for e in by_name.values()]
        return sorted(every, key=_entity_seq)

    def entity_count(self) -> int:
        return sum(len(by_name) for by_name in self._entities.values())

    def memory_count(self, entity: Entity) -> int:
        return len(self._index[entity.key].get(entity.name, ()))

    # the view the filters need (see filters.Index)

    def ids_of(self, key: str, value: str) -> Collection[str]:
        return self._index[key].get(value, {}).keys()

    def ids_with(self, key: str) -> set[str]:
        found: set[str] = set()
        for ids in self._index[key].values():
            found.update(ids)
        return found

    # selections

    def select(self, selector: Selector) -> list[Memory]:
        """The memories a delete_all selector matches, in insertion order."""
        sets = [
            self.ids_with(key) if value == "*" else self.ids_of(key, value)
            for key, value in selector.entities
        ]
        if not sets:
            found: Iterable[Memory] = self._memories.values()
        elif len(sets) == 1:
            found = [self._memories[i] for i in sets[0]]
        else:
            ids = set().union(*sets) if selector.union else _intersection(sets)
            found = sorted((self._memories[i] for i in ids), key=_by_seq)
        if not selector.metadata:
            return list(found)
        return [memory for memory in found if selector.matches_metadata(memory)]

    def query(
        self,
        node: Node,
        now: float,
        *,
        show_expired: bool = False,
        include_merged: bool = False,
        latest_only: bool = False,
    ) -> list[Memory]:
        """The memories a v3 filters tree matches, in insertion order: without the expired,
        merged or superseded ones unless asked (superseded ones are shown by default)."""
        candidates = node.candidates(self)
        pool: Iterable[Memory]
        if candidates is None:
            pool = self._memories.values()
        else:
            pool = sorted((self._memories[i] for i in candidates), key=_by_seq)
        found = [
            memory
            for memory in pool
            if node.matches(memory)
            and (show_expired or not memory.expired(now))
            and (include_merged or not memory.merged)
        ]
        if latest_only:
            return [memory for memory in found if memory.superseded_by is None]
        return found

    # jobs

    def start_job(
        self,
        selector: Selector | None,
        now: float,
        *,
        delay: float = 0.0,
        fail: bool = False,
        leave_behind_rate: float = 0.0,
        hidden: float = 0.0,
        entity: tuple[str, str] | None = None,
    ) -> Job:
        """A delete_all job (`selector`) or an entity delete (`entity`: type and name); with no
        delay it applies at once. `hidden` seconds pass before its status can be read."""
        job = Job(
            self.new_id(),
            selector,
            now,
            delay=delay,
            fail=fail,
            leave_behind_rate=leave_behind_rate,
            hidden=hidden,
            entity=entity,
        )
        self._jobs[job.id] = job
        if job.delay <= 0:
            self._finish(job)
        else:
            heapq.heappush(self._due, (job.due, len(self._jobs), job.id))
        return job

    def advance(self, now: float) -> None:
        """Apply every job whose time has come."""
        while self._due and self._due[0][0] <= now:
            _, _, job_id = heapq.heappop(self._due)
            job = self._jobs.get(job_id)
            if job is not None and job.finished_at is None:
                self._finish(job)

    def _finish(self, job: Job) -> None:
        job.finished_at = job.due
        if job.fail:
            job.status, job.error = "FAILED", JOB_FAILED_ERROR
            return
        if job.entity is not None:
            job.deleted = self._delete_entity(*job.entity)
        elif job.selector is not None:
            doomed = self.select(job.selector)
            if job.leave_behind_rate > 0:
                doomed = [m for m in doomed if self._rng.random() >= job.leave_behind_rate]
            job.deleted = self.delete_many(m.id for m in doomed)
        job.status = "SUCCEEDED"

    def _delete_entity(self, entity_type: str, name: str) -> int:
        """The entity and every memory naming it (the name is literal: "*" is no wildcard)."""
        key = ENTITY_TYPES[entity_type]
        deleted = self.delete_many(list(self.ids_of(key, name)))
        self._entities[key].pop(name, None)
        return deleted

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs_page(self, offset: int, limit: int) -> tuple[int, list[Job]]:
        """Newest first."""
        return len(self._jobs), list(islice(reversed(self._jobs.values()), offset, offset + limit))

    def job_counts(self, now: float) -> dict[str, int]:
        return dict(Counter(job.state(now)[0] for job in self._jobs.values()))

    def clear(self) -> None:
        self._memories.clear()
        for index in self._index.values():
            index.clear()
        self._superseded.clear()
        for by_name in self._entities.values():
            by_name.clear()
        self._jobs.clear()
        self._due.clear()


_TYPE_OF = {key: entity_type for entity_type, key in ENTITY_TYPES.items()}


def _by_seq(memory: Memory) -> int:
    return memory.seq


def _entity_seq(entity: Entity) -> int:
    return entity.seq


def _intersection(sets: list[Collection[str]]) -> set[str]:
    ordered = sorted(sets, key=len)
    result = set(ordered[0])
    for other in ordered[1:]:
        result.intersection_update(other)
    return result
