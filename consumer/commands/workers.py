"""`run --workers N`: N consumer processes in one group, to use the cores of one machine.

Each worker is a plain `deletion-consumer run` (so the group shares partitions among them as
among any instances); worker i serves metrics on METRICS_PORT + i. Signals are passed on, and
the exit code is the worst of the workers'.

`--workers` is 1 to `MAX_WORKERS`: each worker is a consumer of the group with its own
librdkafka threads, Mem0 connections and metrics port, and the point is one per core; more than
the topic has partitions only sit idle, and a typo (`--workers 400`) must not start hundreds.

A worker's command line is the parent's settings flags rendered again (`child_arguments`),
never the parent's argv: a command line is readable by every user of the machine, so a secret
given as a flag (`--mem0-api-key`, a secret `--kafka-property`) reaches the workers through
their environment instead, and is in no worker's command line. (The parent's own command line
still shows it: README says to prefer `MEM0_API_KEY_FILE`.) METRICS_PORT goes through the
environment too, as each worker's differs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from consumer.settings import SettingsError
from consumer.settings.flags import child_arguments

__all__ = ["MAX_WORKERS", "check_worker_count", "run_workers", "worker_command"]

MAX_WORKERS = 64


def check_worker_count(count: int) -> None:
    """Raise `SettingsError` unless `count` is 1 to `MAX_WORKERS`."""
    if not 1 <= count <= MAX_WORKERS:
        raise SettingsError("--workers", f"expected 1 to {MAX_WORKERS} processes, got {count}")


def worker_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """A worker's command line and environment (before its METRICS_PORT), from `run`'s `args`."""
    flags, changes = child_arguments(args, omit=("metrics_port",))
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return [sys.executable, "-m", "consumer", "run", *flags], env


def run_workers(count: int, args: argparse.Namespace, metrics_port: int, early: list[int]) -> int:
    command, base_env = worker_command(args)
    children: list[subprocess.Popen[bytes]] = []
    for index in range(count):
        env = dict(base_env)
        env["METRICS_PORT"] = str(metrics_port + index if metrics_port else 0)
        # A group of their own: Ctrl-C at a terminal signals its whole foreground group, and a
        # worker signalled by it and again by `forward` would take the second as "cut the
        # drain short". So only `forward` signals them.
        children.append(subprocess.Popen(command, env=env, process_group=0))

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    # In a group of their own the workers no longer get the terminal's hang-up: a closed
    # terminal stops them as SIGTERM does (drained, committed) rather than leaving them running.
    signal.signal(signal.SIGHUP, lambda _signum, frame: forward(signal.SIGTERM, frame))
    for signum in early:
        forward(signum, None)
    # If one worker dies, the others keep the group going; the parent waits for all.
    while any(child.poll() is None for child in children):
        time.sleep(0.2)
    # A worker killed by a signal reports -N; say 128 + N, as a shell would.
    codes = [c if c >= 0 else 128 - c for c in (child.returncode or 0 for child in children)]
    return max(codes)
