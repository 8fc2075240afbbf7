"""The Schema Registry client's settings (issue 20): passed through like librdkafka's.

`SCHEMA_REGISTRY_<NAME>` is the client's property `<name>` (`_FILE` reads it from a file),
`--schema-registry-property` and the file's `[schema_registry]` table set it too; secrets are
masked wherever settings are shown; the client's own judgement (`check_clients=True`, as `run`
and `config` read them) refuses a bad property in one line naming it as written. The client's
configuration made from them is `consumer/avro/registry_config.py`'s. End to end against a
registry that requires credentials: tests/integration/test_managed_registry.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import pytest
import trustme
from hypothesis import assume, given
from hypothesis import strategies as st

from consumer.__main__ import _parser
from consumer.avro.registry import DEFAULTS
from consumer.avro.registry_config import credentials_setting, registry_config
from consumer.settings import Settings, SettingsError, is_setting
from consumer.settings.flags import child_arguments
from consumer.settings.registry_properties import (
    is_secret_registry_property,
    registry_variable,
)

CONFIG = "/etc/deletion-consumer.toml"
URL = "https://registry.example.com"
REGISTRY = {"SCHEMA_REGISTRY_URL": URL}


def load(
    env: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
    flags: Mapping[str, object] | None = None,
    files: Mapping[str, str] | None = None,
    check_clients: bool = False,
) -> Settings:
    """Settings as `run` reads them (no Mem0 key needed here); `config`: the file's text."""
    every_file = dict(files or {})
    env = dict(env or {})
    if config is not None:
        every_file[CONFIG] = config
        env["DELETION_CONSUMER_CONFIG"] = CONFIG

    def read_file(path: str) -> str:
        if path not in every_file:
            raise FileNotFoundError(2, "No such file or directory", path)
        return every_file[path]

    return Settings.from_sources(
        env, flags, read_file=read_file, needs_mem0=False, check_clients=check_clients
    )


def refusal(
    env: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
    flags: Mapping[str, object] | None = None,
    check_clients: bool = True,
) -> str:
    with pytest.raises(SettingsError) as info:
        load(env, config=config, flags=flags, check_clients=check_clients)
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


# --- naming and layering ----------------------------------------------------------------------


def test_variables_are_the_clients_properties_upper_cased_with_dots_as_underscores() -> None:
    s = load(
        {
            **REGISTRY,
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret",
            "SCHEMA_REGISTRY_CACHE_LATEST_TTL_SEC": "60",
        }
    )
    assert dict(s.schema_registry_properties) == {
        "basic.auth.user.info": "key:secret",
        "cache.latest.ttl.sec": "60",
    }
    assert registry_variable("basic.auth.user.info") == "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
    assert dict(s.kafka_properties) == {}  # the two pass-throughs do not mix


