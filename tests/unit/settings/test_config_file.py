"""The configuration file, its precedence, the plain-http guard and the start-up topic check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.kafka.preflight import check_topics, missing_topics
from consumer.settings import Settings, SettingsError, is_setting
from consumer.settings.kafka_properties import property_variable

CONFIG = "/etc/deletion-consumer.toml"


def load(
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
    files: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
) -> Settings:
    """Settings with `config` as the file's text, named by DELETION_CONSUMER_CONFIG."""
    every_file = dict(files or {})
    env = dict(env or {})
    if config is not None:
        every_file[CONFIG] = config
        env.setdefault("DELETION_CONSUMER_CONFIG", CONFIG)

    def read_file(path: str) -> str:
        if path not in every_file:
            raise FileNotFoundError(2, "No such file or directory", path)
        return every_file[path]

    return Settings.from_sources(env, flags, read_file=read_file)


def error(
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
    files: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
) -> str:
    with pytest.raises(SettingsError) as info:
        load(env, flags, files, config=config)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{info.value.name}: ")
    return text


KEYED = 'MEM0_API_KEY = "file-key"\n'


# --- reading the file --------------------------------------------------------------------------


def test_keys_are_the_variable_names_with_toml_values() -> None:
    s = load(
        config=KEYED
        + """
KAFKA_BOOTSTRAP_SERVERS = "broker-1:9092,broker-2:9092"
DELETION_TOPICS = ["erase.a", "erase.b"]
RECEIPTS_TOPIC = ""
METRICS_PORT = 9500
MEM0_TIMEOUT_S = 2.5
LOG_IDS_IN_CLEAR = true
KAFKA_SESSION_TIMEOUT_MS = 10000

[kafka]
security.protocol = "SASL_SSL"
sasl.mechanism = "SCRAM-SHA-512"
"sasl.username" = "deleter"
enable.ssl.certificate.verification = true
"""
    )
    assert s.config_file == CONFIG
    assert s.mem0_api_key.reveal() == "file-key"
    assert s.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert s.topics == ("erase.a", "erase.b")
    assert s.receipts_topic is None
    assert (s.metrics_port, s.mem0_timeout_s, s.log_ids_in_clear) == (9500, 2.5, True)
    assert dict(s.kafka_properties) == {
        "session.timeout.ms": "10000",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "deleter",
        "enable.ssl.certificate.verification": "true",
    }


def test_an_empty_file_is_all_defaults() -> None:
    s = load({"MEM0_API_KEY": "k"}, config="")
    assert s.config_file == CONFIG
    assert s.metrics_port == 9400


def test_no_file_is_read_unless_one_is_named() -> None:
    s = load({"MEM0_API_KEY": "k"})
    assert s.config_file is None


def test_the_flag_names_the_file_before_the_variable() -> None:
    files = {"/a.toml": KEYED + "METRICS_PORT = 1", "/b.toml": KEYED + "METRICS_PORT = 2"}
    s = load({"DELETION_CONSUMER_CONFIG": "/a.toml"}, {"config_file": "/b.toml"}, files)
    assert (s.config_file, s.metrics_port) == ("/b.toml", 2)


def test_secrets_from_files_named_in_the_file() -> None:
    s = load(
        files={"/run/secrets/mem0": "m0-from-file\n", "/run/secrets/kafka": "kafka-pw"},
        config='MEM0_API_KEY_FILE = "/run/secrets/mem0"\n'
        'KAFKA_SASL_PASSWORD_FILE = "/run/secrets/kafka"\n',
    )
    assert s.mem0_api_key.reveal() == "m0-from-file"
    assert s.kafka_properties["sasl.password"] == "kafka-pw"
    described = s.describe()
    assert described["MEM0_API_KEY"] == "********"
    assert described["sasl.password"] == "********"
    assert described["DELETION_CONSUMER_CONFIG"] == CONFIG
    assert "kafka-pw" not in repr(s) and "m0-from-file" not in repr(s)


# --- precedence: flag > environment > file > default -----------------------------------------


