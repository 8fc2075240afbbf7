"""Command line: `deletion-consumer run | replay | receipts | report | demo | produce | sandbox |
config | hash-id`.

Parses, loads settings, and hands over; a bad setting exits 2 with one line naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from consumer.settings import Settings, SettingsError, add_arguments, from_args

EXIT_BAD_SETTING = 2
# A command that a signal stopped before its work was done exits 128 + the signal's number (130
# for Ctrl-C, 143 for SIGTERM), as a shell reports a process a signal ended; `run` on SIGTERM
# excepted (`_exit_code_of_run`).
EXIT_SIGNALLED = 128


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deletion-consumer",
        description="Turns Avro deletion events on Kafka into Mem0 deletes, at least once.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="consume until SIGTERM/SIGINT, then drain and commit")
    add_arguments(run)
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes to start in the one group, to use the cores of this machine "
        "(each serves metrics on METRICS_PORT + its index)",
    )

    config = commands.add_parser("config", help="print the effective configuration, masked")
    add_arguments(config)

    hash_id = commands.add_parser(
        "hash-id",
        help="print each identifier as the logs show it (its keyed hash: needs LOG_HASH_KEY), "
        "to grep a user's lines",
    )
    add_arguments(hash_id, command="hash-id")
    hash_id.add_argument(
        "values", nargs="+", metavar="VALUE", help="a user, agent, run or memory id"
    )

    demo = commands.add_parser(
        "demo", help="local broker + Mem0 sandbox: publish sample events, consume, show the result"
    )
    demo.add_argument("--partitions", type=int, default=3, help="input topic partitions")

    produce = commands.add_parser("produce", help="publish events from JSON lines on stdin")
    add_arguments(produce, command="produce")
    produce.add_argument("--topic", help="default: the first of DELETION_TOPICS")
    produce.add_argument(
        "--framing",
        choices=("single-object", "registry"),
        default=None,
        help="wire format (default: registry when SCHEMA_REGISTRY_URL is set, else single-object)",
    )
    produce.add_argument(
        "--subject", help="registry subject (default: <topic>-value)", default=None
    )
    produce.add_argument(
        "--reason",
        default=None,
        help="the reason of a line that gives none, one of the schema's (GDPR, USER_REQUEST...; "
        "default: OTHER, the schema's, said on stderr)",
    )
    produce.add_argument(
        "--source",
        metavar="NAME",
        default=None,
        help="the source of a line that gives none (default: unknown, the schema's, said on "
        "stderr)",
    )

    from consumer.replay import add_replay_arguments

    replay = commands.add_parser("replay", help="put dead letters back on the input topic")
    add_arguments(replay, command="replay")
    add_replay_arguments(replay)

    from consumer.commands.receipt_lookup import add_receipts_arguments

    receipts = commands.add_parser(
        "receipts", help="show an event's receipts (reads the partition its event id hashes to)"
    )
    add_arguments(receipts, command="receipts")
    add_receipts_arguments(receipts)

    from consumer.report import add_report_arguments

    report = commands.add_parser(
        "report", help="the compliance report over the receipts topic (scans it and the DLQ)"
    )
    add_arguments(report, command="report")
    add_report_arguments(report)

    sandbox = commands.add_parser("sandbox", help="run the Mem0-compatible sandbox server")
    # Its arguments are the sandbox's own (consumer/sandbox/cli.py): `main` hands them over.
    sandbox.add_argument("arguments", nargs="*", help="see deletion-consumer sandbox --help")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:
        # One command line for the sandbox, shared with `python -m consumer.sandbox`; imported
        # only when asked for, as the server's modules take a tenth of a second to load.
        from consumer.sandbox import cli as sandbox_cli

        return sandbox_cli.main(argv[1:], prog="deletion-consumer sandbox")
    args = _parser().parse_args(argv)
    previous_sigterm = _interrupt_on_sigterm(args.command)
    try:
        if args.command == "run":
            from consumer.commands.workers import check_worker_count

            check_worker_count(args.workers)
            # Remember a signal that comes while starting up: the default action would kill
            # the process before it could drain; the loop acts on it once it runs.
            early: list[int] = []
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, _frame: early.append(signum))
            settings = from_args(args, os.environ)
            if args.workers > 1:
                from consumer.commands.workers import run_workers

                return run_workers(args.workers, args, settings.metrics_port, early)
            return _run(settings, early)
        if args.command == "config":
            # Every check `run` makes before it reaches the network (the Platform's key,
            # librdkafka's judgement of the clients' properties): a configuration is printed
            # only if `run` would take it, and is refused with `run`'s line otherwise.
            settings = from_args(args, os.environ, needs_mem0=True, check_clients=True)
            for name, value in settings.describe().items():
                print(f"{name}={value}")
            return 0
        if args.command == "hash-id":
            from consumer.commands.hash_id import print_hashes

            return print_hashes(_command_settings(args, kafka=False), args.values)
        if args.command == "produce":
            from consumer.commands.produce import produce_lines

            settings = _command_settings(args)
            return produce_lines(
                settings,
                sys.stdin,
                topic=args.topic,
                framing=args.framing,
                subject=args.subject,
                reason=args.reason,
                source=args.source,
            )
        if args.command == "replay":
            from consumer.replay import run_replay

            return run_replay(args, _command_settings(args))
        if args.command == "receipts":
            from consumer.commands.receipt_lookup import run_receipts

            return run_receipts(args, _command_settings(args))
        if args.command == "report":
            from consumer.report import run_report

            return run_report(args, _command_settings(args))
        if args.command == "demo":
            from consumer.commands.demo import run_demo

            return run_demo(partitions=args.partitions)
        raise AssertionError(f"unhandled command {args.command}")
    except SettingsError as exc:
        print(f"deletion-consumer: bad setting {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    except KeyboardInterrupt as exc:
        # Ctrl-C, or SIGTERM raised as it (`_Interrupted`): one line, never a traceback.
        signum = exc.signum if isinstance(exc, _Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(f"deletion-consumer {args.command}: interrupted ({name})", file=sys.stderr)
        return EXIT_SIGNALLED + signum
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


# The commands with an end of their own, which SIGTERM stops as Ctrl-C does (`run` and `demo`
# handle their signals themselves; `replay` too while it replays, and commits the batch in hand).
_FINITE_COMMANDS = frozenset({"config", "hash-id", "produce", "replay", "receipts", "report"})


class _Interrupted(KeyboardInterrupt):
    """SIGTERM raised as Ctrl-C's exception, so that a command stops on either the same way:
    its `finally` blocks run (produce flushes what it took), and `main` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise _Interrupted(signum)