def test_a_file_variant_reads_the_secret_from_a_file_without_its_newline() -> None:
    s = load(
        {**REGISTRY, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": "/run/secrets/sr"},
        files={"/run/secrets/sr": "key:secret"},
    )
    assert s.schema_registry_properties["basic.auth.user.info"] == "key:secret"
    both = {
        **REGISTRY,
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": "/run/secrets/sr",
    }
    assert refusal(both, check_clients=False) == (
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE: cannot be combined with "
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
    )


def test_flag_over_environment_over_table_over_the_files_own_variables() -> None:
    config = (
        f'SCHEMA_REGISTRY_URL = "{URL}"\n'
        'SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER = "from-file-key"\n'
        'SCHEMA_REGISTRY_BEARER_AUTH_IDENTITY_POOL_ID = "from-file-key"\n'
        "[schema_registry]\n"
        'bearer.auth.logical.cluster = "from-table"\n'
        'bearer.auth.scope = "from-table"\n'
        "max.retries = 2\n"
    )
    env = {"SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER": "from-env"}
    flags = {"schema_registry_property": ["bearer.auth.scope=from-flag"]}
    props = load(env, config=config, flags=flags).schema_registry_properties
    assert dict(props) == {
        "bearer.auth.logical.cluster": "from-env",
        "bearer.auth.identity.pool.id": "from-file-key",
        "bearer.auth.scope": "from-flag",
        "max.retries": "2",
    }


def test_service_links_and_the_urls_own_variable_are_not_properties() -> None:
    # A Kubernetes Service named "schema-registry" puts these in every pod of the namespace.
    links = {
        "SCHEMA_REGISTRY_PORT": "tcp://10.0.0.7:8081",
        "SCHEMA_REGISTRY_PORT_8081_TCP_ADDR": "10.0.0.7",
        "SCHEMA_REGISTRY_SERVICE_HOST": "10.0.0.7",
        "SCHEMA_REGISTRY_SERVICE_PORT": "8081",
    }
    s = load({**REGISTRY, **links}, check_clients=True)
    assert dict(s.schema_registry_properties) == {}
    assert not any(is_setting(name) for name in links)
    assert is_setting("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")
    assert is_setting("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE")


def test_the_url_has_its_own_setting() -> None:
    assert refusal(config="[schema_registry]\nurl = 'https://x'", check_clients=False) == (
        "[schema_registry] url: url is set with SCHEMA_REGISTRY_URL"
    )


# --- secrets are never shown ------------------------------------------------------------------

SECRETS = {
    "basic.auth.user.info": "key:sr-secret-1",
    "bearer.auth.token": "sr-secret-2",
    "bearer.auth.client.secret": "sr-secret-3",
    "ssl.key.password": "sr-secret-4",
}


def test_config_masks_every_secret_and_shows_the_rest() -> None:
    s = load(
        {
            **REGISTRY,
            "SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER": "lsrc-123",
            "SCHEMA_REGISTRY_PROXY": "http://proxy-user:sr-secret-5@proxy:3128",
            **{registry_variable(prop): value for prop, value in SECRETS.items()},
        }
    )
    shown = s.describe()
    for prop in SECRETS:
        assert shown[registry_variable(prop)] == "********"
    assert shown["SCHEMA_REGISTRY_PROXY"] == "http://********@proxy:3128"
    assert shown["SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER"] == "lsrc-123"
    everything = "\n".join(shown.values()) + repr(s)
    assert "sr-secret" not in everything
    # Credentials in the URL still work (the client reads them) and are masked too.
    in_url = load({"SCHEMA_REGISTRY_URL": "https://key:sr-secret-0@registry.example.com"})
    assert in_url.describe()["SCHEMA_REGISTRY_URL"] == "https://********@registry.example.com"
    assert "sr-secret" not in repr(in_url)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:-_", min_size=8, max_size=40))
def test_no_secret_value_ever_shows(secret: str) -> None:
    def shown(s: Settings) -> str:
        return repr(s) + "\n".join(f"{k}={v}" for k, v in s.describe().items())

    assume(secret not in shown(load(REGISTRY)))  # "deletion" is in a default group name
    for prop in SECRETS:
        assert secret not in shown(load({**REGISTRY, registry_variable(prop): secret}))


def test_what_is_secret() -> None:
    assert all(is_secret_registry_property(prop) for prop in SECRETS)
    assert is_secret_registry_property("ssl.key.location")  # masked, as librdkafka's is
    for mode in ("bearer.auth.credentials.source", "basic.auth.credentials.source"):
        assert not is_secret_registry_property(mode)
    assert not is_secret_registry_property("bearer.auth.logical.cluster")


def test_a_worker_gets_a_secret_flag_through_its_environment() -> None:
    args = _parser().parse_args(
        [
            "run",
            "--schema-registry-property",
            "basic.auth.user.info=key:sr-secret",
            "--schema-registry-property",
            "timeout=5",
        ]
    )
    argv, env = child_arguments(args)
    assert "--schema-registry-property=timeout=5" in argv
    assert not any("sr-secret" in arg for arg in argv)
    assert env["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"] == "key:sr-secret"
    assert env["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE"] is None


def test_the_commands_that_read_the_registry_list_its_flag() -> None:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("run", "config", "produce", "replay", "receipts", "report"):
        assert "--schema-registry-property" in commands.choices[command].format_help()
    assert "--schema-registry-property" not in commands.choices["hash-id"].format_help()


# --- bad values: one line naming the setting as written ---------------------------------------


@pytest.mark.parametrize(
    ("env", "config", "flags", "expected"),
    [
        (
            {"SCHEMA_REGISTRY_TIMEOUT": "soon"},
            None,
            None,
            "SCHEMA_REGISTRY_TIMEOUT: must be a number greater than 0 and at most 3600, got 'soon'",
        ),
        (
            None,
            "[schema_registry]\nmax.retries = -1",
            None,
            "[schema_registry] max.retries: must be an integer between 0 and 1000, got '-1'",
        ),
        (
            None,
            None,
            {"schema_registry_property": ["ssl.ca.location=/no/such/ca.pem"]},
            "--schema-registry-property: no such file '/no/such/ca.pem'",
        ),
        (
            {"SCHEMA_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE": "CUSTOM"},
            None,
            None,
            "SCHEMA_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE: must be one of STATIC_TOKEN, "
            "OAUTHBEARER, OAUTHBEARER_AZURE_IMDS, got 'CUSTOM'",
        ),
        (
            {"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": " "},
            None,
            None,
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: must not be empty",
        ),
    ],
)
def test_a_bad_value_is_named_as_written(
    env: dict[str, str] | None, config: str | None, flags: dict[str, object] | None, expected: str
) -> None:
    env = {**REGISTRY, **(env or {})}
    assert refusal(env, config=config, flags=flags, check_clients=False) == expected


@pytest.mark.parametrize(
    ("env", "config", "flags", "expected"),
    [
        (
            {"SCHEMA_REGISTRY_BASIC_AUTH_USERINFO": "key:secret"},
            None,
            None,
            "SCHEMA_REGISTRY_BASIC_AUTH_USERINFO: the Schema Registry client has no such "
            "property; did you mean SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO?",
        ),
        (
            None,
            '[schema_registry]\nbasic.auth.userinfo = "key:secret"',
            None,
            f"DELETION_CONSUMER_CONFIG: unknown key '[schema_registry] basic.auth.userinfo' in "
            f"'{CONFIG}'; did you mean basic.auth.user.info?",
        ),
        (
            None,
            'SCHEMA_REGISTRY_NO_SUCH_THING = "1"',
            None,
            f"DELETION_CONSUMER_CONFIG: unknown key 'SCHEMA_REGISTRY_NO_SUCH_THING' in '{CONFIG}'",
        ),
        (
            None,
            None,
            {"schema_registry_property": ["cache.capacityy=5"]},
            "--schema-registry-property: the Schema Registry client has no such property; "
            "did you mean cache.capacity?",
        ),
        (  # a static token needs the logical cluster too, which nobody set
            {
                "SCHEMA_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE": "STATIC_TOKEN",
                "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN": "token",
            },
            None,
            None,
            "SCHEMA_REGISTRY_BEARER_AUTH_LOGICAL_CLUSTER: Missing required bearer configuration "
            "properties: bearer.auth.logical.cluster",
        ),
        (
            {"SCHEMA_REGISTRY_SSL_KEY_LOCATION": __file__},  # any readable file
            None,
            None,
            "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION: ssl.certificate.location required when "
            "configuring ssl.key.location or ssl.key.password",
        ),
    ],
)
def test_the_clients_own_refusal_is_named_as_written(
    env: dict[str, str] | None, config: str | None, flags: dict[str, object] | None, expected: str
) -> None:
    env = {**REGISTRY, **(env or {})}
    assert refusal(env, config=config, flags=flags) == expected
    # Not judged unless asked for (only `run` and `config` build the client this early).
    load(env, config=config, flags=flags, check_clients=False)


def test_a_ca_that_is_no_certificate_is_named(tmp_path: Path, ca_file: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    env = {**REGISTRY, "SCHEMA_REGISTRY_SSL_CA_LOCATION": str(not_pem)}
    assert refusal(env).startswith("SCHEMA_REGISTRY_SSL_CA_LOCATION: cannot load it (SSLError")
    good = load({**env, "SCHEMA_REGISTRY_SSL_CA_LOCATION": str(ca_file)}, check_clients=True)
    assert good.schema_registry_properties["ssl.ca.location"] == str(ca_file)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SCHEMA_REGISTRY_URL": "", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret"},
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: set, but SCHEMA_REGISTRY_URL is not: it "
            "would go unused",
        ),
        (
            {
                "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret",
                "SCHEMA_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE": "STATIC_TOKEN",
            },
            "SCHEMA_REGISTRY_BEARER_AUTH_CREDENTIALS_SOURCE: cannot be combined with "
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        ),
        (
            {
                "SCHEMA_REGISTRY_URL": "https://key:secret@registry.example.com",
                "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret",
            },
            "SCHEMA_REGISTRY_URL: holds credentials, and SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO is "
            "set too: drop them from the URL",
        ),
        (
            {"SCHEMA_REGISTRY_BASIC_AUTH_CREDENTIALS_SOURCE": "SASL_INHERIT"},
            "SCHEMA_REGISTRY_BASIC_AUTH_CREDENTIALS_SOURCE: SASL_INHERIT needs "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {"SCHEMA_REGISTRY_BASIC_AUTH_CREDENTIALS_SOURCE": "URL"},
            "SCHEMA_REGISTRY_BASIC_AUTH_CREDENTIALS_SOURCE: URL, but SCHEMA_REGISTRY_URL holds "
            "no credentials",
        ),
    ],
)
def test_credentials_are_given_one_way(env: dict[str, str], expected: str) -> None:
    assert refusal({**REGISTRY, **env}, check_clients=False) == expected


