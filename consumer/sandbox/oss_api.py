"""The self-hosted mem0 REST server's routes (`/memories...`, no trailing slash), after
`server/main.py` of mem0ai/mem0.

Deletes are synchronous and filters are ANDed. `oss_delete_all_limit` emulates servers before
mem0ai 2.0.15, which deleted only the first N matches (in insertion order, expired ones
included) while reporting success.

Listings answer 20 memories unless `top_k` (0 to 1000) says otherwise, and hide expired ones
unless `show_expired=true`. They do it the way `Memory.get_all` does: fetch a window of the first
`top_k` matches, or of max(4 * top_k, 60) when expired ones are to be dropped, then drop them.
So a listing without `show_expired` can come back short, even empty, while live memories remain
beyond the window. A listing with no identifier lists everything, raw, for the admin key only.

Roles: `api_key` is the admin key; `user_api_keys` are valid keys without the admin role, which
`DELETE /memories` answers 403 (the route says so, see app.py) and a listing with no identifier
too. Failures in the server's stores are 502s with a `code` (server/errors.py): a memory id
that is not a UUID (the default pgvector store cannot look it up) and an identifier with white
space in it are `unknown`. Dream's marks mean nothing here: merged and superseded memories are
listed and deleted like any.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from itertools import islice
from typing import Any

from consumer.sandbox.faults import OSS_ERROR_CODES, canonical_id
from consumer.sandbox.http import Response
from consumer.sandbox.records import Memory
from consumer.sandbox.state import Call
from consumer.sandbox.store import Selector

__all__ = ["OSS_KEYS", "delete", "delete_all", "get", "list_memories", "upstream_error"]

OSS_KEYS = ("user_id", "agent_id", "run_id")
DEFAULT_TOP_K = 20  # Memory.get_all's default
MAX_TOP_K = 1000  # ALL_MEMORIES_LIMIT
MIN_EXPIRY_WINDOW = 60

_NO_IDENTIFIER = Response(400, {"detail": "At least one identifier is required."})
_LIST_ALL_DENIED = Response(403, {"detail": "Admin role required to list all memories."})
_INTEGER = re.compile(r"[+-]?\d+")
# What pydantic reads as a boolean query value, either way.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def upstream_error(code: str) -> Response:
    """A 502 as server/errors.py answers it: the cause's text, its code, a request id."""
    request_id = uuid.uuid4().hex[:8]
    return Response(
        502,
        {"detail": OSS_ERROR_CODES[code], "code": code, "request_id": request_id},
        (("X-Request-ID", request_id),),
    )


def _selector(call: Call) -> Selector | Response | None:
    """The identifiers of the query (None when there are none), or the 502 a malformed one
    gets: Memory trims each and rejects one that is blank or has white space inside."""
    query = call.request.query
    entities = []
    for key in OSS_KEYS:
        raw = query.get(key, "")
        if not raw:
            continue
        value = raw.strip()
        if not value or any(c.isspace() for c in value):
            return upstream_error("unknown")
        entities.append((key, value))
    return Selector(tuple(entities)) if entities else None


def _memory_id(call: Call) -> str | Response:
    memory_id = canonical_id(call.arg)
    return upstream_error("unknown") if memory_id is None else memory_id


def get(call: Call) -> Response:
    memory_id = _memory_id(call)
    if isinstance(memory_id, Response):
        return memory_id
    memory = call.state.store.get(memory_id)
    return Response(200, None if memory is None else memory.to_json())


def delete(call: Call) -> Response:
    memory_id = _memory_id(call)
    if isinstance(memory_id, Response):
        return memory_id
    if memory_id in call.state.faults.poison_ids:
        return Response(400, {"detail": f"Memory {memory_id} cannot be deleted"})
    if not call.state.store.delete(memory_id):
        return Response(404, {"detail": f"Memory with id {memory_id} not found"})
    return Response(200, {"message": "Memory deleted successfully"})


def delete_all(call: Call) -> Response:
    selector = _selector(call)
    if isinstance(selector, Response):
        return selector
    if selector is None:
        return _NO_IDENTIFIER
    doomed = call.state.store.select(selector)
    limit = call.state.faults.oss_delete_all_limit
    if limit is not None:
        doomed = doomed[:limit]
    call.state.store.delete_many(memory.id for memory in doomed)
    return Response(200, {"message": "All relevant memories deleted"})


def list_memories(call: Call) -> Response:
    params = _list_params(call)
    if isinstance(params, Response):
        return params
    top_k, show_expired = params
    selector = _selector(call)
    if isinstance(selector, Response):
        return selector
    store = call.state.store
    if selector is None:
        if not call.admin:
            return _LIST_ALL_DENIED
        # The admin's listing of everything is raw: expired memories too, 1000 by default.
        every = islice(store, MAX_TOP_K if top_k is None else top_k)
        return _results(every)
    limit = DEFAULT_TOP_K if top_k is None else top_k
    matches = store.select(selector)
    if show_expired:
        return _results(matches[:limit])
    found: list[Memory] = []
    for memory in matches[: max(limit * 4, MIN_EXPIRY_WINDOW)]:
        if memory.expired(call.now):
            continue
        found.append(memory)
        if len(found) >= limit:  # checked after the append, as Memory.get_all does
            break
    return _results(found)


def _results(memories: Iterable[Memory]) -> Response:
    return Response(200, {"results": [memory.to_json() for memory in memories]})


def _list_params(call: Call) -> tuple[int | None, bool] | Response:
    """`top_k` (None when absent) and `show_expired`, or FastAPI's 422 naming each bad one."""
    query = call.request.query
    errors: list[dict[str, Any]] = []
    top_k: int | None = None
    raw_top_k = query.get("top_k")
    if raw_top_k is not None:
        top_k, error = _top_k(raw_top_k)
        if error is not None:
            errors.append(error)
    show_expired = False
    raw_show = query.get("show_expired")
    if raw_show is not None:
        lowered = raw_show.strip().lower()
        if lowered in _TRUE:
            show_expired = True
        elif lowered not in _FALSE:
            errors.append(
                _invalid(
                    "bool_parsing",
                    "show_expired",
                    "Input should be a valid boolean, unable to interpret input",
                    raw_show,
                )
            )
    if errors:
        return Response(422, {"detail": errors})
    return top_k, show_expired


def _top_k(raw: str) -> tuple[int | None, dict[str, Any] | None]:
    if not _INTEGER.fullmatch(raw.strip()):
        message = "Input should be a valid integer, unable to parse string as an integer"
        return None, _invalid("int_parsing", "top_k", message, raw)
    value = int(raw)
    if value < 0:
        message = "Input should be greater than or equal to 0"
        return None, _invalid("greater_than_equal", "top_k", message, raw, {"ge": 0})
    if value > MAX_TOP_K:
        message = f"Input should be less than or equal to {MAX_TOP_K}"
        return None, _invalid("less_than_equal", "top_k", message, raw, {"le": MAX_TOP_K})
    return value, None


def _invalid(
    kind: str, name: str, message: str, given: str, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "loc": ["query", name], "msg": message, "input": given}
    if ctx is not None:
        error["ctx"] = ctx
    return error
