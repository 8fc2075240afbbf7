"""Everything one sandbox holds (store, faults, keys, call log), behind one lock.

The server's event loop thread and a test's thread both reach it, so every access goes
through `lock`; the accessors here take it themselves.

Keys: `api_key` is the admin key (the Platform's only key; on the self-hosted routes, a key with
the admin role). `user_api_keys` are self-hosted keys without the admin role. Both can change at
run time (`set_keys`), as an operator may demote a key.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consumer.sandbox.faults import Faults
from consumer.sandbox.http import Request
from consumer.sandbox.records import Entity
from consumer.sandbox.store import MemoryStore

__all__ = ["Call", "SandboxState"]

ORG_ID = "sandbox-org"
PROJECT_ID = "sandbox-project"
USER_EMAIL = "sandbox@example.com"


@dataclass(slots=True)
class Call:
    """What a route handler gets: the request, its parsed body and the time."""

    state: SandboxState
    request: Request
    arg: str  # the path parameter ("" when the route has none)
    body: Any
    body_ok: bool  # False when the body was not valid JSON
    now: float
    admin: bool = True  # False for a self-hosted key without the admin role


class SandboxState:
    """The memories, jobs, faults and call log of one sandbox."""

    def __init__(
        self,
        api_key: str,
        faults: Faults | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        call_log_limit: int | None = None,
        *,
        user_api_keys: Collection[str] = (),
    ) -> None:
        self.lock = threading.Lock()
        self.initial_api_key = api_key
        self.api_key = api_key
        self.initial_user_api_keys = check_user_keys(api_key, user_api_keys)
        self.user_api_keys = self.initial_user_api_keys
        self.clock = clock
        self.initial_faults = (faults or Faults()).copy()
        self.faults = self.initial_faults.copy()
        self.rng = random.Random(seed)
        # Separate streams, so that ids do not shift when fault rolls do.
        self.store = MemoryStore(
            random.Random(None if seed is None else seed + 1),
            random.Random(None if seed is None else seed + 2),
        )
        # Unbounded by default (tests read all of it); a long-running server keeps the last N.
        self.call_log: deque[dict[str, Any]] = deque(maxlen=call_log_limit)
        self._next_seq = 1
        # Every call ever made, by operation, however short the log is kept (for benchmarks).
        self.call_counts: Counter[str] = Counter()

    def log_call(self, entry: dict[str, Any]) -> None:
        """Append one call (under the lock, which the caller holds)."""
        entry["seq"] = self._next_seq
        self._next_seq += 1
        self.call_counts[entry.get("operation") or "other"] += 1
        self.call_log.append(entry)

    # thread-safe accessors

    def add_memories(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        with self.lock:
            now = self.clock()
            # Jobs that are due run first: they must not reach memories added after their time.
            self.store.advance(now)
            return self.store.add(records, now)

    def memories(self) -> list[dict[str, Any]]:
        """Every stored memory (merged and superseded ones too), with Dream's marks."""
        with self.lock:
            self.store.advance(self.clock())
            return [memory.to_admin_json() for memory in self.store]

    def add_entities(self, records: Sequence[object]) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            self.store.advance(now)
            pairs = [Entity.parse(record) for record in records]  # all valid before any is added
            return self._entities_json(self.store.add_entities(pairs, now))

    def entities(self) -> list[dict[str, Any]]:
        with self.lock:
            self.store.advance(self.clock())
            return self._entities_json(self.store.entities())

    def _entities_json(self, entities: list[Entity]) -> list[dict[str, Any]]:
        return [entity.to_json(self.store.memory_count(entity)) for entity in entities]

    def get_user_keys(self) -> list[str]:
        with self.lock:
            return sorted(self.user_api_keys)

    def set_keys(
        self, api_key: str | None = None, user_api_keys: Collection[str] | None = None
    ) -> list[str]:
        """Change the admin key, the user keys, or both (checked together); the user keys."""
        with self.lock:
            admin = self.api_key if api_key is None else api_key
            if not isinstance(admin, str) or not admin:
                raise ValueError("api_key must be a non-empty string")
            users = self.user_api_keys if user_api_keys is None else user_api_keys
            checked = check_user_keys(admin, users)
            self.api_key, self.user_api_keys = admin, checked
            return sorted(checked)

    def calls(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.call_log)

    def clear_calls(self) -> int:
        with self.lock:
            cleared = len(self.call_log)
            self.call_log.clear()
            return cleared

    def get_faults(self) -> Faults:
        with self.lock:
            return self.faults.copy()

    def set_faults(self, **changes: Any) -> Faults:
        with self.lock:
            self.faults.update(**changes)
            return self.faults.copy()

    def reset(self) -> None:
        """Forget memories, entities, jobs and calls; faults and keys return to those the
        sandbox started with."""
        with self.lock:
            self.store.clear()
            self.call_log.clear()
            self.call_counts.clear()
            # In place, so that a reference to the live faults stays valid.
            self.faults.update(**self.initial_faults.to_json())
            self.api_key = self.initial_api_key
            self.user_api_keys = self.initial_user_api_keys

    def stats(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            self.store.advance(now)
            return {
                "memories": len(self.store),
                "entities": self.store.entity_count(),
                "calls": len(self.call_log),
                "calls_total": self._next_seq - 1,
                "calls_by_operation": dict(self.call_counts),
                "jobs": self.store.job_counts(now),
            }


def check_user_keys(api_key: str, keys: Collection[str]) -> frozenset[str]:
    """Validated non-admin keys: non-empty strings, none of them the admin key."""
    if isinstance(keys, str | bytes) or not isinstance(keys, Collection):
        raise ValueError("user_api_keys must be a list of strings")
    if not all(isinstance(key, str) and key for key in keys):
        raise ValueError("user_api_keys must be non-empty strings")
    checked = frozenset(keys)
    if api_key in checked:
        raise ValueError("the admin key cannot also be a user key")
    return checked
