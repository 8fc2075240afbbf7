"""Identifiers in log lines: hashed with the process's key (the settings' once logging is
configured), in clear only when asked, and `hash-id` prints what the logs show."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from consumer.__main__ import main
from consumer.commands.hash_id import id_hasher
from consumer.core.events import Scope
from consumer.settings import Settings
from consumer.telemetry import logs
from consumer.telemetry.logs import IdHasher, configure_logging, logged_id, logged_scope


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("consumer")
    saved = (list(root.handlers), root.level, ours.level, logs._process_ids[0])
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
    logs._process_ids[0] = saved[3]


def test_ids_are_hashed_even_before_logging_is_configured() -> None:
    assert re.fullmatch(r"h:[0-9a-f]{16}", logged_id("alice"))
    assert logged_id("alice") == logged_id("alice")


def test_a_scope_is_logged_with_each_value_hashed_with_the_settings_key() -> None:
    settings = Settings.from_sources({"LOG_HASH_KEY": "the-key"}, needs_mem0=False)
    configure_logging("INFO", "json", io.StringIO(), ids=id_hasher(settings))
    scope = Scope.of(user_id="alice", run_id="r-1", metadata={"tenant": "acme"})
    hashed = IdHasher(b"the-key")
    assert logged_scope(scope) == {
        "user_id": hashed("alice"),
        "run_id": hashed("r-1"),
        "metadata.tenant": hashed("acme"),
    }
    assert logged_scope(None) is None


def test_ids_in_clear_only_when_asked() -> None:
    settings = Settings.from_sources({"LOG_IDS_IN_CLEAR": "true"}, needs_mem0=False)
    configure_logging("INFO", "json", io.StringIO(), ids=id_hasher(settings))
    assert logged_scope(Scope.of(user_id="alice")) == {"user_id": "alice"}


def test_hash_id_prints_what_the_logs_show(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_HASH_KEY", "the-key")
    assert main(["hash-id", "alice", " bob "]) == 0
    assert capsys.readouterr().out.splitlines() == [
        IdHasher(b"the-key")("alice"),
        IdHasher(b"the-key")("bob"),
    ]
    assert main(["hash-id", "  "]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "must not be empty" in captured.err


def test_hash_id_without_a_key_says_it_cannot_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LOG_HASH_KEY", raising=False)
    monkeypatch.delenv("LOG_HASH_KEY_FILE", raising=False)
    monkeypatch.delenv("LOG_IDS_IN_CLEAR", raising=False)
    assert main(["hash-id", "alice"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("deletion-consumer: bad setting LOG_HASH_KEY: not set")
    assert "random key" in captured.err