def _interrupt_on_sigterm(command: str) -> signal._HANDLER | None:
    """For a finite command, SIGTERM raises `_Interrupted`; the handler it replaced, or None.

    Without it SIGTERM would end the process where it stands (no summary, produce's buffered
    records lost). Signal handlers can only be set in the main thread (not in a test's)."""
    if command not in _FINITE_COMMANDS or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupted)


def _command_settings(args: argparse.Namespace, *, kafka: bool = True) -> Settings:
    """A command's settings (no Mem0 key needed), logging configured by them: before the command
    makes a Kafka client, so that librdkafka's lines are JSON on stderr like every other.

    `kafka`: the command makes Kafka clients, so librdkafka judges their properties first, as
    for `run`, and a refusal names the setting as it was written.
    """
    settings = from_args(args, os.environ, needs_mem0=False, check_clients=kafka)
    _configure_logging(settings)
    return settings


def _configure_logging(settings: Settings) -> None:
    """Logs as the settings say, identifiers hashed with their key (or in clear if asked)."""
    from consumer.commands.hash_id import id_hasher
    from consumer.telemetry.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format, ids=id_hasher(settings))


def _run(settings: Settings, early_signals: list[int]) -> int:
    """Serve until a signal; the exit code: 0 after SIGTERM, 128 + N after signal N (130 Ctrl-C)."""
    from consumer.service import serve

    _configure_logging(settings)
    _tune_gc()
    received: list[int] = []

    async def main_loop() -> None:
        stop, force = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            # The first signal drains; a second one cuts the drain short.
            received.append(signum)
            (force if stop.is_set() else stop).set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        for signum in early_signals:
            on_signal(signum)
        await serve(settings, stop, force=force)

    asyncio.run(main_loop())
    return _exit_code_of_run(received[0] if received else None)


def _exit_code_of_run(first_signal: int | None) -> int:
    """`run`'s work is to consume until a supervisor says stop: SIGTERM, drained and committed,
    is its ordinary end (0). Any other signal (Ctrl-C) says 128 + its number, as for every
    command a signal stopped, so that a shell script that ran it stops too."""
    if first_signal is None or first_signal == signal.SIGTERM:
        return 0
    return EXIT_SIGNALLED + first_signal


def _tune_gc() -> None:
    """Make the cyclic garbage collector's passes rarer, for the service process only.

    Nearly everything the consumer allocates (messages, events, records, plans) is freed by
    reference counting within a second; but CPython's default (a pass every 700 net new
    objects) runs dozens of passes per flush, and what is in flight at those moments survives
    them into the old generation, whose full passes then walk every event in flight again and
    again. With passes every 50,000 net new objects, in-flight work dies before it is promoted:
    the id clean-up went from ~44k to ~57-69k events/s (`bench.e2e`). Cycles are still
    collected, only later; the startup's objects, which live for ever, are frozen out of the
    passes.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


if __name__ == "__main__":
    sys.exit(main())
