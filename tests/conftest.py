"""Shared fixtures: a real broker (Tansu, or TEST_KAFKA_BOOTSTRAP_SERVERS) and the real sandbox.

The suite never takes the service's own settings from the environment (issue 19). An operator's
shell may export KAFKA_BOOTSTRAP_SERVERS, MEM0_API_KEY or SCHEMA_REGISTRY_URL for a real
deployment: the `kafka` fixture used to take the first for the test cluster, so `./dev test`
made topics on a production cluster, and the subprocess tests (which inherit os.environ) would
carry any of them into the commands they run. So at session start every variable the settings
read is removed from os.environ for the run (each option of consumer/settings/options.py, the
secrets' `*_FILE`, the `KAFKA_*` pass-through, the configuration file's variable), and the
terminal summary names the ones ignored, never their values.

An existing cluster is named by a variable of the tests' own, TEST_KAFKA_BOOTSTRAP_SERVERS.
What the run makes there (topics and groups named after `new_topics()` suffixes) is deleted
when the session ends. A Tansu broker needs no cleanup: it keeps everything in memory and dies
with the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from consumer.kafka.broker import LocalBroker, create_topics
from consumer.sandbox import Sandbox
from consumer.settings import is_setting
from consumer.settings.kafka_properties import is_passed_through
from tests.support.harness import Topics, made_by_this_run, new_topics

EXISTING_CLUSTER = "TEST_KAFKA_BOOTSTRAP_SERVERS"
_CLEANUP_TIMEOUT_S = 30.0
# Lines for the terminal summary: the settings ignored, what was deleted from a cluster.
_SUMMARY = pytest.StashKey[list[str]]()

os.environ.setdefault("MEM0_TELEMETRY", "false")


def service_settings_in(names: Iterable[str]) -> list[str]:
    """The names the service would read as settings (any `KAFKA_*` property, even one it would
    refuse): asked of the settings module, so a new option is covered without a list here."""
    return sorted(name for name in names if is_setting(name) or is_passed_through(name))


def pytest_configure(config: pytest.Config) -> None:
    ignored = service_settings_in(os.environ)
    for name in ignored:
        del os.environ[name]
    config.stash[_SUMMARY] = []
    if ignored:
        config.stash[_SUMMARY].append(
            f"ignored the service's settings in the environment: {', '.join(ignored)} "
            f"(the tests name an existing cluster with {EXISTING_CLUSTER})"
        )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    for line in config.stash.get(_SUMMARY, []):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kafka(pytestconfig: pytest.Config) -> Iterator[str]:
    """Bootstrap servers: an existing cluster when TEST_KAFKA_BOOTSTRAP_SERVERS is set (what the
    run made there deleted at the end), else a Tansu broker for the session."""
    existing = os.environ.get(EXISTING_CLUSTER)
    if not existing:
        with LocalBroker() as broker:
            yield broker.bootstrap
        return
    try:
        yield existing
    finally:
        deleted = delete_what_the_run_made(existing)
        pytestconfig.stash.setdefault(_SUMMARY, []).append(
            f"deleted from {existing} what the run made there: {deleted}"
        )


def delete_what_the_run_made(bootstrap: str) -> str:
    """Delete the groups and topics named after this process's `new_topics()`; a count of each.

    Raises, naming them, when any is left (a group that still has members is refused): a run
    must not leave litter on a shared cluster without saying so.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups(request_timeout=_CLEANUP_TIMEOUT_S).result()
    groups = sorted(g.group_id for g in listed.valid if made_by_this_run(g.group_id))
    topics = sorted(
        t for t in admin.list_topics(timeout=_CLEANUP_TIMEOUT_S).topics if made_by_this_run(t)
    )
    left = [f"listing the groups: {error}" for error in listed.errors]
    if groups:
        futures = admin.delete_consumer_groups(groups, request_timeout=_CLEANUP_TIMEOUT_S)
        left += _failures("group", futures)
    if topics:
        futures = admin.delete_topics(
            topics, operation_timeout=_CLEANUP_TIMEOUT_S, request_timeout=_CLEANUP_TIMEOUT_S
        )
        left += _failures("topic", futures)
    if left:
        raise AssertionError(f"the run left on {bootstrap}: {'; '.join(left)}")
    return f"{len(topics)} topics, {len(groups)} groups"


def _failures(kind: str, futures: Mapping[str, Future[None]]) -> list[str]:
    left = []
    for name, future in futures.items():
        try:
            future.result(timeout=_CLEANUP_TIMEOUT_S)
        except KafkaException as exc:
            left.append(f"{kind} {name} ({exc})")
    return left


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
