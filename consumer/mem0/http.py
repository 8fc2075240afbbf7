"""The HTTP seam of the Mem0 client: one small interface, two implementations.

`AiohttpSession` is the default: on a 2-core machine httpx's own connection pool costs about
3 ms of CPU per request and httpx's request/response model another 0.5 ms even over a faster
transport, against about 0.25 ms for aiohttp (`python -m bench.http_client`), and at thousands
of calls per second that is the whole budget. `HttpxSession` takes any httpx transport (a
mock for a unit test, HTTP/2, a proxy setup httpx handles and aiohttp does not).
Both answer a `Reply`, or raise `TransportError` when no HTTP answer came.
"""

from __future__ import annotations

import json as jsonlib
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx

__all__ = [
    "AiohttpSession",
    "HttpSession",
    "HttpxSession",
    "RawJson",
    "Reply",
    "TransportError",
    "proxy_for",
]

_JSON_HEADERS = {"Content-Type": "application/json"}


class TransportError(Exception):
    """A timeout or a broken connection: no HTTP answer."""


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


class HttpSession(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Reply: ...

    async def aclose(self) -> None: ...


class AiohttpSession:
    """Pooled keep-alive connections to one base URL; the session is made on first use, inside
    the running event loop, as aiohttp requires."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], *, timeout_s: float, max_connections: int
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 10.0))
        self._max_connections = max_connections
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

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        raw = json.data if isinstance(json, RawJson) else None
        try:
            async with self._open().request(
                method,
                self._base + path,
                params=params,
                json=None if raw is not None else json,
                data=raw,
                headers=_JSON_HEADERS if raw is not None else None,
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


class HttpxSession:
    """The same over an `httpx.AsyncClient` (and so any httpx transport)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout_s: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=limits,
            transport=transport,
            follow_redirects=False,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        try:
            if isinstance(json, RawJson):
                response = await self._client.request(
                    method, path, params=params, content=json.data, headers=_JSON_HEADERS
                )
            else:
                response = await self._client.request(method, path, params=params, json=json)
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
