"""Differential fuzz of the compiled scan (consumer/avro/_scan.c) under AddressSanitizer and UBSan.

Run from the repository's root, with the venv's Python (./dev test sets it up):

    python -m tests.fuzz.scan_fuzz --seconds 60 --jobs 2    # what CI runs (.ci/run)
    python -m tests.fuzz.scan_fuzz --seed 7 --seconds 600    # longer, other inputs
    python -m tests.fuzz.scan_fuzz --inputs 100000           # a fixed number: the same inputs
    python -m tests.fuzz.scan_fuzz --replay build/fuzz-findings/crash-1a2b3c4d5e6f.bin
    python -m tests.fuzz.scan_fuzz --source /tmp/edited_scan.c    # another copy of the C file

The scan reads untrusted bytes in C, so a wrong bound is a read past a buffer, not an
exception; and it is a shortcut that must build the event fastavro builds (tests/fuzz/oracle.py
says exactly what must hold). tests/unit/avro/test_event_reader.py holds the installed module to
that on hypothesis inputs; this adds what a unit test cannot: the same C source compiled with
`-fsanitize=address,undefined` (so a read one byte out, a use after free or a signed overflow
stops the run), Python's allocator off (PYTHONMALLOC=malloc, so every bytes object has
AddressSanitizer's red zones around it), and a minute of structure-aware mutations (see
tests/fuzz/inputs.py) rather than a few thousand examples.

What a run does. This process (the parent) compiles the C file into a temporary directory and
starts itself again (`--child`) with the sanitizer runtimes preloaded: Python is not built with
them, so they must be loaded first (LD_PRELOAD). The child puts the sanitized module in place
of the installed one before anything imports it, then (1) replays every file of
tests/fuzz/corpus/ at body offsets 0, 5 and 10 with either schema version's layout (`valid-*`
files, single-object framed, must also be read by the scans); (2) checks that the compiled scan
frees what it allocates (tracemalloc over repeated scans: a reference leaked on an error path
is memory a hostile producer can make grow); (3) fuzzes, from a fixed seed, until the time
budget is spent. Before each input the child copies it into a shared record, so when a sanitizer
kills it the parent still knows the input. `--jobs N` starts N children, seeds seed..seed+N-1.

The corpus: `valid-v1-*.bin` and `valid-v2-*.bin` are single-object values as producers write
them (their fingerprint names the layout; the fuzz also mutates them), `edge-*.bin` any bytes
worth replaying for ever (the cases the scans' bounds and unsure answers are about), and a
finding keeps the name it was written under.

Any sanitizer report, mismatch or leak fails the run (exit 1) and writes the input to
build/fuzz-findings/ (the log also prints it as hex); replay it with `--replay`, and once the
fix is in, copy it into tests/fuzz/corpus/ so every later run replays it first. Without gcc or
its libasan/libubsan the run is skipped with a message, unless CI is set: then it fails.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import mmap
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
CORPUS: Final = ROOT / "tests" / "fuzz" / "corpus"
FINDINGS: Final = ROOT / "build" / "fuzz-findings"
MODULE: Final = "consumer.avro._scan"
# The child's exits: a mismatch or a leak (its input written by the child), or the sanitizers'.
FOUND, ASAN_EXIT, UBSAN_EXIT = 3, 86, 87
# The shared record of the input being scanned: length, start, linked, 1, then the bytes.
RECORD: Final = struct.Struct("<IiBB")
MAX_INPUT: Final = 1 << 16  # tests/fuzz/inputs.py cuts every input to this
SANITIZERS: Final = {
    "ASAN_OPTIONS": f"detect_leaks=0:exitcode={ASAN_EXIT}:detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": f"halt_on_error=1:print_stacktrace=1:exitcode={UBSAN_EXIT}",
    "PYTHONMALLOC": "malloc",  # pymalloc's arenas would hide reads past a small bytes object
    "PYTHONHASHSEED": "0",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.scan_fuzz", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--seconds", type=float, default=60.0, help="fuzzing time (default 60)")
    parser.add_argument("--seed", type=int, default=16, help="the mutations' seed (default 16)")
    parser.add_argument("--source", type=Path, default=ROOT / "consumer" / "avro" / "_scan.c")
    parser.add_argument("--out", type=Path, default=FINDINGS, help="where findings are written")
    parser.add_argument("--inputs", type=int, default=0, help="stop after this many (0: none)")
    parser.add_argument("--jobs", type=int, default=1, help="processes fuzzing (seeds differ)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the folder replayed first")
    parser.add_argument("--replay", type=Path, nargs="*", default=None, help="only these files")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--module", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from tests.fuzz.child import run

        return run(args)
    return parent(args)


def toolchain() -> tuple[str, str, list[str]] | str:
    """(compiler, Python's include directory, sanitizer runtimes), or why there is none."""
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        return f"no C compiler ({os.environ.get('CC', 'gcc')}) on PATH"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python.h in {include} (the Python headers)"
    runtimes = []
    for lib in ("libasan.so", "libubsan.so"):
        found = subprocess.run(
            [cc, f"-print-file-name={lib}"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not os.path.isabs(found) or not os.path.exists(found):
            return f"{cc} has no {lib} (Debian: libasan8, libubsan1)"
        runtimes.append(os.path.realpath(found))
    return cc, include, runtimes


def build(cc: str, include: str, source: Path, directory: Path, name: str = "_scan") -> Path:
    """The C file as a sanitized extension module `name`, named as the loader wants it."""
    target = directory / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    command = [
        cc, "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined", "-fno-sanitize-recover=all",  # the first report stops
        "-Wall", "-Wextra", "-I", include, str(source), "-o", str(target),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return target


class NoBuild(Exception):
    """The sanitized module could not be built; `code` is the run's exit (0: skipped)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def sanitized(what: str, source: Path, directory: Path, name: str) -> tuple[Path, dict[str, str]]:
    """`source` built with the sanitizers into `directory` as module `name`, and the environment
    a child needs to load it (the runtimes preloaded); NoBuild, having said why, when there is
    no toolchain (a failure with CI set, else a skip) or the file does not compile."""
    found = toolchain()
    if isinstance(found, str):
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            print(f"{what}: FAILED, {found}; CI must run it", file=sys.stderr)
            raise NoBuild(1)
        print(f"{what}: skipped, {found}", file=sys.stderr)
        raise NoBuild(0)
    cc, include, runtimes = found
    try:
        module = build(cc, include, source, directory, name)
    except subprocess.CalledProcessError:
        print(f"{what}: FAILED, {source} does not compile", file=sys.stderr)
        raise NoBuild(1) from None
    preload = ":".join([*runtimes, *filter(None, [os.environ.get("LD_PRELOAD")])])
    return module, {**os.environ, **SANITIZERS, "LD_PRELOAD": preload}


def parent(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="scan-fuzz-") as tmp:
        try:
            module, env = sanitized("scan fuzz", args.source, Path(tmp), "_scan")
        except NoBuild as exc:
            return exc.code
        jobs = 1 if args.replay is not None else max(1, args.jobs)
        children = [
            _start(args, module, Path(tmp) / f"input-{job}", job, env) for job in range(jobs)
        ]
        return _wait(args, children)


def _start(
    args: argparse.Namespace, module: Path, record: Path, job: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    """One child: its own seed (the seed + its number) and its own record of the input."""
    record.write_bytes(bytes(RECORD.size + MAX_INPUT))
    command = [sys.executable, "-m", "tests.fuzz.scan_fuzz", "--child", "--module", str(module)]
    command += ["--record", str(record), "--out", str(args.out), "--seed", str(args.seed + job)]
    command += ["--seconds", str(args.seconds), "--corpus", str(args.corpus)]
    command += ["--inputs", str(args.inputs)]
    if args.replay is not None:
        command += ["--replay", *map(str, args.replay)]
    return subprocess.Popen(command, env=env, cwd=ROOT), record


def _wait(args: argparse.Namespace, children: list[tuple[subprocess.Popen[bytes], Path]]) -> int:
    """0 once every child passed; 1 if one failed (reported), the others then stopped. They
    all fuzz for the same time, so waiting for each in turn loses nothing."""
    deadline = time.monotonic() + args.seconds + 240
    failed = 0
    for child, record in children:
        try:
            code = child.wait(timeout=max(0.0, deadline - time.monotonic()) if not failed else 0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            if failed:
                continue  # stopped because another failed
            failed = _crashed(args, "overran its time budget by 4 minutes (a hang?)", record)
            continue
        if code == FOUND:
            failed = 1  # the child wrote the input and said what was wrong
        elif code:
            failed = _crashed(args, _death(code), record)
    return failed


def _crashed(args: argparse.Namespace, what: str, record: Path) -> int:
    """A child killed by a sanitizer (or a signal, or an error): the input it was scanning."""
    print(f"scan fuzz: FAILED, the child {what}", file=sys.stderr)
    data, start, linked = _recorded(record)
    if data is None:
        print("scan fuzz: it died before scanning any input", file=sys.stderr)
    else:
        write_finding(args.out, "crash", data, f"start {start}, {_layout(linked)} layout")
    return 1


def _death(code: int) -> str:
    if code == ASAN_EXIT:
        return "stopped on an AddressSanitizer report (above)"
    if code == UBSAN_EXIT:
        return "stopped on an UndefinedBehaviorSanitizer report (above)"
    if code < 0:
        return f"died of signal {-code}"
    return f"exited with {code} (an error above)"


def _recorded(record: Path) -> tuple[bytes | None, int, bool]:
    with record.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        length, start, linked, written = RECORD.unpack_from(mm)
        if not written:
            return None, 0, False
        return bytes(mm[RECORD.size : RECORD.size + length]), start, bool(linked)


def _layout(linked: bool) -> str:
    return "version-2" if linked else "version-1"


def write_finding(out: Path, kind: str, data: bytes, where: str) -> Path:
    """The input saved under out/, and how to reproduce it and keep it, on stderr."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{kind}-{hashlib.sha256(data).hexdigest()[:12]}.bin"
    path.write_bytes(data)
    shown = data.hex() if len(data) <= 4096 else data[:4096].hex() + "..."
    print(
        f"scan fuzz: the input ({len(data)} bytes, {where}) is in {path}\n"
        f"  bytes.fromhex('{shown}')\n"
        f"  reproduce: python -m tests.fuzz.scan_fuzz --replay {path}\n"
        f"  once fixed, add it to the corpus: cp {path} {CORPUS}/",
        file=sys.stderr,
    )
    return path


def load_sanitized(path: Path) -> None:
    """Put the module at `path` where the installed consumer.avro._scan would be imported."""
    import consumer.avro  # the package, which imports nothing of its modules

    if MODULE in sys.modules or "consumer.avro.event_reader" in sys.modules:
        raise RuntimeError(f"{MODULE} was imported before the sanitized one could replace it")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    consumer.avro._scan = module


def corpus_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The files given, and the *.bin files of the folders given, in name order."""
    for path in paths:
        yield from sorted(path.glob("*.bin")) if path.is_dir() else (path,)


if __name__ == "__main__":
    sys.exit(main())
