"""A lean HTTP/1.1 client for the Mem0 calls: keep-alive connections, one write per request.

The erasure burst makes two calls per distinct scope (a delete_all and its job check), and at
that rate aiohttp's per-request machinery (URL objects, header multidicts, timers, a task per
connection) was the consumer's largest cost: ~0.4 ms of CPU per call on a 2-core machine.
This client does only what the Mem0 calls need (`python -m bench.http_client` compares them):

- a request is one `transport.write` of bytes built from a pre-rendered header block;
- responses are parsed from the protocol's buffer: status line, headers, and a body framed by
  Content-Length, chunked transfer coding, or the end of the connection; 1xx answers are
  skipped; gzip and deflate are undone (we ask for identity, but a proxy may not listen);
- connections are pooled (at most `max_connections` requests in flight, so at most that many
  sockets) and reused unless the server asked to close or the answer was not read whole;
- TLS through asyncio's own ssl support, with the default context (certificates verified).

Anything else is a `TransportError`, which the Mem0 client retries like any lost connection
(every Mem0 call the consumer makes is idempotent). Proxies are not spoken: `make_http_client`
uses aiohttp when the environment sets one for the base URL.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from typing import Unpack
from urllib.parse import quote, urlencode, urlsplit

from consumer.mem0.http import HttpSession, Limits, Reply, TransportError
from consumer.mem0.slots import Slots

__all__ = ["LeanSession"]

# A response head longer than this is not a Mem0 answer; refuse it rather than buffer it.
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


class _Answer:
    __slots__ = ("body", "close", "reason", "retry_after", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.retry_after: str | None = None
        self.close = False
        self.body = b""


class _Connection(asyncio.Protocol):
    """One socket; parses one response at a time into the waiter the request set."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Answer] | None = None
        self._answer = _Answer()
        self._head_done = False
        self._length: int | None = None  # body bytes expected; None: chunked or until close
        self._chunked = False
        self._encoding = ""
        self._chunks: list[bytes] = []
        self._chunked_size = 0
        self.lost = False
        self.answered = False  # any byte received since the last request was sent

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answered = True
        self._buffer += data
        if self._waiter is not None:
            try:
                self._parse()
            except TransportError as exc:
                self._fail(exc)

    def eof_received(self) -> bool:
        ends_with_close = self._head_done and self._length is None and not self._chunked
        if self._waiter is not None and ends_with_close:  # the body has ended with it
            self._answer.close = True
            self._finish(bytes(self._buffer))
            return False
        self._fail(TransportError("ServerDisconnected"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(TransportError("ServerDisconnected" if exc is None else type(exc).__name__))

    # -- requests ------------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[_Answer]:
        assert self.transport is not None
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._answer = _Answer()
        self._head_done = False
        self._length = None
        self._chunked = False
        self._encoding = ""
        self._chunks = []
        self._chunked_size = 0
        self.answered = False
        if self._buffer:  # bytes nobody asked for: the connection is out of step
            self._fail(TransportError("UnexpectedData"))
            return waiter
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- parsing -------------------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        while not self._head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise TransportError("HeadTooLong")
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._read_head(head)
        if self._chunked:
            self._read_chunks()
        elif self._length is not None and len(buffer) >= self._length:
            body = bytes(buffer[: self._length])
            del buffer[: self._length]
            self._finish(body)
        elif len(buffer) > _MAX_BODY:
            raise TransportError("BodyTooLong")

    def _read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise TransportError("BadStatusLine")
        status = int(parts[1])
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        answer = self._answer
        answer.status = status
        answer.reason = parts[2] if len(parts) > 2 else ""
        answer.close = parts[0] == "HTTP/1.0"
        length: int | None = None
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise TransportError("BadHeader")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise TransportError("BadContentLength")
                length = int(value)
            elif name == "transfer-encoding":
                self._chunked = value.lower().endswith("chunked")
            elif name == "connection":
                tokens = {token.strip().lower() for token in value.split(",")}
                answer.close = "close" in tokens or (answer.close and "keep-alive" not in tokens)
            elif name == "retry-after":
                answer.retry_after = value
            elif name == "content-encoding":
                self._encoding = value.lower()
        self._head_done = True
        if self._chunked:
            self._length = None
        elif length is not None:
            if length > _MAX_BODY:
                raise TransportError("BodyTooLong")
            self._length = length
        elif status in {204, 304}:
            self._length = 0
        else:
            self._length = None  # until the connection closes
            answer.close = True

    def _read_chunks(self) -> None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise TransportError("BadChunk")
                return
            size_text = bytes(buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise TransportError("BadChunk") from None
            if size == 0:
                # The last chunk, then optional trailers, then an empty line.
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return
                del buffer[: trailer_end + 4]
                self._finish(b"".join(self._chunks))
                return
            if len(buffer) < line_end + 2 + size + 2:
                return
            start = line_end + 2
            self._chunks.append(bytes(buffer[start : start + size]))
            self._chunked_size += size
            if self._chunked_size > _MAX_BODY:
                raise TransportError("BodyTooLong")
            if buffer[start + size : start + size + 2] != b"\r\n":
                raise TransportError("BadChunk")
            del buffer[: start + size + 2]

    def _finish(self, body: bytes) -> None:
        answer, waiter = self._answer, self._waiter
        self._waiter = None
        self.answered = bool(self._buffer)  # from here on, a byte means it spoke while idle
        if self._encoding in ("gzip", "x-gzip", "deflate"):
            try:
                body = zlib.decompress(body, 47)  # 32 + 15: gzip or zlib, told by the header
            except zlib.error:
                if waiter is not None and not waiter.done():
                    waiter.set_exception(TransportError("BadContentEncoding"))
                return
        elif self._encoding not in ("", "identity"):
            if waiter is not None and not waiter.done():
                waiter.set_exception(TransportError("UnknownContentEncoding"))
            return
        answer.body = body
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, exc: TransportError) -> None:
        waiter, self._waiter = self._waiter, None
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
                raise TransportError("TimeoutError") from exc

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
        if answer.close or self._closed:
            connection.close()
        else:
            self._idle.append(connection)
        return Reply(answer.status, answer.body, answer.reason, answer.retry_after)

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if connection.lost or transport is None or transport.is_closing():
                continue
            if connection.answered:  # spoke while idle (a 408, say): out of step
                connection.close()
                continue
            return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _transport, connection = await loop.create_connection(
                    _Connection,
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
