"""A small, fast HTTP/1.1 server on an asyncio Protocol: keep-alive, JSON responses.

Request bodies come with Content-Length or chunked. Each response leaves in exactly one
`transport.write` (headers and body joined): a split write lets Nagle and delayed ACKs stall a
keep-alive client for 40 ms.

The framing is parsed strictly, before any route or key is looked at, because the sandbox may
listen on every interface (the compose file does): a Content-Length or chunk size that is not
plain digits (`-2`, `+5`, `0x10`, `1_0`, which `int()` takes) is a 400 and the connection
closes, so no input can send the parser backwards (a chunk size of -2 once looped for ever);
a body or chunk over `MAX_BODY` is a 413 before a byte of it is awaited; a request with both
Content-Length and Transfer-Encoding (or two different lengths) is refused, as a proxy in front
might frame it otherwise. Chunks are consumed as they arrive, so a body costs one pass, and
reading pauses while more than a request's worth of bytes is waiting for a held request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

__all__ = ["App", "Connections", "Request", "Response", "encode_response", "start_http_server"]

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
# The largest body the sandbox's users send is a seeding of 50,000 memories (~2 MB,
# bench/sandbox_capacity.py); a batch_delete of 1000 ids is ~40 KB.
MAX_BODY = 64 * 1024 * 1024
# A chunk-size line (hex digits, maybe an extension): nothing legitimate comes near this.
MAX_CHUNK_LINE = 4 * 1024
# Past this many bytes waiting in the buffer (pipelined behind a request held for its injected
# latency), reading pauses until they are taken.
_HIGH_WATER = MAX_HEAD + MAX_BODY

_DIGITS = re.compile(rb"[0-9]{1,19}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

_REASONS = {status.value: status.phrase for status in HTTPStatus}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class Response:
    status: int
    body: Any = None  # encoded as JSON
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class App(Protocol):
    """What the server hands requests to."""

    def delay_for(self, request: Request) -> float:
        """Seconds to wait before handling (injected latency), awaited without blocking."""

    def handle(self, request: Request) -> Response: ...


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def encode_response(response: Response, keep_alive: bool) -> bytes:
    """Status line, headers and JSON body as one bytes object."""
    body = json.dumps(response.body, separators=(",", ":")).encode()
    reason = _REASONS.get(response.status, "Unknown")
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    connection = "" if keep_alive else "Connection: close\r\n"
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{extra}{connection}\r\n"
    )
    return head.encode("latin-1") + body


class Connections:
    """The open connections, so that stopping the server can close them."""

    def __init__(self) -> None:
        self.open: set[_HttpProtocol] = set()

    def close_all(self) -> None:
        for protocol in list(self.open):
            protocol.close()


class _HttpProtocol(asyncio.Protocol):
    """One connection. Requests are answered in order; pipelined ones wait in the buffer."""

    def __init__(self, app: App, connections: Connections) -> None:
        self._app = app
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: tuple[str, str, str, dict[str, str]] | None = None
        self._busy = False  # a request is waiting for its injected latency
        self._paused = False  # the peer is not reading its responses
        self._continued = False
        self._eof = False  # the peer has shut its side; answer what is pending, then close
        # The pending answer of a request held for its latency: a timer, not a task (a task
        # and a sleep per request were a tenth of the sandbox's CPU under load).
        self._pending: asyncio.TimerHandle | None = None
        self._chunked: _ChunkedBody | None = None  # a chunked body being received
        self._reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.open.discard(self)
        self._transport = None
        if self._pending is not None:
            self._pending.cancel()

    def eof_received(self) -> bool:
        if not self._busy:
            return False  # nothing pending: let the transport close
        self._eof = True
        return True

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._process()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._process()
        if (
            len(self._buffer) > _HIGH_WATER
            and not self._reading_paused
            and self._transport is not None
        ):
            self._reading_paused = True
            self._transport.pause_reading()

    def _process(self) -> None:
        while not self._busy and not self._paused and self._transport is not None:
            try:
                request = self._parse()
            except _BadRequest as exc:
                self._buffer.clear()  # nothing after a framing error can be trusted
                self._send(Response(exc.status, {"detail": str(exc)}), keep_alive=False)
                return
            if request is None:
                self._resume_reading()
                return
            delay = self._app.delay_for(request)
            if delay > 0:
                self._busy = True
                self._pending = asyncio.get_running_loop().call_later(delay, self._later, request)
                return
            self._respond(request)

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _later(self, request: Request) -> None:
        self._busy = False
        self._pending = None
        self._respond(request)
        self._process()
        if self._eof and not self._busy:
            self.close()

    def _respond(self, request: Request) -> None:
        try:
            response = self._app.handle(request)
        except Exception:
            log.exception("sandbox handler failed on %s %s", request.method, request.path)
            response = Response(500, {"detail": "Internal sandbox error"})
        self._send(response, request.keep_alive)

    def _send(self, response: Response, keep_alive: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(encode_response(response, keep_alive))
        if not keep_alive:
            self._transport.close()
            self._transport = None

    # parsing

    def _parse(self) -> Request | None:
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise _BadRequest(431, "Request header fields too large")
                return None
            self._head = _parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
            self._continued = False
        method, target, version, headers = self._head
        body = self._body(headers)
        if body is None:
            self._send_continue(headers)
            return None
        self._head = None
        path, _, raw_query = target.partition("?")
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        return Request(
            method=method,
            path=unquote(path),
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            headers=headers,
            body=body,
            keep_alive=keep_alive,
        )

    def _body(self, headers: dict[str, str]) -> bytes | None:
        """The whole body once it has arrived (consumed from the buffer), else None."""
        buffer = self._buffer
        if "transfer-encoding" in headers:
            if headers["transfer-encoding"].strip().lower() != "chunked":
                raise _BadRequest(400, "Unsupported Transfer-Encoding (only chunked)")
            if "content-length" in headers:
                raise _BadRequest(400, "Both Content-Length and Transfer-Encoding")
            if self._chunked is None:
                self._chunked = _ChunkedBody()
            body = self._chunked.take(buffer)
            if body is not None:
                self._chunked = None
            return body
        text = headers.get("content-length", "0").strip()
        if not _DIGITS.fullmatch(text.encode("latin-1")):
            raise _BadRequest(400, "Invalid Content-Length")
        length = int(text)
        if length > MAX_BODY:
            raise _BadRequest(413, "Request body too large")
        if len(buffer) < length:
            return None
        body = bytes(buffer[:length])
        del buffer[:length]
        return body

    def _send_continue(self, headers: dict[str, str]) -> None:
        # curl waits for this before sending a large body; it is not a response, so a
        # second write here is fine.
        if (
            not self._continued
            and headers.get("expect", "").lower() == "100-continue"
            and self._transport is not None
        ):
            self._continued = True
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def _parse_head(raw: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "Malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(400, "Malformed header line")
        key, value = name.strip().lower(), value.strip()
        if key in _FRAMING and headers.get(key, value) != value:
            # Two framings of one body: whichever a proxy in front chose, we might not.
            raise _BadRequest(400, f"Conflicting {name.strip()} headers")
        headers[key] = value
    return parts[0].upper(), parts[1], parts[2], headers


_FRAMING = frozenset({"content-length", "transfer-encoding"})


class _ChunkedBody:
    """A chunked body, consumed from the buffer chunk by chunk as it arrives (one pass)."""

    __slots__ = ("body", "trailer_bytes", "trailers")

    def __init__(self) -> None:
        self.body = bytearray()
        self.trailers = False  # the last chunk is in; trailers (usually none) until a blank line
        self.trailer_bytes = 0

    def take(self, buffer: bytearray) -> bytes | None:
        """The body once the last chunk and the trailers are in (all consumed), else None."""
        while not self.trailers:
            line_end = buffer.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
            if line_end < 0:
                if len(buffer) > MAX_CHUNK_LINE:
                    raise _BadRequest(400, "Invalid chunk size line")
                return None
            size = _chunk_size(bytes(buffer[:line_end]))
            if size == 0:
                del buffer[: line_end + 2]
                self.trailers = True
                break
            if len(self.body) + size > MAX_BODY:
                raise _BadRequest(413, "Request body too large")
            start = line_end + 2
            end = start + size
            if len(buffer) < end + 2:
                return None
            if buffer[end : end + 2] != b"\r\n":
                raise _BadRequest(400, "Chunk not followed by CRLF")
            self.body += buffer[start:end]
            del buffer[: end + 2]
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if self.trailer_bytes + len(buffer) > MAX_HEAD:
                    raise _BadRequest(431, "Request header fields too large")
                return None
            del buffer[: line_end + 2]
            if line_end == 0:
                return bytes(self.body)
            self.trailer_bytes += line_end + 2
            if self.trailer_bytes > MAX_HEAD:
                raise _BadRequest(431, "Request header fields too large")


def _chunk_size(line: bytes) -> int:
    """A chunk-size line's size: hex digits only (`int(_, 16)` also takes -2, 0x10 and 1_0)."""
    text = line.split(b";", 1)[0].strip(b" \t")
    if not _HEX.fullmatch(text):
        raise _BadRequest(400, "Invalid chunk size")
    return int(text, 16)


async def start_http_server(
    app: App, host: str, port: int, connections: Connections
) -> asyncio.Server:
    """Listen on host:port (0 picks a free port)."""
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol] = lambda: _HttpProtocol(app, connections)  # noqa: E731
    return await loop.create_server(factory, host, port, backlog=1024)
