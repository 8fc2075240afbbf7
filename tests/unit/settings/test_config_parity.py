"""`config` refuses what `run` refuses (issue 19): librdkafka's judgement offline, named as written.

Settings read with `check_clients=True` (what `run` and `config` ask for) have librdkafka build
the clients `run` builds, without a connection; its refusal names the variable, the flag or the
configuration file's key the user wrote. An unknown key is suggested its closest name. Each
command's --help lists the settings it reads and accepts the others. The CLI itself, `config`
against `run` on the same bad settings, is tested in tests/integration/test_config_cli.py.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import select
import socket
import textwrap
from collections.abc import Iterator, Mapping

import pytest
from confluent_kafka import Consumer
from hypothesis import given
from hypothesis import strategies as st

from consumer.__main__ import _parser
from consumer.kafka.config import consumer_config
from consumer.settings import KAFKA_PROPERTY_FLAG, Settings, SettingsError, from_args
from consumer.settings.command_uses import USES
from consumer.settings.kafka_properties import DEDICATED_PROPERTIES
from consumer.settings.librdkafka_names import PROPERTY_NAMES
from consumer.settings.options import BY_ENV, OPTIONS
from consumer.settings.suggestions import property_hint, variable_hint

CONFIG = "/etc/deletion-consumer.toml"
KEYED = {"MEM0_API_KEY": "k"}


def load(
    env: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
    flags: Mapping[str, object] | None = None,
    check_clients: bool = True,
) -> Settings:
    """Settings as `run` reads them, `config` the configuration file's text."""
    env = {**KEYED, **(env or {})}
    if config is not None:
        env["DELETION_CONSUMER_CONFIG"] = CONFIG

    def read_file(path: str) -> str:
        if config is None or path != CONFIG:
            raise FileNotFoundError(2, "No such file or directory", path)
        return config

    return Settings.from_sources(env, flags, read_file=read_file, check_clients=check_clients)


def refusal(
    env: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
    flags: Mapping[str, object] | None = None,
) -> str:
    with pytest.raises(SettingsError) as info:
        load(env, config=config, flags=flags)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{info.value.name}: ")
    return text


UNKNOWN_FILE_KEY = f"DELETION_CONSUMER_CONFIG: unknown key {{key!r}} in '{CONFIG}'"


# --- librdkafka's refusals, named as the user wrote them ---------------------------------------


