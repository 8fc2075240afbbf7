"""Steady load: the time from publish to receipt, per event type, against the floor Mem0 sets.

    python -m bench.latency [--rate 400] [--seconds 30] [--latency-ms 5] [--job-delay-ms 200]
                            [--env KEY=VALUE ...] [--quick]

Starts Tansu and the Mem0 sandbox (its own process, `latency-ms` per call, delete jobs done
`job-delay-ms` after they are asked), creates the input, DLQ and receipts topics (4 partitions
each) and runs `deletion-consumer run` as a process with its defaults (receipts and
verification on; only the settings bench/e2e.py passes, plus `--env`). Publishing starts once
its /readyz answers 200, so start-up is not measured.

The load: `rate` events a second for `seconds`, each due at start + i/rate on the monotonic
clock (a late one goes at once, so the schedule does not drift), half user deletions, a fifth
session expiries, a tenth compound scopes (ScopeDeleted with user_id and agent_id) and a fifth
explicit ids (MemoriesDeleted, 1 to 10), every subject and id fresh, `occurred_at` the time it
is produced; the producer runs librdkafka's default 5 ms linger, as a publisher would.
Meanwhile a thread reads the receipts topic from the beginning. An event's time from publish
to receipt is its receipt's record timestamp (CreateTime, set by the consumer's producer)
minus its own (from the publisher's delivery report), matched by the receipt's `input`
position: it covers Kafka both ways, the consumer's buffering, its Mem0 calls and its receipt.
Once every event has a receipt (or after a timeout, which says how many are missing), it
prints p50 / p99 / max per type and overall; the same time split at the receipt's
`completed_at` (the consumer's clock at the confirming Mem0 answer: waiting and working, then
writing the receipt); the p99 of each 5 s of publishing (one that climbs is a backlog); Mem0
calls per event (from the sandbox's count, by operation too); the consumer's CPU per event;
and the busy share of a core of the consumer, the sandbox, the broker and this bench over the
publishing window, with the load average (the machine may be shared: a noisy run shows).

The floor, measured in the same run before the load: the calls each type needs made directly
against the sandbox with httpx, one event at a time, several times, the median kept. A user
deletion is the filter delete (a job, polled every 5 ms until SUCCEEDED) beside the delete of
the user's entity, then one listing to verify; a session expiry the same by run_id, with no
entity; a compound scope one AND listing (nothing to delete is its verification); ids one
batch delete and one read back. `p99 - floor` is per type, and overall the overall p99 against
the slowest type's floor: what the consumer adds to what Mem0 itself takes.

`--quick` is the short form CI runs: 5 seconds at 200 events a second; it prints the same and
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.e2e import cpu_seconds, start_sandbox, stats
from consumer.avro.codec import Encoder, SchemaStore
from consumer.avro.receipt_codec import ReceiptDecodeError, ReceiptDecoder
from consumer.core.events import DeletionEvent, EventType, Scope, event_to_record, partition_key
from consumer.kafka.broker import LocalBroker, create_topics, free_port

TP = tuple[int, int]  # (partition, offset) of an input record


class Answer(NamedTuple):
    """What a receipt says of one input record."""

    timestamp_ms: int  # the receipt record's CreateTime
    completed_at_ms: int  # the consumer's clock at the confirming response
    outcome: str


PARTITIONS = 4
FLOOR_ROUNDS = 7
JOB_POLL_S = 0.005
READY_TIMEOUT_S = 60.0
# After the last publish: how long every receipt may take to arrive before the missing are
# counted (far past any p99 worth measuring).
RECEIPT_TIMEOUT_S = 60.0
API_KEY = "sandbox-key"
SLICE_MS = 5000

# Ten slots, shuffled per block of ten: the shares are exact over any whole number of blocks.
MIX = (
    (EventType.USER_DELETED,) * 5
    + (EventType.SESSION_EXPIRED,) * 2
    + (EventType.SCOPE_DELETED,) * 1
    + (EventType.MEMORIES_DELETED,) * 2
)
TYPES = tuple(dict.fromkeys(MIX))


# -- the events -------------------------------------------------------------------------------


def _fresh(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_event(kind: EventType, rng: random.Random) -> DeletionEvent:
    """One event of `kind`, every subject and id in it never seen before."""
    scope: Scope | None = None
    ids: tuple[str, ...] = ()
    if kind is EventType.USER_DELETED:
        scope = Scope.of(user_id=f"user-{_fresh(rng)}")
    elif kind is EventType.SESSION_EXPIRED:
        scope = Scope.of(run_id=f"run-{_fresh(rng)}")
    elif kind is EventType.SCOPE_DELETED:
        scope = Scope.of(user_id=f"user-{_fresh(rng)}", agent_id=f"agent-{_fresh(rng)}")
    else:
        ids = tuple(_fresh(rng) for _ in range(rng.randint(1, 10)))
    return DeletionEvent(
        event_id=_fresh(rng),
        occurred_at_ms=0,  # set when produced
        type=kind,
        scope=scope,
        memory_ids=ids,
        source="bench",
        reason="GDPR",
    )


def kinds(rng: random.Random) -> Iterator[EventType]:
    """The mix, for ever: each block of ten slots in a shuffled order."""
    while True:
        block = list(MIX)
        rng.shuffle(block)
        yield from block


# -- the floor: the calls each type needs, made directly ------------------------------------


async def _job(client: httpx.AsyncClient, method: str, path: str, **params: str) -> None:
    """Start a Platform job and poll it until SUCCEEDED; an entity that is not there (404)
    has no job to wait for."""
    answer = await client.request(method, path, params=params)
    if answer.status_code == 404:
        return
    answer.raise_for_status()
    job_id = answer.json()["event_id"]
    while True:
        await asyncio.sleep(JOB_POLL_S)
        status = await client.get(f"/v1/event/{job_id}/")
        if status.status_code == 404:
            continue  # not readable yet
        status.raise_for_status()
        if status.json()["status"] == "SUCCEEDED":
            return


async def _listing(client: httpx.AsyncClient, scope: Scope) -> None:
    body = {
        "filters": {"AND": [{key: value} for key, value in scope.entities]},
        "show_expired": True,
        "include_merged": True,
    }
    answer = await client.post("/v3/memories/", params={"page": "1", "page_size": "1"}, json=body)
    answer.raise_for_status()


async def _user(client: httpx.AsyncClient, event: DeletionEvent) -> None:
    assert event.scope is not None
    user_id = event.scope.as_dict()["user_id"]
    await asyncio.gather(
        _job(client, "DELETE", "/v1/memories/", user_id=user_id),
        _job(client, "DELETE", f"/v2/entities/user/{user_id}/"),
    )
    await _listing(client, event.scope)


async def _session(client: httpx.AsyncClient, event: DeletionEvent) -> None:
    assert event.scope is not None
    await _job(client, "DELETE", "/v1/memories/", **event.scope.as_dict())
    await _listing(client, event.scope)


async def _compound(client: httpx.AsyncClient, event: DeletionEvent) -> None:
    assert event.scope is not None
    await _listing(client, event.scope)


async def _ids(client: httpx.AsyncClient, event: DeletionEvent) -> None:
    body = {"memories": [{"memory_id": memory_id} for memory_id in event.memory_ids]}
    answer = await client.request("DELETE", "/v1/batch/", json=body)
    answer.raise_for_status()
    back = await client.get(
        f"/v1/memories/{event.memory_ids[0]}/", params={"include_merged": "true"}
    )
    if back.status_code != 404:
        raise RuntimeError(f"read back answered {back.status_code}, not 404")


FLOOR_STEPS: dict[EventType, Callable[[httpx.AsyncClient, DeletionEvent], Awaitable[None]]] = {
    EventType.USER_DELETED: _user,
    EventType.SESSION_EXPIRED: _session,
    EventType.SCOPE_DELETED: _compound,
    EventType.MEMORIES_DELETED: _ids,
}


async def measure_floor(port: int, rng: random.Random) -> dict[EventType, float]:
    """Seconds per type: the median of `FLOOR_ROUNDS` events, one at a time."""
    floors: dict[EventType, float] = {}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Token {API_KEY}"},
        timeout=30,
    ) as client:
        for kind, step in FLOOR_STEPS.items():
            await step(client, make_event(kind, rng))  # warm the connection, not measured
            times = []
            for _ in range(FLOOR_ROUNDS):
                event = make_event(kind, rng)
                started = time.perf_counter()
                await step(client, event)
                times.append(time.perf_counter() - started)
            floors[kind] = statistics.median(times)
    return floors


# -- publishing and receipts ------------------------------------------------------------------


@dataclass
class Published:
    """What the delivery reports said: each record's timestamp and type, by position."""

    records: dict[TP, tuple[int, EventType]] = field(default_factory=dict)
    failed: int = 0


