"""With the broker away, every command's logs stay few and JSON (issue 19).

librdkafka reports a refused connection about 20 times a second per client. Its lines go
through the service's logger (telemetry/kafka_logs.py): one line, then a reminder a minute. Each
command runs as a subprocess against a port nothing listens on: `run` for a fixed time, then
SIGTERM; `receipts`, `produce`, `replay` and `report` until they give up, as they did before,
with their one-line error after the logs. All run at once, so the module takes as long as the
slowest (`produce` waits 30 s on delivery). On the code before this change they wrote hundreds
of lines (830, 184, 140, 180 and 365 in one run), `produce` raw `%3|...|FAIL|` ones.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from consumer.kafka.broker import free_port

CLEAN_ENV = {"PATH": "/usr/bin:/bin", "MEM0_TELEMETRY": "false"}
# From its first line; longer than the start-up topic check (10 s), so the loop polls a while.
RUN_FOR_S = 15.0
MAX_LINES = 10
ONE_EVENT = '{"type": "user_deleted", "user_id": "u", "reason": "GDPR", "source": "t"}\n'

# name: (arguments, stdin, exit code as before this change)
COMMANDS: dict[str, tuple[list[str], str, int]] = {
    "run": (["run"], "", 0),
    "receipts": (["receipts", "--event-id", "x"], "", 1),
    "produce": (["produce"], ONE_EVENT, 1),
    "replay": (["replay", "--dry-run"], "", 1),
    "report": (["report"], "", 1),
}


@dataclass(frozen=True)
class Ended:
    returncode: int
    stderr: list[str]


class _Started:
    """A command's process, its stderr read as it comes (a flood never fills the pipe)."""

    def __init__(self, args: list[str], stdin: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(stdin)
        self.process.stdin.close()
        self.lines: list[str] = []
        self.spoke = threading.Event()  # its first line came: `main` runs, signals handled
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr as stderr:
            for line in stderr:
                self.lines.append(line.rstrip("\n"))
                self.spoke.set()

    def end(self) -> Ended:
        code = self.process.wait(timeout=120)
        self._reader.join(timeout=10)
        return Ended(code, self.lines)


@pytest.fixture(scope="module")
def broker_away() -> Iterator[dict[str, Ended]]:
    """Each command's exit code and stderr lines, the broker's port closed."""
    env = {
        **CLEAN_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "MEM0_API_KEY": "k",
        "METRICS_PORT": "0",
    }
    started = {name: _Started(args, stdin, env) for name, (args, stdin, _) in COMMANDS.items()}
    try:
        run = started["run"]
        assert run.spoke.wait(timeout=60), "run wrote nothing in 60 s"
        with pytest.raises(subprocess.TimeoutExpired):
            run.process.wait(timeout=RUN_FOR_S)  # the clock, not a condition: what is measured
        run.process.send_signal(signal.SIGTERM)
        yield {name: command.end() for name, command in started.items()}
    finally:
        for command in started.values():
            if command.process.poll() is None:
                command.process.kill()
                command.end()


@pytest.mark.parametrize("name", COMMANDS)
def test_logs_stay_few_and_json_while_the_broker_is_away(
    broker_away: dict[str, Ended], name: str
) -> None:
    ended = broker_away[name]
    lines = ended.stderr
    assert ended.returncode == COMMANDS[name][2], lines
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines: {lines[:5]}"
    assert not [line for line in lines if line.startswith("%")], "raw librdkafka lines"
    if lines and lines[-1].startswith(f"deletion-consumer {name}: "):
        lines = lines[:-1]  # the command's one-line error, after the logs
    else:
        assert name in ("run", "produce"), f"{name} ended without its one-line error: {lines}"
    entries = [json.loads(line) for line in lines]  # every line a JSON object
    kafka = [entry for entry in entries if entry["logger"] == "consumer.kafka"]
    # librdkafka's lines are there, as JSON with their fields, not dropped.
    assert any(entry["facility"] == "FAIL" for entry in kafka), entries
    assert all(entry["client"].startswith("rdkafka#") for entry in kafka)
