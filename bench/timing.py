"""The one timing loop of the micro-benchmarks (decode_bench, receipt_encode)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["cpu_rates"]


def cpu_rates(runs: dict[str, Callable[[], object]], n: int, repeat: int) -> dict[str, float]:
    """Items/s per run (each run handles `n`), best of `repeat`. Rounds interleave the runs so
    that a noisy neighbour slows all of them alike; the collector is paused while timing, as the
    objects here are short-lived and a collection landing in one run but not another is noise,
    not signal. CPU time, not wall time: single-threaded either way, and steadier on a shared
    machine."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for label, run in runs.items():
            gc.collect()
            gc.disable()
            try:
                started = time.process_time()
                run()
                best[label] = min(best[label], time.process_time() - started)
            finally:
                gc.enable()
    return {label: n / seconds for label, seconds in best.items()}
