"""A tiny Confluent-compatible Schema Registry for tests, on a thread of this process.

Speaks the two calls the consumer needs: `POST /subjects/{subject}/versions` and
`GET /schemas/ids/{id}` (a query string, such as the client's `?normalize=False`, is ignored;
`hits` counts by path). Set `fail_with` to a status to make every request fail with it, its
body's message `fail_message` (a real registry's may quote the schema it refuses).

Like a managed registry it may require credentials, and serve over TLS:

- `basic_auth=(user, password)`: HTTP basic auth, as Confluent Cloud's API key and secret;
- `bearer_token=token`: `Authorization: Bearer <token>`, with the `target-sr-cluster` header
  `logical_cluster` (what confluent-kafka's client sends with a bearer token);
- `tls=directory`: HTTPS with a certificate for 127.0.0.1 from a throwaway CA (trustme), whose
  certificate is written to `ca_file` in `directory` for the client to trust.

A request without the right credentials is answered 401 (`error_code` 40101, as Confluent's)
and counted in `refused`; it is not counted in `hits`.
"""

from __future__ import annotations

import base64
import hmac
import json
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryServer:
    """`with RegistryServer() as registry: ... registry.url ...`"""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        logical_cluster: str = "lsrc-test",
        tls: Path | None = None,
    ) -> None:
        self.fail_with: int | None = None
        self.fail_message = "x"
        # How often each path was asked for, so tests can check the client's cache.
        self.hits: Counter[str] = Counter()
        self.refused = 0  # requests answered 401 for their credentials
        self._lock = threading.Lock()
        self._ids_by_schema: dict[str, int] = {}
        self._schemas: dict[int, str] = {}
        self._subjects: dict[str, list[int]] = {}
        self._authorization: str | None = None
        if basic_auth is not None:
            token = base64.b64encode(":".join(basic_auth).encode()).decode()
            self._authorization = f"Basic {token}"
        elif bearer_token is not None:
            self._authorization = f"Bearer {bearer_token}"
        self._cluster = logical_cluster if bearer_token is not None else None
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.ca_file: Path | None = None
        if tls is not None:
            self.ca_file = tls / "registry-ca.pem"
            self._server.socket = _tls_context(self.ca_file).wrap_socket(
                self._server.socket, server_side=True
            )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        scheme = "http" if self.ca_file is None else "https"
        return f"{scheme}://{host!s}:{port}"

    def authorised(self, authorization: str | None, cluster: str | None) -> bool:
        """Whether a request's `Authorization` (and `target-sr-cluster`) headers are right."""
        if self._authorization is None:
            return True
        if authorization is None or not hmac.compare_digest(
            authorization.encode(), self._authorization.encode()
        ):
            return False
        return self._cluster is None or cluster == self._cluster

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


def _tls_context(ca_file: Path) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 from a new CA, written to `ca_file`."""
    import trustme  # a test dependency, as the lean HTTP client's TLS test uses it

    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def _handler(registry: RegistryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self._begin():
                return
            parts = self._path().strip("/").split("/")
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
            parts = self._path().strip("/").split("/")
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

        def _path(self) -> str:
            return urlsplit(self.path).path

        def _begin(self) -> bool:
            if not registry.authorised(
                self.headers.get("Authorization"), self.headers.get("target-sr-cluster")
            ):
                with registry._lock:
                    registry.refused += 1
                self._send(401, {"error_code": 40101, "message": "Unauthorized"})
                return False
            with registry._lock:
                registry.hits[self._path()] += 1
            if registry.fail_with is not None:
                body = {"error_code": registry.fail_with, "message": registry.fail_message}
                self._send(registry.fail_with, body)
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
