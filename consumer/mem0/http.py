"""The HTTP seam of the Mem0 client: one small interface, and two of its implementations.

The third, the default, is the lean client of lean_http.py. `AiohttpSession` serves where the
environment sets a proxy: on a 2-core machine httpx's own connection pool costs about 3 ms of
CPU per request and httpx's request/response model another 0.5 ms even over a faster
transport, against about 0.25 ms for aiohttp (`python -m bench.http_client`), and at thousands
of calls per second that is the whole budget. `HttpxSession` takes any httpx transport (a
mock for a unit test, HTTP/2, a proxy setup httpx handles and aiohttp does not).
Each answers a `Reply`, or raises `TransportError` when no HTTP answer came.

What every implementation (the lean one of lean_http.py too) shares is their base class,
`HttpSession`: the constructor's base URL, headers and limits, the request signature, the body
encoded once (`RawJson` as it is, anything else as compact JSON), so that each only sends
bytes its own way; and what an answer may be (`check_head`), so that whatever is on the Mem0
URL meets the same refusals whichever client reads it: a status outside 100-599, a
Content-Encoding other than identity (we ask for identity and undo nothing: a small gzip body
can inflate a thousandfold), a Transfer-Encoding other than `chunked` alone or beside a
Content-Length (RFC 9112 6.1: a sign of request smuggling), a length that is not plain digits
or passes the body cap. The cap (`max_body_bytes`) is counted as the body arrives, never after.
Any exception a session lets out that is not a `TransportError` (a parser's own type,
ValueError, UnicodeError, RecursionError) becomes one in `request`: a hostile answer is a
failure of its call, retried, never of the flush that made it.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, Unpack

import aiohttp
import httpx

from consumer.core.errors import ConsumerError

__all__ = [
    "MAX_BODY_BYTES",
    "AiohttpSession",
    "HeadFields",
    "HttpSession",
    "HttpxSession",
    "Limits",
    "RawJson",
    "Reply",
    "TransportError",
    "check_head",
    "proxy_for",
]

_JSON_HEADERS = {"Content-Type": "application/json"}
# Connecting takes at most this long, however long a call may take once connected.
_CONNECT_TIMEOUT_CAP_S = 10.0
# No Mem0 answer comes near this (a 1000-memory listing is a few MB); past it, it is not one.
MAX_BODY_BYTES = 64 * 1024 * 1024


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
    """A session's bounds: how long one call may take, how many may be in flight, and how large
    an answer's body may be (`MAX_BODY_BYTES` unless told; a test sets a small one)."""

    timeout_s: float
    max_connections: int
    max_body_bytes: NotRequired[int]


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
        self._max_body = limits.get("max_body_bytes", MAX_BODY_BYTES)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Reply:
        body = _encoded(json)
        try:
            return await self._send(method, path, params, body)
        except TransportError:
            raise
        except Exception as exc:
            # Whatever a parser or a library raises of its own on a hostile answer: the type
            # only (a library's message may hold the URL, and with it personal data).
            raise TransportError(f"{type(exc).__name__} reading the answer") from exc

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


class HeadFields:
    """The framing fields of one answer's head (Content-Length, Transfer-Encoding,
    Content-Encoding), gathered as a parser reports them, for `check_head`."""

    __slots__ = ("encodings", "lengths", "transfers")

    def __init__(self) -> None:
        self.lengths: list[str] = []
        self.transfers: list[str] = []
        self.encodings: list[str] = []

    def add(self, name: bytes | str, value: bytes | str) -> None:
        """One header; any other than the three framing ones is ignored."""
        key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        kept = self.lengths if key == "content-length" else None
        if key == "transfer-encoding":
            kept = self.transfers
        elif key == "content-encoding":
            kept = self.encodings
        if kept is not None:
            kept.append(value.decode("latin-1") if isinstance(value, bytes) else value)

    @classmethod
    def of(cls, headers: Iterable[tuple[str, str]]) -> HeadFields:
        """From a library's parsed headers, every value of a repeated name apart."""
        fields = cls()
        for name, value in headers:
            fields.add(name, value)
        return fields

    @property
    def content_length(self) -> int | None:
        return int(self.lengths[0]) if self.lengths else None

    @property
    def chunked(self) -> bool:
        return bool(self.transfers)  # `check_head` admits `chunked` alone and nothing else


