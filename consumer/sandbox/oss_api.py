"""The self-hosted mem0 REST server's routes (`/memories...`, no trailing slash).

Deletes are synchronous and filters are ANDed. `oss_delete_all_limit` emulates servers that
deleted only the first N matches while reporting success; listings stop at 100, as
`Memory.get_all` does by default.
"""

from __future__ import annotations

from consumer.sandbox.faults import canonical_id
from consumer.sandbox.http import Response
from consumer.sandbox.state import Call
from consumer.sandbox.store import Selector

__all__ = ["delete", "delete_all", "get", "list_memories"]

OSS_KEYS = ("user_id", "agent_id", "run_id")
LIST_LIMIT = 100

_NO_IDENTIFIER = Response(
    400, {"detail": "At least one identifier (user_id, agent_id, run_id) is required."}
)


def _selector(call: Call) -> Selector | None:
    query = call.request.query
    entities = tuple((key, v) for key in OSS_KEYS if (v := query.get(key, "").strip()))
    return Selector(entities) if entities else None


def get(call: Call) -> Response:
    memory = call.state.store.get(canonical_id(call.arg) or call.arg)
    return Response(200, None if memory is None else memory.to_json())


def delete(call: Call) -> Response:
    memory_id = canonical_id(call.arg) or call.arg
    if memory_id in call.state.faults.poison_ids:
        return Response(400, {"detail": f"Memory {memory_id} cannot be deleted"})
    if not call.state.store.delete(memory_id):
        return Response(404, {"detail": "Memory not found"})
    return Response(200, {"message": "Memory deleted successfully"})


def delete_all(call: Call) -> Response:
    selector = _selector(call)
    if selector is None:
        return _NO_IDENTIFIER
    doomed = call.state.store.select(selector)
    limit = call.state.faults.oss_delete_all_limit
    if limit is not None:
        doomed = doomed[:limit]
    call.state.store.delete_many(memory.id for memory in doomed)
    return Response(200, {"message": "All relevant memories deleted"})


def list_memories(call: Call) -> Response:
    selector = _selector(call)
    if selector is None:
        return _NO_IDENTIFIER
    found = call.state.store.select(selector)[:LIST_LIMIT]
    return Response(200, {"results": [memory.to_json() for memory in found]})