def publish_paced(
    bootstrap: str,
    topic: str,
    *,
    rate: float,
    seconds: float,
    rng: random.Random,
    alive: Callable[[], None],
) -> tuple[Published, float]:
    """Publish the mix at `rate` for `seconds`; the delivery reports and the seconds it took
    from the first event's due time to the last one's produce."""
    encoder = Encoder(SchemaStore.from_directory())
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "log_level": 3}
    )
    published = Published()

    def report(kind: EventType) -> Callable[[Any, Any], None]:
        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                published.failed += 1
                return
            published.records[(message.partition(), message.offset())] = (
                message.timestamp()[1],
                kind,
            )

        return delivered

    total = int(rate * seconds)
    mix = kinds(rng)
    start = time.monotonic()
    last = start
    for i in range(total):
        event = make_event(next(mix), rng)
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        if i % 100 == 0:
            alive()
        record = event_to_record(event)
        record["occurred_at"] = int(time.time() * 1000)
        producer.produce(
            topic,
            key=partition_key(record),
            value=encoder.single_object(record),
            on_delivery=report(event.type),
        )
        producer.poll(0)
        last = time.monotonic()
    producer.flush(60)
    return published, last - start


class ReceiptReader(threading.Thread):
    """Reads the receipts topic from the beginning: each receipt's record timestamp and
    outcome, by the position of the input record it answers (the first one kept)."""

    def __init__(self, bootstrap: str, topic: str, input_topic: str) -> None:
        super().__init__(name="receipts", daemon=True)
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-receipts-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
        )
        self._input_topic = input_topic
        self._decoder = ReceiptDecoder()
        self._stopping = threading.Event()
        self.receipts: dict[TP, Answer] = {}
        self.undecodable = 0

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                for message in self._consumer.consume(1000, timeout=0.1):
                    if message.error() is not None:
                        continue
                    try:
                        receipt = self._decoder.decode(message.value())
                    except ReceiptDecodeError:
                        self.undecodable += 1
                        continue
                    if receipt.input.topic != self._input_topic:
                        continue
                    position = (receipt.input.partition, receipt.input.offset)
                    answer = Answer(
                        message.timestamp()[1], receipt.completed_at_ms, receipt.outcome
                    )
                    self.receipts.setdefault(position, answer)
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(10)
        else:
            self._consumer.close()  # never started: run() did not close it


