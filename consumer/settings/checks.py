"""The rules that relate settings to one another, in one place, run once every value is parsed.

A parser judges one value alone (`parsers.py`); these judge a combination: the topics kept
apart, the Platform's key, the key never sent in clear off the machine, the retry bounds, the
registry's credentials given one way only. The first broken rule raises a `SettingsError`
named after the setting to change, in one line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from consumer.settings.options import Settings, SettingsError
from consumer.settings.parsers import redact_url, shown
from consumer.settings.registry_properties import CREDENTIALS_SOURCE, registry_variable

__all__ = ["check"]


def check(settings: Settings, *, needs_mem0: bool) -> None:
    """Raise for the first rule `settings` breaks; `needs_mem0`: the command calls Mem0."""
    s = settings
    # A topic we write must never be one we read: the consumer would eat its own output.
    if _subscribed(s.dlq_topic, s.topics):
        raise SettingsError("DLQ_TOPIC", "must not be one of the input topics (DELETION_TOPICS)")
    if s.receipts_topic is not None:
        if _subscribed(s.receipts_topic, s.topics):
            raise SettingsError(
                "RECEIPTS_TOPIC", "must not be one of the input topics (DELETION_TOPICS)"
            )
        if s.receipts_topic == s.dlq_topic:
            raise SettingsError("RECEIPTS_TOPIC", "must differ from DLQ_TOPIC")

    # Commands that never call Mem0 (produce, config) need no key.
    if needs_mem0 and s.mem0_backend == "platform" and not s.mem0_api_key:
        raise SettingsError("MEM0_API_KEY", "required for the platform backend")
    if s.mem0_api_key and not s.mem0_allow_insecure_http and _in_clear_off_host(s.mem0_base_url):
        raise SettingsError(
            "MEM0_BASE_URL",
            f"refusing to send the API key in clear to {shown(redact_url(s.mem0_base_url))} "
            "(not loopback); use https://, or MEM0_ALLOW_INSECURE_HTTP=true for a sandbox",
        )

    if s.retry_cap_s * 1000 < s.retry_base_ms:
        raise SettingsError("RETRY_CAP_S", f"must be at least RETRY_BASE_MS ({s.retry_base_ms} ms)")
    _check_registry(s)


_USER_INFO = "basic.auth.user.info"
_BEARER = "bearer.auth.credentials.source"


def _check_registry(s: Settings) -> None:
    """The registry client's properties: used (there is a URL), one kind of credentials."""
    props = s.schema_registry_properties
    if not props:
        return
    if s.schema_registry_url is None:
        raise SettingsError(
            registry_variable(min(props)), "set, but SCHEMA_REGISTRY_URL is not: it would go unused"
        )
    if _USER_INFO in props and _BEARER in props:
        raise SettingsError(
            registry_variable(_BEARER), f"cannot be combined with {registry_variable(_USER_INFO)}"
        )
    source = props.get(CREDENTIALS_SOURCE, "USER_INFO").strip().upper()
    in_url = urlsplit(s.schema_registry_url).username is not None
    if source == "USER_INFO" and _USER_INFO in props and in_url:
        raise SettingsError(
            "SCHEMA_REGISTRY_URL",
            f"holds credentials, and {registry_variable(_USER_INFO)} is set too: drop them from "
            "the URL",
        )
    if source == "URL" and not in_url:
        raise SettingsError(
            registry_variable(CREDENTIALS_SOURCE),
            "URL, but SCHEMA_REGISTRY_URL holds no credentials",
        )
    if source in ("URL", "SASL_INHERIT") and _USER_INFO in props:
        raise SettingsError(
            registry_variable(_USER_INFO),
            f"cannot be combined with {registry_variable(CREDENTIALS_SOURCE)}={source}",
        )
    if source == "SASL_INHERIT":
        missing = [k for k in ("sasl.username", "sasl.password") if not s.kafka_properties.get(k)]
        if missing:
            wanted = " and ".join(f"KAFKA_{k.replace('.', '_').upper()}" for k in missing)
            raise SettingsError(
                registry_variable(CREDENTIALS_SOURCE), f"SASL_INHERIT needs {wanted}"
            )


def _subscribed(topic: str, topics: Iterable[str]) -> bool:
    """Whether a subscription (names and `^` regexes, as librdkafka takes them) reads `topic`."""
    for name in topics:
        if name.startswith("^"):
            try:
                if re.search(name, topic):
                    return True
            except re.error:
                continue
        elif name == topic:
            return True
    return False


def _in_clear_off_host(url: str) -> bool:
    """Plain http:// to a host that is not this machine (loopback stays on the machine)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name other than localhost may resolve anywhere
