"""A managed Schema Registry, reached with settings only (issue 20): the real consumer, a real
broker, the sandbox, and a registry (tests/support/registry_server.py) that requires credentials
as Confluent Cloud's, Aiven's or a self-hosted one behind a proxy does.

- basic auth (an API key and secret) over TLS with a private CA: registry-framed events are
  decoded, receipts registered and framed, through `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO` and
  `SCHEMA_REGISTRY_SSL_CA_LOCATION`; `produce` registers through the same, given as flags;
- a static bearer token with its logical cluster;
- a wrong secret: every lookup is refused (401); the consumer waits, dead-letters nothing and
  commits nothing, and says which setting to check; settings are read at start, so the fix is a
  restart with the right secret, which then completes;
- `config` masks the secrets; a registry property the client refuses stops `config` and `run`
  with the same line naming it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.avro.codec import READER_FILE, Encoder, SchemaStore, default_schema_dir
from consumer.avro.framing import split_header
from consumer.avro.receipt_codec import ReceiptDecoder
from consumer.avro.registry_config import registry_client
from consumer.core.events import EventType
from consumer.kafka.broker import committed_positions
from consumer.sandbox import Sandbox
from tests.integration.test_end_to_end import event, seed
from tests.support.harness import (
    TP,
    RunningConsumer,
    Topics,
    make_settings,
    publish,
    read_all,
    wait_committed,
)
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.integration

KEY, SECRET = "SR-API-KEY", "sr-api-secret-0123"
TOKEN = "sr-bearer-token-4567"
READER_TEXT = (default_schema_dir() / READER_FILE).read_text()
ENCODER = Encoder(SchemaStore.from_directory())
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "MEM0_TELEMETRY": "false"}


def erasures(sandbox: Sandbox, users: list[str]) -> None:
    seed(sandbox, [{"user_id": user, "memory": "x"} for user in [*users, "bystander"]])


def publish_framed(
    kafka: str, registry: RegistryServer, topics: Topics, users: list[str]
) -> tuple[dict[TP, int], list[str]]:
    """A `UserDeleted` per user, registry-framed with the reader schema's id: the topic's ends
    and the events' ids."""
    schema_id = registry.add(f"{topics.input}-value", READER_TEXT)
    events = [event(EventType.USER_DELETED, user_id=user) for user in users]
    ends = publish(
        kafka,
        topics.input,
        [(e.event_id.encode(), ENCODER.confluent(e, schema_id)) for e in events],
    )
    return ends, [e.event_id for e in events]


def left(sandbox: Sandbox) -> set[str]:
    return {m["user_id"] for m in sandbox.memories()}


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} in {timeout_s}s"
        time.sleep(0.05)


def basic_auth_over_tls(registry: RegistryServer, secret: str = SECRET) -> dict[str, str]:
    return {
        "SCHEMA_REGISTRY_URL": registry.url,
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"{KEY}:{secret}",
        "SCHEMA_REGISTRY_SSL_CA_LOCATION": str(registry.ca_file),
    }


def test_basic_auth_over_tls_with_a_private_ca_decodes_and_registers_receipts(
    kafka: str, topics: Topics, sandbox: Sandbox, tmp_path: Path
) -> None:
    users = [f"basic-{n}" for n in range(6)]
    erasures(sandbox, users)
    with RegistryServer(basic_auth=(KEY, SECRET), tls=tmp_path) as registry:
        ends, event_ids = publish_framed(kafka, registry, topics, users)
        env = basic_auth_over_tls(registry)
        settings = make_settings(kafka, sandbox.url, topics, RECEIPTS_TOPIC=topics.receipts, **env)
        with RunningConsumer(settings):
            wait_committed(kafka, topics.group, ends)
        receipts = read_all(kafka, topics.receipts, expected=len(users), idle_s=0.5)
        # Registered once, through basic auth; every receipt is registry-framed with its id.
        assert registry.hits[f"/subjects/{topics.receipts}-value/versions"] == 1
        (schema_id,) = {split_header(m.value())[0] for m in receipts}
        assert isinstance(schema_id, int)
        assert json.loads(registry.schema(schema_id) or "{}")["name"] == "DeletionReceipt"
        # Read back through a client made from the same settings, as `receipts` and `report` do.
        reading = registry_client(settings)
        assert reading is not None
        with reading:
            decoded = [ReceiptDecoder(reading).decode(m.value()) for m in receipts]
        assert registry.refused == 0
    assert left(sandbox) == {"bystander"}
    assert sorted(r.event_id for r in decoded) == sorted(event_ids)
    assert read_all(kafka, topics.dlq, expected=0, timeout_s=1) == []


def test_a_static_bearer_token_decodes_registry_framed_events(
    kafka: str, topics: Topics, sandbox: Sandbox
) -> None:
    users = [f"bearer-{n}" for n in range(4)]
    erasures(sandbox, users)
    with RegistryServer(bearer_token=TOKEN, logical_cluster="lsrc-abc123") as registry:
        ends, _ = publish_framed(kafka, registry, topics, users)
        settings = make_settings(
            kafka,
            sandbox.url,
            topics,
            SCHEMA_REGISTRY_URL=registry.url,
            SCHEMA_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE="STATIC_TOKEN",
            SCHEMA_REGISTRY_BEARER_AUTH_TOKEN=TOKEN,
            SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER="lsrc-abc123",
        )
        with RunningConsumer(settings):
            wait_committed(kafka, topics.group, ends)
        assert registry.refused == 0 and registry.hits
    assert left(sandbox) == {"bystander"}
    assert read_all(kafka, topics.dlq, expected=0, timeout_s=1) == []


