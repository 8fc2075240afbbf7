"""A small Confluent Schema Registry client: fetch a schema by id, register one.

Errors, under `consumer.core.errors.ConsumerError`::

    RegistryError            retriable = False  refused: 401, 403, 409, 422...
    ├── RegistryUnavailable  retriable = True   network, timeout, 408, 429, 5xx, garbled answer
    └── SchemaNotFound       retriable = False  404: no schema with that id

None of them carries the registry URL (it may hold credentials) or a schema's content.

Schemas by id are cached (ids are immutable), but at most `_CACHED` of them: a producer can name
any id, and every id the registry holds would otherwise stay in memory for good. The event
decoder bounds what it keeps and how often it asks on its own (schema_ids.py).
"""

from __future__ import annotations

import threading
from typing import Any, Final
from urllib.parse import quote

import httpx

from consumer.core.bounded import TtlCache
from consumer.core.errors import ConsumerError

__all__ = [
    "CONTENT_TYPE",
    "RegistryError",
    "RegistryUnavailable",
    "SchemaNotFound",
    "SchemaRegistryClient",
]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

# Statuses that say "try again later" rather than "this request is wrong".
_TRANSIENT = frozenset({408, 429})
# Schema texts kept, least recently used out first: a topic has a handful of writer versions
# and a receipts topic one, and a schema is a few kB.
_CACHED: Final = 1024


class RegistryError(ConsumerError):
    """The registry refused a request; retrying the same request will not help."""


class RegistryUnavailable(RegistryError):
    """The registry could not answer now; back off and retry."""

    retriable = True


class SchemaNotFound(RegistryError):
    """The registry has no schema with that id."""


class SchemaRegistryClient:
    """Synchronous client, safe to share between threads; schemas by id are cached (bounded)
    because ids are immutable."""

    def __init__(
        self,
        url: str,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self._base = url.rstrip("/")
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout, auth=auth)
        self._by_id: TtlCache[int, str] = TtlCache(_CACHED)
        # The event decoder fetches on threads of its own, receipts register on another.
        self._lock = threading.Lock()

    def get_schema(self, schema_id: int) -> str:
        """The schema (Avro JSON text) registered under `schema_id`."""
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        body = self._call("GET", f"/schemas/ids/{schema_id}", what=f"schema id {schema_id}")
        schema = body.get("schema")
        if not isinstance(schema, str):
            raise RegistryUnavailable(f"registry answer for schema id {schema_id} has no schema")
        with self._lock:
            self._by_id.put(schema_id, schema)
        return schema

    def register(self, subject: str, schema: str) -> int:
        """Register `schema` under `subject`; the same schema gets the same id back."""
        body = self._call(
            "POST",
            f"/subjects/{quote(subject, safe='')}/versions",
            what="register",
            json={"schema": schema},
        )
        schema_id = body.get("id")
        if not isinstance(schema_id, int) or isinstance(schema_id, bool):
            raise RegistryUnavailable("registry answer to register has no id")
        with self._lock:
            self._by_id.put(schema_id, schema)
        return schema_id

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> SchemaRegistryClient:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, what: str, json: Any = None) -> dict[str, Any]:
        headers = {"Accept": CONTENT_TYPE}
        if json is not None:
            headers["Content-Type"] = CONTENT_TYPE
        try:
            response = self._client.request(method, self._base + path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            # Type name only: httpx messages can include the URL, and with it credentials.
            raise RegistryUnavailable(f"registry {what}: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 404 and method == "GET":
            raise SchemaNotFound(f"registry has no {what}")
        if status >= 500 or status in _TRANSIENT:
            raise RegistryUnavailable(f"registry {what}: HTTP {status}")
        if status >= 400:
            raise RegistryError(f"registry {what}: HTTP {status}{_error_code(response)}")
        try:
            body = response.json()
        except ValueError as exc:
            raise RegistryUnavailable(f"registry {what}: answer is not JSON") from exc
        if not isinstance(body, dict):
            raise RegistryUnavailable(f"registry {what}: answer is not a JSON object")
        return body


def _error_code(response: httpx.Response) -> str:
    """Confluent's numeric error code (e.g. 40901), which says why without echoing content."""
    try:
        code = response.json().get("error_code")
    except (ValueError, AttributeError):
        return ""
    return f" (error_code {code})" if isinstance(code, int) else ""
