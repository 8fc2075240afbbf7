"""`deletion-consumer produce`: JSON lines on stdin become encoded events on the input topic."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterable
from typing import TextIO

from confluent_kafka import KafkaError, Producer

from consumer.avro.codec import READER_FILE, Encoder, SchemaStore, default_schema_dir
from consumer.avro.registry import SchemaRegistryClient
from consumer.commands.jsonlines import parse_record
from consumer.core.events import partition_key
from consumer.kafka.config import producer_config
from consumer.settings import Settings, SettingsError

__all__ = ["produce_lines"]


def produce_lines(
    settings: Settings,
    lines: Iterable[str],
    *,
    topic: str | None = None,
    framing: str | None = None,
    subject: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Publish one event per non-blank line; 0 when every line was published, else 1."""
    topic = topic or settings.topics[0]
    store = SchemaStore.from_directory()
    encoder = Encoder(store)
    framing = framing or ("registry" if settings.schema_registry_url else "single-object")
    schema_id: int | None = None
    if framing == "registry":
        if not settings.schema_registry_url:
            raise SettingsError("SCHEMA_REGISTRY_URL", "required for --framing registry")
        registry = SchemaRegistryClient(settings.schema_registry_url)
        try:
            schema_text = (default_schema_dir() / READER_FILE).read_text(encoding="utf-8")
            schema_id = registry.register(subject or f"{topic}-value", schema_text)
        finally:
            registry.close()

    producer = Producer(producer_config(settings))
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error.str())

    bad = sent = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = parse_record(
                line, now_ms=int(time.time() * 1000), new_id=lambda: str(uuid.uuid4())
            )
        except ValueError as exc:
            print(f"line {number}: {exc}", file=err)
            bad += 1
            continue
        value = (
            encoder.confluent(record, schema_id)
            if schema_id is not None
            else encoder.single_object(record)
        )
        producer.produce(topic, key=partition_key(record), value=value, on_delivery=delivered)
        producer.poll(0)
        sent += 1
    left = producer.flush(30)
    published = sent - len(failures) - left
    print(json.dumps({"topic": topic, "published": published, "bad_lines": bad}), file=out)
    for failure in failures[:5]:
        print(f"delivery failed: {failure}", file=err)
    return 0 if published == sent and not bad else 1
