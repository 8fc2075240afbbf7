"""Differential fuzz of the compiled receipt writer (consumer/avro/_receipt.c) under
AddressSanitizer and UBSan.

    python -m tests.fuzz.receipt_fuzz --seconds 30     # what CI runs (.ci/run)
    python -m tests.fuzz.receipt_fuzz --seed 7 --seconds 600

The writer computes each value's size, allocates it, then writes it: a size and a write that
disagree would be a write past a buffer, not an exception. Its fields come from events any
producer writes (ids, sources, reasons of any length and any text). This compiles the C file
with `-fsanitize=address,undefined` like tests/fuzz/scan_fuzz.py does (same toolchain, same
runtimes preloaded, Python's allocator off so every object has red zones), then in that child
writes random batches, through `values` and `completed`, with texts of every size and plane
(lone surrogates too), numbers at every varint edge and past the schema's ranges, and now and
then a field of the wrong type; each answer must be the Python writer's (its bytes, or an
exception where it raises). Then it checks that repeated batches leave nothing allocated (a
reference leaked on an error path would grow with hostile input). A mismatch, a leak or a
sanitizer report fails the run (exit 1) with the seed, which replays it. Without gcc or its
sanitizer runtimes the run is skipped with a message, unless CI is set: then it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Final

from tests.fuzz.scan_fuzz import ROOT, NoBuild, sanitized

MODULE: Final = "consumer.avro._receipt"
MISMATCH: Final = 3
LEAK_SLACK: Final = 4096  # bytes a batch may leave allocated between repeats: tracemalloc's noise
EDGES: Final = sorted(
    {s * (2**b + d) for b in (0, 6, 7, 13, 14, 20, 21, 27, 28, 31, 34, 41, 48, 56, 62, 63)
     for d in (-1, 0, 1) for s in (1, -1)}
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.receipt_fuzz", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--seconds", type=float, default=30.0, help="fuzzing time (default 30)")
    parser.add_argument("--seed", type=int, default=17, help="the inputs' seed (default 17)")
    parser.add_argument("--source", type=Path, default=ROOT / "consumer" / "avro" / "_receipt.c")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the sanitized module
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.child, args.seconds, args.seed)
    with tempfile.TemporaryDirectory(prefix="receipt-fuzz-") as tmp:
        try:
            module, env = sanitized("receipt fuzz", args.source, Path(tmp), "_receipt")
        except NoBuild as exc:
            return exc.code
        command = [sys.executable, "-m", "tests.fuzz.receipt_fuzz", "--child", str(module)]
        command += ["--seconds", str(args.seconds), "--seed", str(args.seed)]
        code = subprocess.run(command, env=env, check=False).returncode
    if code:
        print(f"receipt fuzz: FAILED (exit {code}, seed {args.seed})", file=sys.stderr)
        return 1
    return 0


def child(path: Path, seconds: float, seed: int) -> int:
    # The sanitized module in place of the installed one before receipt_writer imports it.
    import consumer.avro

    spec = importlib.util.spec_from_file_location(MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    consumer.avro._receipt = module
    from consumer.avro import receipt_writer

    assert receipt_writer.COMPILED, "the sanitized writer was not picked up"
    rng = random.Random(seed)
    inputs = Inputs(rng)
    began = time.monotonic()
    count = 0
    while time.monotonic() - began < seconds:
        count += 1
        receipts = inputs.receipts()
        header = rng.randbytes(rng.choice((0, 5, 10)))
        writers: tuple[Any, Any] = (receipt_writer.receipt_values, receipt_writer.receipt_values_py)
        if not same(*writers, receipts, header):
            return mismatch("values", count, seed, receipts)
        batch = inputs.completed()
        writers = (receipt_writer.completed_records, receipt_writer.completed_records_py)
        if not same(*writers, batch, header):
            return mismatch("completed", count, seed, batch)
    if leaked(inputs, receipt_writer):
        print(f"receipt fuzz: FAILED, memory left allocated (seed {seed})", file=sys.stderr)
        return MISMATCH
    print(f"receipt fuzz: {count} batches each way in {seconds:.0f} s, no finding (seed {seed})")
    return 0


def same(compiled: Any, python: Any, *args: Any) -> bool:
    """Both give the same value, or both raise (the compiled one may word a wrong type its own
    way: TypeError where Python's `.encode` is an AttributeError)."""
    try:
        expected = python(*args)
    except Exception:
        try:
            compiled(*args)
        except Exception:
            return True
        return False
    try:
        return bool(compiled(*args) == expected)
    except Exception:
        return False


def mismatch(what: str, count: int, seed: int, given: object) -> int:
    print(f"receipt fuzz: FAILED, {what} differs at batch {count} (seed {seed}): {given!r:.2000}")
    return MISMATCH


def leaked(inputs: Inputs, receipt_writer: Any) -> bool:
    """Repeated batches, valid and not, leave nothing allocated."""
    batches = [(inputs.receipts(), inputs.completed()) for _ in range(200)]

    def spend() -> None:
        for receipts, batch in batches:
            with contextlib.suppress(Exception):
                receipt_writer.receipt_values(receipts, b"h")
            with contextlib.suppress(Exception):
                receipt_writer.completed_records(batch, b"h")

    spend()  # warm: interned strings, caches
    tracemalloc.start()
    spend()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(5):
        spend()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before > LEAK_SLACK


class Inputs:
    """Random receipts and completed batches, mostly valid, at every edge."""

    def __init__(self, rng: random.Random) -> None:
        from consumer.core import events, receipts

        self.rng = rng
        self.events = events
        self.receipts_module = receipts

    def text(self) -> Any:
        rng = self.rng
        pick = rng.random()
        if pick < 0.02:
            return rng.choice([None, 7, b"bytes", 1.5])  # the wrong type
        if pick < 0.05:
            return "ok\ud800"  # a lone surrogate: not UTF-8
        size = rng.choice((0, 1, 5, 36, 127, 128, 8191, 8192, 16384, rng.randrange(300)))
        plane = rng.choice((0x7F, 0x7FF, 0xFFFF, 0x10FFFF))
        chars = [chr(rng.randrange(plane + 1)) for _ in range(min(size, 64))]
        text = "".join(c for c in chars if not 0xD800 <= ord(c) <= 0xDFFF)
        return (text * (size // max(1, len(text)) + 1))[:size] if text else "x" * size

    def number(self, bits: int = 64) -> Any:
        rng = self.rng
        pick = rng.random()
        if pick < 0.01:
            return rng.choice([None, "1", 2.0])
        if pick < 0.05:  # past the range
            return rng.choice((1, -1)) * (2 ** rng.choice((bits - 1, bits, 64, 65, 100)) + 1)
        if pick < 0.5:
            edge = rng.choice(EDGES)
            return edge if -(2 ** (bits - 1)) <= edge < 2 ** (bits - 1) else rng.randrange(300)
        return rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1))

    def operations(self) -> tuple[Any, ...]:
        report = self.receipts_module.OperationReport
        rng = self.rng
        return tuple(
            report(
                self.text(),
                tuple(self.text() for _ in range(rng.randrange(4))),
                self.number(32),
                rng.choice((None, 200, self.number(32))),
                rng.choice((None, self.text())),
                rng.random() < 0.5,
                rng.choice((None, self.number())),
            )
            for _ in range(rng.randrange(4))
        )

    def position(self) -> Any:
        return self.receipts_module.Position(self.text(), self.number(32), self.number())

    def receipts(self) -> list[Any]:
        rng = self.rng
        shared = self.operations()
        receipt = self.receipts_module.Receipt
        return [
            receipt(
                self.text(),
                rng.choice(
                    (
                        "COMPLETED",
                        "DEAD_LETTERED",
                        "COMPLETED",
                        "MAYBE" if rng.random() < 0.05 else "COMPLETED",
                    )
                ),
                self.text(),
                self.text(),
                self.text(),
                self.number(),
                self.number(),
                rng.choice((None, self.number())),
                shared if rng.random() < 0.7 else self.operations(),
                rng.random() < 0.5,
                rng.choice((None, self.text())),
                self.text(),
                self.position(),
                rng.choice((None, self.position())),
            )
            for _ in range(rng.randrange(1, 8))
        ]

    def completed(self) -> Any:
        rng = self.rng
        events = self.events
        size = rng.randrange(8)
        shared = self.operations()
        return self.receipts_module.CompletedReceipts(
            [
                events.DeletionEvent(
                    self.text(), self.number(), rng.choice(list(events.EventType)),
                    source=self.text(), reason=self.text(),
                )
                for _ in range(size)
            ],
            [shared if rng.random() < 0.7 else self.operations() for _ in range(size)],
            [self.number() for _ in range(size)],
            self.text(),
            [_At((self.text(), self.number(32)), self.number()) for _ in range(size)],
        )  # fmt: skip


class _At:
    """An input record: (topic, partition) and offset."""

    __slots__ = ("offset", "tp")

    def __init__(self, tp: tuple[Any, Any], offset: Any) -> None:
        self.tp = tp
        self.offset = offset


if __name__ == "__main__":
    sys.exit(main())
