"""`deletion-consumer produce`: JSON lines on stdin become encoded events on the input topic.

It fails as the other commands do, in one line naming it (`deletion-consumer produce: ...`):
exit 1 when the registry or the broker failed us or a line was bad, 2 for a bad argument. A
line without `reason` or `source` gets `--reason` / `--source`, else the schema's default, and
stderr says once at the end how many lines got the schema's. Interrupted (Ctrl-C, SIGTERM), it
stops reading, delivers what it took and prints its summary before `main` says so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

from confluent_kafka import KafkaError, Producer

from consumer.avro.codec import READER_FILE, Encoder, SchemaStore, default_schema_dir
from consumer.avro.registry import RegistryError
from consumer.avro.registry_config import registry_client
from consumer.commands.command_line import Console
from consumer.commands.jsonlines import Defaults, parse_record, schema_default_note
from consumer.core.events import partition_key
from consumer.kafka.config import producer_config, with_logger
from consumer.kafka.preflight import build_client
from consumer.settings import Settings, SettingsError

__all__ = ["EXIT_BAD_ARGUMENTS", "EXIT_FAILED", "EXIT_OK", "produce_lines"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2

FLUSH_TIMEOUT_S = 30.0


def produce_lines(
    settings: Settings,
    lines: Iterable[str],
    *,
    topic: str | None = None,
    framing: str | None = None,
    subject: str | None = None,
    reason: str | None = None,
    source: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Publish one event per non-blank line; the exit code (0 when every line was published).

    `reason` and `source`: what a line without them gets (`--reason`, `--source`)."""
    console = Console.of("produce", out, err)
    try:
        defaults = Defaults.of(reason=reason, source=source)
    except ValueError as exc:
        console.complain(exc)
        return EXIT_BAD_ARGUMENTS
    topic = topic or settings.topics[0]
    try:
        schema_id = _schema_id(settings, framing, subject or f"{topic}-value")
    except RegistryError as exc:  # the message names no URL (it may hold credentials)
        console.complain(f"the schema could not be registered: {exc}")
        return EXIT_FAILED
    # A property librdkafka refuses is a bad setting (exit 2), as for `run`.
    producer = build_client(Producer, with_logger(producer_config(settings)))
    publishing = _Publishing(producer, Encoder(SchemaStore.from_directory()), topic, schema_id)
    interrupted: KeyboardInterrupt | None = None
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = parse_record(
                    line,
                    now_ms=int(time.time() * 1000),
                    new_id=lambda: str(uuid.uuid4()),
                    defaults=defaults,
                    on_schema_default=publishing.got_schema_default,
                )
            except ValueError as exc:
                print(f"line {number}: {exc}", file=console.err)
                publishing.bad += 1
                continue
            publishing.publish(record)
    except KeyboardInterrupt as exc:
        interrupted = exc  # stop reading; what was taken is still delivered and counted
    code = publishing.finish(console, interrupted=interrupted is not None)
    if interrupted is not None:
        raise interrupted
    return code


class _Publishing:
    """The records of one run on their way: sent, delivered or not, and what to say of them."""

    def __init__(
        self, producer: Producer, encoder: Encoder, topic: str, schema_id: int | None
    ) -> None:
        self._producer = producer
        self._encoder = encoder
        self._topic = topic
        self._schema_id = schema_id
        self._failures: list[str] = []
        self._schema_defaults: Counter[str] = Counter()  # lines per field given the schema's
        self.sent = 0
        self.bad = 0

    def got_schema_default(self, field: str) -> None:
        self._schema_defaults[field] += 1

    def publish(self, record: dict[str, Any]) -> None:
        value = (
            self._encoder.confluent(record, self._schema_id)
            if self._schema_id is not None
            else self._encoder.single_object(record)
        )
        self._producer.produce(
            self._topic, key=partition_key(record), value=value, on_delivery=self._delivered
        )
        self._producer.poll(0)
        self.sent += 1

    def finish(self, console: Console, *, interrupted: bool) -> int:
        """Deliver what is left, print the summary and what went wrong; the exit code."""
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        published = self.sent - len(self._failures) - left
        summary: dict[str, object] = {
            "topic": self._topic,
            "published": published,
            "bad_lines": self.bad,
        }
        if interrupted:
            summary["interrupted"] = True
        print(json.dumps(summary), file=console.out)
        for failure in self._failures[:5]:
            print(f"delivery failed: {failure}", file=console.err)
        if left:
            records = "1 record" if left == 1 else f"{left:,} records"
            console.complain(f"{records} not delivered within {FLUSH_TIMEOUT_S:.0f} s")
        for field in ("reason", "source"):
            if self._schema_defaults[field]:
                print(schema_default_note(field, self._schema_defaults[field]), file=console.err)
        return EXIT_OK if published == self.sent and not self.bad else EXIT_FAILED

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self._failures.append(error.str())


def _schema_id(settings: Settings, framing: str | None, subject: str) -> int | None:
    """The registry's id of the reader schema under `subject` for registry framing, else None;
    raises `RegistryError` when the registry failed us."""
    framing = framing or ("registry" if settings.schema_registry_url else "single-object")
    if framing != "registry":
        return None
    if not settings.schema_registry_url:
        raise SettingsError("SCHEMA_REGISTRY_URL", "required for --framing registry")
    registry = registry_client(settings)
    assert registry is not None  # there is a URL
    try:
        schema_text = (default_schema_dir() / READER_FILE).read_text(encoding="utf-8")
        return registry.register(subject, schema_text)
    finally:
        registry.close()