# --- the client's configuration made from them ------------------------------------------------


def test_the_clients_configuration_holds_numbers_as_numbers(ca_file: Path) -> None:
    s = load(
        {
            **REGISTRY,
            "SCHEMA_REGISTRY_TIMEOUT": "2.5",
            "SCHEMA_REGISTRY_CACHE_CAPACITY": "50",
            "SCHEMA_REGISTRY_SSL_CA_LOCATION": str(ca_file),
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret",
        }
    )
    assert registry_config(s) == {
        "url": URL,
        "timeout": 2.5,
        "cache.capacity": 50,
        "ssl.ca.location": str(ca_file),
        "basic.auth.user.info": "key:secret",
    }
    assert registry_config(load({})) is None
    assert DEFAULTS == {"timeout": 10.0, "max.retries": 0}  # what the adapter puts under them


def test_sasl_inherit_sends_the_kafka_user_and_password_as_basic_auth() -> None:
    s = load(
        {
            **REGISTRY,
            "SCHEMA_REGISTRY_BASIC_AUTH_CREDENTIALS_SOURCE": "sasl_inherit",
            "KAFKA_SASL_USERNAME": "avnadmin",
            "KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka",
        },
        files={"/run/secrets/kafka": "kafka-pw"},
    )
    assert registry_config(s) == {"url": URL, "basic.auth.user.info": "avnadmin:kafka-pw"}
    assert credentials_setting(s) == (
        "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, inherited by SASL_INHERIT"
    )
    assert credentials_setting(load(REGISTRY)) is None
