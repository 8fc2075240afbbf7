"""Start-up checks: a deployment that cannot work stops at once with one line (exit 2).

librdkafka checks its properties when a client is built; `build_client` turns its complaint into
a `SettingsError` named after the offending property's `KAFKA_*` variable. `check_topics` asks
the cluster whether the topics exist. A cluster that does not answer in time is not a
configuration error: the consumer retries and reports not ready, so that only logs a warning.
`check_admin_role` asks a self-hosted Mem0 server whether the key may delete by filter (it
needs the admin role); a server that does not answer is likewise only a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from confluent_kafka import KafkaException

from consumer.mem0.client import Mem0Client
from consumer.mem0.errors import AdminRoleError, Mem0Error
from consumer.settings import Settings, SettingsError, property_variable
from consumer.settings.kafka_properties import property_in_complaint

__all__ = [
    "TOPIC_CHECK_TIMEOUT_S",
    "build_client",
    "check_admin_role",
    "check_topics",
    "missing_topics",
]

log = logging.getLogger(__name__)

C = TypeVar("C")

TOPIC_CHECK_TIMEOUT_S = 10.0


def build_client(factory: Callable[[dict[str, Any]], C], config: dict[str, Any]) -> C:
    """`factory(config)`, with librdkafka's refusal of a property raised as a bad setting."""
    try:
        return factory(config)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        message = " ".join(str(error.str() if hasattr(error, "str") else error).split())
        raise SettingsError(_setting_of(message), message) from exc


def _setting_of(message: str) -> str:
    """The variable of the property librdkafka names (settings judge the properties first, and
    name them as written: this is the fallback for what reaches a client anyway)."""
    prop = property_in_complaint(message)
    return "KAFKA_*" if prop is None else property_variable(prop)


def missing_topics(settings: Settings, existing: Collection[str]) -> SettingsError | None:
    """The first setting naming a topic the cluster lacks; `^` patterns are not checked."""
    wanted = (
        ("DELETION_TOPICS", [topic for topic in settings.topics if not topic.startswith("^")]),
        ("DLQ_TOPIC", [settings.dlq_topic]),
        ("RECEIPTS_TOPIC", [settings.receipts_topic] if settings.receipts_topic else []),
    )
    for name, topics in wanted:
        missing = [topic for topic in topics if topic not in existing]
        if missing:
            listed = ", ".join(repr(topic) for topic in missing)
            if len(missing) == 1:
                problem = f"topic {listed} does not exist (or is not visible to this client)"
                return SettingsError(name, f"{problem}; create it first")
            problem = f"topics {listed} do not exist (or are not visible to this client)"
            return SettingsError(name, f"{problem}; create them first")
    return None


async def check_topics(
    settings: Settings,
    list_topics: Callable[..., Any],
    *,
    timeout_s: float = TOPIC_CHECK_TIMEOUT_S,
) -> None:
    """Raise `SettingsError` for a missing topic; warn and return if the cluster is silent.

    `list_topics` is a confluent-kafka client's (the consumer's own will do): it blocks, so it
    runs on a worker thread.
    """
    loop = asyncio.get_running_loop()
    try:
        metadata = await loop.run_in_executor(None, lambda: list_topics(timeout=timeout_s))
    except KafkaException as exc:
        log.warning(
            "topics not checked: no cluster metadata yet, carrying on (not ready until it comes)",
            extra={"error": str(exc.args[0] if exc.args else exc)},
        )
        return
    error = missing_topics(settings, metadata.topics)
    if error is not None:
        raise error


async def check_admin_role(client: Mem0Client, *, timeout_s: float = TOPIC_CHECK_TIMEOUT_S) -> None:
    """On the self-hosted backend: raise `SettingsError` when the key lacks the admin role.

    The probe is the permission itself, a filter delete of a random UUID user: it matches
    nothing, so nothing is deleted. Any other failure (no answer, a 5xx, a 401) is left to the
    running consumer, which retries or halts as for any call.
    """
    if client.backend != "oss":
        return
    try:
        await asyncio.wait_for(client.probe(admin=True), timeout_s)
    except AdminRoleError as exc:
        raise SettingsError(
            "MEM0_API_KEY",
            "the self-hosted server requires the admin role for DELETE /memories and this key "
            "lacks it; use an admin key",
        ) from exc
    except (Mem0Error, TimeoutError) as exc:
        log.warning("admin role not checked: %s", type(exc).__name__)
