"""Shared fixtures: a real broker (Tansu, or KAFKA_BOOTSTRAP_SERVERS) and the real sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from consumer.kafka.broker import LocalBroker, create_topics
from consumer.sandbox import Sandbox
from tests.support.harness import Topics, new_topics

os.environ.setdefault("MEM0_TELEMETRY", "false")


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap servers: an existing cluster when KAFKA_BOOTSTRAP_SERVERS is set, else Tansu."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    with LocalBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def topics(kafka: str) -> Topics:
    """Fresh topic names (and group) per test, so tests share one broker safely."""
    names = new_topics()
    create_topics(kafka, [names.input, names.dlq, names.receipts], partitions=3)
    return names


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=7) as server:
        yield server