def _tokens(values: list[str]) -> list[str]:
    return [token.strip().lower() for value in values for token in value.split(",")]


def check_head(status: int, fields: HeadFields, max_body: int) -> TransportError | None:
    """What is wrong with an answer's head, or None: the checks every session makes."""
    if not 100 <= status <= 599:
        return TransportError(f"BadStatus: {status} is not an HTTP status")
    if status < 200:  # a 101 switch of protocols, or a 1xx a library let through
        return TransportError(f"InterimStatus: {status} is not a final answer")
    if any(token not in ("", "identity") for token in _tokens(fields.encodings)):
        shown = ", ".join(fields.encodings)[:40]
        return TransportError(f"ContentEncoding {shown!r} refused: identity was asked for")
    if fields.transfers:
        if _tokens(fields.transfers) != ["chunked"]:
            shown = ", ".join(fields.transfers)[:40]
            return TransportError(f"TransferEncoding {shown!r} refused: only chunked, alone")
        if fields.lengths:
            return TransportError("TransferEncoding with a Content-Length refused")
    if fields.lengths:
        if len(set(fields.lengths)) > 1 or not all(_digits(v) for v in fields.lengths):
            return TransportError("BadContentLength: not one length in plain digits")
        length = fields.lengths[0]
        if len(length) > len(str(max_body)) or int(length) > max_body:
            return TransportError(f"BodyTooLong: Content-Length over {max_body} bytes")
    return None


def _digits(value: str) -> bool:
    # str.isdigit alone takes "²" and other Unicode digits, which int() then refuses.
    return value.isascii() and value.isdigit()


def _too_long(max_body: int) -> TransportError:
    return TransportError(f"BodyTooLong: over {max_body} bytes")


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
                # Nothing is undone (`check_head` refuses an encoded answer), and a server's
                # cookies are not kept: the Mem0 calls need none, and a jar only grows.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
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
                fields = HeadFields.of(response.headers.items())
                error = check_head(response.status, fields, self._max_body)
                if error is not None:
                    response.close()  # the connection too: its bytes are not to be read
                    raise error
                chunks, size = [], 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > self._max_body:
                        response.close()
                        raise _too_long(self._max_body)
                    chunks.append(chunk)
                return Reply(
                    response.status,
                    b"".join(chunks),
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
            # The whole call's deadline: httpx times each read alone, so an answer that drips
            # a byte at a time, or 1xx answers without end, would never time out.
            async with (
                asyncio.timeout(self._timeout_s),
                self._client.stream(
                    method,
                    path,
                    params=params,
                    content=body,
                    headers=_JSON_HEADERS if body is not None else None,
                ) as response,
            ):
                # Leaving the block unread closes the connection (httpcore reuses only one
                # whose answer was read whole).
                fields = HeadFields.of(response.headers.multi_items())
                error = check_head(response.status_code, fields, self._max_body)
                if error is not None:
                    raise error
                chunks, size = [], 0
                # Bytes as they are: `check_head` let no Content-Encoding through to undo. (Not
                # aiter_raw: a mock transport's answer is read already, and only this reads it.)
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_body:
                        raise _too_long(self._max_body)
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise TransportError(f"TimeoutError: no answer in {self._timeout_s} s") from exc
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__) from exc
        finally:
            self._client.cookies.clear()  # a server's cookies are not kept: a jar only grows
        return Reply(
            response.status_code,
            b"".join(chunks),
            response.reason_phrase,
            response.headers.get("retry-after"),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
