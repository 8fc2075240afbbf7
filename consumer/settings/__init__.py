"""One frozen settings object, read from flags, an explicit environment mapping and a TOML file.

Precedence is flag > environment > configuration file > default. Every bad value raises
`SettingsError`, whose text is one line naming the environment variable (the CLI prints it and
exits 2).

Each setting is declared once, in the table that is the `Settings` dataclass
(`options.py`): its variable, type, parser, default, secrecy and help. From it come the flags
(`flags.py`), the TOML keys and the reading of every source (`sources.py`), `config`'s output
(`Settings.describe()`) and README.md's table (`docs.readme_table()`, held to the README by a
test). Text becomes a value in `parsers.py`; the rules that relate settings are in
`checks.py`; the `KAFKA_<NAME>` naming of librdkafka properties in `kafka_properties.py`, the
`SCHEMA_REGISTRY_<NAME>` naming of the registry client's in `registry_properties.py`.
What `run` (and `config`, which refuses what `run` refuses) also asks for, librdkafka's own
judgement of the clients' properties without a connection, is `client_check.py`, and the
registry client's `registry_check.py`; the "did you mean" of an unknown name `suggestions.py`
(over `librdkafka_names.py` for properties); which settings each command lists in its --help
`command_uses.py`. Rendering the clients' configurations from settings is
`consumer/kafka/config.py`'s and `consumer/avro/registry_config.py`'s.

librdkafka properties pass through the way Confluent's images do it: `KAFKA_<NAME>` becomes
`<name>` lower-cased, `_` -> `.`, `__` -> `_`, `___` -> `-`; `KAFKA_<NAME>_FILE` reads the value
from a file; `--kafka-property key=value` adds or overrides; the file may hold a `[kafka]`
table. The Schema Registry client's properties pass through alike: `SCHEMA_REGISTRY_<NAME>`
(`SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO` is `basic.auth.user.info`), `_FILE`,
`--schema-registry-property`, a `[schema_registry]` table. Secrets (`MEM0_API_KEY`,
`LOG_HASH_KEY`, any property named like a password, secret, key or token, and
`basic.auth.user.info`) are never rendered. `MEM0_API_KEY_FILE` and `LOG_HASH_KEY_FILE` read
those secrets from files. The API key is never sent over plain `http://` to a host that is not
loopback unless `MEM0_ALLOW_INSECURE_HTTP` says so.

When `LOG_HASH_KEY` is empty, identifiers in logs are hashed with a random key made when this
process starts, so their hashes are comparable within one process only.

Why a table of our own rather than pydantic-settings (weighed when the table was made, 2 cores,
`-X importtime`, least of 40 runs): `import consumer.settings` took 56 ms (the single module
before it 50 ms), `import pydantic_settings` 216 ms before any model exists, paid by every
command and every worker process; it would bring pydantic, pydantic-core, python-dotenv and two
typing helpers (~11 MB installed) into an image that has no pydantic. Its errors span lines and
quote the input (`input_value=...`), so the one-line messages that never echo a secret would
need these parsers as validators anyway, and `<NAME>_FILE` secrets, the `KAFKA_*` convention,
the `[kafka]` table and TOML keys named after the variables would each be a custom source.
"""

from __future__ import annotations

from consumer.settings.flags import add_arguments, from_args
from consumer.settings.kafka_properties import property_variable
from consumer.settings.options import CONFIG_ENV, Secret, Settings, SettingsError
from consumer.settings.sources import KAFKA_PROPERTY_FLAG, REGISTRY_PROPERTY_FLAG, is_setting

__all__ = [
    "CONFIG_ENV",
    "KAFKA_PROPERTY_FLAG",
    "REGISTRY_PROPERTY_FLAG",
    "Secret",
    "Settings",
    "SettingsError",
    "add_arguments",
    "from_args",
    "is_setting",
    "property_variable",
]
