"""`deletion-consumer hash-id VALUE...`: what the consumer's logs show for an identifier.

Logs name users, agents, runs and memories by a keyed hash (`telemetry/logs.py`), so an
operator asked about one user greps for the hash of that user's id. This command prints it, one
line per value, from the same settings (`LOG_HASH_KEY` / `LOG_HASH_KEY_FILE`,
`LOG_IDS_IN_CLEAR`) through the same `id_hasher` the running process uses.

Without `LOG_HASH_KEY` every process hashes with a random key of its own, which no other
process can know: the command then says so and exits 2 rather than print hashes that match
nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from consumer.core.events import clean_id
from consumer.settings import Settings, SettingsError
from consumer.telemetry.logs import IdHasher

__all__ = ["EXIT_USAGE", "id_hasher", "print_hashes"]

EXIT_USAGE = 2  # as argparse exits on a bad argument


def id_hasher(settings: Settings) -> IdHasher:
    """The hasher of identifiers in this process's logs (`configure_logging(ids=...)`)."""
    return IdHasher(settings.id_hash_key(), clear=settings.log_ids_in_clear)


def print_hashes(
    settings: Settings,
    values: Sequence[str],
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print each value as the logs show it; a SettingsError when no process's key is known."""
    out, err = out or sys.stdout, err or sys.stderr  # looked up now: tests replace them
    if settings.log_ids_in_clear:
        print(
            "deletion-consumer: LOG_IDS_IN_CLEAR is true: the logs show identifiers as they are",
            file=err,
        )
    elif not settings.log_hash_key:
        raise SettingsError(
            "LOG_HASH_KEY",
            "not set: each process then hashes with a random key of its own, which this "
            "command cannot know; give it the key the consumer runs with (LOG_HASH_KEY or "
            "LOG_HASH_KEY_FILE)",
        )
    # Events' ids are trimmed before anything sees them (`clean_id`): so is each value.
    cleaned = [clean_id(value) for value in values]
    if None in cleaned:
        print("deletion-consumer: hash-id: an identifier must not be empty", file=err)
        return EXIT_USAGE
    hasher = id_hasher(settings)
    for value in cleaned:
        assert value is not None
        print(hasher(value), file=out)
    return 0
