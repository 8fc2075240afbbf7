"""Settings: precedence, the librdkafka pass-through, secrets from files, one-line errors, and the
one table every view of the settings (flags, `config`, README.md) is drawn from."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from consumer.core.errors import ConsumerError
from consumer.kafka.config import consumer_config, producer_config
from consumer.settings import Secret, Settings, SettingsError, add_arguments, from_args, is_setting
from consumer.settings.docs import readme_table
from consumer.settings.flags import plain_text
from consumer.settings.options import OPTIONS

README = Path(__file__).resolve().parents[3] / "README.md"

KEY = {"MEM0_API_KEY": "m0-secret-key"}


def load(
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
    files: Mapping[str, str] | None = None,
) -> Settings:
    def read_file(path: str) -> str:
        if files is None or path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]

    return Settings.from_sources({**KEY, **(env or {})}, flags, read_file=read_file)


def error(
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
    files: Mapping[str, str] | None = None,
) -> str:
    with pytest.raises(SettingsError) as info:
        load(env, flags, files)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{info.value.name}: ")
    return text


def parse(argv: list[str], env: Mapping[str, str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), env)


# --- defaults and precedence ------------------------------------------------------------------


def test_defaults_follow_the_contract() -> None:
    s = load()
    assert s.bootstrap_servers == "localhost:9092"
    assert s.group_id == "mem0-deletion-consumer"
    assert s.topics == ("memory.deletions",)
    assert s.dlq_topic == "memory.deletions.dlq"
    assert s.receipts_topic == "memory.deletions.receipts"
    assert s.schema_registry_url is None
    assert s.mem0_backend == "platform"
    assert s.mem0_base_url == "https://api.mem0.ai"
    assert s.mem0_api_key.reveal() == "m0-secret-key"
    assert s.metrics_port == 9400
    assert (s.flush_max_events, s.flush_max_bytes, s.flush_max_wait_ms) == (5000, 8388608, 25)
    assert (s.mem0_max_concurrency, s.mem0_batch_size, s.mem0_timeout_s) == (64, 1000, 30.0)
    assert s.mem0_job_poll_interval_ms == 100
    assert (s.retry_base_ms, s.retry_cap_s, s.retry_after_cap_s) == (200, 30.0, 300.0)
    assert s.retry_max_duration_s == 0
    assert (s.max_in_flight_events, s.max_in_flight_operations) == (100_000, 20_000)
    assert (s.commit_interval_ms, s.shutdown_timeout_s) == (1000, 30.0)
    assert (s.log_level, s.log_format, s.log_ids_in_clear) == ("INFO", "json", False)
    assert not s.log_hash_key
    assert dict(s.kafka_properties) == {}


def test_env_overrides_default_and_flag_overrides_env() -> None:
    env = {"KAFKA_GROUP_ID": "from-env", "METRICS_PORT": "9500", "DELETION_TOPICS": "a, b,,a"}
    s = load(env)
    assert (s.group_id, s.metrics_port, s.topics) == ("from-env", 9500, ("a", "b"))
    s = load(env, {"group_id": "from-flag", "metrics_port": 0, "topics": None})
    assert (s.group_id, s.metrics_port, s.topics) == ("from-flag", 0, ("a", "b"))


def test_typed_values_parse() -> None:
    s = load(
        {
            "MEM0_BACKEND": "OSS",
            "MEM0_BASE_URL": "http://mem0:8000/",
            "MEM0_ALLOW_INSECURE_HTTP": "true",  # the key in clear to a host that is not loopback
            "SCHEMA_REGISTRY_URL": "http://registry:8081",
            "RECEIPTS_TOPIC": "",
            "MEM0_TIMEOUT_S": "2.5",
            "RETRY_MAX_DURATION_S": "3600",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "TEXT",
            "LOG_IDS_IN_CLEAR": "yes",
            "MEM0_HTTP_CLIENT": "AIOHTTP",
        }
    )
    assert s.mem0_http_client == "aiohttp"
    assert s.mem0_backend == "oss"
    assert s.mem0_base_url == "http://mem0:8000"
    assert s.schema_registry_url == "http://registry:8081"
    assert s.receipts_topic is None
    assert (s.mem0_timeout_s, s.retry_max_duration_s) == (2.5, 3600.0)
    assert (s.log_level, s.log_format, s.log_ids_in_clear) == ("DEBUG", "text", True)


def test_oss_backend_needs_no_api_key() -> None:
    s = Settings.from_sources({"MEM0_BACKEND": "oss"})
    assert not s.mem0_api_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
)
def test_bool_values(text: str, expected: bool) -> None:
    assert load({"LOG_IDS_IN_CLEAR": text}).log_ids_in_clear is expected


def test_command_line_flags_over_env() -> None:
    env = {**KEY, "KAFKA_GROUP_ID": "env-group", "METRICS_PORT": "9500"}
    s = parse(
        [
            "--group-id",
            "flag-group",
            "--topics",
            "x,y",
            "--log-ids-in-clear",
            "--kafka-property",
            "client.id=me",
            "--kafka-property",
            "session.timeout.ms=10000",
        ],
        env,
    )
    assert (s.group_id, s.topics, s.metrics_port) == ("flag-group", ("x", "y"), 9500)
    assert s.log_ids_in_clear is True
    assert dict(s.kafka_properties) == {"client.id": "me", "session.timeout.ms": "10000"}
    assert parse([], env).group_id == "env-group"
    assert (
        parse(["--no-log-ids-in-clear"], {**env, "LOG_IDS_IN_CLEAR": "true"}).log_ids_in_clear
        is False
    )


def test_help_never_shows_the_api_key() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    for flag in (
        "--bootstrap-servers",
        "--group-id",
        "--topics",
        "--mem0-api-key",
        "--metrics-port",
    ):
        assert flag in text
    key_help = text.split("--mem0-api-key MEM0_API_KEY", 1)[1].split("--mem0-api-key-file", 1)[0]
    assert "default" not in key_help


# --- librdkafka pass-through ---------------------------------------------------------------


def test_kafka_variables_become_librdkafka_properties() -> None:
    s = load(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
            "KAFKA_GROUP_ID": "g",
            "KAFKA_SESSION_TIMEOUT_MS": "10000",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_PASSWORD": "pw",
            "KAFKA_LOG__LEVEL": "7",
            "KAFKA_SERVICE_HOST": "10.0.0.1",  # a Kubernetes service link, not a property
            "KAFKA_PORT_9092_TCP_ADDR": "10.0.0.1",
            "OTHER": "ignored",
        }
    )
    assert (s.bootstrap_servers, s.group_id) == ("broker:9092", "g")
    assert dict(s.kafka_properties) == {
        "session.timeout.ms": "10000",
        "security.protocol": "SASL_SSL",
        "sasl.password": "pw",
        "log_level": "7",
    }


def test_kafka_property_flags_override_variables() -> None:
    s = load(
        {"KAFKA_CLIENT_ID": "env", "KAFKA_SOCKET_TIMEOUT_MS": "1000"},
        {"kafka_property": ["client.id=flag", "ssl.key.password=a=b"]},
    )
    assert dict(s.kafka_properties) == {
        "client.id": "flag",
        "socket.timeout.ms": "1000",
        "ssl.key.password": "a=b",
    }


def test_kafka_property_from_file() -> None:
    files = {"/run/secrets/pw": "s3cret\n"}
    s = load({"KAFKA_SASL_PASSWORD_FILE": "/run/secrets/pw"}, files=files)
    assert dict(s.kafka_properties) == {"sasl.password": "s3cret\n"}  # fake read_file: no strip
    s = load(
        {"KAFKA_SASL_PASSWORD": "", "KAFKA_SASL_PASSWORD_FILE": "/run/secrets/pw"}, files=files
    )
    assert dict(s.kafka_properties) == {"sasl.password": "s3cret\n"}


def test_kafka_properties_are_read_only() -> None:
    props = load({"KAFKA_CLIENT_ID": "c"}).kafka_properties
    with pytest.raises(TypeError):
        props["client.id"] = "x"  # type: ignore[index]


def test_consumer_config() -> None:
    s = load({"KAFKA_SESSION_TIMEOUT_MS": "10000", "KAFKA_LINGER_MS": "50"})
    assert consumer_config(s) == {
        "bootstrap.servers": "localhost:9092",
        "group.id": "mem0-deletion-consumer",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.queue.backoff.ms": 20,
        "fetch.wait.max.ms": 50,
        "session.timeout.ms": "10000",
    }
    overridden = consumer_config(
        load({"KAFKA_AUTO_OFFSET_RESET": "latest", "KAFKA_FETCH_QUEUE_BACKOFF_MS": "1000"})
    )
    assert overridden["auto.offset.reset"] == "latest"
    assert overridden["fetch.queue.backoff.ms"] == "1000"
    kip848 = consumer_config(load({"KAFKA_GROUP_PROTOCOL": "consumer"}))
    assert "partition.assignment.strategy" not in kip848


def test_producer_config_drops_consumer_only_properties() -> None:
    env = {
        "KAFKA_SESSION_TIMEOUT_MS": "10000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "KAFKA_MAX_POLL_INTERVAL_MS": "600000",
        "KAFKA_AUTO_OFFSET_RESET": "latest",
        "KAFKA_PARTITION_ASSIGNMENT_STRATEGY": "range",
        "KAFKA_FETCH_MAX_BYTES": "1000",
        "KAFKA_ISOLATION_LEVEL": "read_committed",
        "KAFKA_GROUP_INSTANCE_ID": "pod-0",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "u",
        "KAFKA_SASL_PASSWORD": "p",
        "KAFKA_SSL_CA_LOCATION": "/ca.pem",
        "KAFKA_CLIENT_ID": "consumer-1",
        "KAFKA_SOCKET_KEEPALIVE_ENABLE": "true",
        "KAFKA_LINGER_MS": "20",
    }
    assert producer_config(load(env)) == {
        "bootstrap.servers": "localhost:9092",
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": "20",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
        "client.id": "consumer-1",
        "socket.keepalive.enable": "true",
    }


# --- secrets --------------------------------------------------------------------------------


def test_secret_masks_itself() -> None:
    secret = Secret("hunter2")
    assert str(secret) == "********"
    assert "hunter2" not in repr(secret)
    assert f"{secret}" == "********"
    assert secret.reveal() == "hunter2"
    assert str(Secret("")) == ""
    assert secret == Secret("hunter2")
    assert secret != Secret("other")


def test_api_key_from_file() -> None:
    files = {"/run/secrets/key": "k-123\n"}
    s = Settings.from_sources(
        {"MEM0_API_KEY_FILE": "/run/secrets/key"}, read_file=files.__getitem__
    )
    assert s.mem0_api_key.reveal() == "k-123"
    # An empty variable beside its _FILE (docker compose's ${VAR:-}) counts as unset.
    s = load({"MEM0_API_KEY": "", "MEM0_API_KEY_FILE": "/k"}, files={"/k": "file-key"})
    assert s.mem0_api_key.reveal() == "file-key"


def test_api_key_flag_beats_env() -> None:
    assert load(flags={"mem0_api_key": "flag-key"}).mem0_api_key.reveal() == "flag-key"
    s = load(flags={"mem0_api_key_file": "/k"}, files={"/k": "file-key"})
    assert s.mem0_api_key.reveal() == "file-key"


def test_default_read_file_strips_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("from-disk\n")
    s = Settings.from_sources({"MEM0_API_KEY_FILE": str(path)})
    assert s.mem0_api_key.reveal() == "from-disk"


def test_log_hash_key() -> None:
    random_key = load().id_hash_key()
    assert len(random_key) == 32
    assert load().id_hash_key() == random_key  # one key per process
    assert load({"LOG_HASH_KEY": "k"}).id_hash_key() == b"k"


def test_describe_and_repr_mask_secrets() -> None:
    s = load(
        {
            "KAFKA_SASL_PASSWORD": "sasl-pw",
            "KAFKA_SSL_KEY_PASSWORD": "key-pw",
            "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "oidc-secret",
            "KAFKA_SSL_KEY_PEM": "-----BEGIN PRIVATE KEY-----",
            "KAFKA_SASL_USERNAME": "alice",
            "LOG_HASH_KEY": "hash-key",
            "SCHEMA_REGISTRY_URL": "https://user:registry-pw@registry:8081",
        }
    )
    described = s.describe()
    secrets = ("m0-secret-key", "sasl-pw", "key-pw", "oidc-secret", "PRIVATE KEY", "hash-key")
    for rendering in (str(described), repr(s), str(s)):
        for secret in (*secrets, "registry-pw"):
            assert secret not in rendering
    assert described["MEM0_API_KEY"] == "********"
    assert described["LOG_HASH_KEY"] == "********"
    assert described["sasl.password"] == "********"
    assert described["sasl.username"] == "alice"
    assert described["KAFKA_GROUP_ID"] == "mem0-deletion-consumer"
    assert described["DELETION_TOPICS"] == "memory.deletions"
    assert described["SCHEMA_REGISTRY_URL"] == "https://********@registry:8081"  # user too
    assert load().describe()["LOG_HASH_KEY"] == "(random per process)"


# --- errors: one line naming the variable ----------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_GROUP_ID": " "}, "KAFKA_GROUP_ID: must not be empty"),
        ({"KAFKA_BOOTSTRAP_SERVERS": ""}, "KAFKA_BOOTSTRAP_SERVERS: must not be empty"),
        ({"DELETION_TOPICS": " , "}, "DELETION_TOPICS: must name at least one topic"),
        ({"DELETION_TOPICS": "a b"}, "DELETION_TOPICS: invalid topic name 'a b'"),
        ({"DLQ_TOPIC": ""}, "DLQ_TOPIC: must not be empty"),
        (
            {"DLQ_TOPIC": "memory.deletions"},
            "DLQ_TOPIC: must not be one of the input topics (DELETION_TOPICS)",
        ),
        (
            {"DELETION_TOPICS": "^memory\\..*"},
            "DLQ_TOPIC: must not be one of the input topics (DELETION_TOPICS)",
        ),
        ({"RECEIPTS_TOPIC": "memory.deletions.dlq"}, "RECEIPTS_TOPIC: must differ from DLQ_TOPIC"),
        (
            {"METRICS_PORT": "70000"},
            "METRICS_PORT: must be an integer between 0 and 65535, got '70000'",
        ),
        ({"METRICS_PORT": "-1"}, "METRICS_PORT: must be an integer between 0 and 65535, got '-1'"),
        (
            {"METRICS_PORT": "http"},
            "METRICS_PORT: must be an integer between 0 and 65535, got 'http'",
        ),
        (
            {"FLUSH_MAX_EVENTS": "1.5"},
            "FLUSH_MAX_EVENTS: must be an integer between 1 and 1000000, got '1.5'",
        ),
        (
            {"FLUSH_MAX_BYTES": "-8"},
            "FLUSH_MAX_BYTES: must be an integer between 1 and 1073741824, got '-8'",
        ),
        (
            {"MEM0_BATCH_SIZE": "1001"},
            "MEM0_BATCH_SIZE: must be an integer between 1 and 1000, got '1001'",
        ),
        (
            {"MEM0_MAX_CONCURRENCY": "0"},
            "MEM0_MAX_CONCURRENCY: must be an integer between 1 and 1024, got '0'",
        ),
        (
            {"MEM0_TIMEOUT_S": "0"},
            "MEM0_TIMEOUT_S: must be a number greater than 0 and at most 600, got '0'",
        ),
        (
            {"MEM0_TIMEOUT_S": "nan"},
            "MEM0_TIMEOUT_S: must be a number greater than 0 and at most 600, got 'nan'",
        ),
        (
            {"RETRY_MAX_DURATION_S": "-1"},
            "RETRY_MAX_DURATION_S: must be a number between 0 and 2592000, got '-1'",
        ),
        (
            {"RETRY_BASE_MS": "5000", "RETRY_CAP_S": "1"},
            "RETRY_CAP_S: must be at least RETRY_BASE_MS (5000 ms)",
        ),
        ({"MEM0_BACKEND": "cloud"}, "MEM0_BACKEND: must be platform or oss, got 'cloud'"),
        (
            {"MEM0_BASE_URL": "api.mem0.ai"},
            "MEM0_BASE_URL: must be an http(s) URL with a host, got 'api.mem0.ai'",
        ),
        (
            {"MEM0_BASE_URL": "ftp://api.mem0.ai"},
            "MEM0_BASE_URL: must be an http(s) URL with a host, got 'ftp://api.mem0.ai'",
        ),
        (
            {"MEM0_BASE_URL": "https://"},
            "MEM0_BASE_URL: must be an http(s) URL with a host, got 'https://'",
        ),
        (
            {"SCHEMA_REGISTRY_URL": "https://u:pw@host:99999"},
            "SCHEMA_REGISTRY_URL: must be an http(s) URL with a host, "
            "got 'https://********@host:99999'",
        ),
        (
            {"LOG_LEVEL": "TRACE"},
            "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, got 'TRACE'",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: must be one of json, text, got 'xml'"),
        (
            {"MEM0_HTTP_CLIENT": "curl"},
            "MEM0_HTTP_CLIENT: must be one of auto, lean, aiohttp, httpx, got 'curl'",
        ),
        (
            {"LOG_IDS_IN_CLEAR": "maybe"},
            "LOG_IDS_IN_CLEAR: must be true or false (or 1/0, yes/no), got 'maybe'",
        ),
        (
            {"MEM0_API_KEY_FILE": "/nope"},
            "MEM0_API_KEY_FILE: cannot be combined with MEM0_API_KEY",
        ),
        (
            {"KAFKA_ENABLE_AUTO_COMMIT": "true"},
            "KAFKA_ENABLE_AUTO_COMMIT: enable.auto.commit must stay false: "
            "offsets are stored after the work",
        ),
        (
            {"KAFKA_DELIVERY_REPORT_ONLY_ERROR": "true"},
            "KAFKA_DELIVERY_REPORT_ONLY_ERROR: delivery.report.only.error must stay false: "
            "a dead letter waits for its delivery report",
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVERS_FILE": "/f"},
            "KAFKA_BOOTSTRAP_SERVERS_FILE: cannot be combined with KAFKA_BOOTSTRAP_SERVERS",
        ),
    ],
)
def test_bad_values(env: dict[str, str], message: str) -> None:
    if "KAFKA_BOOTSTRAP_SERVERS_FILE" in env:
        env = {**env, "KAFKA_BOOTSTRAP_SERVERS": "b:9092"}
    assert error(env) == message


def test_api_key_required_for_platform() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_sources({})
    assert str(info.value) == "MEM0_API_KEY: required for the platform backend"
    assert info.value.name == "MEM0_API_KEY"


def test_unreadable_secret_files() -> None:
    def denied(path: str) -> str:
        raise PermissionError(13, "Permission denied", path)

    with pytest.raises(SettingsError) as info:
        Settings.from_sources({"MEM0_API_KEY_FILE": "/key"}, read_file=denied)
    assert str(info.value) == "MEM0_API_KEY_FILE: cannot read '/key': Permission denied"
    assert info.value.name == "MEM0_API_KEY_FILE"
    assert (
        error({"KAFKA_SASL_PASSWORD_FILE": "/missing"})
        == "KAFKA_SASL_PASSWORD_FILE: cannot read '/missing': No such file or directory"
    )
    assert (
        error({"KAFKA_SASL_PASSWORD_FILE": "/empty"}, files={"/empty": "\n"})
        == "KAFKA_SASL_PASSWORD_FILE: '/empty' is empty"
    )


def test_bad_flags_name_the_variable() -> None:
    assert (
        error(flags={"metrics_port": "x"})
        == "METRICS_PORT: must be an integer between 0 and 65535, got 'x'"
    )
    assert error(flags={"group_id": ""}) == "KAFKA_GROUP_ID: must not be empty"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("sasl.password", "--kafka-property: expected KEY=VALUE"),
        ("=value", "--kafka-property: expected KEY=VALUE"),
        ("bad key=1", "--kafka-property: invalid property name 'bad key'"),
        ("group.id=x", "--kafka-property: group.id is set with KAFKA_GROUP_ID"),
        (
            "bootstrap.servers=x",
            "--kafka-property: bootstrap.servers is set with KAFKA_BOOTSTRAP_SERVERS",
        ),
        (
            "enable.auto.offset.store=true",
            "--kafka-property: enable.auto.offset.store must stay false: "
            "offsets are stored after the work",
        ),
    ],
)
def test_bad_kafka_property_flags(item: str, message: str) -> None:
    assert error(flags={"kafka_property": [item]}) == message


def test_errors_never_echo_secrets() -> None:
    text = error(flags={"kafka_property": ["sasl.password:hunter2"]})
    assert "hunter2" not in text


def test_a_short_session_gets_a_heartbeat_a_third_as_long() -> None:
    assert (
        consumer_config(load({"KAFKA_SESSION_TIMEOUT_MS": "3000"}))["heartbeat.interval.ms"] == 1000
    )
    explicit = load({"KAFKA_SESSION_TIMEOUT_MS": "3000", "KAFKA_HEARTBEAT_INTERVAL_MS": "700"})
    assert consumer_config(explicit)["heartbeat.interval.ms"] == "700"


# --- the one table ----------------------------------------------------------------------------


def test_every_field_but_the_pass_through_is_one_option() -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    pass_through = ("kafka_properties", "schema_registry_properties")
    assert [opt.dest for opt in OPTIONS] == [n for n in names if n not in pass_through]
    variables = [opt.env for opt in OPTIONS] + [opt.file_env for opt in OPTIONS if opt.secret]
    assert len(set(variables)) == len(variables)
    assert all(is_setting(name) for name in variables)
    assert len({opt.option_string for opt in OPTIONS}) == len(OPTIONS)
    for opt in OPTIONS:
        assert opt.help and "|" not in opt.help and "\n" not in opt.help, opt.env


def test_describe_follows_the_table() -> None:
    described = list(load().describe())
    assert described == [opt.env for opt in OPTIONS]


def test_the_readme_table_is_the_table() -> None:
    """README.md's table of settings is `readme_table()`: regenerate it when an option changes."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| variable | default | meaning |\n")
    end = text.index("\n\n", start) + 1
    assert text[start:end] == readme_table(), (
        "README.md's settings table is stale: paste `python -m consumer.settings.docs` over it"
    )


