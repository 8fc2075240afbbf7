"""The HTTP seam of the Mem0 client: one small interface, and two of its implementations.

The third, the default, is the lean client of lean_http.py. `AiohttpSession` serves where the
environment sets a proxy: on a 2-core machine httpx's own connection pool costs about 3 ms of
CPU per request and httpx's request/response model another 0.5 ms even over a faster
transport, against about 0.25 ms for aiohttp (`python -m bench.http_client`), and at thousands
of calls per second that is the whole budget. `HttpxSession` takes any httpx transport (a
mock for a unit test, HTTP/2, a proxy setup httpx handles and aiohttp does not).
Each answers a `Reply`, or raises `TransportError` when no HTTP answer came.

What every implementation (the lean one of lean_http.py too) shares is their base class,
`HttpSession`: the constructor's base URL, headers and limits, the request signature, and the
body encoded once (`RawJson` as it is, anything else as compact JSON), so that each only sends
bytes its own way.
"""

from __future__ import annotations

import json as jsonlib
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import aiohttp
import httpx

from consumer.core.errors import ConsumerError

__all__ = [
    "AiohttpSession",
    "HttpSession",
    "HttpxSession",
    "Limits",
    "RawJson",
    "Reply",
    "TransportError",
    "proxy_for",
]

_JSON_HEADERS = {"Content-Type": "application/json"}
# Connecting takes at most this long, however long a call may take once connected.
_CONNECT_TIMEOUT_CAP_S = 10.0


class TransportError(ConsumerError):
    """A timeout or a broken connection: no HTTP answer. The Mem0 client turns it into a
    `TransientError` (every call it makes is idempotent, so trying again is safe)."""

    retriable = True


@dataclass(frozen=True, slots=True)
class RawJson:
    """A request body already encoded as JSON (a batch of 1000 ids is cheaper built by hand)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    reason: str
    retry_after: str | None = None

    def json(self) -> Any:
        return jsonlib.loads(self.body) if self.body else None


class Limits(TypedDict):
    """A session's bounds: how long one call may take, and how many may be in flight."""

    timeout_s: float
    max_connections: int


class HttpSession(ABC):
    """What the Mem0 client calls: pooled keep-alive connections to one base URL, sending fixed
    headers with every request.

    `request` encodes the body once, whichever implementation sends it; `_send` gets the bytes
    (None: no body) and answers the `Reply`, or raises `TransportError`.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str], **limits: Unpack[Limits]) -> None:
        self._base = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout_s = limits["timeout_s"]
        self._connect_timeout_s = min(self._timeout_s, _CONNECT_TIMEOUT_CAP_S)
        self._max_connections = limits["max_connections"]

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        return await self._send(method, path, params, _encoded(json))

    @abstractmethod
    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None
    ) -> Reply:
        """One request with its body already encoded (sent as application/json)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""


def _encoded(json: Any) -> bytes | None:
    """The request body: a `RawJson`'s bytes as they are, anything else as compact JSON."""
    if isinstance(json, RawJson):
        return json.data
    if json is None:
        return None
    return jsonlib.dumps(json, separators=(",", ":")).encode()


class AiohttpSession(HttpSession):
    """The session over aiohttp; its `ClientSession` is made on first use, inside the running
    event loop, as aiohttp requires."""

    def __init__(self, base_url: str, headers: Mapping[str, str], **limits: Unpack[Limits]) -> None:
        super().__init__(base_url, headers, **limits)
        self._timeout = aiohttp.ClientTimeout(
            total=self._timeout_s, connect=self._connect_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxy = proxy_for(self._base)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # Not trust_env: aiohttp would read the proxy variables again on every request,
                # which triples its CPU per call; `_proxy` reads them once instead.
                trust_env=False,
            )
        return self._session

    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None
    ) -> Reply:
        try:
            async with self._open().request(
                method,
                self._base + path,
                params=params,
                data=body,
                headers=_JSON_HEADERS if body is not None else None,
                allow_redirects=False,
                proxy=self._proxy,
            ) as response:
                body = await response.read()
                return Reply(
                    response.status,
                    body,
                    response.reason or "",
                    response.headers.get("Retry-After"),
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) sets for this URL."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if urllib.request.proxy_bypass(host.split(":", 1)[0]):
        return None
    return urllib.request.getproxies().get(scheme)


class HttpxSession(HttpSession):
    """The same over an `httpx.AsyncClient` (and so any httpx transport)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **limits: Unpack[Limits],
    ) -> None:
        super().__init__(base_url, headers, **limits)
        pool = httpx.Limits(
            max_connections=self._max_connections,
            max_keepalive_connections=self._max_connections,
        )
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=self._headers,
            timeout=httpx.Timeout(self._timeout_s, connect=self._connect_timeout_s),
            limits=pool,
            transport=transport,
            follow_redirects=False,
        )

    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None
    ) -> Reply:
        try:
            response = await self._client.request(
                method,
                path,
                params=params,
                content=body,
                headers=_JSON_HEADERS if body is not None else None,
            )
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__) from exc
        return Reply(
            response.status_code,
            response.content,
            response.reason_phrase,
            response.headers.get("retry-after"),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
