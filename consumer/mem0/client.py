"""The Mem0 client: the Platform API and the self-hosted REST server behind one small interface.

One pooled HTTP session per process (the lean client, aiohttp, or httpx with any transport:
consumer/mem0/http.py); it is a constructor argument so tests and benchmarks can inject one.
Every request is classified here (see `retry.classify`) and surfaces as a typed error
(consumer/mem0/errors.py); retrying is the executor's job, not this module's.

This module holds what both backends share: the interface, the sending and classifying of a
call, the session and the credentials header. Each backend's request shapes are its own
module's: platform_client.py (`PlatformClient`) and oss_client.py (`OssClient`).

Every listing that resolves or verifies an erasure sees every stored record of its scope: on
the Platform merged (Dream) and expired memories are asked for (`include_merged`,
`show_expired`); on the self-hosted server, expired ones and the largest page (`top_k=1000`,
the default being 20).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Unpack

import httpx

from consumer.core.capabilities import Capabilities
from consumer.core.events import Scope
from consumer.core.pacing import AdaptiveRate
from consumer.core.retry import Verdict, classify, parse_retry_after
from consumer.mem0.errors import (
    AdminRoleError,
    AuthError,
    Mem0Error,
    RejectedError,
    TransientError,
    UncertainError,
)
from consumer.mem0.http import (
    AiohttpSession,
    HttpSession,
    HttpxSession,
    Limits,
    Reply,
    TransportError,
    proxy_for,
)
from consumer.mem0.lean_http import LeanSession
from consumer.mem0.slots import Slots

__all__ = [
    "JobStatus",
    "Mem0Client",
    "Observer",
    "auth_headers",
    "listed_ids",
    "make_http_client",
    "status_label",
]

log = logging.getLogger(__name__)

# (operation, status label, seconds) -> None; the metrics module supplies it.
Observer = Callable[[str, str, float], None]

_ERROR_MESSAGE_LIMIT = 300

# The statuses a call's metric names as they are (what Mem0, a proxy in front of it, and the
# classification speak of); any other is named by its class ("3xx"), so that whatever is on
# the Mem0 URL cannot mint label values (every session admits only 100 to 599).
_LABELLED_STATUSES = frozenset(
    {200, 201, 202, 204, 400, 401, 403, 404, 405, 408, 409, 410, 413, 422, 429, 431}
    | {500, 501, 502, 503, 504}
)


def status_label(status: int) -> str:
    """The `status` label of a call's metric: a known status, else its class."""
    return str(status) if status in _LABELLED_STATUSES else f"{status // 100}xx"


# Self-hosted 502 codes (server/errors.py): these two are the request's own fault and will not
# pass on a retry; `unknown` may be either; every other code is an outage of a dependency.
_PERMANENT_502_CODES = frozenset({"provider_auth_failed", "provider_bad_request"})
_UNCERTAIN_502_CODE = "unknown"


@dataclass(frozen=True, slots=True)
class JobStatus:
    status: str  # PENDING, RUNNING, SUCCEEDED or FAILED
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED")


def auth_headers(backend: str, key: str) -> dict[str, str]:
    """The header that carries the API key: `X-API-Key` for the self-hosted server (none
    without a key: a server run without authentication), `Authorization: Token` for the
    Platform (any other backend name; the settings admit only these two)."""
    if backend == "oss":
        return {"X-API-Key": key} if key else {}
    return {"Authorization": f"Token {key}"}


def make_http_client(
    base_url: str,
    headers: dict[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    kind: str = "auto",
    **limits: Unpack[Limits],
) -> HttpSession:
    """The one pooled session: keep-alive connections sized to the call concurrency.

    `auto`: the lean client (consumer/mem0/lean_http.py: under half of aiohttp's CPU per call), or
    aiohttp when the environment sets a proxy for the URL. `lean`, `aiohttp` and `httpx` force
    one (MEM0_HTTP_CLIENT: an escape hatch should a network device disagree with the lean
    one). A transport (a test's mock, HTTP/2) always means httpx.
    """
    if transport is not None or kind == "httpx":
        return HttpxSession(base_url, headers, transport=transport, **limits)
    if kind == "lean" or (kind == "auto" and proxy_for(base_url) is None):
        return LeanSession(base_url, headers, **limits)
    return AiohttpSession(base_url, headers, **limits)


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
                # The session's own words (what was wrong with the answer; never a URL).
                raise TransientError(f"{exc} on {operation}", operation=operation) from exc
            self._observe(operation, status_label(response.status), time.perf_counter() - started)
        try:
            return self._conclude(operation, response, missing_ok)
        except Mem0Error:
            raise
        except Exception as exc:
            # Whatever reading a hostile answer raised that nothing here foresaw: this call
            # failed (and is retried), never the flush that made it.
            raise TransientError(
                f"{type(exc).__name__} reading the answer to {operation}",
                operation=operation,
                status=response.status,
            ) from exc

    def _conclude(self, operation: str, response: Reply, missing_ok: bool) -> Any:
        """The answer's JSON when the call succeeded, else the typed error it means."""
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


def listed_ids(results: object, operation: str) -> list[str]:
    """The ids of a listing's `results`: a list of records, each with a string id. Of another
    shape, the answer proves nothing (least of all that a scope is empty): the call failed."""
    if not isinstance(results, list):
        raise TransientError(f"{operation} answered without a list of results", operation=operation)
    ids: list[str] = []
    for memory in results:
        memory_id = memory.get("id") if isinstance(memory, dict) else None
        if not isinstance(memory_id, str) or not memory_id:
            raise TransientError(
                f"{operation} answered a record without an id", operation=operation
            )
        ids.append(memory_id)
    return ids


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
    # Cut before the split: a body may be megabytes, the message is a line.
    return " ".join(str(text)[: _ERROR_MESSAGE_LIMIT * 2].split())[:_ERROR_MESSAGE_LIMIT]
