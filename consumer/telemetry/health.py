"""The HTTP endpoint (README: Health and metrics): /metrics, /healthz and /readyz, on a daemon
thread.

Each response is written in one piece and the connection closed (HTTP/1.0), so a scrape never
waits on a delayed ACK and no connection outlives `stop()`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["HealthServer", "Readiness"]

log = logging.getLogger(__name__)

# () -> (ready, reason); the reason is shown on 503, e.g. "no partitions assigned".
Readiness = Callable[[], tuple[bool, str]]

_TEXT = "text/plain; charset=utf-8"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, readiness: Readiness
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.readiness = readiness
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a bad resolver.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("health endpoint: request failed", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mem0-deletion-consumer"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body = generate_latest(self.server.registry)
            except Exception:
                log.exception("health endpoint: collecting metrics failed")
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b"metrics unavailable\n")
                return
            self._reply(HTTPStatus.OK, body, CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(HTTPStatus.OK, b"ok\n")
        elif path == "/readyz":
            try:
                ready, reason = self.server.readiness()
            except Exception:
                log.exception("health endpoint: readiness check failed")
                ready, reason = False, "readiness check failed"
            if ready:
                self._reply(HTTPStatus.OK, b"ready\n")
            else:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {reason}\n".encode())
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str = _TEXT) -> None:
        head = (
            f"HTTP/1.0 {status.value} {status.phrase}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("health endpoint: " + format, *args)


class HealthServer:
    """Serves /metrics, /healthz and /readyz; port 0 picks a free port (see `.port`)."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        readiness: Readiness,
        host: str = "0.0.0.0",  # noqa: S104 (scraped from outside the pod)
    ) -> None:
        self._address = (host, port)
        self._registry = registry
        self._readiness = readiness
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the actual one when 0 was asked), else the asked one."""
        return self._server.server_port if self._server else self._address[1]

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server(self._address, self._registry, self._readiness)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="health-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
