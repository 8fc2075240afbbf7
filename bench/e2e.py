"""End to end: drain a preloaded backlog through the real consumer, against a naive loop.

    python -m bench.e2e [--events 200000] [--workloads "erasure burst,session sweep,id clean-up"]
                        [--variants "defaults,receipts off,verification off"] [--workers 1]
                        [--latency-ms 5] [--job-delay-ms 50] [--baseline-events 300] [--quick]

Starts Tansu and the Mem0 sandbox (its own process, `latency-ms` per call, delete jobs done
after `job-delay-ms`), preloads the input topic, runs `deletion-consumer run` as a process
until every offset is committed, and prints per workload one row per variant: the defaults
(receipts and verification on, as a user runs it), then each feature switched off, every row
with its ratio to the defaults row of the same run. A row gives events per second (from the
first Mem0 call to the last commit), Mem0 calls per 1000 events, p50/p99 time from publish to
completion (the consumer's erasure histogram), peak RSS and CPU (summed over workers), and the
busy share of a core of the consumer, the sandbox and the broker meanwhile. `--workers 1,2`
runs each variant with 1 and then 2 worker processes (`run --workers N`). Then the baseline a
user would otherwise write, a loop calling the official `mem0ai` MemoryClient once per event,
on a sample of the same events against the same sandbox, and the ratios. Last, the sandbox's
own capacity in this run, to show it is not what limits the consumer. Memories are not
seeded: deleting what is not there takes the same calls, and seeding a million memories
would only measure the sandbox.

`--quick` is the short form CI runs (a few seconds a workload): 20,000 events, the defaults
and receipts off, no baseline and no capacity; it prints figures and asserts none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from bench.workloads import WORKLOADS
from consumer.avro.codec import Encoder, SchemaStore
from consumer.core.events import DeletionEvent, EventType, event_to_record, partition_key
from consumer.kafka.broker import LocalBroker, committed_positions, create_topics, free_port
from consumer.mem0.http import RawJson
from consumer.mem0.lean_http import LeanSession
from consumer.sandbox import Faults
from consumer.sandbox.command import sandbox_command

TP = tuple[str, int]

# The rows of a workload: the defaults first (what a user runs), then one feature off per row.
VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "receipts off": {"RECEIPTS_TOPIC": ""},
    "verification off": {"VERIFY_DELETES": "false"},
}


@dataclass
class Result:
    variant: str
    workers: int
    events: int
    steady_s: float
    total_s: float
    calls: int
    calls_by_op: dict[str, int]
    p50_s: float
    p99_s: float
    peak_rss_mb: float
    cpu_s: float
    # Busy share of one core during the drain (first call to last commit), from /proc.
    consumer_busy: float
    sandbox_busy: float
    broker_busy: float

    @property
    def rate(self) -> float:
        return self.events / self.steady_s


def start_sandbox(port: int, latency_ms: float, job_delay_ms: float) -> subprocess.Popen[bytes]:
    faults = Faults(latency_ms=latency_ms, job_delay_ms=job_delay_ms)
    process = subprocess.Popen(
        sandbox_command(port=port, faults=faults, call_log_limit=1000), stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=1)
            return process
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stats(port: int) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=10).json()
    return answer


def publish(bootstrap: str, topic: str, events: list[DeletionEvent]) -> dict[TP, int]:
    encoder = Encoder(SchemaStore.from_directory())
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
            "log_level": 3,
        }
    )
    ends: dict[TP, int] = {}

    def delivered(error: Any, message: Any) -> None:
        if error is None:
            tp = (message.topic(), message.partition())
            ends[tp] = max(ends.get(tp, 0), message.offset() + 1)

    now = int(time.time() * 1000)
    for event in events:
        record = event_to_record(event)
        record["occurred_at"] = now
        while True:
            try:
                producer.produce(
                    topic,
                    key=partition_key(record),
                    value=encoder.single_object(record),
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)
    return ends


def quantile(samples: list[Any], q: float) -> float:
    """A quantile of a histogram's samples (summed over labels and workers), by linear
    interpolation in buckets."""
    buckets: dict[float, float] = {}
    for sample in samples:
        if sample.name.endswith("_bucket"):
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total == 0:
        return float("nan")
    target, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound, count in ordered:
        if count >= target:
            if bound == float("inf"):
                return previous_bound
            share = (target - previous_count) / max(count - previous_count, 1e-9)
            return previous_bound + share * (bound - previous_bound)
        previous_bound, previous_count = bound, count
    return previous_bound


def metric_samples(ports: list[int]) -> dict[str, list[Any]]:
    """Every family's samples, from each worker's endpoint together."""
    merged: dict[str, list[Any]] = {}
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            merged.setdefault(family.name, []).extend(family.samples)
    return merged


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (a `--workers` parent and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def proc_figures(pid: int) -> tuple[float, float]:
    """Peak RSS (MB) and CPU seconds of a live process and its children, from /proc."""
    peak_mb = cpu_s = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        peak_kb = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
        )
        peak_mb += peak_kb / 1024
        cpu_s += (int(fields[11]) + int(fields[12])) / ticks
    return peak_mb, cpu_s


def cpu_seconds(pid: int | None) -> float:
    return proc_figures(pid)[1] if pid is not None else 0.0


_GAUGES = ("in_flight_events", "in_flight_operations", "partitions_paused")


def print_gauges(ports: list[int], started: float, pid: int, committed: dict[Any, int]) -> None:
    """One line of --timeline: where the pipeline stands (why the consumer may be idle)."""
    try:
        samples = metric_samples(ports)
    except httpx.HTTPError:
        return
    values: dict[str, float] = {}
    for family in samples.values():
        for sample in family:
            name = sample.name.removeprefix("mem0_deletion_")
            values[name] = values.get(name, 0.0) + sample.value
    gauges = "  ".join(f"{name} {values.get(name, 0):>7.0f}" for name in _GAUGES)
    print(
        f"  t {time.monotonic() - started:6.2f} s  cpu {cpu_seconds(pid):6.2f} s  "
        f"committed {sum(committed.values()):>8}  {gauges}",
        flush=True,
    )


def run_workload(
    name: str,
    events: list[DeletionEvent],
    bootstrap: str,
    sandbox_port: int,
    args: argparse.Namespace,
    *,
    variant: str,
    workers: int,
    pids: tuple[int, int | None],
) -> Result:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"bench.{suffix}", f"bench.{suffix}.dlq", f"bench-{suffix}"
    receipts = f"bench.{suffix}.receipts"
    create_topics(bootstrap, [topic, dlq, receipts], partitions=args.partitions)
    httpx.post(f"http://127.0.0.1:{sandbox_port}/_sandbox/reset", timeout=10)
    ends = publish(bootstrap, topic, events)
    metrics_port = free_port()
    while workers > 1 and not all(port_free(metrics_port + i) for i in range(workers)):
        metrics_port = free_port()
    ports = [metrics_port + i for i in range(workers)]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DELETION_TOPICS": topic,
        "DLQ_TOPIC": dlq,
        "RECEIPTS_TOPIC": receipts,
        "MEM0_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
        "MEM0_API_KEY": "sandbox-key",
        "METRICS_PORT": str(metrics_port),
        "LOG_LEVEL": "WARNING",
        **VARIANTS[variant],
        **dict(kv.split("=", 1) for kv in args.env),
    }
    command = [sys.executable, "-m", "consumer", "run"]
    if workers > 1:
        command += ["--workers", str(workers)]
    started = time.monotonic()
    consumer = subprocess.Popen(command, env=env)
    profiler = None
    first_call = None
    cpu_at_first_call = [0.0, 0.0, 0.0]
    deadline_s = max(300.0, len(events) / 200)  # 200 events/s: a tenth of the slowest workload
    try:
        if args.profile:
            # Sampled from outside (py-spy, not installed by the project): collapsed stacks, one
            # file per workload and variant, for flamegraph.pl or speedscope.
            label = f"{name}-{variant}-{workers}".replace(" ", "-")
            out = Path(args.profile) / f"{label}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            profiler = subprocess.Popen(
                [
                    *("py-spy", "record", "--pid", str(consumer.pid), "--format", "raw"),
                    *("--rate", "250", "--nonblocking", "--subprocesses", "--output", str(out)),
                ],
                stdout=subprocess.DEVNULL,
            )
        while True:
            time.sleep(0.1)
            if first_call is None and stats(sandbox_port)["calls_by_operation"]:
                first_call = time.monotonic()
                cpu_at_first_call = [cpu_seconds(pid) for pid in (*pids, consumer.pid)]
            committed = committed_positions(bootstrap, group, ends)
            if args.timeline:
                print_gauges(ports, started, consumer.pid, committed)
            if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
                break
            if consumer.poll() is not None:
                raise RuntimeError(f"the consumer exited with {consumer.returncode}")
            if time.monotonic() - started > deadline_s:
                # A hung consumer must fail the run (CI runs this), not hold it for ever.
                raise RuntimeError(
                    f"not drained after {deadline_s:.0f} s: committed "
                    f"{sum(max(0, c) for c in committed.values())} of {sum(ends.values())}"
                )
        done = time.monotonic()
        cpu_at_done = [cpu_seconds(pid) for pid in (*pids, consumer.pid)]
        peak_mb, cpu_s = proc_figures(consumer.pid)
        samples = metric_samples(ports)
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(60)
        if profiler is not None:
            profiler.wait(30)
    erasure = samples.get("mem0_deletion_time_to_erasure_seconds", [])
    counts = stats(sandbox_port)
    steady = done - (first_call or started)
    return Result(
        variant=variant,
        workers=workers,
        events=len(events),
        steady_s=steady,
        total_s=done - started,
        calls=sum(counts["calls_by_operation"].values()),
        calls_by_op=counts["calls_by_operation"],
        p50_s=quantile(erasure, 0.5),
        p99_s=quantile(erasure, 0.99),
        peak_rss_mb=peak_mb,
        cpu_s=cpu_s,
        consumer_busy=(cpu_at_done[2] - cpu_at_first_call[2]) / steady,
        sandbox_busy=(cpu_at_done[0] - cpu_at_first_call[0]) / steady,
        broker_busy=(cpu_at_done[1] - cpu_at_first_call[1]) / steady,
    )


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_baseline(events: list[DeletionEvent], sandbox_port: int) -> tuple[float, int]:
    """The loop a user would otherwise write: the official SDK, one call per event."""
    os.environ.setdefault("MEM0_TELEMETRY", "false")
    from mem0 import MemoryClient

    httpx.post(f"http://127.0.0.1:{sandbox_port}/_sandbox/reset", timeout=10)
    client = MemoryClient(api_key="sandbox-key", host=f"http://127.0.0.1:{sandbox_port}")
    before = sum(stats(sandbox_port)["calls_by_operation"].values())
    started = time.perf_counter()
    for event in events:
        if event.type is EventType.MEMORIES_DELETED:
            client.batch_delete([{"memory_id": i} for i in event.memory_ids])
        else:
            assert event.scope is not None
            client.delete_all(**event.scope.as_dict())
    seconds = time.perf_counter() - started
    return len(events) / seconds, sum(stats(sandbox_port)["calls_by_operation"].values()) - before


async def sandbox_capacity(
    port: int, kind: str, seconds: float = 2.0, concurrency: int = 64
) -> float:
    """What the sandbox answers per second, alone: single deletes, ids in 1000-id batches, or
    delete_all calls (missing ids and empty scopes, so the store stays as it is). The client is
    the consumer's own lean one, with bodies built beforehand, so that it is not the limit."""
    done = 0
    deadline = time.monotonic() + seconds
    session = LeanSession(
        f"http://127.0.0.1:{port}",
        {"Authorization": "Token sandbox-key"},
        timeout_s=30,
        max_connections=concurrency,
    )
    bodies = [
        RawJson(
            json.dumps(
                {"memories": [{"memory_id": str(uuid.uuid4())} for _ in range(1000)]}
            ).encode()
        )
        for _ in range(8)
    ]

    async def once(n: int) -> int:
        if kind == "delete":
            await session.request("DELETE", f"/v1/memories/{uuid.uuid4()}/")
            return 1
        if kind == "batch":
            await session.request("DELETE", "/v1/batch/", json=bodies[n % len(bodies)])
            return 1000
        await session.request("DELETE", "/v1/memories/", params={"user_id": uuid.uuid4().hex})
        return 1

    async def worker() -> None:
        nonlocal done
        n = 0
        while time.monotonic() < deadline:
            served = await once(n)  # not `done += await ...`: that reads `done` before waiting
            done += served
            n += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await session.aclose()
    return done / (time.monotonic() - started)


