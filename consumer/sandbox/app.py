"""Request dispatch: route, injected faults, authentication, handler, call log.

Order for an API call: outage, auth_failure, the real key check (401), the role check (403 for
a self-hosted route that needs the admin role, asked with a user key), then the random rate
limit and error rolls (neither applies to `/v1/ping/`), then the handler. `/_sandbox/...` skips
it all. Platform routes take only the admin key; self-hosted ones take user keys too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from consumer.sandbox import admin_api, oss_api, platform_api
from consumer.sandbox.http import Request, Response
from consumer.sandbox.state import Call, SandboxState

__all__ = ["SandboxApp"]

Handler = Callable[[Call], Response]


@dataclass(frozen=True, slots=True)
class Route:
    operation: str
    handler: Handler
    family: str  # "platform", "oss" or "ping": which key header, which faults
    admin_only: bool = False  # a user key gets 403 (self-hosted `require_admin`)


def _route(
    operation: str, handler: Handler, family: str = "platform", *, admin_only: bool = False
) -> Route:
    return Route(operation, handler, family, admin_only)


# Paths without a parameter: path -> method -> route.
_FIXED: dict[str, dict[str, Route]] = {
    "/v1/ping/": {"GET": _route("ping", platform_api.ping, "ping")},
    "/v1/memories/": {"DELETE": _route("delete_all", platform_api.delete_all)},
    "/v1/batch/": {"DELETE": _route("batch_delete", platform_api.batch_delete)},
    "/v1/events/": {"GET": _route("job_status", platform_api.jobs)},
    "/v3/memories/": {"POST": _route("list", platform_api.list_memories)},
    "/v1/entities/": {"GET": _route("entities", platform_api.entities)},
    "/memories": {
        "DELETE": _route("oss_delete_all", oss_api.delete_all, "oss", admin_only=True),
        "GET": _route("oss_list", oss_api.list_memories, "oss"),
    },
}

# Paths with a parameter: (prefix, suffix, segments, method -> route). The parameter has that
# many segments; the last one takes any further slash (a name with an encoded "/" in it).
_PARAMETRIC: tuple[tuple[str, str, int, dict[str, Route]], ...] = (
    (
        "/v1/memories/",
        "/",
        1,
        {
            "DELETE": _route("delete", platform_api.delete),
            "GET": _route("get", platform_api.get),
        },
    ),
    ("/v1/event/", "/", 1, {"GET": _route("job_status", platform_api.job_status)}),
    (
        "/v2/entities/",
        "/",
        2,
        {
            "DELETE": _route("entity_delete", platform_api.entity_delete),
            "GET": _route("entity_get", platform_api.entity_get),
        },
    ),
    (
        "/memories/",
        "",
        1,
        {
            "DELETE": _route("oss_delete", oss_api.delete, "oss"),
            "GET": _route("oss_get", oss_api.get, "oss"),
        },
    ),
)


def _resolve(path: str) -> tuple[dict[str, Route], str] | None:
    methods = _FIXED.get(path)
    if methods is not None:
        return methods, ""
    for prefix, suffix, segments, methods in _PARAMETRIC:
        if path.startswith(prefix) and path.endswith(suffix):
            arg = path[len(prefix) : len(path) - len(suffix)]
            parts = arg.split("/", segments - 1)
            if len(parts) == segments and all(parts) and "/" not in parts[0]:
                return methods, arg
    return None


class SandboxApp:
    """The http.App of a sandbox."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def delay_for(self, request: Request) -> float:
        if request.path.startswith(admin_api.ADMIN_PREFIX):
            return 0.0
        with self.state.lock:
            faults = self.state.faults
            if faults.latency_ms <= 0 and faults.latency_jitter_ms <= 0:
                return 0.0
            jitter = self.state.rng.uniform(0, faults.latency_jitter_ms)
            return max(0.0, faults.latency_ms + jitter) / 1000

    def handle(self, request: Request) -> Response:
        state = self.state
        body, body_ok = _parse_json(request.body)
        if request.path.startswith(admin_api.ADMIN_PREFIX):
            admin = admin_api.ADMIN_ROUTES.get((request.method, request.path))
            if admin is None:
                return Response(404, {"detail": "Not found."})
            return admin(Call(state, request, "", body, body_ok, state.clock()))
        with state.lock:
            now = state.clock()
            state.store.advance(now)
            operation, fault, response = self._dispatch(request, body, body_ok, now)
            state.log_call(
                {
                    "seq": 0,
                    "at": now,
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "body": body,
                    "status": response.status,
                    "operation": operation,
                    "fault": fault,
                }
            )
        return response

    def _dispatch(
        self, request: Request, body: Any, body_ok: bool, now: float
    ) -> tuple[str, str | None, Response]:
        """(operation, fault, response) of one API call; the caller holds the lock."""
        resolved = _resolve(request.path)
        if resolved is None:
            return "other", None, Response(404, {"detail": "Not found."})
        methods, arg = resolved
        route = methods.get(request.method)
        if route is None:
            detail = f'Method "{request.method}" not allowed.'
            return "other", None, Response(405, {"detail": detail})
        fault, response = self._gate(route, request)
        if response is None:
            admin = self._is_admin(route, request)
            response = route.handler(Call(self.state, request, arg, body, body_ok, now, admin))
        return route.operation, fault, response

    def _gate(self, route: Route, request: Request) -> tuple[str | None, Response | None]:
        """The fault or auth failure that answers instead of the handler, if any."""
        faults = self.state.faults
        if faults.outage:
            return "outage", _error(503, route)
        if faults.auth_failure:
            return "auth", Response(401, {"detail": "Invalid API key"})
        denied = self._check_key(route, request)
        if denied is not None:
            return None, denied
        if route.admin_only and not self._is_admin(route, request):
            return None, Response(403, {"detail": "Admin role required."})
        if route.family == "ping":
            return None, None
        rng = self.state.rng
        if faults.rate_limit_rate > 0 and rng.random() < faults.rate_limit_rate:
            seconds = faults.retry_after_s
            return "rate_limit", Response(
                429,
                {"detail": f"Request was throttled. Expected available in {seconds} seconds."},
                (("Retry-After", str(seconds)),),
            )
        if faults.error_rate > 0 and rng.random() < faults.error_rate:
            return "error", _error(rng.choice(faults.error_codes), route, faults.oss_error_code)
        return None, None

    def _check_key(self, route: Route, request: Request) -> Response | None:
        state = self.state
        if route.family == "oss":
            given = request.headers.get("x-api-key")
            if given is None:
                return Response(401, {"detail": _OSS_NO_KEY})
            if given != state.api_key and given not in state.user_api_keys:
                return Response(401, {"detail": "Invalid API key."})
            return None
        given = request.headers.get("authorization")
        if given is None:
            return Response(401, {"detail": "Authentication credentials were not provided."})
        if given != "Token " + state.api_key:
            return Response(401, {"detail": "Invalid API key"})
        return None

    def _is_admin(self, route: Route, request: Request) -> bool:
        """Whether the (valid) key has the admin role: only self-hosted user keys do not."""
        return route.family != "oss" or request.headers.get("x-api-key") == self.state.api_key


_OSS_NO_KEY = "Authentication required. Provide a Bearer token or X-API-Key header."


def _error(status: int, route: Route, code: str = "datastore_unavailable") -> Response:
    if route.family == "oss" and status == 502:
        # The OSS server tags its 502s with a cause (`oss_error_code`).
        return oss_api.upstream_error(code)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return Response(status, {"detail": phrase})


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    if not raw:
        return None, True
    try:
        return json.loads(raw), True
    except (ValueError, UnicodeDecodeError):
        return None, False
