"""The Mem0 client: the Platform API and the self-hosted REST server behind one small interface.

One pooled HTTP session per process (aiohttp, or httpx with any transport: consumer/mem0/http.py);
it is a constructor argument so tests and benchmarks can inject one. Every request is
classified here (see `retry.classify`) and surfaces as a typed error; retrying is the
executor's job, not this module's.

Error tree::

    Mem0Error
    ├── TransientError     retriable: 408, 429, 5xx, timeout, broken connection
    │   └── UncertainError a self-hosted 502 `unknown`: maybe deterministic, so retried a bounded
    │                      number of times (MEM0_UNKNOWN_ERROR_RETRIES)
    ├── AuthError          halts every call: 401, 403
    │   └── AdminRoleError the self-hosted server's 403 "Admin role required." (a key without
    │                      the admin role): halts too, and is probed with a delete, not a read
    └── RejectedError      this request is refused: any other 4xx, a permanent 502 code
        └── JobNotFound    a job id the API does not know (yet): see Executor._watch

Every listing that resolves or verifies an erasure sees every stored record of its scope: on
the Platform merged (Dream) and expired memories are asked for (`include_merged`,
`show_expired`); on the self-hosted server, expired ones and the largest page (`top_k=1000`,
the default being 20).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from consumer.core.events import Scope
from consumer.core.memory_ids import all_uuids
from consumer.core.pacing import AdaptiveRate
from consumer.core.planner import OSS, PLATFORM, Capabilities
from consumer.core.retry import Verdict, classify, parse_retry_after
from consumer.mem0.http import (
    AiohttpSession,
    HttpSession,
    HttpxSession,
    RawJson,
    Reply,
    TransportError,
    proxy_for,
)
from consumer.mem0.lean_http import LeanSession
from consumer.mem0.slots import Slots

__all__ = [
    "ENTITY_TYPES",
    "HALT_CAUSES",
    "AdminRoleError",
    "AuthError",
    "JobNotFound",
    "JobStatus",
    "Mem0Client",
    "Mem0Error",
    "OssClient",
    "PlatformClient",
    "RejectedError",
    "TransientError",
    "UncertainError",
    "make_http_client",
]

log = logging.getLogger(__name__)

# (operation, status label, seconds) -> None; the metrics module supplies it.
Observer = Callable[[str, str, float], None]

_LIST_PAGE_SIZE = 200  # the Platform's maximum page size for POST /v3/memories/
_OSS_TOP_K = 1000  # the self-hosted listing's largest page (its default is 20)
_ERROR_MESSAGE_LIMIT = 300

# Self-hosted 502 codes (server/errors.py): these two are the request's own fault and will not
# pass on a retry; `unknown` may be either; every other code is an outage of a dependency.
_PERMANENT_502_CODES = frozenset({"provider_auth_failed", "provider_bad_request"})
_UNCERTAIN_502_CODE = "unknown"
# Entity types of the Platform's /v2/entities/ routes.
ENTITY_TYPES = ("user", "agent", "app", "run")


class Mem0Error(Exception):
    """A Mem0 call that did not succeed; `status` is the HTTP status, None for a transport error."""

    retriable: ClassVar[bool] = False
    halts: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.status = status
        self.retry_after_s = retry_after_s


class TransientError(Mem0Error):
    retriable = True


class UncertainError(TransientError):
    """Retried, but a bounded number of times: the server cannot tell whether it will pass."""


class AuthError(Mem0Error):
    halts = True
    # What the key lacks, for the log line, /readyz and the metric.
    cause: ClassVar[str] = "auth_refused"


class AdminRoleError(AuthError):
    cause = "admin_role_required"


class RejectedError(Mem0Error):
    pass


class JobNotFound(RejectedError):
    pass


# The halt causes, a bounded label set (`downstream_halted{cause}`).
HALT_CAUSES = (AuthError.cause, AdminRoleError.cause)


@dataclass(frozen=True, slots=True)
class JobStatus:
    status: str  # PENDING, RUNNING, SUCCEEDED or FAILED
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED")


def make_http_client(
    base_url: str,
    headers: dict[str, str],
    *,
    timeout_s: float,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None = None,
    kind: str = "auto",
) -> HttpSession:
    """The one pooled session: keep-alive connections sized to the call concurrency.

    `auto`: the lean client (consumer/mem0/lean_http.py: under half of aiohttp's CPU per call), or
    aiohttp when the environment sets a proxy for the URL. `lean`, `aiohttp` and `httpx` force
    one (MEM0_HTTP_CLIENT: an escape hatch should a network device disagree with the lean
    one). A transport (a test's mock, HTTP/2) always means httpx.
    """
    if transport is not None or kind == "httpx":
        return HttpxSession(
            base_url,
            headers,
            timeout_s=timeout_s,
            max_connections=max_connections,
            transport=transport,
        )
    if kind == "lean" or (kind == "auto" and proxy_for(base_url) is None):
        return LeanSession(base_url, headers, timeout_s=timeout_s, max_connections=max_connections)
    return AiohttpSession(base_url, headers, timeout_s=timeout_s, max_connections=max_connections)


class Mem0Client(ABC):
    """What the executor needs of a Mem0 backend."""

    # The backend's capabilities; an instance may narrow them (ERASE_USER_ENTITY=false).
    default_caps: ClassVar[Capabilities]
    backend: ClassVar[str]

    def __init__(
        self,
        http: HttpSession,
        *,
        max_concurrency: int = 32,
        observe: Observer | None = None,
        pace: AdaptiveRate | None = None,
        clock: Callable[[], float] = time.monotonic,
        erase_user_entity: bool = True,
    ) -> None:
        self.caps = self.default_caps
        if not erase_user_entity:
            self.caps = replace(self.caps, user_entities=False)
        self._http = http
        self._slots = Slots(max_concurrency)
        self._observe = observe or (lambda _op, _status, _seconds: None)
        # Slows every call down after a 429, so retries do not keep the server throttled.
        self.pace = pace if pace is not None else AdaptiveRate()
        self._clock = clock

    async def aclose(self) -> None:
        await self._http.aclose()

    @abstractmethod
    async def delete_all(self, scope: Scope) -> str | None:
        """Start a filter delete; the job id to watch, or None when it ran synchronously."""

    @abstractmethod
    async def job_status(self, job_id: str) -> JobStatus:
        """The state of a filter delete started by `delete_all`."""

    @abstractmethod
    async def batch_delete(self, memory_ids: Sequence[str]) -> None:
        """Delete 1 to 1000 ids in one request (where `caps.batch_endpoint`)."""

    @abstractmethod
    async def delete(self, memory_id: str) -> None:
        """Delete one memory; one that is already gone counts as deleted."""

    async def delete_linked(self, memory_id: str) -> int:
        """Delete one memory and those it superseded; how many of those went with it.

        Only the Platform links memories (Dream's Supersede); the self-hosted server keeps no
        such links, so there deleting the memory is all there is to do.
        """
        await self.delete(memory_id)
        return 0

    async def delete_entity(self, entity_type: str, entity_id: str) -> str | None:
        """Start deleting an entity record; the job to watch, None when there is nothing to do."""
        raise RejectedError("this backend keeps no entity records", operation="entity_delete")

    async def entity_exists(self, entity_type: str, entity_id: str) -> bool:
        """Whether an entity record is still there."""
        return False

    @abstractmethod
    async def list_ids(self, scope: Scope, limit: int) -> list[str]:
        """Up to `limit` ids of the memories matching every entry of the scope (AND)."""

    @abstractmethod
    async def exists(self, memory_id: str) -> bool:
        """Whether a memory is still there (read back to verify a delete)."""

    @abstractmethod
    async def probe(self, *, admin: bool = False) -> None:
        """A cheap authenticated call, to learn whether the downstream is back; with `admin`,
        one that needs the same permission as a filter delete yet deletes nothing."""

    async def _read_back(self, path: str, params: dict[str, str] | None = None) -> bool:
        """GET one memory: True when it is there; a 404 or a null body means it is gone."""
        try:
            body = await self._send("get", "GET", path, params=params)
        except RejectedError as exc:
            if exc.status == 404:
                return False
            raise
        return body is not None

    async def _send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        wait = self.pace.reserve(self._clock())
        if wait > 0:
            await asyncio.sleep(wait)
        async with self._slots:
            started = time.perf_counter()
            try:
                response = await self._http.request(method, url, params=params, json=json)
            except TransportError as exc:
                self._observe(operation, "error", time.perf_counter() - started)
                raise TransientError(
                    f"{type(exc).__name__} on {operation}", operation=operation
                ) from exc
            self._observe(operation, str(response.status), time.perf_counter() - started)
        status = response.status
        if status == 429:
            before = self.pace.rate
            self.pace.throttled(self._clock())
            if self.pace.rate != before:
                log.warning(
                    "Mem0 is throttling: pacing calls at %.1f per second", self.pace.rate or 0
                )
        verdict = classify(status, missing_is_success=missing_ok)
        if verdict is Verdict.SUCCESS:
            self.pace.succeeded(self._clock())
            return _json_or_none(response)
        message = f"HTTP {status} on {operation}: {_error_text(response)}"
        if status == 502:
            code = _error_code(response)
            if code in _PERMANENT_502_CODES:
                raise RejectedError(message, operation=operation, status=status)
            if code == _UNCERTAIN_502_CODE:
                raise UncertainError(message, operation=operation, status=status)
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(response.retry_after, time.time())
            raise TransientError(
                message, operation=operation, status=status, retry_after_s=retry_after
            )
        if verdict is Verdict.HALT:
            if status == 403 and "admin role" in message.lower():
                raise AdminRoleError(message, operation=operation, status=status)
            raise AuthError(message, operation=operation, status=status)
        raise RejectedError(message, operation=operation, status=status)


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
            results = answer.get("results", []) if isinstance(answer, dict) else []
            ids.extend(str(memory["id"]) for memory in results)
            if not results or not answer.get("next"):
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
        results = answer.get("results", []) if isinstance(answer, dict) else answer or []
        return [str(memory["id"]) for memory in results][:limit]

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


# Every stored record of a scope, in a Platform listing: expired ones, and Dream's merged
# duplicates, which every read hides unless asked (the v3 body takes the flag beside filters).
_EVERY_RECORD = {"show_expired": True, "include_merged": True}


def _entity_path(entity_type: str, entity_id: str) -> str:
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}")
    return f"/v2/entities/{entity_type}/{quote(entity_id, safe='')}/"


def _error_code(response: Reply) -> str | None:
    """The `code` of a self-hosted error body (server/errors.py), if there is one."""
    body = _json_or_none(response)
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _json_or_none(response: Reply) -> Any:
    """The answer's JSON, or None for anything else: a body nested past the parser's depth
    (`[[[[...`) raises RecursionError, which must not escape a call and kill its flush."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _error_text(response: Reply) -> str:
    """The server's own words, one line, bounded (Mem0 uses error, message, detail or a list)."""
    body = _json_or_none(response)
    text: object = body
    if isinstance(body, dict):
        text = body.get("error") or body.get("message") or body.get("detail") or body
    elif body is None:
        text = response.reason
    return " ".join(str(text).split())[:_ERROR_MESSAGE_LIMIT]


def _batch_body(memory_ids: Sequence[str]) -> RawJson | dict[str, Any]:
    """`{"memories": [{"memory_id": ...}, ...]}`; built by joining when every id is a UUID
    (nothing in one needs escaping), a few times faster than json.dumps of 1000 dicts."""
    if all_uuids(memory_ids):
        joined = '"},{"memory_id":"'.join(memory_ids)
        return RawJson(f'{{"memories":[{{"memory_id":"{joined}"}}]}}'.encode())
    return {"memories": [{"memory_id": memory_id} for memory_id in memory_ids]}