def test_precedence_of_values() -> None:
    config = KEYED + 'KAFKA_GROUP_ID = "file"\nDLQ_TOPIC = "file.dlq"\nMETRICS_PORT = 9001\n'
    s = load({"KAFKA_GROUP_ID": "env", "DLQ_TOPIC": "env.dlq"}, {"group_id": "flag"}, config=config)
    assert s.group_id == "flag"  # flag over environment over file
    assert s.dlq_topic == "env.dlq"  # environment over file
    assert s.metrics_port == 9001  # file over default
    assert s.flush_max_events == Settings().flush_max_events  # default


def test_an_empty_variable_still_hides_the_file() -> None:
    s = load({"RECEIPTS_TOPIC": ""}, config=KEYED + 'RECEIPTS_TOPIC = "receipts"\n')
    assert s.receipts_topic is None


def test_precedence_of_secrets() -> None:
    files = {"/env-key": "env-file-key"}
    assert load({"MEM0_API_KEY": "env-key"}, config=KEYED).mem0_api_key.reveal() == "env-key"
    s = load({"MEM0_API_KEY_FILE": "/env-key"}, files=files, config=KEYED)
    assert s.mem0_api_key.reveal() == "env-file-key"
    s = load({"MEM0_API_KEY": "env-key"}, {"mem0_api_key": "flag-key"}, config=KEYED)
    assert s.mem0_api_key.reveal() == "flag-key"


def test_precedence_of_librdkafka_properties() -> None:
    config = (
        KEYED
        + 'KAFKA_CLIENT_ID = "file-top"\nKAFKA_LINGER_MS = 1\n'
        + '[kafka]\nclient.id = "file-table"\nsocket.timeout.ms = 1000\n'
        + "session.timeout.ms = 7000\nlinger.ms = 2\n"
    )
    s = load(
        {"KAFKA_SOCKET_TIMEOUT_MS": "2000", "KAFKA_SESSION_TIMEOUT_MS": "8000"},
        {"kafka_property": ["session.timeout.ms=9000"]},
        config=config,
    )
    assert dict(s.kafka_properties) == {
        "client.id": "file-table",  # the [kafka] table over the file's KAFKA_* keys
        "linger.ms": "2",
        "socket.timeout.ms": "2000",  # environment over file
        "session.timeout.ms": "9000",  # --kafka-property over environment
    }


def test_a_variable_overrides_a_secret_file_named_in_the_file() -> None:
    s = load(
        {"KAFKA_SASL_PASSWORD": "env-pw"},
        files={"/pw": "file-pw"},
        config=KEYED + 'KAFKA_SASL_PASSWORD_FILE = "/pw"\n',
    )
    assert s.kafka_properties["sasl.password"] == "env-pw"


