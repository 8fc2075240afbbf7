"""The self-hosted mem0 REST server's request shapes (`X-API-Key`, no trailing slashes).

It deletes synchronously (no job to watch), has no batch endpoint (the executor fans ids out
to single deletes) and keeps no entity records; a listing is one GET of the largest page, with
expired memories shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from urllib.parse import quote

from consumer.core.capabilities import OSS
from consumer.core.events import Scope
from consumer.mem0.client import JobStatus, Mem0Client, listed_ids
from consumer.mem0.errors import RejectedError

__all__ = ["OssClient"]

_OSS_TOP_K = 1000  # the self-hosted listing's largest page (its default is 20)


class OssClient(Mem0Client):
    """The self-hosted mem0 REST server (`X-API-Key`, no trailing slashes, no batch endpoint)."""

    default_caps = OSS
    backend = "oss"

    async def delete_all(self, scope: Scope) -> str | None:
        if not scope.entities or scope.metadata or "app_id" in scope.as_dict():
            raise ValueError("an OSS delete_all takes user, agent or run identifiers only")
        await self._send("delete_all", "DELETE", "/memories", params=scope.as_dict())
        return None

    async def job_status(self, job_id: str) -> JobStatus:
        # The self-hosted server deletes synchronously: there is never a job to watch.
        return JobStatus("SUCCEEDED")

    async def batch_delete(self, memory_ids: Sequence[str]) -> None:
        # No batch endpoint (caps.batch_endpoint is False): the executor fans ids out instead.
        raise RejectedError("the self-hosted server has no batch endpoint", operation="delete")

    async def delete(self, memory_id: str) -> None:
        # The planner admits only plain path segments here; quoting is the second lock.
        path = f"/memories/{quote(memory_id, safe='')}"
        await self._send("delete", "DELETE", path, missing_ok=True)

    async def list_ids(self, scope: Scope, limit: int) -> list[str]:
        if not scope.entities:
            raise ValueError("a listing needs an identifier")
        params = {
            **scope.as_dict(),
            "top_k": str(max(1, min(limit, _OSS_TOP_K))),
            "show_expired": "true",
        }
        answer = await self._send("list", "GET", "/memories", params=params)
        # Either shape the server has had: {"results": [...]}, or the list itself.
        results = answer.get("results") if isinstance(answer, dict) else answer
        return listed_ids(results, "list")[:limit]

    async def exists(self, memory_id: str) -> bool:
        # A missing id answers 200 with null here.
        return await self._read_back(f"/memories/{quote(memory_id, safe='')}")

    async def probe(self, *, admin: bool = False) -> None:
        if admin:
            # The permission a filter delete needs, exercised on a user no one has: a random
            # UUID matches nothing, so nothing is deleted.
            await self._send("ping", "DELETE", "/memories", params={"user_id": str(uuid.uuid4())})
            return
        # No ping route: reading a random id is authenticated and answers 200 null.
        await self._send("ping", "GET", f"/memories/{uuid.uuid4()}", missing_ok=True)