def print_row(result: Result, reference: Result | None) -> None:
    ratio = result.rate / reference.rate if reference is not None else 1.0
    cpu_us = result.cpu_s * 1e6 / result.events
    print(
        f"  {result.variant:<17} {result.workers:>7} {result.rate:>10,.0f} {ratio:>8.2f}x "
        f"{result.calls * 1000 / result.events:>9.1f} {result.p50_s:>7.2f} {result.p99_s:>7.2f} "
        f"{result.peak_rss_mb:>7.0f} {result.cpu_s:>6.1f} {cpu_us:>9.0f}"
        f"   {result.consumer_busy:>4.0%} {result.sandbox_busy:>4.0%} {result.broker_busy:>4.0%}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=None, help="default 200000 (quick: 20000)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--variants", default=None, help=f"of: {', '.join(VARIANTS)}")
    parser.add_argument("--workers", default="1", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--job-delay-ms", type=float, default=50.0)
    parser.add_argument("--baseline-events", type=int, default=None, help="default 300; 0: none")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the consumer")
    parser.add_argument("--profile", metavar="DIR", help="sample the consumer with py-spy into DIR")
    parser.add_argument("--quick", action="store_true", help="the short form CI runs")
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="print the consumer's in-flight gauges and CPU every tenth of a second",
    )
    args = parser.parse_args()
    quick = args.quick
    count = args.events if args.events is not None else (20_000 if quick else 200_000)
    default_variants = "defaults,receipts off" if quick else ",".join(VARIANTS)
    variants = (args.variants or default_variants).split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    if args.profile and shutil.which("py-spy") is None:
        # Found out here, not once the consumer runs: a failed profiler start left it orphaned.
        parser.error("--profile needs py-spy on PATH (pip install py-spy)")
    worker_counts = [int(n) for n in args.workers.split(",")]
    baseline_events = args.baseline_events
    if baseline_events is None:
        baseline_events = 0 if quick else 300
    sandbox_port = free_port()
    sandbox = start_sandbox(sandbox_port, args.latency_ms, args.job_delay_ms)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {os.cpu_count()} cores; "
        f"sandbox latency {args.latency_ms} ms, jobs done after {args.job_delay_ms} ms; "
        f"{args.partitions} partitions"
    )
    try:
        with LocalBroker() as broker:
            for name in args.workloads.split(","):
                events = WORKLOADS[name](count, random.Random(11))
                pids = (sandbox.pid, broker.pid)
                print(f"\n{name}: {len(events)} events")
                print(
                    f"  {'variant':<17} {'workers':>7} {'events/s':>10} {'ratio':>9} "
                    f"{'calls/1k':>9} {'p50 s':>7} {'p99 s':>7} {'RSS MB':>7} {'CPU s':>6} "
                    f"{'CPU µs/ev':>7}   busy: consumer, sandbox, broker"
                )
                results: list[Result] = []
                for workers in worker_counts:
                    for variant in variants:
                        result = run_workload(
                            name,
                            events,
                            broker.bootstrap,
                            sandbox_port,
                            args,
                            variant=variant,
                            workers=workers,
                            pids=pids,
                        )
                        print_row(result, results[0] if results else None)
                        results.append(result)
                first = results[0]
                ops = ", ".join(f"{k} {v}" for k, v in sorted(first.calls_by_op.items()))
                print(f"  calls ({first.variant}, {first.workers} worker): {ops}")
                if baseline_events:
                    base_rate, base_calls = run_baseline(events[:baseline_events], sandbox_port)
                    base_per_k = base_calls * 1000 / baseline_events
                    print(
                        f"  baseline {base_rate:>9,.1f} events/s, {base_per_k:.0f} calls/1000 "
                        f"events (mem0ai MemoryClient, {baseline_events} events, one call each)"
                    )
                    print(
                        f"  ratio    {first.rate / base_rate:>9.1f}x events/s, "
                        f"{base_per_k / (first.calls * 1000 / first.events):.2f}x fewer calls "
                        f"({first.variant})"
                    )
            if not quick:
                print(f"\nsandbox capacity in this run, alone ({args.latency_ms} ms latency):")
                for kind, unit in (
                    ("delete", "single deletes/s"),
                    ("batch", "ids/s in batches of 1000"),
                    ("delete_all", "delete_all calls/s"),
                ):
                    capacity = asyncio.run(sandbox_capacity(sandbox_port, kind))
                    print(f"  {capacity:>11,.0f} {unit}")
    finally:
        sandbox.terminate()
        sandbox.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