# --- errors, one line each, naming the setting -------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "NOPE = 1",
            f"DELETION_CONSUMER_CONFIG: unknown key 'NOPE' in '{CONFIG}'",
        ),
        (
            "metrics_port = 9400",
            f"DELETION_CONSUMER_CONFIG: unknown key 'metrics_port' in '{CONFIG}' "
            "(keys are the variables' names: METRICS_PORT)",
        ),
        (
            'DELETION_CONSUMER_CONFIG = "/other.toml"',
            f"DELETION_CONSUMER_CONFIG: unknown key 'DELETION_CONSUMER_CONFIG' in '{CONFIG}'",
        ),
        (
            'KAFKA_SERVICE_HOST = "10.0.0.1"',
            f"DELETION_CONSUMER_CONFIG: unknown key 'KAFKA_SERVICE_HOST' in '{CONFIG}'",
        ),
        (
            "[mem0]\nMEM0_API_KEY = 'k'",
            f"DELETION_CONSUMER_CONFIG: unknown key 'mem0' in '{CONFIG}'",
        ),
        (
            "METRICS_PORT = ",
            f"DELETION_CONSUMER_CONFIG: '{CONFIG}' is not valid TOML: "
            "Invalid value (at end of document)",
        ),
        (
            "[METRICS_PORT]\nvalue = 1",
            f"DELETION_CONSUMER_CONFIG: '{CONFIG}': METRICS_PORT must be a string, number, "
            "boolean or list of them",
        ),
        (
            'kafka = "security.protocol=SSL"',
            f"DELETION_CONSUMER_CONFIG: '{CONFIG}': kafka must be a table of librdkafka properties",
        ),
        (
            "[kafka]\nsasl.jaas = [{a = 1}]",
            f"DELETION_CONSUMER_CONFIG: '{CONFIG}': [kafka] sasl.jaas must be a string, "
            "number, boolean or list of them",
        ),
        (
            KEYED + "METRICS_PORT = 70000",
            "METRICS_PORT: must be an integer between 0 and 65535, got '70000'",
        ),
        (
            KEYED + "FLUSH_MAX_BYTES = -1",
            "FLUSH_MAX_BYTES: must be an integer between 1 and 1073741824, got '-1'",
        ),
        (KEYED + 'MEM0_BACKEND = "cloud"', "MEM0_BACKEND: must be platform or oss, got 'cloud'"),
        (
            KEYED + 'MEM0_BASE_URL = "api.mem0.ai"',
            "MEM0_BASE_URL: must be an http(s) URL with a host, got 'api.mem0.ai'",
        ),
        (
            KEYED + "[kafka]\nenable.auto.commit = true",
            "[kafka] enable.auto.commit: enable.auto.commit must stay false: "
            "offsets are stored after the work",
        ),
        (
            KEYED + '[kafka]\ngroup.id = "g"',
            "[kafka] group.id: group.id is set with KAFKA_GROUP_ID",
        ),
        (
            KEYED + '[kafka]\n"bad key" = 1',
            "[kafka] bad key: invalid property name 'bad key'",
        ),
        (
            KEYED + 'KAFKA_SASL_PASSWORD_FILE = "/missing"',
            "KAFKA_SASL_PASSWORD_FILE: cannot read '/missing': No such file or directory",
        ),
        (
            'MEM0_API_KEY = "k"\nMEM0_API_KEY_FILE = "/k"',
            "MEM0_API_KEY_FILE: cannot be combined with MEM0_API_KEY",
        ),
        (
            'MEM0_API_KEY_FILE = "/unreadable"',
            "MEM0_API_KEY_FILE: cannot read '/unreadable': No such file or directory",
        ),
        ("", "MEM0_API_KEY: required for the platform backend"),
    ],
)
def test_bad_files(config: str, message: str) -> None:
    assert error(config=config) == message


def test_an_unreadable_configuration_file() -> None:
    assert (
        error({"DELETION_CONSUMER_CONFIG": "/nowhere.toml"})
        == "DELETION_CONSUMER_CONFIG: cannot read '/nowhere.toml': No such file or directory"
    )
    assert (
        error(flags={"config_file": "/nowhere.toml"})
        == "DELETION_CONSUMER_CONFIG: cannot read '/nowhere.toml': No such file or directory"
    )


# --- the API key never crosses a network in clear ---------------------------------------------

IN_CLEAR = (
    "MEM0_BASE_URL: refusing to send the API key in clear to {url!r} (not loopback); "
    "use https://, or MEM0_ALLOW_INSECURE_HTTP=true for a sandbox"
)


@pytest.mark.parametrize(
    "url", ["http://mem0.internal", "http://10.0.0.7:8000", "http://sandbox:8765"]
)
def test_the_api_key_is_not_sent_over_plain_http_off_the_machine(url: str) -> None:
    assert error({"MEM0_API_KEY": "k", "MEM0_BASE_URL": url}) == IN_CLEAR.format(url=url)
    oss = {"MEM0_BACKEND": "oss", "MEM0_API_KEY": "k", "MEM0_BASE_URL": url}
    assert error(oss) == IN_CLEAR.format(url=url)


def test_the_refusal_never_shows_a_password_in_the_url() -> None:
    text = error({"MEM0_API_KEY": "k", "MEM0_BASE_URL": "http://user:hunter2@mem0.internal"})
    assert "hunter2" not in text
    assert "'http://********@mem0.internal'" in text  # the user too


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765",
        "http://127.8.9.10",
        "http://localhost:8765",
        "http://LOCALHOST",
        "http://sandbox.localhost:1",
        "http://[::1]:8765",
        "https://api.mem0.ai",
        "https://10.0.0.7",
    ],
)
def test_loopback_and_https_are_fine(url: str) -> None:
    assert load({"MEM0_API_KEY": "k", "MEM0_BASE_URL": url}).mem0_base_url == url


