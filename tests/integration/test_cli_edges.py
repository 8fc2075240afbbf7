"""The command line's edges (issue 19): `--workers` out of range, a signal during `run`'s
start-up checks, one exit-code rule for interrupts, `produce`'s errors and defaults, `sandbox
--help`, and the receipts text of an old event.

The rule for interrupts: a command a signal stopped before its work was done exits 128 + the
signal's number (130 Ctrl-C, 143 SIGTERM), in one line and never with a traceback; `run`, whose
work is to consume until told to stop, exits 0 on SIGTERM once drained and committed.

Nothing here sleeps to wait: a process is signalled once it said (a log line, a line on
stderr) or showed (a connection to a server of the test's that never answers) where it is.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import pytest

from consumer.avro.codec import Decoder, SchemaStore
from consumer.commands.receipt_lookup import Found, describe
from consumer.core.events import DeletionEvent
from consumer.core.receipts import Position, Receipt
from consumer.kafka.broker import free_port
from consumer.sandbox import cli as sandbox_cli
from tests.integration.test_config_cli import CLEAN_ENV, cli, one_line
from tests.support.harness import Topics, read_all

pytestmark = pytest.mark.integration

# How soon a signalled process must be gone: the checks it interrupts wait 10 s each.
PROMPT_EXIT_S = 1.5
# Long enough for a loaded machine to start a process and reach the point waited for.
START_TIMEOUT_S = 60.0


def nowhere() -> str:
    """An address nothing listens on (connections are refused)."""
    return f"127.0.0.1:{free_port()}"


class StderrLines:
    """A process's stderr read on a thread, so a test can wait for a line with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout_s: float = START_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {timeout_s} s: {self.seen[-5:]}") from None
            if line is None:
                raise AssertionError(f"stderr ended without {text!r}: {self.seen[-5:]}")
            self.seen.append(line)
            if text in line:
                return line

    def rest(self) -> list[str]:
        """Every line, once the process has ended (its stream closed)."""
        self._thread.join(timeout=10)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.seen.append(line)
        return self.seen