# -- the consumer -----------------------------------------------------------------------------


def start_consumer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "consumer", "run"], env=env)


def wait_ready(consumer: subprocess.Popen[bytes], metrics_port: int) -> float:
    """Seconds until /readyz answers 200 (an assignment, nothing halted)."""
    started = time.monotonic()
    while True:
        if consumer.poll() is not None:
            raise RuntimeError(f"the consumer exited with {consumer.returncode} before ready")
        try:
            answer = httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=1)
            if answer.status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > READY_TIMEOUT_S:
            raise RuntimeError(f"the consumer was not ready after {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def calls_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {op: n - before.get(op, 0) for op, n in after.items() if n - before.get(op, 0) > 0}


# -- the report -------------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks of sorted samples."""
    if not ordered:
        return float("nan")
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def print_report(
    published: Published,
    receipts: dict[TP, Answer],
    floors: dict[EventType, float],
) -> None:
    by_type: dict[EventType, list[float]] = {kind: [] for kind in TYPES}
    # The same time in two parts: until the work was done (the receipt's completed_at), and
    # from then until the receipt was produced.
    working: dict[EventType, list[float]] = {kind: [] for kind in TYPES}
    writing: dict[EventType, list[float]] = {kind: [] for kind in TYPES}
    # By when it was published: a p99 that climbs slice after slice is a backlog building.
    slices: dict[int, list[float]] = {}
    first_ms = min((sent_ms for sent_ms, _ in published.records.values()), default=0)
    outcomes: Counter[str] = Counter()
    missing: Counter[EventType] = Counter()
    for position, (sent_ms, kind) in published.records.items():
        answer = receipts.get(position)
        if answer is None:
            missing[kind] += 1
            continue
        outcomes[answer.outcome] += 1
        by_type[kind].append(float(answer.timestamp_ms - sent_ms))
        working[kind].append(float(answer.completed_at_ms - sent_ms))
        writing[kind].append(float(answer.timestamp_ms - answer.completed_at_ms))
        slices.setdefault((sent_ms - first_ms) // SLICE_MS, []).append(
            float(answer.timestamp_ms - sent_ms)
        )
    overall = sorted(ms for samples in by_type.values() for ms in samples)
    slowest_floor_ms = max(floors.values()) * 1000
    print(
        f"\n  {'publish -> receipt':<18} {'events':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'floor ms':>9} {'p99-floor':>10}"
    )
    for kind in TYPES:
        ordered = sorted(by_type[kind])
        floor_ms = floors[kind] * 1000
        print_row(kind.value, ordered, floor_ms)
    print_row("overall", overall, slowest_floor_ms)
    print(f"  outcomes: {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}")
    if missing:
        detail = ", ".join(f"{k.value} {v}" for k, v in missing.items())
        print(f"  MISSING receipts: {sum(missing.values())} ({detail})")
    if overall:
        print(
            "  split, p50/p99 ms: publish -> work done (receipt's completed_at) | done -> receipt"
        )
        for kind in TYPES:
            done, written = sorted(working[kind]), sorted(writing[kind])
            print(
                f"    {kind.value:<18} {percentile(done, 0.5):>6.0f} / "
                f"{percentile(done, 0.99):<6.0f} | {percentile(written, 0.5):>6.0f} / "
                f"{percentile(written, 0.99):.0f}"
            )
        trend = " ".join(f"{percentile(sorted(slices[n]), 0.99):.0f}" for n in sorted(slices))
        print(f"  p99 ms by {SLICE_MS // 1000} s of publishing: {trend}")
    floor_text = ", ".join(f"{kind.value} {floors[kind] * 1000:.0f} ms" for kind in TYPES)
    print(
        f"  floor (direct calls, one event at a time, median of {FLOOR_ROUNDS}): {floor_text}; "
        f"slowest {slowest_floor_ms:.0f} ms"
    )
    if overall:
        gap = percentile(overall, 0.99) - slowest_floor_ms
        print(f"\np99 within {gap:.0f} ms of the floor (target 150 ms)")


def print_row(label: str, ordered: list[float], floor_ms: float) -> None:
    p99 = percentile(ordered, 0.99)
    print(
        f"  {label:<18} {len(ordered):>7} {percentile(ordered, 0.5):>8.0f} {p99:>8.0f} "
        f"{(ordered[-1] if ordered else float('nan')):>8.0f} {floor_ms:>9.0f} "
        f"{p99 - floor_ms:>10.0f}"
    )


# -- main -------------------------------------------------------------------------------------


def consumer_env(
    bootstrap: str,
    topics: tuple[str, str, str],
    sandbox_port: int,
    metrics_port: int,
    extra: list[str],
) -> dict[str, str]:
    """The consumer's defaults, with only the settings bench/e2e.py passes too."""
    topic, dlq, receipts = topics
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": f"latency-{uuid.uuid4().hex[:8]}",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DELETION_TOPICS": topic,
        "DLQ_TOPIC": dlq,
        "RECEIPTS_TOPIC": receipts,
        "MEM0_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
        "MEM0_API_KEY": API_KEY,
        "METRICS_PORT": str(metrics_port),
        "LOG_LEVEL": "WARNING",
        **dict(kv.split("=", 1) for kv in extra),
    }


