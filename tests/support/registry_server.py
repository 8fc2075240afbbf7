"""A tiny Confluent-compatible Schema Registry for tests, on a thread of this process.

Speaks the two calls the consumer needs: `POST /subjects/{subject}/versions` and
`GET /schemas/ids/{id}`. Set `fail_with` to a status to make every request fail with it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryServer:
    """`with RegistryServer() as registry: ... registry.url ...`"""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.fail_with: int | None = None
        # How often each path was asked for, so tests can check the client's cache.
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ids_by_schema: dict[str, int] = {}
        self._schemas: dict[int, str] = {}
        self._subjects: dict[str, list[int]] = {}
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RegistryServer:
        # A short poll interval keeps stop() (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add(self, subject: str, schema: str) -> int:
        """Register directly, without HTTP; the same schema always gets the same id."""
        # The real registry compares schemas by a canonical form; sorted JSON is close enough.
        key = json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
        with self._lock:
            schema_id = self._ids_by_schema.get(key)
            if schema_id is None:
                schema_id = self._ids_by_schema[key] = len(self._ids_by_schema) + 1
                self._schemas[schema_id] = schema
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
        return schema_id

    def schema(self, schema_id: int) -> str | None:
        with self._lock:
            return self._schemas.get(schema_id)


def _handler(registry: RegistryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self._begin():
                return
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                schema = registry.schema(int(parts[2]))
                if schema is None:
                    self._send(404, {"error_code": 40403, "message": "Schema not found"})
                else:
                    self._send(200, {"schema": schema})
                return
            self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

        def do_POST(self) -> None:
            if not self._begin():
                return
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length))
                schema = body["schema"]
                schema_id = registry.add(unquote(parts[1]), schema)
            except (ValueError, KeyError, TypeError):
                self._send(422, {"error_code": 42201, "message": "Invalid schema"})
                return
            self._send(200, {"id": schema_id})

        def _begin(self) -> bool:
            with registry._lock:
                registry.hits[self.path] += 1
            if registry.fail_with is not None:
                self._send(registry.fail_with, {"error_code": registry.fail_with, "message": "x"})
                return False
            return True

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
