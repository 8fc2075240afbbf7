"""The Schema Registry as the decoder and the receipt codec use it: confluent-kafka's own client
behind our errors and a bounded cache.

The requests are made by confluent-kafka's `SchemaRegistryClient`, the synchronous one (the
decoder's lookups run on threads off the event loop, `schema_ids.py`, and the receipt schema is
registered in the loop's executor, `receipt_codec.py`), configured from settings like every
Confluent tool (`registry_config.py`): basic auth, bearer tokens (static or OAuth), a private CA
or a client certificate, a proxy. This module is still needed, as a thin adapter, for what that
client does not do:

- Our errors, under `consumer.core.errors.ConsumerError`, which the callers wait out and never
  dead-letter for (a registry outage is no message's fault)::

      RegistryError            retriable = False  refused: 401, 403, 409, 422, untrusted TLS...
      ├── RegistryUnavailable  retriable = True   network, timeout, 408, 429, 5xx, garbled
      │                                           answer, no bearer token from the endpoint
      └── SchemaNotFound       retriable = False  404: no schema with that id

  Each is one line naming the status, and for a 401 or 403 the settings that hold the
  credentials; none carries the URL (it may hold credentials), a credential or a schema. The
  client's own `SchemaRegistryError` carries the registry's message, which may quote a schema,
  and the HTTP library's errors may carry the URL: neither is chained into ours.
- A bounded cache. The client keeps every schema it fetched by id for good, in plain dicts, and
  a producer can name any id. The texts are kept here, at most `_CACHED` of them, and the
  client's caches are emptied each time `_CACHED` ids have been fetched anew, so neither holds
  more than that. The event decoder bounds what it keeps and how often it asks on its own
  (`schema_ids.py`).
- No retries inside a call by default (`DEFAULTS`): the client's retries sleep in the calling
  thread, holding a lookup thread (and a shutdown) for seconds, while every caller already waits
  out a failing registry at its own pace (`core.retry.wait_out_delays`), and says so in its
  logs. `SCHEMA_REGISTRY_MAX_RETRIES` turns them on. A call times out after 10 s unless
  `SCHEMA_REGISTRY_TIMEOUT` says otherwise (the client's own default is never).
- The interface the decoder and the receipt codec use: `get_schema(id)` is the schema's text,
  `register(subject, text)` its id.

A configuration the client refuses when it is built (an unknown property, missing bearer
properties, a CA or key it cannot load) is a `RegistrySettingError` naming the property; the
settings turn it into the one-line `SettingsError` (`settings/registry_check.py`).

confluent-kafka's registry client is imported when a client is built, not with this module: it
took ~0.4 s to import (authlib, `-X importtime`), which a process without a registry never pays.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import httpx

from consumer.core.bounded import TtlCache
from consumer.core.errors import ConsumerError

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient as _ConfluentClient

__all__ = [
    "DEFAULTS",
    "RegistryError",
    "RegistrySettingError",
    "RegistryUnavailable",
    "SchemaNotFound",
    "SchemaRegistryClient",
]

T = TypeVar("T")

# Ours over the client's defaults (see the module): no sleeping retries, a bounded wait.
DEFAULTS: Final[Mapping[str, object]] = {"timeout": 10.0, "max.retries": 0}

# Statuses that say "try again later" rather than "this request is wrong".
_TRANSIENT = frozenset({408, 429})
# Schema texts kept, least recently used out first: a topic has a handful of writer versions
# and a receipts topic one, and a schema is a few kB.
_CACHED: Final = 1024
_UNRECOGNIZED = "Unrecognized properties: "


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP library's errors: confluent-kafka uses httpx2 where it is installed, else httpx."""
    try:
        import httpx2
    except ImportError:
        return (httpx.HTTPError,)
    return (httpx.HTTPError, httpx2.HTTPError)


class RegistryError(ConsumerError):
    """The registry refused a request; retrying the same request will not help."""


class RegistryUnavailable(RegistryError):
    """The registry could not answer now; back off and retry."""

    retriable = True


