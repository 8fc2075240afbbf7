"""Structured logs: one JSON object (or one text line) per record; identifiers as keyed hashes.

User, agent, run and memory ids are personal data (README "Health and metrics"): a log line that
names one passes it through the process's `IdHasher` (`logged_id`, `logged_scope`), so by
default it shows `h:` and 16 hex digits, stable for one key, and never the id itself. The ids are
hashed where the line is made, not by the formatter, so no handler (a test's, a library's) ever
sees them in clear. `configure_logging` installs the hasher the settings call for
(`LOG_HASH_KEY`, `LOG_IDS_IN_CLEAR`); until then, and in tests, a random key of this process.
`deletion-consumer hash-id VALUE` prints the same hash for a value, given the same key, so an
operator can grep a user's lines.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import sys
from typing import TextIO

from consumer.core.events import Scope
from consumer.core.timestamps import iso_seconds

__all__ = [
    "IdHasher",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "logged_id",
    "logged_scope",
]

# Attributes every LogRecord has; anything else came from `extra={...}`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_BASE_KEYS = ("ts", "level", "logger", "msg")


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """ts (RFC 3339 UTC), level, logger, msg, the `extra` fields, and exc for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": iso_seconds(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry[f"{key}_" if key in _BASE_KEYS else key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...`, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = iso_seconds(record.created)
        line = f"{stamp} {record.levelname} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in _extras(record).items())
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def configure_logging(
    level: str, fmt: str, stream: TextIO | None = None, *, ids: IdHasher | None = None
) -> None:
    """Log to `stream` (stderr) as json or text; `consumer.*` at `level`, libraries at WARNING.

    Libraries stay at WARNING or above: httpx logs every request URL at INFO, and the URLs of
    filter deletes carry user ids in their query. `ids`, when given, becomes the hasher of every
    identifier logged from then on (`logged_id`).
    """
    if ids is not None:
        _process_ids[0] = ids
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("consumer")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "consumer"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("consumer").setLevel(numeric)


class IdHasher:
    """`h:` + 16 hex digits of HMAC-SHA256(key, id); the id itself when `clear` is set."""

    __slots__ = ("_clear", "_key")

    def __init__(self, key: bytes, clear: bool = False) -> None:
        if not key and not clear:
            raise ValueError("IdHasher needs a key: an unkeyed hash of an id can be reversed")
        self._key = key
        self._clear = clear

    def __call__(self, value: str) -> str:
        if self._clear:
            return value
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return "h:" + digest[:16]

    def __repr__(self) -> str:
        return f"IdHasher(clear={self._clear})"


# The process's hasher (one cell, replaced whole): a random key until `configure_logging`
# installs the settings' one.
_process_ids = [IdHasher(secrets.token_bytes(32))]


def logged_id(value: str) -> str:
    """An identifier as a log line may show it: hashed, or in clear with LOG_IDS_IN_CLEAR."""
    return _process_ids[0](value)


def logged_scope(scope: Scope | None) -> dict[str, str] | None:
    """A scope as a log line may show it: its keys (`user_id`, `metadata.<key>`) as they are,
    each value through `logged_id`."""
    if scope is None:
        return None
    hasher = _process_ids[0]
    shown = {key: hasher(value) for key, value in scope.entities}
    shown.update((f"metadata.{key}", hasher(value)) for key, value in scope.metadata)
    return shown
