"""What the pipeline's unit tests run against: a consumed message, a Mem0 that deletes at
once, and a dead-letter topic that acknowledges at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from consumer.core.capabilities import PLATFORM
from consumer.core.events import Scope
from consumer.mem0.client import JobStatus

TOPIC = "deletions"


class Msg:
    """The part of a confluent Message the loop and a flush read."""

    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return None

    def headers(self) -> list[tuple[str, bytes]]:
        return [("origin", b"test")]

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class Mem0:
    """Filter deletes that succeed at once (`changed` is set at each), and a gate the test opens
    when it wants them to."""

    caps = PLATFORM

    def __init__(self) -> None:
        self.deleted: Counter[str] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self.changed = asyncio.Event()  # set at every delete

    async def delete_all(self, scope: Scope) -> str | None:
        await self.gate.wait()
        self.deleted[scope.entities[0][1]] += 1
        self.changed.set()
        return "job"

    async def job_status(self, job_id: str) -> JobStatus:
        return JobStatus("SUCCEEDED")

    async def list_ids(self, scope: Scope, limit: int) -> list[str]:
        return []

    async def any_match(self, scopes: Sequence[Scope]) -> bool:
        return False

    async def delete_entity(self, entity_type: str, entity_id: str) -> str | None:
        return None

    async def probe(self, *, admin: bool = False) -> None:
        return None


class Letters:
    """The dead-letter topic: what was sent, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict[str, bytes | None]]] = []

    async def send(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Any
    ) -> None:
        self.sent.append((value, dict(headers)))