def run(args: argparse.Namespace) -> None:
    rng = random.Random(17)
    sandbox_port = free_port()
    sandbox = start_sandbox(sandbox_port, args.latency_ms, args.job_delay_ms)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {os.cpu_count()} cores; "
        f"sandbox latency {args.latency_ms} ms, jobs done after {args.job_delay_ms} ms; "
        f"{args.rate:g} events/s for {args.seconds:g} s; {PARTITIONS} partitions",
        flush=True,
    )
    try:
        with LocalBroker() as broker:
            suffix = uuid.uuid4().hex[:8]
            topics = (f"latency.{suffix}", f"latency.{suffix}.dlq", f"latency.{suffix}.receipts")
            create_topics(broker.bootstrap, topics, partitions=PARTITIONS)
            floors = asyncio.run(measure_floor(sandbox_port, rng))
            metrics_port = free_port()
            env = consumer_env(broker.bootstrap, topics, sandbox_port, metrics_port, args.env)
            consumer = start_consumer(env)
            reader = ReceiptReader(broker.bootstrap, topics[2], topics[0])
            try:
                ready_s = wait_ready(consumer, metrics_port)
                print(f"  consumer ready after {ready_s:.1f} s", flush=True)
                reader.start()  # before publishing: it reads from the beginning all the same

                def alive() -> None:
                    if consumer.poll() is not None:
                        raise RuntimeError(f"the consumer exited with {consumer.returncode}")

                calls_before = stats(sandbox_port)["calls_by_operation"]
                # The others' share too: on a shared machine it tells a slow run from noise.
                pids = (consumer.pid, sandbox.pid, broker.pid)
                cpu_before = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
                published, took_s = publish_paced(
                    broker.bootstrap,
                    topics[0],
                    rate=args.rate,
                    seconds=args.seconds,
                    rng=rng,
                    alive=alive,
                )
                cpu_after = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
                busy = [(b - a) for a, b in zip(cpu_before, cpu_after, strict=True)]
                cpu_during = busy[0]
                events = len(published.records)
                deadline = time.monotonic() + RECEIPT_TIMEOUT_S
                while time.monotonic() < deadline and not published.records.keys() <= (
                    reader.receipts.keys()
                ):
                    alive()
                    time.sleep(0.1)
                calls = calls_between(calls_before, stats(sandbox_port)["calls_by_operation"])
            finally:
                try:
                    reader.stop()
                finally:
                    consumer.send_signal(signal.SIGTERM)
                    consumer.wait(60)
    finally:
        sandbox.terminate()
        sandbox.wait()

    print(
        f"  published {events} events in {took_s:.1f} s: {events / took_s:.1f} events/s "
        f"(asked {args.rate:g})"
        + (f"; {published.failed} NOT delivered" if published.failed else "")
    )
    print_report(published, dict(reader.receipts), floors)
    total_calls = sum(calls.values())
    by_op = ", ".join(f"{op} {n / events:.2f}" for op, n in sorted(calls.items()))
    print(f"  Mem0 calls per event: {total_calls / events:.2f} ({by_op})")
    print(
        f"  consumer CPU: {cpu_during * 1e6 / events:.0f} µs per event, "
        f"{cpu_during / took_s:.0%} of a core while publishing"
    )
    print(
        "  busy share of a core while publishing: "
        + ", ".join(
            f"{name} {seconds / took_s:.0%}"
            for name, seconds in zip(
                ("consumer", "sandbox", "broker", "this bench"), busy, strict=True
            )
        )
        + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=None, help="events/s (default 400)")
    parser.add_argument("--seconds", type=float, default=None, help="default 30")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--job-delay-ms", type=float, default=200.0)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the consumer")
    parser.add_argument("--quick", action="store_true", help="5 s at 200 events/s, for CI")
    args = parser.parse_args()
    if args.rate is None:
        args.rate = 200.0 if args.quick else 400.0
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 30.0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
