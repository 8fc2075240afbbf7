"""The `/_sandbox/...` routes that tests, the demo and benchmarks drive: no auth, no faults."""

from __future__ import annotations

from collections.abc import Callable

from consumer.sandbox.http import Response
from consumer.sandbox.state import Call

__all__ = ["ADMIN_PREFIX", "ADMIN_ROUTES"]

ADMIN_PREFIX = "/_sandbox/"

# These run outside the state lock and use the state's locking accessors.


def _add_memories(call: Call) -> Response:
    records = call.body.get("memories") if isinstance(call.body, dict) else call.body
    if not call.body_ok or not isinstance(records, list):
        return Response(400, {"detail": "expected a JSON list of memory records"})
    try:
        ids = call.state.add_memories(records)
    except ValueError as exc:
        return Response(400, {"detail": str(exc)})
    return Response(201, {"ids": ids})


def _memories(call: Call) -> Response:
    return Response(200, {"memories": call.state.memories()})


def _add_entities(call: Call) -> Response:
    records = call.body.get("entities") if isinstance(call.body, dict) else call.body
    if not call.body_ok or not isinstance(records, list):
        return Response(400, {"detail": 'expected a JSON list of {"type": ..., "id": ...}'})
    try:
        entities = call.state.add_entities(records)
    except ValueError as exc:
        return Response(400, {"detail": str(exc)})
    return Response(201, {"entities": entities})


def _entities(call: Call) -> Response:
    return Response(200, {"entities": call.state.entities()})


def _keys(call: Call) -> Response:
    return Response(200, {"user_api_keys": call.state.get_user_keys()})


def _set_keys(call: Call) -> Response:
    """`{"user_api_keys": [...]}`, `{"api_key": "..."}` or both. The admin key is never echoed."""
    body = call.body
    usage = 'expected {"user_api_keys": [...]} and/or {"api_key": "..."}'
    if not call.body_ok or not isinstance(body, dict) or not body:
        return Response(400, {"detail": usage})
    if body.keys() - {"api_key", "user_api_keys"}:
        return Response(400, {"detail": usage})
    keys = body.get("user_api_keys")
    if keys is not None and not isinstance(keys, list):
        return Response(400, {"detail": usage})
    try:
        changed = call.state.set_keys(body.get("api_key"), keys)
    except ValueError as exc:
        return Response(400, {"detail": str(exc)})
    return Response(200, {"user_api_keys": changed})


def _calls(call: Call) -> Response:
    return Response(200, {"calls": call.state.calls()})


def _clear_calls(call: Call) -> Response:
    return Response(200, {"cleared": call.state.clear_calls()})


def _faults(call: Call) -> Response:
    return Response(200, call.state.get_faults().to_json())


def _set_faults(call: Call) -> Response:
    if not call.body_ok or not isinstance(call.body, dict):
        return Response(400, {"detail": "expected a JSON object of fault fields"})
    try:
        faults = call.state.set_faults(**call.body)
    except ValueError as exc:
        return Response(400, {"detail": str(exc)})
    return Response(200, faults.to_json())


def _reset(call: Call) -> Response:
    call.state.reset()
    return Response(200, {"reset": True})


def _stats(call: Call) -> Response:
    return Response(200, call.state.stats())


ADMIN_ROUTES: dict[tuple[str, str], Callable[[Call], Response]] = {
    ("POST", "/_sandbox/memories"): _add_memories,
    ("GET", "/_sandbox/memories"): _memories,
    ("POST", "/_sandbox/entities"): _add_entities,
    ("GET", "/_sandbox/entities"): _entities,
    ("GET", "/_sandbox/keys"): _keys,
    ("PUT", "/_sandbox/keys"): _set_keys,
    ("GET", "/_sandbox/calls"): _calls,
    ("DELETE", "/_sandbox/calls"): _clear_calls,
    ("GET", "/_sandbox/faults"): _faults,
    ("PUT", "/_sandbox/faults"): _set_faults,
    ("POST", "/_sandbox/reset"): _reset,
    ("GET", "/_sandbox/stats"): _stats,
}
