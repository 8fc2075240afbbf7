"""The HTTP endpoint (README: Health and metrics): /metrics, /healthz and /readyz, on one thread.

Each response is written in one piece and the connection closed (HTTP/1.0), so a scrape never
waits on a delayed ACK and no connection outlives `stop()`.

The endpoint listens on every interface by default (`METRICS_HOST`): the kubelet's probes and
Prometheus reach it from outside the pod. So anyone on the network may open connections, and
none may cost more than a socket. It runs on an asyncio loop of its own in one daemon thread,
never a thread per connection (a `ThreadingHTTPServer` kept a thread per idle client until the
client left: 300 idle connections, 300 threads). Each connection has `request_timeout_s` to
send its request and take the answer, then it is dropped; past `max_connections` open ones, the
oldest is dropped to make room, so a flood of idle or slow clients cannot keep a probe out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["MAX_CONNECTIONS", "REQUEST_TIMEOUT_S", "HealthServer", "Readiness"]

log = logging.getLogger(__name__)

# () -> (ready, reason); the reason is shown on 503, e.g. "no partitions assigned".
Readiness = Callable[[], tuple[bool, str]]

# A probe or a scrape sends its request at once and reads a few kilobytes: five seconds is
# generous (the kubelet gives up after 1 s by default, Prometheus after 10 s).
REQUEST_TIMEOUT_S = 5.0
# Prometheus and the probes need a handful; beyond this many, the oldest connection goes.
MAX_CONNECTIONS = 64
# A request line and headers; a probe's are a few hundred bytes.
_MAX_HEAD = 8 * 1024

_TEXT = "text/plain; charset=utf-8"


class HealthServer:
    """Serves /metrics, /healthz and /readyz; port 0 picks a free port (see `.port`)."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        readiness: Readiness,
        host: str = "0.0.0.0",  # noqa: S104 (scraped and probed from outside the pod)
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._address = (host, port)
        self._registry = registry
        self._readiness = readiness
        self._timeout = request_timeout_s
        self._max_connections = max(1, max_connections)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._running = threading.Event()
        self._error: BaseException | None = None
        # Open connections, oldest first (a dict keeps insertion order).
        self._open: dict[asyncio.StreamWriter, None] = {}

    @property
    def port(self) -> int:
        """The bound port once started (the actual one when 0 was asked), else the asked one."""
        return int(self._socket.getsockname()[1]) if self._socket else self._address[1]

    def start(self) -> None:
        """Bind (a bad address or a port in use raises here), then serve on a daemon thread."""
        if self._socket is not None:
            return
        host, port = self._address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Bound here rather than by asyncio, which would resolve and bind on the thread:
            # the caller learns of a port in use at once.
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        self._running.clear()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(sock),), name="health-http", daemon=True
        )
        self._thread.start()
        self._running.wait()
        if self._error is not None:
            error, self._error = self._error, None
            self.stop()
            raise RuntimeError(f"health endpoint failed to start: {error}") from error

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        if self._socket is not None:
            self._socket.close()
        self._socket = self._thread = self._loop = self._stopping = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- on the endpoint's own loop ------------------------------------------------------------

    async def _serve(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._connection, sock=sock, limit=_MAX_HEAD)
        except Exception as exc:  # start() raises it in the caller's thread
            self._error = exc
            return
        finally:
            self._running.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for writer in list(self._open):
                writer.transport.abort()
            self._open.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open[writer] = None
        while len(self._open) > self._max_connections:
            oldest = next(iter(self._open))
            del self._open[oldest]
            oldest.transport.abort()  # its reads end at once, and its task with them
        try:
            # One deadline for the whole exchange: a client that trickles its request or
            # does not read the answer is dropped when it passes.
            async with asyncio.timeout(self._timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                # Drain until every byte is with the kernel, not merely below the high-water
                # mark: a client that never reads must not keep a transport open after us.
                writer.transport.set_write_buffer_limits(high=0)
                writer.write(self._answer(head))
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            log.debug("health endpoint: connection dropped", exc_info=True)
        finally:
            self._open.pop(writer, None)
            writer.transport.abort()  # everything was written (or is given up): no lingering

    def _answer(self, head: bytes) -> bytes:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(HTTPStatus.BAD_REQUEST, b"bad request\n")
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, b"GET or HEAD\n", allow=True)
        status, body, content_type = self._route(target.split("?", 1)[0])
        return _response(status, body, content_type, head_only=method == "HEAD")

    def _route(self, path: str) -> tuple[HTTPStatus, bytes, str]:
        if path == "/metrics":
            try:
                return HTTPStatus.OK, generate_latest(self._registry), CONTENT_TYPE_LATEST
            except Exception:
                log.exception("health endpoint: collecting metrics failed")
                return HTTPStatus.INTERNAL_SERVER_ERROR, b"metrics unavailable\n", _TEXT
        if path == "/healthz":
            return HTTPStatus.OK, b"ok\n", _TEXT
        if path == "/readyz":
            try:
                ready, reason = self._readiness()
            except Exception:
                log.exception("health endpoint: readiness check failed")
                ready, reason = False, "readiness check failed"
            if ready:
                return HTTPStatus.OK, b"ready\n", _TEXT
            return HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {reason}\n".encode(), _TEXT
        return HTTPStatus.NOT_FOUND, b"not found\n", _TEXT


def _response(
    status: HTTPStatus,
    body: bytes,
    content_type: str = _TEXT,
    *,
    head_only: bool = False,
    allow: bool = False,
) -> bytes:
    head = (
        f"HTTP/1.0 {status.value} {status.phrase}\r\n"
        "Server: mem0-deletion-consumer\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        + ("Allow: GET, HEAD\r\n" if allow else "")
        + "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + body
