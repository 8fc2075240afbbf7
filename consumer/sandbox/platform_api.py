"""The Mem0 Platform routes (`/v1/...`, `/v2/...`, `/v3/...`), with the Platform's bodies and
statuses.

Deliberate worst cases, each one a way the real API leaves data behind:
- a delete_all naming more than one entity deletes the UNION of them, since Mem0 documents that
  such filters are "not guaranteed to AND them together";
- Dream's merged memories are hidden from every read (the v3 listing, GET by id) unless it asks
  `include_merged`, yet they are stored, and every delete reaches them;
- superseded memories are shown, but `latest_only` hides them, and only `delete_linked=true`
  deletes them along with the memory that superseded them;
- memory deletes never delete the entity (user, agent, app, run): only an entity delete does,
  as a background job like delete_all's;
- a new job may be unknown to `GET /v1/event/{id}/` for `job_hidden_ms`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from consumer.sandbox.faults import all_canonical, canonical_id
from consumer.sandbox.filters import FilterError, parse_filters
from consumer.sandbox.http import Request, Response
from consumer.sandbox.records import ENTITY_KEYS, ENTITY_TYPES, Entity
from consumer.sandbox.state import ORG_ID, PROJECT_ID, USER_EMAIL, Call
from consumer.sandbox.store import Selector

__all__ = [
    "batch_delete",
    "delete",
    "delete_all",
    "entities",
    "entity_delete",
    "entity_get",
    "get",
    "job_status",
    "jobs",
    "list_memories",
    "ping",
]

BATCH_LIMIT = 1000
PAGE_SIZE = 100
MAX_PAGE_SIZE = 200

_INVALID_UUID = Response(400, {"error": "memory_id should be a valid UUID"})
_NOT_FOUND = Response(404, {"error": "Memory not found!"})
_BAD_JSON = Response(400, {"detail": "JSON parse error"})
_NO_EVENT = Response(404, {"error": "Event not found or you don't have permission"})
_NO_ENTITY = Response(404, {"error": "Entity not found"})
_IN_PROGRESS = "Delete in progress. This may take some time."
# The flags Mem0 reads from a listing's body: the records it hides unless asked, and the
# superseded ones it hides when asked.
_LIST_FLAGS = ("show_expired", "include_merged", "latest_only")


def ping(call: Call) -> Response:
    # MemoryClient reads org_id, project_id and user_email from this answer.
    return Response(
        200,
        {
            "status": "ok",
            "message": "pong",
            "org_id": ORG_ID,
            "project_id": PROJECT_ID,
            "user_email": USER_EMAIL,
        },
    )


def _flag(call: Call, name: str) -> bool:
    """A boolean query parameter, as the SDK sends one (`true`)."""
    return call.request.query.get(name, "").lower() in ("true", "1")


def get(call: Call) -> Response:
    memory_id = canonical_id(call.arg)
    if memory_id is None:
        return _INVALID_UUID
    memory = call.state.store.get(memory_id)
    if memory is None or (memory.merged and not _flag(call, "include_merged")):
        return _NOT_FOUND
    return Response(200, memory.to_json())


def delete(call: Call) -> Response:
    """One memory; with `delete_linked=true`, also those it superseded, transitively."""
    memory_id = canonical_id(call.arg)
    if memory_id is None:
        return _INVALID_UUID
    store = call.state.store
    linked = store.linked(memory_id) if _flag(call, "delete_linked") else None
    poison = call.state.faults.poison_ids
    for doomed in (memory_id, *(linked or ())):
        if doomed in poison:
            return Response(400, {"error": f"Memory {doomed} cannot be deleted"})
    if not store.delete(memory_id):
        return _NOT_FOUND
    if linked is None:
        return Response(200, {"message": "Memory deleted successfully!"})
    cascade = store.delete_many(linked)
    return Response(200, {"message": "Memory deleted successfully!", "cascade_count": cascade})


def batch_delete(call: Call) -> Response:
    if not call.body_ok:
        return _BAD_JSON
    entries = call.body.get("memories") if isinstance(call.body, dict) else None
    if not isinstance(entries, list):
        return Response(400, {"error": "memories must be a list of {'memory_id': ...} objects"})
    if not entries:
        return Response(400, {"error": "At least one memory is required"})
    if len(entries) > BATCH_LIMIT:
        return Response(
            400, {"error": f"Maximum of {BATCH_LIMIT} memories can be deleted in a single request"}
        )
    raws = [entry.get("memory_id") if isinstance(entry, dict) else None for entry in entries]
    ids = [raw for raw in raws if type(raw) is str]
    if len(ids) != len(raws) or not all_canonical(ids):
        ids = []
        for raw in raws:
            memory_id = canonical_id(raw) if isinstance(raw, str) else None
            if memory_id is None:
                return Response(400, {"error": f"Invalid memory_id: {raw!r} is not a valid UUID"})
            ids.append(memory_id)
    poisoned = sorted(set(ids) & call.state.faults.poison_ids)
    if poisoned:
        return Response(400, {"error": f"Failed to delete memories: {', '.join(poisoned)}"})
    deleted = call.state.store.delete_many(dict.fromkeys(ids))
    return Response(200, {"message": f"Successfully deleted {deleted} memories"})


def delete_all(call: Call) -> Response:
    query = call.request.query
    entities = tuple((key, v) for key in ENTITY_KEYS if (v := query.get(key, "").strip()))
    metadata = _metadata_filter(query.get("metadata", ""))
    if metadata is None:
        return Response(400, {"error": "metadata must be a JSON object"})
    if not entities and not metadata:
        return Response(
            400,
            {
                "error": "At least one filter is required to delete all memories "
                "(user_id, agent_id, app_id, run_id or metadata). Use '*' to match any value."
            },
        )
    faults = call.state.faults
    job = call.state.store.start_job(
        Selector(entities, tuple(metadata.items()), union=len(entities) > 1),
        call.now,
        delay=faults.job_delay_ms / 1000,
        fail=_job_fails(call),
        leave_behind_rate=faults.leave_behind_rate,
        hidden=faults.job_hidden_ms / 1000,
    )
    return Response(200, {"message": _IN_PROGRESS, "event_id": job.id})


def _job_fails(call: Call) -> bool:
    rate = call.state.faults.job_fail_rate
    return rate > 0 and call.state.rng.random() < rate


def _metadata_filter(raw: str) -> dict[str, Any] | None:
    """The metadata query parameter (a JSON object), {} when absent, None when malformed."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def job_status(call: Call) -> Response:
    job = call.state.store.job(canonical_id(call.arg) or call.arg)
    if job is None or call.now < job.visible_at:
        return _NO_EVENT
    return Response(200, job.to_json(call.now))