def test_plain_http_off_the_machine_when_allowed_or_keyless() -> None:
    s = load(
        {"MEM0_API_KEY": "k", "MEM0_BASE_URL": "http://sandbox:8765"},
        {"mem0_allow_insecure_http": True},
    )
    assert s.mem0_allow_insecure_http is True
    s = load(
        config='MEM0_API_KEY = "k"\nMEM0_BASE_URL = "http://sandbox:8765"\n'
        "MEM0_ALLOW_INSECURE_HTTP = true\n"
    )
    assert s.mem0_base_url == "http://sandbox:8765"
    # The self-hosted server without a key: nothing secret is sent.
    s = load({"MEM0_BACKEND": "oss", "MEM0_BASE_URL": "http://mem0:8000"})
    assert not s.mem0_api_key
    assert (
        error({"MEM0_API_KEY": "k", "MEM0_ALLOW_INSECURE_HTTP": "sometimes"})
        == "MEM0_ALLOW_INSECURE_HTTP: must be true or false (or 1/0, yes/no), got 'sometimes'"
    )


# --- names -------------------------------------------------------------------------------------


def test_is_setting() -> None:
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "MEM0_API_KEY_FILE",
        "MEM0_ALLOW_INSECURE_HTTP",
        "DELETION_CONSUMER_CONFIG",
        "KAFKA_SASL_PASSWORD_FILE",
        "KAFKA_SECURITY_PROTOCOL",
    ):
        assert is_setting(name), name
    for name in ("MEM0_BASEURL", "KAFKA_SERVICE_HOST", "KAFKA_HEAP_OPTS", "PATH", "metrics_port"):
        assert not is_setting(name), name


@pytest.mark.parametrize(
    "prop",
    ["sasl.password", "ssl.ca.location", "log_level", "sasl.oauthbearer.client.id", "x-y_z.w"],
)
def test_property_variable_inverts_the_convention(prop: str) -> None:
    name = property_variable(prop)
    assert dict(load({"MEM0_API_KEY": "k", name: "v"}).kafka_properties) == {prop: "v"}
    assert property_variable("session.timeout.ms") == "KAFKA_SESSION_TIMEOUT_MS"


# --- the topic check at start ------------------------------------------------------------------


def settings(**env: str) -> Settings:
    return Settings.from_sources({"MEM0_API_KEY": "k", **env})


def test_missing_topics_name_their_setting() -> None:
    s = settings(DELETION_TOPICS="in.a,in.b", DLQ_TOPIC="d", RECEIPTS_TOPIC="r")
    assert missing_topics(s, {"in.a", "in.b", "d", "r", "other"}) is None
    cases = [
        (
            {"in.a", "d", "r"},
            "DELETION_TOPICS: topic 'in.b' does not exist (or is not visible to this "
            "client); create it first",
        ),
        (
            {"d"},
            "DELETION_TOPICS: topics 'in.a', 'in.b' do not exist (or are not visible to "
            "this client); create them first",
        ),
        (
            {"in.a", "in.b", "r"},
            "DLQ_TOPIC: topic 'd' does not exist (or is not visible to this client); "
            "create it first",
        ),
        (
            {"in.a", "in.b", "d"},
            "RECEIPTS_TOPIC: topic 'r' does not exist (or is not visible to this client); "
            "create it first",
        ),
    ]
    for existing, message in cases:
        problem = missing_topics(s, existing)
        assert problem is not None
        assert str(problem) == message


def test_patterns_and_absent_receipts_are_not_checked() -> None:
    s = settings(DELETION_TOPICS="^erase\\..*", DLQ_TOPIC="d", RECEIPTS_TOPIC="")
    assert missing_topics(s, {"d"}) is None


def test_check_topics_raises_for_a_missing_topic() -> None:
    s = settings(RECEIPTS_TOPIC="")
    metadata = SimpleNamespace(topics={"memory.deletions": object()})

    def list_topics(**_: Any) -> SimpleNamespace:
        return metadata

    with pytest.raises(SettingsError) as info:
        asyncio.run(check_topics(s, list_topics))
    assert info.value.name == "DLQ_TOPIC"


def test_an_unreachable_cluster_is_not_a_configuration_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: list[float] = []

    def list_topics(*, timeout: float) -> None:
        asked.append(timeout)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))

    with caplog.at_level(logging.WARNING, logger="consumer.kafka.preflight"):
        asyncio.run(check_topics(settings(), list_topics, timeout_s=0.5))
    assert asked == [0.5]
    assert "topics not checked" in caplog.text
