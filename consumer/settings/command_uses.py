"""Which settings each command reads, so that its `--help` lists those and no others.

`run` reads every setting and `config` shows every one: both list all. The others read a few,
found by reading each command (what it and the clients it builds take from `Settings`):
every one configures logging from the settings before it starts (`__main__._command_settings`);
a command that builds a Kafka client reads the brokers and the pass-through
(`producer_config`), and one that reads a topic its group too (`consumer_config`, which names
its own groups after it). A command that reads `SCHEMA_REGISTRY_URL` lists
`--schema-registry-property` too: the registry client is built from both. The others' flags are
still accepted, and their variables and keys still read: they are only left out of the help
(`flags.add_arguments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from consumer.settings.sources import KAFKA_PROPERTY_FLAG

__all__ = ["USES"]

_LOGGING = ("LOG_LEVEL", "LOG_FORMAT", "LOG_IDS_IN_CLEAR", "LOG_HASH_KEY")
_PRODUCER = ("KAFKA_BOOTSTRAP_SERVERS", KAFKA_PROPERTY_FLAG)
_READER = (*_PRODUCER, "KAFKA_GROUP_ID")

# By command: its settings (variables, and `--kafka-property`); the configuration file always.
USES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "hash-id": _LOGGING,  # LOG_HASH_KEY and LOG_IDS_IN_CLEAR make the hashes
        "produce": (*_PRODUCER, "DELETION_TOPICS", "SCHEMA_REGISTRY_URL", *_LOGGING),
        "replay": (*_READER, "DELETION_TOPICS", "DLQ_TOPIC", "SCHEMA_REGISTRY_URL", *_LOGGING),
        "receipts": (*_READER, "RECEIPTS_TOPIC", "SCHEMA_REGISTRY_URL", *_LOGGING),
        "report": (*_READER, "RECEIPTS_TOPIC", "DLQ_TOPIC", "SCHEMA_REGISTRY_URL", *_LOGGING),
    }
)
