"""`deletion-consumer replay` as a command: options in, a summary and an exit code out.

Exit codes: 0 done, 1 the broker failed us, 2 bad arguments, 128 + the signal's number when
interrupted (130 for Ctrl-C, 143 for SIGTERM), as every command does. SIGINT and SIGTERM do not
kill the run: they finish the batch in hand and commit what was acknowledged, so that running
it again goes on from there.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import TextIO

from consumer.commands.command_line import Console
from consumer.replay.options import ReplayError, replay_options
from consumer.replay.report import Progress, print_report
from consumer.replay.run import Replay
from consumer.settings import Settings

__all__ = [
    "EXIT_BAD_ARGUMENTS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "run_replay",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 130  # by Ctrl-C (SIGINT); by another signal N, 128 + N
_EXIT_SIGNALLED = 128


def run_replay(
    args: argparse.Namespace,
    settings: Settings,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `replay` with parsed arguments (see `add_replay_arguments`); the exit code."""
    console = Console.of("replay", out, err)
    try:
        options = replay_options(args, settings, datetime.now(UTC))
    except ValueError as exc:
        console.complain(exc)
        return EXIT_BAD_ARGUMENTS
    replay = Replay(settings, options, progress=Progress(console.err))
    signals: list[int] = []
    with _interruptible(replay.stop, signals):
        try:
            replay.run()
            code = EXIT_OK
            if replay.stopped:
                code = _EXIT_SIGNALLED + signals[0] if signals else EXIT_INTERRUPTED
        except ReplayError as exc:
            console.complain(exc)
            code = EXIT_FAILED
    if replay.started:
        print_report(replay.tally, options, settings, console.out, interrupted=replay.stopped)
    return code


@contextmanager
def _interruptible(stop: Callable[[], None], received: list[int]) -> Iterator[None]:
    """SIGINT and SIGTERM finish the batch in hand, commit it, and end the run; each signal's
    number is appended to `received`."""
    if not _in_main_thread():  # signal handlers can only be set there (a test's thread)
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
