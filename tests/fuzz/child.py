"""The fuzz's sanitized process (started by scan_fuzz.py): replay, leak check, then fuzz.

It must load the sanitized module before anything imports consumer.avro.event_reader (which
picks its scan once, at import), so every import of the consumer's code is inside `run`.
Each input is copied into the shared record before it is scanned: a sanitizer report ends the
process at once, and the parent reads the record to say which input it was.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fuzz.scan_fuzz import FOUND, RECORD, corpus_files, load_sanitized, write_finding

if TYPE_CHECKING:  # not at run time: it imports the consumer's code (see above)
    from consumer.avro.event_reader import Fields
    from tests.fuzz.inputs import Case

    Scan = Callable[[bytes, int, bool], Fields | None]
    Note = Callable[[Case], None]

# Bytes a batch of scans may leave allocated between repeats: none, bar tracemalloc's noise.
LEAK_SLACK = 4096


def run(args: argparse.Namespace) -> int:
    """The child's part of a run (the options as scan_fuzz.py's main parsed them)."""
    module: Path = args.module
    out: Path = args.out
    seed: int = args.seed
    replay: list[Path] | None = args.replay
    load_sanitized(module)
    from tests.fuzz import inputs
    from tests.fuzz.oracle import Oracle

    compiled: Scan = sys.modules["consumer.avro._scan"].scan
    oracle = Oracle(compiled)
    with args.record.open("r+b") as file, mmap.mmap(file.fileno(), 0) as shared:

        def note(case: Case) -> None:
            shared[: RECORD.size] = RECORD.pack(len(case.value), case.start, case.linked, 1)
            shared[RECORD.size : RECORD.size + len(case.value)] = case.value

        def fail(kind: str, case: Case, problem: str) -> int:
            layout = "version-2" if case.linked else "version-1"
            spent = time.monotonic() - began
            print(
                f"scan fuzz: FAILED after {oracle.inputs} inputs ({spent:.1f} s, seed {seed}): "
                f"{problem}",
                file=sys.stderr,
            )
            write_finding(out, kind, case.value, f"start {case.start}, {layout} layout")
            return FOUND

        began = time.monotonic()
        files = list(corpus_files(replay if replay is not None else [args.corpus]))
        print(f"scan fuzz: sanitized {module}; replaying {len(files)} files", file=sys.stderr)
        replays: list[Case] = []
        seeds: list[tuple[bytes, bool]] = []  # the valid bodies, for mutation
        for path in files:
            data = path.read_bytes()
            layout = _linked(data) if path.name.startswith("valid-") else None
            if layout is not None:
                seeds.append((data[10:], layout))
            for case in _layouts(data):
                note(case)
                valid = case.start == 10 and case.linked is layout
                problem = (oracle.check_valid if valid else oracle.check)(case)
                if problem is not None:
                    return fail("mismatch", case, f"{path.name}: {problem}")
                replays.append(case)
        rng = random.Random(seed)
        pool = inputs.Seeds(rng, seeds, 2000 if replay is None else 0)
        # Replaying a few files, repeat them: a leak of a few bytes a scan must still show.
        more = [inputs.case(rng, pool) for _ in range(3000)] if replay is None else replays * 99
        batch = replays + more
        grown = _leaked(compiled, batch, note)
        if grown > LEAK_SLACK:
            case = _leaking(compiled, batch, note)
            return fail("leak", case, f"{grown} bytes stay allocated after repeated scans")
        if replay is not None:
            print(f"scan fuzz: {oracle.inputs} scans replayed, no leak: passed", file=sys.stderr)
            return 0

        fuzzed, valid_checks = 0, 0
        deadline = time.monotonic() + args.seconds
        limit = args.inputs or sys.maxsize
        while time.monotonic() < deadline and fuzzed < limit:
            for _ in range(256):
                case = inputs.case(rng, pool)
                note(case)
                problem = oracle.check(case)
                if problem is not None:
                    return fail("mismatch", case, problem)
            fuzzed += 256
            # Now and then a valid body as written: the shortcut must still be taken.
            linked = rng.random() < 0.5
            body = inputs.encode(inputs.record(rng), linked)
            case = inputs.Case(body, 0, linked)
            note(case)
            if (problem := oracle.check_valid(case)) is not None:
                return fail("mismatch", case, problem)
            valid_checks += 1
        elapsed = time.monotonic() - began
        print(
            f"scan fuzz: passed in {elapsed:.0f} s (seed {seed}): {len(replays)} corpus scans, "
            f"{len(batch)} leak-checked ({grown} bytes kept), {fuzzed} mutated inputs "
            f"({oracle.accepted} read by the scans, all as fastavro reads them), "
            f"{valid_checks} valid bodies; no sanitizer report (pid {os.getpid()})",
            file=sys.stderr,
        )
    return 0


def _layouts(data: bytes) -> list[Case]:
    """A corpus file as the fuzz scans it: bodies at 0 (raw), 5 (Confluent), 10 (single
    object), each with either version's layout."""
    from tests.fuzz import inputs

    return [
        inputs.Case(data, start, linked)
        for start in (0, 5, 10)
        if start <= len(data)
        for linked in (True, False)
    ]


def _linked(data: bytes) -> bool | None:
    """The layout a single-object value's fingerprint names, None if neither version's."""
    from tests.fuzz import inputs

    digest = data[2:10]
    return next((k for k, w in inputs.WRITERS.items() if w.fingerprint == digest), None)


def _scan_all(compiled: Scan, batch: list[Case], note: Note) -> None:
    for case in batch:
        note(case)
        compiled(case.value, case.start, case.linked)


def _leaked(compiled: Scan, batch: list[Case], note: Note) -> int:
    """Bytes the compiled scan leaves allocated over three repeats of the batch (after two to
    warm the free lists)."""
    tracemalloc.start()
    try:
        for _ in range(2):
            _scan_all(compiled, batch, note)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            _scan_all(compiled, batch, note)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _leaking(compiled: Scan, batch: list[Case], note: Note) -> Case:
    """The input of the batch whose scans leak the most (to write out)."""
    worst, most = batch[0], -1
    tracemalloc.start()
    try:
        for case in batch:
            _scan_all(compiled, [case] * 2, note)
            before = tracemalloc.get_traced_memory()[0]
            _scan_all(compiled, [case] * 8, note)
            grown = tracemalloc.get_traced_memory()[0] - before
            if grown > most:
                worst, most = case, grown
    finally:
        tracemalloc.stop()
    return worst