@pytest.mark.parametrize(
    ("env", "config", "flags", "expected"),
    [
        (
            {"KAFKA_SESSION_TIMEOUT_MS": "abc"},
            None,
            None,
            "KAFKA_SESSION_TIMEOUT_MS: Invalid value for configuration property "
            '"session.timeout.ms"',
        ),
        (
            {"KAFKA_NOT_A_PROPERTY": "1"},
            None,
            None,
            'KAFKA_NOT_A_PROPERTY: No such configuration property: "not.a.property"',
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVER": "broker:9092"},
            None,
            None,
            'KAFKA_BOOTSTRAP_SERVER: No such configuration property: "bootstrap.server"; '
            "did you mean KAFKA_BOOTSTRAP_SERVERS?",
        ),
        (  # a producer's property, and an alias: librdkafka names what it stands for
            {"KAFKA_LINGER_MS": "soon"},
            None,
            None,
            "KAFKA_LINGER_MS: Invalid value for configuration property "
            '"queue.buffering.max.ms" (linger.ms stands for queue.buffering.max.ms)',
        ),
        (
            None,
            'KAFKA_BOOTSTRAP_SERVER = "broker:9092"',
            None,
            UNKNOWN_FILE_KEY.format(key="KAFKA_BOOTSTRAP_SERVER")
            + "; did you mean KAFKA_BOOTSTRAP_SERVERS?",
        ),
        (
            None,
            '[kafka]\nbootstrap.server = "broker:9092"',
            None,
            UNKNOWN_FILE_KEY.format(key="[kafka] bootstrap.server")
            + "; did you mean KAFKA_BOOTSTRAP_SERVERS?",
        ),
        (
            None,
            '[kafka]\nsasl.mechanisn = "PLAIN"',
            None,
            UNKNOWN_FILE_KEY.format(key="[kafka] sasl.mechanisn")
            + "; did you mean sasl.mechanism?",
        ),
        (
            None,
            '[kafka]\nno.such.property = "1"',
            None,
            UNKNOWN_FILE_KEY.format(key="[kafka] no.such.property"),
        ),
        (
            None,
            '[kafka]\nsession.timeout.ms = "soon"',
            None,
            "[kafka] session.timeout.ms: Invalid value for configuration property "
            '"session.timeout.ms"',
        ),
        (
            None,
            "KAFKA_SESSION_TIMEOUT_MS = -5",
            None,
            'KAFKA_SESSION_TIMEOUT_MS: Configuration property "session.timeout.ms" value -5 is '
            "outside allowed range 1..3600000",
        ),
        (
            None,
            None,
            {"kafka_property": ["bootstrap.server=broker:9092"]},
            '--kafka-property: No such configuration property: "bootstrap.server"; '
            "did you mean KAFKA_BOOTSTRAP_SERVERS?",
        ),
        (  # a typo that is no property: the file's check, librdkafka not needed
            None,
            'MEM0_BASEURL = "https://mem0.internal"',
            None,
            UNKNOWN_FILE_KEY.format(key="MEM0_BASEURL") + "; did you mean MEM0_BASE_URL?",
        ),
        (
            None,
            "metrics_prot = 9400",
            None,
            UNKNOWN_FILE_KEY.format(key="metrics_prot") + "; did you mean METRICS_PORT?",
        ),
    ],
)
def test_a_refusal_names_what_the_user_wrote(
    env: dict[str, str] | None,
    config: str | None,
    flags: dict[str, object] | None,
    expected: str,
) -> None:
    assert refusal(env, config=config, flags=flags) == expected


def test_the_refusal_names_the_layer_that_won() -> None:
    bad_file = '[kafka]\nsession.timeout.ms = "soon"'
    # The environment overrides the file's bad value: nothing left to refuse.
    assert load({"KAFKA_SESSION_TIMEOUT_MS": "10000"}, config=bad_file).kafka_properties == {
        "session.timeout.ms": "10000"
    }
    # And a bad value in the environment over a good one in the file is the environment's.
    good_file = "[kafka]\nsession.timeout.ms = 10000"
    assert refusal({"KAFKA_SESSION_TIMEOUT_MS": "soon"}, config=good_file).startswith(
        "KAFKA_SESSION_TIMEOUT_MS: "
    )
    assert refusal(
        {"KAFKA_SESSION_TIMEOUT_MS": "10000"},
        config=good_file,
        flags={"kafka_property": ["session.timeout.ms=soon"]},
    ).startswith("--kafka-property: ")


def test_a_mandatory_property_nobody_set_is_named_by_its_variable() -> None:
    oidc = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "KAFKA_SASL_OAUTHBEARER_METHOD": "oidc",
        "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "s",
        "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://idp.example/token",
    }
    line = refusal(oidc)
    assert line.startswith("KAFKA_SASL_OAUTHBEARER_CLIENT_ID: ")
    assert "is mandatory" in line


def test_the_platform_key_is_required_and_the_oss_backend_needs_none() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_sources({}, check_clients=True)
    assert str(info.value) == "MEM0_API_KEY: required for the platform backend"
    assert Settings.from_sources({"MEM0_BACKEND": "oss"}, check_clients=True).mem0_backend == "oss"


def test_without_check_clients_librdkafka_is_not_asked() -> None:
    # A library caller (tests, the harness) builds its clients itself: it is told there.
    settings = load({"KAFKA_NOT_A_PROPERTY": "1"}, check_clients=False)
    assert settings.kafka_properties == {"not.a.property": "1"}


def test_from_args_checks_the_clients_when_the_mem0_key_is_needed() -> None:
    args = argparse.Namespace(kafka_property=["not.a.property=1"])
    with pytest.raises(SettingsError):
        from_args(args, KEYED)  # as `run` reads its settings
    with pytest.raises(SettingsError):
        from_args(args, {}, needs_mem0=False, check_clients=True)
    assert from_args(args, {}, needs_mem0=False).kafka_properties == {"not.a.property": "1"}