def test_help_is_the_table_text_without_markdown() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    receipts = next(opt for opt in OPTIONS if opt.env == "RECEIPTS_TOPIC")
    assert plain_text(receipts.help) == "one receipt per finished event (empty: none)"
    assert helps["receipts_topic"] == (
        "one receipt per finished event (empty: none) "
        "[env RECEIPTS_TOPIC, default memory.deletions.receipts]"
    )
    assert helps["mem0_api_key_file"] == "read MEM0_API_KEY from this file [env MEM0_API_KEY_FILE]"


def test_settings_error_is_a_consumer_error() -> None:
    assert issubclass(SettingsError, ConsumerError)


def test_settings_and_the_kafka_config_import_in_any_order() -> None:
    """kafka/preflight.py imports settings, settings uses kafka/config.py: no cycle either way."""
    code = """
import importlib, sys
for first in ("consumer.kafka.config", "consumer.kafka.preflight", "consumer.settings.sources",
              "consumer.settings.options", "consumer.settings.checks", "consumer.settings"):
    for name in [m for m in sys.modules if m == "consumer" or m.startswith("consumer.")]:
        del sys.modules[name]
    importlib.import_module(first)
    importlib.import_module("consumer.settings").Settings.from_sources({"MEM0_API_KEY": "k"})
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