class SchemaNotFound(RegistryError):
    """The registry has no schema with that id."""


class RegistrySettingError(ConsumerError):
    """The client refused its configuration. `prop`: the property it is about (None: none in
    particular); `unknown`: a property the client does not have."""

    def __init__(self, prop: str | None, message: str, *, unknown: bool = False) -> None:
        super().__init__(f"{prop}: {message}" if prop else message)
        self.prop = prop
        self.message = message
        self.unknown = unknown


class SchemaRegistryClient:
    """confluent-kafka's client behind our errors; safe to share between threads.

    `config`: the URL, or the client's configuration (`registry_config.registry_config`), over
    `DEFAULTS`. `credentials`: what a 401 or 403 tells to check ("check X"; by default the
    settings `config` takes its credentials from). `client`: an httpx client to send the
    requests instead of the one built from `config` (tests: a mock transport).
    """

    def __init__(
        self,
        config: str | Mapping[str, object],
        *,
        credentials: str | None = None,
        client: Any = None,
    ) -> None:
        conf = {**DEFAULTS, **({"url": config} if isinstance(config, str) else config)}
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry import SchemaRegistryClient as Confluent

        try:
            self._client: _ConfluentClient = Confluent(conf)
        except (ValueError, TypeError, OSError) as exc:  # ssl.SSLError is an OSError
            raise _refused(conf, exc) from None
        if client is not None:
            # The client sends through its `_rest_client.session`, an httpx client: the seam.
            self._client._rest_client.session.close()
            self._client._rest_client.session = client
        self._schema = Schema
        self._credentials = credentials or _credentials_of(conf)
        self._transport = _transport_errors()
        self._by_id: TtlCache[int, str] = TtlCache(_CACHED)
        self._fetched = 0  # ids fetched since the client's caches were last emptied
        # The event decoder fetches on threads of its own, receipts register on another.
        self._lock = threading.Lock()

    def get_schema(self, schema_id: int) -> str:
        """The schema (Avro JSON text) registered under `schema_id`."""
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        what = f"schema id {schema_id}"
        schema = self._call(what, lambda: self._client.get_schema(schema_id), get=True)
        text = getattr(schema, "schema_str", None)
        if not isinstance(text, str):
            raise RegistryUnavailable(f"registry answer for {what} has no schema")
        self._remember(schema_id, text)
        return text

    def register(self, subject: str, schema: str) -> int:
        """Register `schema` under `subject`; the same schema gets the same id back."""
        request = self._schema(schema, "AVRO")
        schema_id = self._call("register", lambda: self._client.register_schema(subject, request))
        if not isinstance(schema_id, int) or isinstance(schema_id, bool):
            raise RegistryUnavailable("registry answer to register has no id")
        self._remember(schema_id, schema)
        return schema_id

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SchemaRegistryClient:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def _remember(self, schema_id: int, text: str) -> None:
        with self._lock:
            self._by_id.put(schema_id, text)
            self._fetched += 1
            if self._fetched < _CACHED:
                return
            self._fetched = 0
        # The client's caches grow with every id it is asked (see the module).
        self._client.clear_caches()  # type: ignore[no-untyped-call]

    def _call(self, what: str, request: Callable[[], T], *, get: bool = False) -> T:
        """`request()`, every failure as one of our errors (`from None`: see the module)."""
        from confluent_kafka.schema_registry.error import OAuthTokenError, SchemaRegistryError

        try:
            return request()
        except SchemaRegistryError as exc:
            raise self._refusal(what, exc.http_status_code, exc.error_code, get=get) from None
        except OAuthTokenError:
            raise RegistryUnavailable(
                f"registry {what}: no bearer token from the token endpoint (check "
                "SCHEMA_REGISTRY_BEARER_AUTH_ISSUER_ENDPOINT_URL and the client id and secret)"
            ) from None
        except self._transport as exc:
            if _untrusted(exc):
                raise RegistryError(
                    f"registry {what}: its TLS certificate is not trusted "
                    "(check SCHEMA_REGISTRY_SSL_CA_LOCATION)"
                ) from None
            # Type name only: the HTTP library's messages can include the URL.
            raise RegistryUnavailable(f"registry {what}: {type(exc).__name__}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # The client parses the answer as it comes: not JSON, not an object, no fields.
            raise RegistryUnavailable(
                f"registry {what}: garbled answer ({type(exc).__name__})"
            ) from None

    def _refusal(self, what: str, status: int, code: object, *, get: bool) -> RegistryError:
        if status == 404 and get:
            return SchemaNotFound(f"registry has no {what}")
        if status >= 500 or status in _TRANSIENT:
            return RegistryUnavailable(f"registry {what}: HTTP {status}")
        if status == 401:
            return RegistryError(
                f"registry {what}: HTTP 401, credentials refused ({self._credentials})"
            )
        if status == 403:
            return RegistryError(
                f"registry {what}: HTTP 403, not allowed with these credentials "
                f"({self._credentials}, and what they are granted)"
            )
        # Confluent's numeric error code (e.g. 40901) says why without echoing content.
        detail = f" (error_code {code})" if isinstance(code, int) and code > 0 else ""
        return RegistryError(f"registry {what}: HTTP {status}{detail}")


def _credentials_of(conf: Mapping[str, object]) -> str:
    """What a 401 tells to check: the settings that hold the credentials `conf` sends."""
    source = conf.get("bearer.auth.credentials.source")
    if source == "STATIC_TOKEN":
        return "check SCHEMA_REGISTRY_BEARER_AUTH_TOKEN"
    if source is not None:
        return "check SCHEMA_REGISTRY_BEARER_AUTH_CLIENT_ID and its _CLIENT_SECRET"
    if "basic.auth.user.info" in conf:
        return "check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
    if urlsplit(str(conf.get("url", "")).split(",")[0].strip()).username is not None:
        return "check the user info of SCHEMA_REGISTRY_URL"
    return (
        "none are set: SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO, or SCHEMA_REGISTRY_BEARER_AUTH_* "
        "for a token"
    )


def _untrusted(exc: BaseException) -> bool:
    """Whether a transport error came from a certificate this client does not trust."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain of causes is short; a cycle must not loop for ever
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _refused(conf: Mapping[str, object], exc: Exception) -> RegistrySettingError:
    """The client's refusal of `conf` as it was built, about the property it names."""
    from consumer.settings.kafka_properties import property_in_complaint
    from consumer.settings.parsers import redact_url

    if isinstance(exc, OSError):  # a CA, certificate or key the TLS context could not load
        return _tls_refusal(conf, exc)
    message = redact_url(" ".join(str(exc).split()))
    if message.startswith(_UNRECOGNIZED):
        unknown = message.removeprefix(_UNRECOGNIZED).split(", ")[0]
        return RegistrySettingError(
            unknown, "the Schema Registry client has no such property", unknown=True
        )
    # The client names the property first ("ssl.certificate.location required when ...").
    return RegistrySettingError(property_in_complaint(message), message)


def _tls_refusal(conf: Mapping[str, object], exc: OSError) -> RegistrySettingError:
    """Which of the CA, or the certificate with its key, could not be loaded, and why."""
    reason = _reason(exc)
    ca = conf.get("ssl.ca.location")
    if isinstance(ca, str):
        try:  # as the client loads it: a directory of certificates, or a file of them
            if os.path.isdir(ca):
                ssl.create_default_context(capath=ca)
            else:
                ssl.create_default_context(cafile=ca)
        except OSError as ca_exc:
            return RegistrySettingError("ssl.ca.location", f"cannot load it ({_reason(ca_exc)})")
    return RegistrySettingError(
        "ssl.certificate.location",
        f"cannot load the client certificate with its key and password ({reason})",
    )


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"{type(exc).__name__}: {exc.reason or exc.strerror or 'unreadable'}"
    return exc.strerror or type(exc).__name__