# --- offline: the check connects to nothing ------------------------------------------------------


@pytest.fixture
def listeners() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two sockets listening on loopback, a broker's and an identity provider's, which accept
    nothing: a connection waits in the queue."""
    with socket.socket() as broker, socket.socket() as idp:
        for server in (broker, idp):
            server.bind(("127.0.0.1", 0))
            server.listen(16)
        yield broker, idp


def connected(server: socket.socket, timeout_s: float) -> bool:
    """Whether a connection is waiting on `server` (or comes within `timeout_s`)."""
    readable, _, _ = select.select([server], [], [], timeout_s)
    return bool(readable)


def address(server: socket.socket) -> str:
    return f"127.0.0.1:{server.getsockname()[1]}"


def test_the_check_connects_neither_to_a_broker_nor_to_an_identity_provider(
    listeners: tuple[socket.socket, socket.socket],
) -> None:
    broker, idp = listeners
    oidc = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "KAFKA_SASL_OAUTHBEARER_METHOD": "oidc",
        "KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "deleter",
        "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "s",
        "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": f"http://{address(idp)}/token",
    }
    # The check's clients are destroyed before it returns (librdkafka joins its threads), so a
    # connection they made would be waiting in a queue by now. (An OAUTHBEARER client waits
    # for its token before it connects to a broker: the broker is tried without it first.)
    plain = load({"KAFKA_BOOTSTRAP_SERVERS": address(broker)})
    assert not connected(broker, 0)
    settings = load({"KAFKA_BOOTSTRAP_SERVERS": address(broker), **oidc})
    assert not connected(idp, 0)
    assert not connected(broker, 0)

    # Whereas clients built from the same configurations connect at once: to the broker,
    client = Consumer(consumer_config(plain))
    try:
        assert connected(broker, 10)
    finally:
        client.close()
    # and to the identity provider, for a token.
    config = {k: v for k, v in consumer_config(settings).items() if k != "bootstrap.servers"}
    client = Consumer(config)
    try:
        assert connected(idp, 10)
    finally:
        idp.accept()[0].close()  # an answer at last (none), so that closing need not wait
        client.close()


# --- suggestions ---------------------------------------------------------------------------------


def _deletions(name: str) -> st.SearchStrategy[str]:
    return st.integers(0, len(name) - 1).map(lambda i: name[:i] + name[i + 1 :])


VARIABLES = [opt.env for opt in OPTIONS] + [opt.file_env for opt in OPTIONS if opt.secret]


@given(st.sampled_from(VARIABLES).flatmap(lambda name: st.tuples(st.just(name), _deletions(name))))
def test_a_variable_missing_a_letter_is_suggested(case: tuple[str, str]) -> None:
    name, typo = case
    assert variable_hint(typo) == f"; did you mean {name}?"
    assert variable_hint(typo.lower()) == f"; did you mean {name}?"


@given(
    st.sampled_from(sorted(PROPERTY_NAMES))
    .flatmap(lambda name: st.tuples(st.just(name), _deletions(name)))
    .filter(lambda case: case[1] not in PROPERTY_NAMES)
)
def test_a_property_missing_a_letter_is_suggested_or_its_setting(case: tuple[str, str]) -> None:
    prop, typo = case
    assert property_hint(typo) == f"; did you mean {DEDICATED_PROPERTIES.get(prop, prop)}?"


@given(st.text("0123456789", min_size=1, max_size=12))
def test_nothing_is_suggested_for_a_name_like_no_other(word: str) -> None:
    assert variable_hint(word) == ""
    assert property_hint(word) == ""


def test_a_known_name_gets_no_suggestion() -> None:
    assert variable_hint("METRICS_PORT") == ""
    assert property_hint("linger.ms") == ""


def _installed_property_names() -> set[str]:
    """librdkafka's own list (`rd_kafka_conf_properties_show`), global and topic properties."""
    from confluent_kafka import cimpl

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "open_memstream"):
        pytest.skip("no open_memstream in this C library")
    librdkafka = ctypes.CDLL(cimpl.__file__)  # its symbols resolve through its dependency
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = [
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.free.argtypes = [ctypes.c_void_p]
    librdkafka.rd_kafka_conf_properties_show.argtypes = [ctypes.c_void_p]
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    librdkafka.rd_kafka_conf_properties_show(stream)
    libc.fclose(stream)
    text = ctypes.string_at(buffer, size.value).decode()
    libc.free(ctypes.cast(buffer, ctypes.c_void_p))
    rows = (line.split("|", 1)[0].strip() for line in text.splitlines() if "|" in line)
    return {name for name in rows if name and name != "Property" and not name.startswith("-")}


def test_the_property_names_are_the_installed_librdkafkas() -> None:
    installed = _installed_property_names()
    words = textwrap.indent(textwrap.fill(" ".join(sorted(installed)), 92), "    ")
    assert installed == PROPERTY_NAMES, (
        "consumer/settings/librdkafka_names.py is not the installed librdkafka's list: paste "
        f"this between its quotes (and say which version it is):\n{words}"
    )


# --- each command's --help lists what it reads --------------------------------------------------


def command_parser(command: str) -> argparse.ArgumentParser:
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen: argparse.ArgumentParser = commands.choices[command]
    return chosen


def command_help(command: str) -> str:
    return command_parser(command).format_help()


def listed_settings(command: str) -> set[str]:
    """The variables (and `--kafka-property`) whose flags a command's --help shows."""
    variables = {opt.dest: opt.env for opt in OPTIONS}
    variables["kafka_property"] = KAFKA_PROPERTY_FLAG
    shown = [a for a in command_parser(command)._actions if a.help != argparse.SUPPRESS]
    return {variables[a.dest] for a in shown if a.dest in variables}


def test_receipts_help_lists_what_it_reads_and_run_help_everything() -> None:
    receipts = command_help("receipts")
    assert "--mem0-api-key" not in receipts and "--dlq-topic" not in receipts
    assert "--receipts-topic" in receipts and "--kafka-property" in receipts
    assert "--mem0-api-key MEM0_API_KEY" in command_help("run")
    every = {opt.env for opt in OPTIONS} | {KAFKA_PROPERTY_FLAG}
    assert listed_settings("run") == listed_settings("config") == every


@pytest.mark.parametrize("command", sorted(USES))
def test_a_command_lists_exactly_its_settings_and_accepts_the_others(command: str) -> None:
    assert listed_settings(command) == {"DELETION_CONSUMER_CONFIG", *USES[command]}
    assert "--mem0-api-key" not in command_help(command)
    # An unlisted setting's flag still parses and still counts, as its variable would.
    argv = [command, "--mem0-api-key", "k", "--metrics-port", "9500"]
    argv += ["x"] if command == "hash-id" else ["--event-id", "e"] if command == "receipts" else []
    args = _parser().parse_args(argv)
    settings = from_args(args, {}, needs_mem0=False)
    assert (settings.mem0_api_key.reveal(), settings.metrics_port) == ("k", 9500)


def test_every_command_use_is_a_setting() -> None:
    for names in USES.values():
        assert set(names) <= set(BY_ENV) | {KAFKA_PROPERTY_FLAG}


def test_every_setting_has_the_flag_of_its_variable() -> None:
    named = ["--kafka-bootstrap-servers", "b:9092", "--kafka-group-id", "g", "--deletion-topics"]
    args = _parser().parse_args(["run", *named, "t", "--deletion-consumer-config", "/c.toml"])
    assert (args.bootstrap_servers, args.group_id, args.topics) == ("b:9092", "g", "t")
    assert args.config_file == "/c.toml"
    short = ["--bootstrap-servers", "b:9092", "--group-id", "g", "--topics", "t"]
    old = _parser().parse_args(["run", *short, "--config", "/c.toml"])
    assert vars(old) == vars(args)  # the table's short flags still work, listed first
    run = command_help("run")
    for opt in OPTIONS:
        assert "--" + opt.env.lower().replace("_", "-") in run
    assert "--bootstrap-servers KAFKA_BOOTSTRAP_SERVERS, --kafka-bootstrap-servers" in run
