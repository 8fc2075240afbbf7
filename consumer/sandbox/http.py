"""A small, fast HTTP/1.1 server on an asyncio Protocol: keep-alive, JSON responses.

Request bodies come with Content-Length or chunked. Each response leaves in exactly one
`transport.write` (headers and body joined): a split write lets Nagle and delayed ACKs stall a
keep-alive client for 40 ms.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

__all__ = ["App", "Connections", "Request", "Response", "encode_response", "start_http_server"]

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 512 * 1024 * 1024

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

    def _process(self) -> None:
        while not self._busy and not self._paused and self._transport is not None:
            try:
                request = self._parse()
            except _BadRequest as exc:
                self._send(Response(exc.status, {"detail": str(exc)}), keep_alive=False)
                return
            if request is None:
                return
            delay = self._app.delay_for(request)
            if delay > 0:
                self._busy = True
                self._pending = asyncio.get_running_loop().call_later(delay, self._later, request)
                return
            self._respond(request)

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
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parsed = _parse_chunked(buffer)
            if parsed is None:
                return None
            body, used = parsed
            del buffer[:used]
            return body
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest(400, "Invalid Content-Length") from None
        if length < 0 or length > MAX_BODY:
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
        headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1], parts[2], headers


def _parse_chunked(buffer: bytearray) -> tuple[bytes, int] | None:
    """(body, bytes used) once the last chunk and trailers are in, else None."""
    body = bytearray()
    pos = 0
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = bytes(buffer[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(400, "Invalid chunk size") from None
        pos = line_end + 2
        if size == 0:
            break
        if len(buffer) < pos + size + 2:
            return None
        body += buffer[pos : pos + size]
        pos += size + 2
        if len(body) > MAX_BODY:
            raise _BadRequest(413, "Request body too large")
    # Trailers (usually none) end with an empty line.
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        empty = line_end == pos
        pos = line_end + 2
        if empty:
            return bytes(body), pos


async def start_http_server(
    app: App, host: str, port: int, connections: Connections
) -> asyncio.Server:
    """Listen on host:port (0 picks a free port)."""
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol] = lambda: _HttpProtocol(app, connections)  # noqa: E731
    return await loop.create_server(factory, host, port, backlog=1024)