@contextmanager
def silent_server() -> Iterator[tuple[int, socket.socket]]:
    """A TCP port that accepts connections and never answers on them."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(START_TIMEOUT_S)
        yield server.getsockname()[1], server


@dataclass
class Running:
    process: subprocess.Popen[str]
    stderr: StderrLines


@contextmanager
def running(
    args: list[str], env: dict[str, str], *, stdin: int | None = None, stdout: int | None = None
) -> Iterator[Running]:
    """`deletion-consumer ARGS` as a process, its stderr read as it comes; killed if left."""
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer", *args],
        env={**CLEAN_ENV, **env},
        stdin=stdin,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = StderrLines(process.stderr)
    with process:  # closes its pipes
        try:
            yield Running(process, lines)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            lines.rest()  # the reader is done with the pipe before it is closed


def signal_and_time(process: subprocess.Popen[str], signum: int) -> float:
    """Send `signum`; the seconds until the process was gone."""
    sent = time.monotonic()
    process.send_signal(signum)
    process.wait(timeout=START_TIMEOUT_S)
    return time.monotonic() - sent


# --- run --workers -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["-3", "0", "65"])
def test_workers_out_of_range_exit_2_with_one_line(count: str) -> None:
    result = cli("run", "--workers", count, env={"MEM0_API_KEY": "k"})
    line = one_line(result)
    assert (
        line == f"deletion-consumer: bad setting --workers: expected 1 to 64 processes, got {count}"
    )


# --- a signal during run's start-up checks ----------------------------------------------------

# At DEBUG, `run` says when its start-up checks begin.
RUN_ENV = {"MEM0_API_KEY": "k", "METRICS_PORT": "0", "LOG_LEVEL": "DEBUG"}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_during_the_topic_check_ends_it_at_once(signum: int, code: int) -> None:
    # A bootstrap that refuses connections: the topic check waits its whole 10 s for metadata.
    env = {**RUN_ENV, "KAFKA_BOOTSTRAP_SERVERS": nowhere(), "MEM0_BASE_URL": "http://127.0.0.1:1"}
    with running(["run"], env) as run:
        run.stderr.wait_for("checking the topics")
        took = signal_and_time(run.process, signum)
    lines = run.stderr.seen
    assert took < PROMPT_EXIT_S, (took, lines)
    assert run.process.returncode == code, lines
    assert not [line for line in lines if "consumer starting" in line], lines
    assert any("consumer stopped before it started" in line for line in lines), lines
    assert not [line for line in lines if "Traceback" in line], lines


def test_a_sigterm_during_the_admin_role_check_ends_it_at_once(kafka: str, topics: Topics) -> None:
    # The topics exist, so the topic check passes; the self-hosted Mem0 accepts the admin
    # probe's connection and never answers it.
    with silent_server() as (port, server):
        env = {
            **RUN_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "KAFKA_GROUP_ID": topics.group,
            "DELETION_TOPICS": topics.input,
            "DLQ_TOPIC": topics.dlq,
            "RECEIPTS_TOPIC": topics.receipts,
            "MEM0_BACKEND": "oss",
            "MEM0_BASE_URL": f"http://127.0.0.1:{port}",
        }
        with running(["run"], env) as run:
            connection, _ = server.accept()  # the probe is under way
            with connection:
                took = signal_and_time(run.process, signal.SIGTERM)
    lines = run.stderr.seen
    assert took < PROMPT_EXIT_S, (took, lines)
    assert run.process.returncode == 0, lines
    assert not [line for line in lines if "consumer starting" in line], lines


# --- interrupts of the commands with an end of their own --------------------------------------


@pytest.mark.parametrize(
    ("args", "signum"),
    [
        (["receipts", "--event-id", "e1"], signal.SIGINT),
        (["receipts", "--event-id", "e1"], signal.SIGTERM),
        (["report"], signal.SIGINT),
    ],
)
def test_a_reading_command_interrupted_says_so_in_one_line(args: list[str], signum: int) -> None:
    # A broker that accepts the connection and never answers: the command is reading once it
    # connected.
    with silent_server() as (port, server):
        env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING"}
        with running(args, env) as command:
            connection, _ = server.accept()
            with connection:
                command.process.send_signal(signum)
                command.process.wait(timeout=START_TIMEOUT_S)
    lines = command.stderr.seen
    assert command.process.returncode == 128 + signum, lines
    assert not [line for line in lines if "Traceback" in line], lines
    name = signal.Signals(signum).name
    assert lines[-1] == f"deletion-consumer {args[0]}: interrupted ({name})", lines


def test_produce_interrupted_delivers_what_it_took_and_says_so() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": nowhere()}
    with running(["produce"], env, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as produce:
        given, out = produce.process.stdin, produce.process.stdout
        assert given is not None
        assert out is not None
        given.write('{"type": "no_such_type"}\n')  # answered at once on stderr
        given.flush()
        produce.stderr.wait_for("line 1:")  # so it is reading stdin, which stays open
        produce.process.send_signal(signal.SIGINT)
        summary = out.read()
        produce.process.wait(timeout=START_TIMEOUT_S)
    lines = produce.stderr.seen
    assert produce.process.returncode == 130, lines
    assert json.loads(summary) == {
        "topic": "memory.deletions",
        "published": 0,
        "bad_lines": 1,
        "interrupted": True,
    }
    assert lines[-1] == "deletion-consumer produce: interrupted (SIGINT)", lines
    assert not [line for line in lines if "Traceback" in line], lines


# --- produce: its errors and its defaults -----------------------------------------------------

ONE_EVENT = '{"type": "user_deleted", "user_id": "u"}\n'


def produce(
    lines: str, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "produce", *args],
        env={**CLEAN_ENV, **env},
        input=lines,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_produce_with_the_registry_unreachable_fails_in_one_line() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": nowhere(), "SCHEMA_REGISTRY_URL": f"http://{nowhere()}"}
    result = produce(ONE_EVENT, env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "deletion-consumer produce: the schema could not be registered: registry register: "
        "ConnectError"
    ]


def test_produce_refuses_an_unknown_reason_in_one_line() -> None:
    result = produce(ONE_EVENT, {"KAFKA_BOOTSTRAP_SERVERS": nowhere()}, "--reason", "because")
    assert one_line(result).startswith("deletion-consumer produce: --reason: expected one of")


def produced(kafka: str, topic: str, count: int) -> list[DeletionEvent]:
    decoder = Decoder(SchemaStore.from_directory())
    events = [decoder.decode(m.value()) for m in read_all(kafka, topic, expected=count)]
    return sorted(events, key=lambda event: event.event_id)


def test_produce_says_which_lines_got_the_schemas_defaults(kafka: str, topics: Topics) -> None:
    lines = "".join(
        json.dumps(line) + "\n"
        for line in [
            {"type": "user_deleted", "user_id": "a", "event_id": "e1"},
            {"type": "user_deleted", "user_id": "b", "event_id": "e2", "reason": "gdpr"},
            {"type": "user_deleted", "user_id": "c", "event_id": "e3"},
        ]
    )
    result = produce(lines, {"KAFKA_BOOTSTRAP_SERVERS": kafka}, "--topic", topics.input)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "2 lines had no reason: OTHER, the schema's default; give --reason or a reason field",
        "3 lines had no source: unknown, the schema's default; give --source or a source field",
    ]
    events = produced(kafka, topics.input, 3)
    assert [(e.event_id, e.reason, e.source) for e in events] == [
        ("e1", "OTHER", "unknown"),
        ("e2", "GDPR", "unknown"),
        ("e3", "OTHER", "unknown"),
    ]


def test_produce_reason_and_source_flags_fill_what_lines_lack(kafka: str, topics: Topics) -> None:
    lines = "".join(
        json.dumps(line) + "\n"
        for line in [
            {"type": "user_deleted", "user_id": "a", "event_id": "e1"},
            {"type": "user_deleted", "user_id": "b", "event_id": "e2", "reason": "CCPA"},
            {"type": "user_deleted", "user_id": "c", "event_id": "e3", "source": "billing"},
        ]
    )
    flags = ("--topic", topics.input, "--reason", "GDPR", "--source", "x")
    result = produce(lines, {"KAFKA_BOOTSTRAP_SERVERS": kafka}, *flags)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    events = produced(kafka, topics.input, 3)
    assert [(e.event_id, e.reason, e.source) for e in events] == [
        ("e1", "GDPR", "x"),
        ("e2", "CCPA", "x"),
        ("e3", "GDPR", "billing"),
    ]


# --- sandbox --help ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["-m", "consumer", "sandbox", "--help"], ["-m", "consumer.sandbox", "--help"]],
)
def test_sandbox_help_describes_each_option_with_its_default_and_the_key(
    command: list[str],
) -> None:
    result = subprocess.run(
        [sys.executable, *command],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines where it likes
    assert 'the admin key, to give the consumer as MEM0_API_KEY (default: "sandbox-key"' in text
    assert "the address to listen on (default: 127.0.0.1)" in text
    assert "(default: 8765)" in text
    assert "(default: 100,000)" in text


def test_every_sandbox_option_has_a_description() -> None:
    parser = argparse.ArgumentParser()
    sandbox_cli.add_arguments(parser)
    undescribed = [action.dest for action in parser._actions if not action.help]
    assert undescribed == []


# --- receipts: durations as a person reads them -----------------------------------------------


def receipt(time_to_erasure_ms: int) -> Found:
    asked = 1_700_000_000_000
    return Found(
        Receipt(
            event_id="e1",
            outcome="COMPLETED",
            event_type="user_deleted",
            reason="GDPR",
            source="s",
            occurred_at_ms=asked,
            completed_at_ms=asked + time_to_erasure_ms,
            time_to_erasure_ms=time_to_erasure_ms,
            operations=(),
            verified=True,
            dlq_reason=None,
            consumer_group="g",
            input=Position("t", 0, 1),
        ),
        partition=0,
        offset=7,
    )


def test_the_receipts_text_of_an_old_event_reads_in_days() -> None:
    text = describe(receipt(55_303_519_783))
    assert "(640 d 2 h after it was asked: 55303519.783 s)" in text


def test_the_receipts_text_of_a_quick_one_stays_in_seconds() -> None:
    assert "(1.840 s after it was asked)" in describe(receipt(1_840))
