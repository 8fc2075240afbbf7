"""Logs: one JSON object per line, extras kept, ids hashed with a key."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from consumer.telemetry.logs import IdHasher, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("consumer")
    saved = (list(root.handlers), root.level, ours.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_parse() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    log = logging.getLogger("consumer.pipeline.app")
    log.info("flushed %d events", 3, extra={"partition": 2, "user": "h:0123456789abcdef"})
    log.debug("not shown")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed", extra={"level": "shadowed"})

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "flushed 3 events"
    assert first["level"] == "INFO"
    assert first["logger"] == "consumer.pipeline.app"
    assert first["partition"] == 2
    assert first["user"] == "h:0123456789abcdef"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["level"] == "ERROR"
    assert second["level_"] == "shadowed"
    assert "ValueError: bad" in second["exc"]


@pytest.mark.usefixtures("restore_logging")
def test_libraries_stay_at_warning() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    logging.getLogger("httpx").info("HTTP Request: DELETE /v1/memories/?user_id=alice")
    logging.getLogger("consumer.mem0.client").debug("shown")
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["shown"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_twice_keeps_one_handler() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", io.StringIO())
    configure_logging("INFO", "text", stream)
    logging.getLogger("consumer").warning("once", extra={"topic": "memory.deletions", "n": 2})
    assert stream.getvalue().count("once") == 1
    line = stream.getvalue().strip()
    assert line.endswith("WARNING consumer: once topic=memory.deletions n=2")


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("TRACE", "json", io.StringIO())


def test_id_hasher_is_stable_for_one_key() -> None:
    hasher = IdHasher(b"key-one")
    hashed = hasher("alice")
    assert re.fullmatch(r"h:[0-9a-f]{16}", hashed)
    assert hasher("alice") == hashed
    assert IdHasher(b"key-one")("alice") == hashed
    assert hasher("bob") != hashed
    assert "alice" not in hashed


def test_id_hasher_differs_between_keys() -> None:
    assert IdHasher(b"key-one")("alice") != IdHasher(b"key-two")("alice")


def test_id_hasher_clear_mode() -> None:
    assert IdHasher(b"key", clear=True)("alice") == "alice"


def test_id_hasher_needs_a_key() -> None:
    with pytest.raises(ValueError, match="needs a key"):
        IdHasher(b"")
    assert "secret-key" not in repr(IdHasher(b"secret-key"))
