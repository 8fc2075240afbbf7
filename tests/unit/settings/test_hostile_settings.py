"""Settings against issue 16 (hostile input): what `config` may show, where the endpoint binds,
and which flags a `--workers` child may see on its command line."""

from __future__ import annotations

import pytest

from consumer.__main__ import _parser
from consumer.settings import Settings, SettingsError
from consumer.settings.flags import child_arguments, from_args
from consumer.settings.parsers import redact_url

MASK = "********"


def load(env: dict[str, str]) -> Settings:
    return Settings.from_sources(env, needs_mem0=False)


# --- METRICS_HOST -------------------------------------------------------------------------------


def test_the_endpoint_binds_every_interface_by_default_and_the_address_is_a_setting() -> None:
    assert load({}).metrics_host == "0.0.0.0"
    assert load({"METRICS_HOST": " 127.0.0.1 "}).metrics_host == "127.0.0.1"
    assert load({"METRICS_HOST": "::"}).metrics_host == "::"
    assert load({"METRICS_HOST": "metrics.local"}).metrics_host == "metrics.local"
    for bad in ("", "host:9400", "[::1]", "http://host", "a b"):
        with pytest.raises(SettingsError, match="METRICS_HOST: must be an IP address or a host"):
            load({"METRICS_HOST": bad})


# --- what `config` shows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prop",
    [
        "sasl.oauthbearer.extensions",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.password",
        "ssl.key.password",
        "ssl.key.location",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl.keystore.location",
        "sasl.kerberos.keytab",
        "sasl.kerberos.kinit.cmd",
        "sasl.oauthbearer.client.secret",
    ],
)
def test_every_secret_like_property_is_masked(prop: str) -> None:
    s = load({"KAFKA_" + prop.upper().replace(".", "_"): "hidden-value"})
    assert s.kafka_properties[prop] == "hidden-value"
    assert s.describe()[prop] == MASK
    assert "hidden-value" not in repr(s)


def test_properties_that_are_no_secret_stay_readable() -> None:
    s = load(
        {
            "KAFKA_SASL_USERNAME": "deleter",
            "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
        }
    )
    described = s.describe()
    assert described["sasl.username"] == "deleter"
    assert described["sasl.mechanism"] == "OAUTHBEARER"
    assert described["security.protocol"] == "SASL_SSL"
    assert described["ssl.ca.location"] == "/etc/ca.pem"


def test_a_urls_user_info_is_masked_whole_in_settings_and_properties() -> None:
    s = load(
        {
            "SCHEMA_REGISTRY_URL": "https://ghp_token123@registry:8081",
            "MEM0_BASE_URL": "https://alice:pw@mem0.example",
            "KAFKA_CLIENT_RACK": "http://carol:rack-pw@rack",  # any property holding a URL
        }
    )
    described = s.describe()
    assert described["SCHEMA_REGISTRY_URL"] == "https://********@registry:8081"
    assert described["MEM0_BASE_URL"] == "https://********@mem0.example"
    assert described["client.rack"] == "http://********@rack"
    for rendering in (str(described), repr(s)):
        for secret in ("ghp_token123", "alice", "pw@", "carol", "rack-pw"):
            assert secret not in rendering


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host:8081/x?y=1", "https://********@host:8081/x?y=1"),
        ("http://token@host", "http://********@host"),
        ("http://user:pa/ss@host/p", "http://********@host/p"),  # an unescaped / in it
        ("http://[broken@host", "http://********@host"),  # urlsplit raises on this one
        ("a://u@h,b://v:w@g", "a://********@h,b://********@g"),
        ("https://host/path", "https://host/path"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- `run --workers`: no secret on a child's command line -----------------------------------------


def test_a_child_gets_the_flags_again_but_each_secret_through_its_environment() -> None:
    argv = [
        "run",
        "--workers=3",
        "--mem0-api-key",
        "sk-flag-key",
        "--log-hash-key=hash-key",
        "--kafka-prop",  # an abbreviation argparse accepts
        "sasl.password=kafka-pw",
        "--kafka-property",
        "linger.ms=7",
        "--no-verify-deletes",
        "--group-id=-dash-group",  # a value like a flag: rendered as --name=value again
        "--metrics-port",
        "9500",
    ]
    args = _parser().parse_args(argv)
    flags, env = child_arguments(args, omit=("metrics_port",))
    line = " ".join(flags)
    for secret in ("sk-flag-key", "hash-key", "kafka-pw"):
        assert secret not in line
    assert "--workers" not in line and "--metrics-port" not in line
    assert env == {
        "MEM0_API_KEY": "sk-flag-key",
        "MEM0_API_KEY_FILE": None,
        "LOG_HASH_KEY": "hash-key",
        "LOG_HASH_KEY_FILE": None,
        "KAFKA_SASL_PASSWORD": "kafka-pw",
        "KAFKA_SASL_PASSWORD_FILE": None,
    }
    # The child's settings are the parent's, over an environment that had other values.
    parent_env = {"MEM0_API_KEY_FILE": "/no/such/file", "KAFKA_GROUP_ID": "env-group"}
    child_env = {k: v for k, v in {**parent_env, **env}.items() if v is not None}
    child_env["METRICS_PORT"] = "9500"  # what the worker sets (its own port)
    child_args = _parser().parse_args(["run", *flags])
    parent = from_args(args, {"KAFKA_GROUP_ID": "env-group"})
    assert from_args(child_args, child_env) == parent
    assert parent.group_id == "-dash-group" and parent.verify_deletes is False


def test_a_secrets_file_flag_is_passed_on_as_a_flag() -> None:
    args = _parser().parse_args(["run", "--mem0-api-key-file", "/run/secrets/key"])
    flags, env = child_arguments(args)
    assert flags == ["--mem0-api-key-file=/run/secrets/key"]
    assert env == {}
