"""The sandbox store's indexes: one user's listing, deletes, linked deletes and entity deletes
reach that user's memories without walking the whole store."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, ValuesView
from typing import Any

import pytest

from consumer.sandbox.filters import parse_filters
from consumer.sandbox.records import Memory
from consumer.sandbox.store import MemoryStore, Selector

NOW = 1_700_000_000.0


class CountingDict(dict[str, Memory]):
    """A dict that counts the walks over it."""

    walks = 0

    def values(self) -> ValuesView[Memory]:
        CountingDict.walks += 1
        return super().values()

    def __iter__(self) -> Iterator[str]:
        CountingDict.walks += 1
        return super().__iter__()

    def items(self) -> Any:
        CountingDict.walks += 1
        return super().items()


@pytest.fixture
def store() -> MemoryStore:
    built = MemoryStore(random.Random(1), random.Random(2))
    built.add(
        [{"user_id": f"crowd-{i % 500}", "agent_id": "crowd"} for i in range(5000)],
        NOW,
    )
    counting = CountingDict(built._memories)
    built._memories = counting
    CountingDict.walks = 0
    return built


def seed_chain(store: MemoryStore) -> tuple[str, list[str]]:
    newest = str(uuid.uuid4())
    middle = str(uuid.uuid4())
    ids = store.add(
        [
            {"id": newest, "user_id": "alice"},
            {"id": middle, "user_id": "alice", "superseded_by": newest, "merged": True},
            {"user_id": "alice", "superseded_by": middle, "expiration_date": "2020-01-01"},
        ],
        NOW,
    )
    return newest, ids[1:]


def test_one_users_reads_and_deletes_do_not_walk_the_store(store: MemoryStore) -> None:
    newest, older = seed_chain(store)
    node = parse_filters({"user_id": "alice"})
    assert [m.id for m in store.query(node, NOW)] == [newest]
    every = store.query(node, NOW, show_expired=True, include_merged=True)
    assert [m.id for m in every] == [newest, *older]
    assert [m.id for m in store.select(Selector((("user_id", "alice"),)))] == [newest, *older]
    assert store.linked(newest) == older
    assert store.delete(newest) and store.delete_many(older) == 2
    assert CountingDict.walks == 0


def test_an_entity_delete_does_not_walk_the_store(store: MemoryStore) -> None:
    seed_chain(store)
    alice = store.entity("user", "alice")
    assert alice is not None and store.memory_count(alice) == 3
    job = store.start_job(None, NOW, entity=("user", "alice"))
    assert (job.status, job.deleted) == ("SUCCEEDED", 3)
    assert store.entity("user", "alice") is None
    assert CountingDict.walks == 0
    assert len(store) == 5000


def test_links_follow_deletes(store: MemoryStore) -> None:
    newest, (middle, oldest) = seed_chain(store)
    assert store.delete(middle)
    assert store.linked(newest) == []  # the chain broke where the middle one was
    assert store.linked(middle) == [oldest]  # the oldest still names it
    assert store.delete(oldest) and store.linked(middle) == []
    store.clear()
    assert store.linked(newest) == [] and store.entities() == []


def test_entities_stay_until_an_entity_delete(store: MemoryStore) -> None:
    (memory_id,) = store.add([{"user_id": "bob", "run_id": "r"}], NOW)
    store.delete(memory_id)
    bob = store.entity("user", "bob")
    assert bob is not None and store.memory_count(bob) == 0
    assert store.entity("run", "r") is not None
    assert store.entity_count() == 500 + 1 + 2  # the crowd's users, its agent, bob and r
    assert [e.name for e in store.entities()[-2:]] == ["bob", "r"]