def test_a_wrong_secret_waits_names_its_setting_and_a_restart_with_the_right_one_completes(
    kafka: str,
    topics: Topics,
    sandbox: Sandbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = [f"wrong-{n}" for n in range(5)]
    erasures(sandbox, users)
    with RegistryServer(basic_auth=(KEY, SECRET), tls=tmp_path) as registry:
        ends, _ = publish_framed(kafka, registry, topics, users)
        wrong = make_settings(
            kafka,
            sandbox.url,
            topics,
            SHUTDOWN_TIMEOUT_S="1",  # what waits on the registry cannot finish: do not wait long
            **basic_auth_over_tls(registry, secret="not-the-secret"),
        )
        with (
            caplog.at_level(logging.WARNING, logger="consumer"),
            RunningConsumer(wrong) as consumer,
        ):
            # Refused, and asked again after a wait: the consumer waits it out.
            wait_until(lambda: registry.refused >= 2, "asked twice")
            dead = consumer.metric("mem0_deletion_dlq_messages_total", reason="unknown_schema")
        committed = committed_positions(kafka, topics.group, ends)
        assert all(committed.get(tp, -1) < end for tp, end in ends.items()), committed
        assert dead == 0
        assert left(sandbox) == {*users, "bystander"}
        lines = [r.getMessage() for r in caplog.records if "schema registry" in r.getMessage()]
        assert lines, "the refusal was not logged"
        assert all("\n" not in line for line in lines)
        assert all("HTTP 401" in line for line in lines)
        assert all("check SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in line for line in lines)
        everything = caplog.text
        assert "not-the-secret" not in everything and SECRET not in everything
        assert str(registry.url) not in everything

        # Settings are read at start: the fix is a restart with the right secret.
        right = make_settings(kafka, sandbox.url, topics, **basic_auth_over_tls(registry))
        with RunningConsumer(right):
            wait_committed(kafka, topics.group, ends)
    assert left(sandbox) == {"bystander"}
    assert read_all(kafka, topics.dlq, expected=0, timeout_s=1) == []


def test_produce_registers_through_basic_auth_given_as_flags(
    kafka: str, topics: Topics, sandbox: Sandbox, tmp_path: Path
) -> None:
    users = [f"produced-{n}" for n in range(3)]
    erasures(sandbox, users)
    lines = "\n".join(json.dumps({"type": "user_deleted", "user_id": user}) for user in users)
    with RegistryServer(basic_auth=(KEY, SECRET), tls=tmp_path) as registry:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "consumer",
                "produce",
                "--bootstrap-servers",
                kafka,
                "--topics",
                topics.input,
                "--schema-registry-url",
                registry.url,
                "--schema-registry-property",
                f"basic.auth.user.info={KEY}:{SECRET}",
                "--schema-registry-property",
                f"ssl.ca.location={registry.ca_file}",
            ],
            input=lines,
            env=CLEAN_ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["published"] == len(users)
        assert registry.hits[f"/subjects/{topics.input}-value/versions"] == 1
        produced = read_all(kafka, topics.input, expected=len(users))
        schema_ids = {split_header(m.value())[0] for m in produced}
        assert len(schema_ids) == 1 and isinstance(next(iter(schema_ids)), int)
        settings = make_settings(kafka, sandbox.url, topics, **basic_auth_over_tls(registry))
        with RunningConsumer(settings):
            wait_until(lambda: left(sandbox) == {"bystander"}, "deleted", timeout_s=60)
        assert registry.refused == 0


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env={**CLEAN_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_masks_the_registry_secrets(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with RegistryServer(tls=tmp_path) as registry:
        env = {
            "MEM0_API_KEY": "k",
            "SCHEMA_REGISTRY_URL": registry.url,
            "SCHEMA_REGISTRY_SSL_CA_LOCATION": str(registry.ca_file),
            "SCHEMA_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE": "STATIC_TOKEN",
            "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN_FILE": str(token_file),
            "SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER": "lsrc-abc123",
        }
        bearer = cli("config", env=env)
        basic = cli(
            "config",
            "--schema-registry-property",
            f"basic.auth.user.info={KEY}:{SECRET}",
            env={"MEM0_API_KEY": "k", "SCHEMA_REGISTRY_URL": registry.url},
        )
    assert bearer.returncode == 0, bearer.stderr
    shown = dict(line.split("=", 1) for line in bearer.stdout.splitlines())
    assert shown["SCHEMA_REGISTRY_BEARER_AUTH_TOKEN"] == "********"
    assert shown["SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER"] == "lsrc-abc123"
    assert shown["SCHEMA_REGISTRY_SSL_CA_LOCATION"] == str(registry.ca_file)
    assert TOKEN not in bearer.stdout + bearer.stderr
    assert basic.returncode == 0, basic.stderr
    assert "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=********\n" in basic.stdout
    assert SECRET not in basic.stdout + basic.stderr


@pytest.mark.parametrize("command", ["config", "run"])
def test_a_property_the_client_refuses_stops_config_and_run_in_one_line(command: str) -> None:
    env = {
        "MEM0_API_KEY": "k",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached: the settings stop it first
        "SCHEMA_REGISTRY_URL": "https://registry.example.com",
        "SCHEMA_REGISTRY_BASIC_AUTH_USERINFO": f"{KEY}:{SECRET}",
    }
    result = cli(command, env=env)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.strip().splitlines() == [
        "deletion-consumer: bad setting SCHEMA_REGISTRY_BASIC_AUTH_USERINFO: the Schema Registry "
        "client has no such property; did you mean SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO?"
    ]
    assert SECRET not in result.stderr
