"""The benchmark workloads (deterministic for a seed), as events and as the memories they hit.

- erasure burst: user deletions, 20% of them re-deliveries of an earlier event;
- session sweep: expired sessions, 5% of them with the user id too (a compound scope);
- id clean-up: explicit memory ids, 1 to 10 per event.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from consumer.core.events import DeletionEvent, EventType, Scope

__all__ = ["WORKLOADS", "burst", "id_cleanup", "session_sweep"]


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _event(rng: random.Random, kind: EventType, **fields: object) -> DeletionEvent:
    ids = tuple(fields.pop("memory_ids", ()))  # type: ignore[call-overload]
    return DeletionEvent(
        event_id=_id(rng),
        occurred_at_ms=1_763_000_000_000,
        type=kind,
        scope=None if kind is EventType.MEMORIES_DELETED else Scope.of(**fields),  # type: ignore[arg-type]
        memory_ids=ids,
        source="bench",
        reason="GDPR",
    )


def burst(n: int, rng: random.Random, users: int | None = None) -> list[DeletionEvent]:
    users = users or n
    events: list[DeletionEvent] = []
    for _ in range(n):
        if events and rng.random() < 0.2:
            events.append(rng.choice(events))  # a re-delivery: same event id, same request
        else:
            events.append(
                _event(rng, EventType.USER_DELETED, user_id=f"user-{rng.randrange(users)}")
            )
    return events


def session_sweep(n: int, rng: random.Random, users: int | None = None) -> list[DeletionEvent]:
    users = users or n
    events = []
    for i in range(n):
        extra = {"user_id": f"user-{rng.randrange(users)}"} if rng.random() < 0.05 else {}
        events.append(_event(rng, EventType.SESSION_EXPIRED, run_id=f"run-{i}", **extra))
    return events


def id_cleanup(n: int, rng: random.Random, ids: list[str] | None = None) -> list[DeletionEvent]:
    """`ids`: the memory ids to draw from (default: fresh ones)."""
    events = []
    for _ in range(n):
        k = rng.randint(1, 10)
        chosen = rng.sample(ids, k) if ids else [_id(rng) for _ in range(k)]
        events.append(_event(rng, EventType.MEMORIES_DELETED, memory_ids=chosen))
    return events


WORKLOADS: dict[str, Callable[[int, random.Random], list[DeletionEvent]]] = {
    "erasure burst": burst,
    "session sweep": session_sweep,
    "id clean-up": id_cleanup,
}
