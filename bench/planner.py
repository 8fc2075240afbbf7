"""Coalescing: calls per 1000 events, and the planner's own speed.

    python -m bench.planner [--events 200000] [--flush 5000] [--repeat 3]

For each workload, the events are planned flush by flush, as the consumer does. Printed:
planned operations and the Mem0 calls they take at the least (a Platform delete_all is one
call plus at least one job check; a compound scope a listing, a batch and a listing to confirm;
an id batch one call), per 1000 events and per 1000 ids, against a naive consumer that makes one
call per event (one per id for explicit ids); and the planner's events per second, best of
--repeat, next to a reference loop on the same machine in the same run (a dict insert per event:
the least any per-event Python code costs).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time

from bench.workloads import WORKLOADS
from consumer.core.capabilities import PLATFORM
from consumer.core.events import DeletionEvent
from consumer.core.planner import (
    DeleteAll,
    DeleteEntity,
    DeleteIds,
    Plan,
    ResolveScope,
    plan,
)


def calls_at_least(flushes: list[Plan]) -> int:
    total = 0
    for result in flushes:
        for op in result.operations:
            if isinstance(op, DeleteAll | DeleteEntity):  # the delete and its job status
                total += 2
            elif isinstance(op, ResolveScope):
                total += 3
            elif isinstance(op, DeleteIds):
                total += len(op.ids) if op.linked else 1
    return total


def naive_calls(events: list[DeletionEvent]) -> int:
    return sum(len(e.memory_ids) or 1 for e in events)


def best_rate(run: object, events: list[DeletionEvent], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        run(events)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
        gc.enable()
    return len(events) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--flush", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    flush = args.flush

    def planned(events: list[DeletionEvent]) -> list[Plan]:
        return [plan(events[i : i + flush], PLATFORM) for i in range(0, len(events), flush)]

    def reference(events: list[DeletionEvent]) -> None:
        seen: dict[str, int] = {}
        for i, event in enumerate(events):
            seen.setdefault(event.event_id, i)

    print(f"{args.events} events per workload, flushes of {flush}; Platform backend")
    header = (
        f"{'workload':<15}{'ops/1k ev':>10}{'calls/1k ev':>12}{'naive':>8}{'ratio':>7}"
        f"{'calls/1k ids':>13}{'plan ev/s':>11}{'ref ev/s':>10}{'plan/ref':>9}"
    )
    print(header)
    for name, make in WORKLOADS.items():
        events = make(args.events, random.Random(7))
        flushes = planned(events)
        ops = sum(len(f.operations) for f in flushes)
        calls = calls_at_least(flushes)
        naive = naive_calls(events)
        ids = sum(len(e.memory_ids) for e in events)
        per_ids = f"{calls / ids * 1000:.2f}" if ids else "-"
        rate = best_rate(planned, events, args.repeat)
        ref = best_rate(reference, events, args.repeat)
        per_k = 1000 / len(events)
        print(
            f"{name:<15}{ops * per_k:>10.1f}{calls * per_k:>12.1f}{naive * per_k:>8.0f}"
            f"{naive / calls:>6.1f}x{per_ids:>13}{rate:>11,.0f}{ref:>10,.0f}{rate / ref:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
