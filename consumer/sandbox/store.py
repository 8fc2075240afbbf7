"""The sandbox's memories and delete jobs: pure logic, no sockets, no clock, no lock.

Memories live in a dict in insertion order, with one index per entity key (value -> ids in
insertion order), so deleting or listing one user's memories never scans the whole store.
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
from consumer.sandbox.records import ENTITY_KEYS, Memory, iso

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
    """One background delete_all. It applies once, at `due`, unless it is doomed to fail."""

    __slots__ = (
        "created_at",
        "delay",
        "deleted",
        "due",
        "error",
        "fail",
        "finished_at",
        "id",
        "leave_behind_rate",
        "selector",
        "status",
    )

    def __init__(
        self,
        job_id: str,
        selector: Selector,
        now: float,
        *,
        delay: float,
        fail: bool,
        leave_behind_rate: float,
    ) -> None:
        self.id = job_id
        self.selector = selector
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
    """Memories, their entity indexes and the delete jobs."""

    def __init__(self, rng: random.Random, id_rng: random.Random) -> None:
        self._rng = rng
        self._id_rng = id_rng
        self._memories: dict[str, Memory] = {}
        self._index: dict[str, dict[str, dict[str, None]]] = {key: {} for key in ENTITY_KEYS}
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
        for memory in built:
            self._memories[memory.id] = memory
            for key in ENTITY_KEYS:
                value = memory.entity(key)
                if value is not None:
                    self._index[key].setdefault(value, {})[memory.id] = None
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
        return True

    def delete_many(self, memory_ids: Iterable[str]) -> int:
        # Only the ids that exist need the index work; finding them is one C-level set
        # intersection (a batch of ids already gone was a tenth of the sandbox's time).
        present = self._memories.keys() & set(memory_ids)
        return sum(self.delete(memory_id) for memory_id in present)

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

    def query(self, node: Node, show_expired: bool, now: float) -> list[Memory]:
        """The memories a v3 filters tree matches, in insertion order."""
        candidates = node.candidates(self)
        pool: Iterable[Memory]
        if candidates is None:
            pool = self._memories.values()
        else:
            pool = sorted((self._memories[i] for i in candidates), key=_by_seq)
        return [
            memory
            for memory in pool
            if node.matches(memory) and (show_expired or not memory.expired(now))
        ]

    # jobs

    def start_job(
        self,
        selector: Selector,
        now: float,
        *,
        delay: float = 0.0,
        fail: bool = False,
        leave_behind_rate: float = 0.0,
    ) -> Job:
        """A delete_all job; with no delay it applies at once."""
        job = Job(
            self.new_id(),
            selector,
            now,
            delay=delay,
            fail=fail,
            leave_behind_rate=leave_behind_rate,
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
        doomed = self.select(job.selector)
        if job.leave_behind_rate > 0:
            doomed = [m for m in doomed if self._rng.random() >= job.leave_behind_rate]
        job.deleted = self.delete_many(m.id for m in doomed)
        job.status = "SUCCEEDED"

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
        self._jobs.clear()
        self._due.clear()


def _by_seq(memory: Memory) -> int:
    return memory.seq


def _intersection(sets: list[Collection[str]]) -> set[str]:
    ordered = sorted(sets, key=len)
    result = set(ordered[0])
    for other in ordered[1:]:
        result.intersection_update(other)
    return result