def jobs(call: Call) -> Response:
    page = _page(call.request)
    if page is None:
        return _INVALID_PAGE
    number, size = page
    count, found = call.state.store.jobs_page((number - 1) * size, size)
    return _paged(call.request, number, size, count, [job.to_json(call.now) for job in found])


def list_memories(call: Call) -> Response:
    if not call.body_ok:
        return _BAD_JSON
    body = call.body
    if not isinstance(body, dict):
        return Response(400, {"error": "Request body must be a JSON object"})
    top_level = sorted(set(ENTITY_KEYS) & body.keys())
    if top_level:
        return Response(
            400,
            {
                "error": f"Top-level entity parameters {top_level} are not supported. "
                "Put them inside filters, e.g. {'filters': {'user_id': '...'}}."
            },
        )
    try:
        node = parse_filters(body.get("filters"))
    except FilterError as exc:
        return Response(400, {"error": str(exc)})
    for name in _LIST_FLAGS:
        if not isinstance(body.get(name, False), bool):
            return Response(400, {"error": f"{name} must be a boolean"})
    page = _page(call.request)
    if page is None:
        return _INVALID_PAGE
    number, size = page
    found = call.state.store.query(
        node,
        call.now,
        show_expired=body.get("show_expired", False),
        include_merged=body.get("include_merged", False),
        latest_only=body.get("latest_only", False),
    )
    start = (number - 1) * size
    results = [memory.to_json() for memory in found[start : start + size]]
    return _paged(call.request, number, size, len(found), results)


# entities (`GET /v1/entities/`, `GET` and `DELETE /v2/entities/{type}/{name}/`)


def entities(call: Call) -> Response:
    """The project's entities, paginated like the other lists (the SDK reads `results`)."""
    page = _page(call.request)
    if page is None:
        return _INVALID_PAGE
    number, size = page
    every = call.state.store.entities()
    start = (number - 1) * size
    results = [_entity_json(call, entity) for entity in every[start : start + size]]
    return _paged(call.request, number, size, len(every), results)


def entity_get(call: Call) -> Response:
    found = _entity(call)
    if isinstance(found, Response):
        return found
    return Response(200, _entity_json(call, found))


def entity_delete(call: Call) -> Response:
    """Queue the delete of the entity and every memory naming it (merged ones too)."""
    found = _entity(call)
    if isinstance(found, Response):
        return found
    faults = call.state.faults
    job = call.state.store.start_job(
        None,
        call.now,
        delay=faults.job_delay_ms / 1000,
        fail=_job_fails(call),
        leave_behind_rate=0.0,
        hidden=faults.job_hidden_ms / 1000,
        entity=(found.type, found.name),
    )
    return Response(200, {"message": _IN_PROGRESS, "event_id": job.id})


def _entity(call: Call) -> Entity | Response:
    """The entity the path names (`{type}/{name}`), or the answer that it has none."""
    entity_type, _, name = call.arg.partition("/")
    if entity_type not in ENTITY_TYPES:
        return Response(
            400,
            {"error": f"Invalid entity type: {entity_type}. Use one of {', '.join(ENTITY_TYPES)}."},
        )
    entity = call.state.store.entity(entity_type, name)
    return _NO_ENTITY if entity is None else entity


def _entity_json(call: Call, entity: Entity) -> dict[str, Any]:
    shape = entity.to_json(call.state.store.memory_count(entity))
    shape["owner"] = USER_EMAIL
    shape["organization"] = ORG_ID
    return shape


# Pagination the way Django REST framework does it: a page past the end is a 404.

_INVALID_PAGE = Response(404, {"detail": "Invalid page."})


def _page(request: Request) -> tuple[int, int] | None:
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        return None
    try:
        size = int(request.query.get("page_size", str(PAGE_SIZE)))
    except ValueError:
        size = PAGE_SIZE
    if number < 1:
        return None
    return number, min(size, MAX_PAGE_SIZE) if size > 0 else PAGE_SIZE


def _paged(
    request: Request, number: int, size: int, count: int, results: list[dict[str, Any]]
) -> Response:
    last = max(1, -(-count // size))
    if number > last:
        return _INVALID_PAGE
    return Response(
        200,
        {
            "count": count,
            "next": _page_url(request, number + 1, size) if number < last else None,
            "previous": _page_url(request, number - 1, size) if number > 1 else None,
            "results": results,
        },
    )


def _page_url(request: Request, number: int, size: int) -> str:
    query = {**request.query, "page": str(number), "page_size": str(size)}
    host = request.headers.get("host", "localhost")
    return f"http://{host}{request.path}?{urlencode(query)}"
