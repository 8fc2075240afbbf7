"""A lean HTTP/1.1 client for the Mem0 calls: keep-alive connections, one write per request,
answers parsed by llhttp (httptools).

The erasure burst makes two calls per distinct scope (a delete_all and its job check), and at
that rate aiohttp's per-request machinery (URL objects, header multidicts, timers, a task per
connection) was the consumer's largest cost on a 2-core machine. This client does only what
the Mem0 calls need, and so stays the default now that llhttp reads its answers: 132 µs of CPU
per call against 138 for its hand-written parser before, 368 for our aiohttp session and about
3000 for httpx, in one run of `python -m bench.http_client` (2 cores, 3000 deletes, 32 at once):

- a request is one `transport.write` of bytes built from a pre-rendered header block;
- answers are parsed by httptools, the binding of llhttp (the parser of Node.js, and of uvicorn
  and aiohttp through their own bindings), strict: exact chunk sizes in hex, Content-Length in
  plain digits, no Transfer-Encoding beside a Content-Length, no bare line feeds. A parser of
  our own had taken `0x5` and `-2` for chunk sizes and raised ValueError from inside asyncio;
- connections are pooled (at most `max_connections` requests in flight, so at most that many
  sockets) and reused only when the answer was read whole and the server did not ask to close;
- TLS through asyncio's own ssl support, with the default context (certificates verified).

Whatever is on the other end, what is held stays bounded (README, Development): the head
(status line, headers, interim 1xx answers) at 64 KiB, the body at the session's cap counted as
bytes arrive (a chunk size of 2^64 buys nothing), the chunk framing and trailers at another
64 KiB; and a connection that speaks while idle is closed, its bytes unread. What the checks
shared with the other sessions (http.py `check_head`) refuse, this one refuses too: a status
outside 100-599, any Content-Encoding but identity (we ask for identity and undo none: a
1 MB gzip body had inflated to 1 GiB inside the event loop), any Transfer-Encoding but
`chunked` alone. A 101 switch of protocols is refused.

Anything else is a `TransportError` that names what was wrong, and closes the connection; the
Mem0 client retries it like any lost connection (every Mem0 call the consumer makes is
idempotent). Proxies are not spoken: `make_http_client` uses aiohttp when the environment sets
one for the base URL.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Unpack
from urllib.parse import quote, urlencode, urlsplit

import httptools

from consumer.mem0.http import HeadFields, HttpSession, Limits, Reply, TransportError, check_head
from consumer.mem0.slots import Slots

__all__ = ["LeanSession"]

# A response head longer than this is not a Mem0 answer; refuse it rather than buffer it.
_MAX_HEAD = 64 * 1024
# Chunk-size lines, extensions and trailers of one answer: a Mem0 answer needs a few hundred.
_MAX_FRAMING = 64 * 1024
# The headers `check_head` needs; the others are not even decoded.
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"content-encoding"})


class _Refused(Exception):
    """Raised from a parser callback to stop llhttp; the error itself is `_Connection._error`."""


class _Answer:
    __slots__ = ("body", "close", "reason", "retry_after", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.retry_after: str | None = None
        self.close = False
        self.body = b""


class _Connection(asyncio.Protocol):
    """One socket; llhttp parses one answer at a time into the waiter the request set.

    The parser's callbacks (`on_*`) run inside `feed_data`; one that finds the answer bad
    records the error and raises `_Refused`, which stops llhttp.
    """

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[_Answer] | None = None
        self._answer = _Answer()
        self._error: TransportError | None = None
        self._fields = HeadFields()
        self._chunks: list[bytes] = []
        self._received = 0  # bytes of this answer so far, head and framing included
        self._body_size = 0
        self._head_done = False  # the final (not 1xx) answer's headers are in
        self._until_close = False  # no length given: the body ends with the connection
        self.lost = False
        self.answered = False  # any byte received since the last request was sent

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answered = True
        if self._waiter is None:
            # Nobody asked (an idle kept-alive socket, or bytes past the answer): out of step.
            # Closed, the bytes unread: an idle socket must not buffer what a server sends.
            self._fail(TransportError("UnexpectedData: bytes on an idle connection"))
            return
        self._received += len(data)
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # llhttp's own errors, or a callback's refusal
            self._fail(self._error or TransportError(f"BadAnswer: {exc}"))
            return
        # llhttp holds nothing of the head itself, but httptools joins a header's pieces and
        # we keep the reason: both are bounded by the bytes that are not body. A read is at
        # most 256 KiB, so this is checked well before anything large is held.
        if self._waiter is not None:
            framing = self._received - self._body_size
            if not self._head_done and framing > _MAX_HEAD:
                self._fail(TransportError(f"HeadTooLong: over {_MAX_HEAD} bytes"))
            elif framing > _MAX_HEAD + _MAX_FRAMING:
                self._fail(TransportError(f"FramingTooLong: over {_MAX_FRAMING} bytes"))

    def eof_received(self) -> bool:
        if self._waiter is not None and self._head_done and self._until_close:
            self._answer.close = True  # the body has ended with the connection
            self._finish()
            return False
        self._fail(TransportError("ServerDisconnected: closed before the answer ended"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        reason = "ServerDisconnected" if exc is None else type(exc).__name__
        self._fail(TransportError(reason))

    # -- llhttp's callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer behind the first: out of step
            self._refuse(TransportError("UnexpectedData: an answer nobody asked for"))
        self._answer = _Answer()
        self._fields = HeadFields()

    def on_status(self, reason: bytes) -> None:
        self._answer.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # a trailer: read past (and counted as framing), never used
        lowered = name.lower()
        if lowered in _FRAMING_FIELDS:
            self._fields.add(lowered, value)
        elif lowered == b"retry-after":
            self._answer.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:
            self._refuse(TransportError("SwitchingProtocols: a 101 answer is not spoken"))
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows, counted as head
        error = check_head(status, self._fields, self._max_body)
        if error is not None:
            self._refuse(error)
        self._head_done = True
        self._answer.status = status
        fields = self._fields
        self._until_close = (
            fields.content_length is None and not fields.chunked and status not in (204, 304)
        )

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._refuse(TransportError(f"BodyTooLong: over {self._max_body} bytes"))
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if not self._head_done:
            return  # the end of an interim answer
        self._answer.close = not self._parser.should_keep_alive()
        self._finish()

    # -- requests ------------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[_Answer]:
        assert self.transport is not None
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._answer = _Answer()
        self._error = None
        self._chunks = []
        self._received = self._body_size = 0
        self._head_done = self._until_close = False
        self.answered = False
        if self.lost or self.transport.is_closing():
            self._fail(TransportError("ServerDisconnected: closed before the request"))
            return waiter
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    # -- ends ------------------------------------------------------------------------------------

    def _refuse(self, error: TransportError) -> None:
        self._error = error
        raise _Refused

    def _finish(self) -> None:
        answer, waiter = self._answer, self._waiter
        self._waiter = None
        answer.body = b"".join(self._chunks)
        self._chunks = []
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, exc: TransportError) -> None:
        waiter, self._waiter = self._waiter, None
        self._chunks = []
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class LeanSession(HttpSession):
    """The `HttpSession` interface over `_Connection`s to one base URL."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        **limits: Unpack[Limits],
    ) -> None:
        super().__init__(base_url, headers, **limits)
        url = urlsplit(self._base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path
        self._ssl = (ssl_context or ssl.create_default_context()) if self._https else None
        default_port = self._port == (443 if self._https else 80)
        host = url.hostname if default_port else f"{url.hostname}:{self._port}"
        if ":" in url.hostname:  # an IPv6 literal keeps its brackets in Host
            host = f"[{url.hostname}]" + ("" if default_port else f":{self._port}")
        rendered = {"Host": host, "Accept-Encoding": "identity", **headers}
        for name, value in rendered.items():
            if any(c in name + value for c in "\r\n\0") or not name.strip():
                raise ValueError(f"header {name!r} holds a line break or is unnamed")
        self._head = "".join(f"{k}: {v}\r\n" for k, v in rendered.items()).encode("latin-1")
        self._slots = Slots(self._max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None
    ) -> Reply:
        target = quote(self._prefix + path, safe="/:@!$&'()*+,;=-._~%")
        if params:
            target += "?" + urlencode(params, quote_via=quote)
        body = body or b""
        lines = f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + self._head
        if body or method in ("POST", "PUT", "PATCH"):
            lines += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        data = lines + b"\r\n" + body
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout_s):
                    return await self._exchange(data)
            except TimeoutError as exc:
                raise TransportError(f"TimeoutError: no answer in {self._timeout_s} s") from exc

    async def _exchange(self, data: bytes) -> Reply:
        connection = self._take_idle()
        try:
            if connection is None:
                connection = await self._connect()
                answer = await connection.send(data)
            else:
                try:
                    answer = await connection.send(data)
                except TransportError:
                    if connection.answered:
                        raise
                    # A kept-alive socket the server had closed while idle: not an answer,
                    # and nothing was processed; once more on a new one, as browsers do.
                    connection = await self._connect()
                    answer = await connection.send(data)
        except BaseException:
            if connection is not None:
                connection.close()  # cancelled or failed mid-answer: its bytes are out of step
            raise
        if answer.close or self._closed or not connection.reusable:
            connection.close()
        else:
            self._idle.append(connection)
        return Reply(answer.status, answer.body, answer.reason, answer.retry_after)

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(self._max_body),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except TimeoutError as exc:
            raise TransportError("ConnectTimeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(type(exc).__name__) from exc
        return connection

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
