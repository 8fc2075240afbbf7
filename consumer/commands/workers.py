"""`run --workers N`: N consumer processes in one group, to use the cores of one machine.

Each worker is a plain `deletion-consumer run` (so the group shares partitions among them as
among any instances); worker i serves metrics on METRICS_PORT + i. Signals are passed on, and
the exit code is the worst of the workers'.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["run_workers"]


def _without_workers(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def run_workers(count: int, argv: Sequence[str], metrics_port: int, early: list[int]) -> int:
    command = [sys.executable, "-m", "consumer", *_without_workers(argv)]
    children: list[subprocess.Popen[bytes]] = []
    for index in range(count):
        env = dict(os.environ)
        if metrics_port:
            env["METRICS_PORT"] = str(metrics_port + index)
        children.append(subprocess.Popen(command, env=env))

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for signum in early:
        forward(signum, None)
    # If one worker dies, the others keep the group going; the parent waits for all.
    while any(child.poll() is None for child in children):
        time.sleep(0.2)
    # A worker killed by a signal reports -N; say 128 + N, as a shell would.
    codes = [c if c >= 0 else 128 - c for c in (child.returncode or 0 for child in children)]
    return max(codes)
