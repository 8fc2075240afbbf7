"""The hosted Platform API's request shapes (`Authorization: Token`, paths with a trailing slash).

A filter delete and an entity delete are jobs (an `event_id` to watch at /v1/event/); explicit
ids go to /v1/batch/ by the thousand; listings are the v3 POST with an AND (or, to check many
scopes at once, an OR) filter, paged by number. Every read that verifies an erasure asks for
every stored record: Dream's merged memories and expired ones, which reads hide by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from consumer.core.capabilities import PLATFORM
from consumer.core.events import Scope
from consumer.core.memory_ids import all_uuids
from consumer.mem0.client import JobStatus, Mem0Client, listed_ids
from consumer.mem0.errors import JobNotFound, RejectedError, TransientError
from consumer.mem0.http import RawJson

__all__ = ["ENTITY_TYPES", "PlatformClient"]

_LIST_PAGE_SIZE = 200  # the Platform's maximum page size for POST /v3/memories/
# Entity types of the Platform's /v2/entities/ routes.
ENTITY_TYPES = ("user", "agent", "app", "run")


class PlatformClient(Mem0Client):
    """The hosted Platform API (`Authorization: Token`, paths with a trailing slash)."""

    default_caps = PLATFORM
    backend = "platform"

    async def delete_all(self, scope: Scope) -> str | None:
        # The last guard: whatever the planner did, the Platform never gets a delete_all with
        # no filter, or with several (which it may OR together).
        if len(scope.entities) != 1 or scope.metadata:
            raise ValueError("a Platform delete_all takes exactly one identifier")
        body = await self._send("delete_all", "DELETE", "/v1/memories/", params=scope.as_dict())
        job_id = body.get("event_id") if isinstance(body, dict) else None
        if not job_id:
            raise TransientError("delete_all answered without an event_id", operation="delete_all")
        return str(job_id)

    async def job_status(self, job_id: str) -> JobStatus:
        try:
            body = await self._send("job_status", "GET", f"/v1/event/{quote(job_id, safe='')}/")
        except RejectedError as exc:
            if exc.status == 404:
                # Nothing promises that a new job is readable at once: the caller decides.
                raise JobNotFound(str(exc), operation="job_status", status=404) from exc
            raise
        if not isinstance(body, dict) or "status" not in body:
            raise TransientError("job status without a status", operation="job_status")
        error = body.get("error")
        return JobStatus(str(body["status"]).upper(), None if error is None else str(error))

    async def batch_delete(self, memory_ids: Sequence[str]) -> None:
        if not 1 <= len(memory_ids) <= 1000:
            raise ValueError("a batch holds 1 to 1000 ids")
        await self._send("batch_delete", "DELETE", "/v1/batch/", json=_batch_body(memory_ids))

    async def delete(self, memory_id: str) -> None:
        path = f"/v1/memories/{quote(memory_id, safe='')}/"
        await self._send("delete", "DELETE", path, missing_ok=True)

    async def delete_linked(self, memory_id: str) -> int:
        path = f"/v1/memories/{quote(memory_id, safe='')}/"
        body = await self._send(
            "delete", "DELETE", path, params={"delete_linked": "true"}, missing_ok=True
        )
        count = body.get("cascade_count") if isinstance(body, dict) else None
        # A count of another type or past an Avro long (the receipt's field) is not trusted.
        return count if type(count) is int and 0 <= count < 1 << 63 else 0

    async def delete_entity(self, entity_type: str, entity_id: str) -> str | None:
        try:
            body = await self._send("entity_delete", "DELETE", _entity_path(entity_type, entity_id))
        except RejectedError as exc:
            if exc.status == 404:
                return None  # no such entity: never made, or already deleted
            raise
        job_id = body.get("event_id") if isinstance(body, dict) else None
        if not job_id:
            raise TransientError(
                "entity delete answered without an event_id", operation="entity_delete"
            )
        return str(job_id)

    async def entity_exists(self, entity_type: str, entity_id: str) -> bool:
        path = _entity_path(entity_type, entity_id)
        try:
            await self._send("entity_get", "GET", path)
        except RejectedError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list_ids(self, scope: Scope, limit: int) -> list[str]:
        if not scope.entities:
            raise ValueError("a listing needs an identifier")
        conditions: list[dict[str, Any]] = [{key: value} for key, value in scope.entities]
        if scope.metadata:
            conditions.append({"metadata": dict(scope.metadata)})
        body = {"filters": {"AND": conditions}, **_EVERY_RECORD}
        ids: list[str] = []
        page = 1
        while len(ids) < limit:
            params = {"page": str(page), "page_size": str(_LIST_PAGE_SIZE)}
            try:
                answer = await self._send("list", "POST", "/v3/memories/", params=params, json=body)
            except RejectedError as exc:
                # Paging is by page number: deletes elsewhere can shrink the listing under us,
                # and a page past the end answers 404 (as Django REST framework does).
                if exc.status == 404 and page > 1:
                    break
                raise
            page_ids = listed_ids(
                answer.get("results") if isinstance(answer, dict) else None, "list"
            )
            ids.extend(page_ids)
            if not page_ids or not answer.get("next"):
                break
            page += 1
        return ids[:limit]

    async def any_match(self, scopes: Sequence[Scope]) -> bool:
        """Whether any memory matches any of these single-identifier scopes: one listing with
        the OR of their filters (see consumer/pipeline/scope_check.py)."""
        if not scopes or any(len(s.entities) != 1 or s.metadata for s in scopes):
            raise ValueError("a grouped listing takes single-identifier scopes")
        body = {"filters": {"OR": [dict(s.entities) for s in scopes]}, **_EVERY_RECORD}
        params = {"page": "1", "page_size": "1"}
        answer = await self._send("list", "POST", "/v3/memories/", params=params, json=body)
        results = answer.get("results") if isinstance(answer, dict) else None
        # An answer of another shape proves nothing: say "matched", and each is checked alone.
        return not isinstance(results, list) or bool(results)

    async def exists(self, memory_id: str) -> bool:
        return await self._read_back(
            f"/v1/memories/{quote(memory_id, safe='')}/", params={"include_merged": "true"}
        )

    async def probe(self, *, admin: bool = False) -> None:
        # The Platform has no roles: any authenticated read says the key works.
        await self._send("ping", "GET", "/v1/ping/")


# Every stored record of a scope, in a Platform listing: expired ones, and Dream's merged
# duplicates, which every read hides unless asked (the v3 body takes the flag beside filters).
_EVERY_RECORD = {"show_expired": True, "include_merged": True}


def _entity_path(entity_type: str, entity_id: str) -> str:
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}")
    return f"/v2/entities/{entity_type}/{quote(entity_id, safe='')}/"


def _batch_body(memory_ids: Sequence[str]) -> RawJson | dict[str, Any]:
    """`{"memories": [{"memory_id": ...}, ...]}`; built by joining when every id is a UUID
    (nothing in one needs escaping), a few times faster than json.dumps of 1000 dicts."""
    if all_uuids(memory_ids):
        joined = '"},{"memory_id":"'.join(memory_ids)
        return RawJson(f'{{"memories":[{{"memory_id":"{joined}"}}]}}'.encode())
    return {"memories": [{"memory_id": memory_id} for memory_id in memory_ids]}
