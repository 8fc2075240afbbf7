"""The chaos run: every fault a production consumer meets, checked from outside.

Seeds the Mem0 sandbox, publishes a mixed stream with about 1% poison, then runs the real
consumer as subprocesses (`python -m consumer run`) while the sandbox injects 5xx, 429 with
Retry-After, latency spikes, failing jobs and an outage, the consumer is killed with SIGKILL at
several points of progress and restarted, and a second member joins the group and leaves.
When every offset is committed it checks, from the sandbox's store and call log, the DLQ and the
committed offsets alone:

- every valid event's memories are gone; no memory outside what some event asked for is gone;
- every poison event is in the DLQ (once or more) with its reason, and no valid event is;
- no delete_all without an identifier or with several;
- every offset is committed.

Short form in tests/integration/test_chaos.py; long form: `python -m bench.chaos`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.avro.codec import Encoder, SchemaStore
from consumer.core.events import DeletionEvent, EventType, Scope, event_to_record, partition_key
from consumer.kafka.broker import committed_positions, create_topics
from consumer.sandbox import Faults, Sandbox
from tests.support.harness import TP, header_dict, new_topics, publish, read_all

_ENCODER = Encoder(SchemaStore.from_directory())


@dataclass
class ChaosConfig:
    events: int = 3000
    kills: int = 2
    outage_s: float = 3.0
    poison_share: float = 0.01
    error_rate: float = 0.2
    rate_limit_rate: float = 0.05
    retry_after_s: int = 1
    latency_ms: float = 1.0
    latency_jitter_ms: float = 20.0
    job_fail_rate: float = 0.1
    job_delay_ms: float = 20.0
    partitions: int = 4
    seed: int = 20261123
    timeout_s: float = 600.0


@dataclass
class ChaosReport:
    events: int = 0
    poison: int = 0
    kills: int = 0
    restarts: int = 0
    outage_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    duplicate_deletes: int = 0
    dead_letters: int = 0
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)  # what the harness did, and when

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        calls = ", ".join(f"{k} {v}" for k, v in sorted(self.calls.items()))
        return (
            f"events {self.events} (poison {self.poison}); SIGKILLs {self.kills}, "
            f"restarts {self.restarts}; outage {self.outage_s:.0f} s; faults injected: {faults}; "
            f"calls: {calls}; ids or scopes deleted more than once: {self.duplicate_deletes}; "
            f"dead letters {self.dead_letters}; wall {self.wall_s:.1f} s; "
            f"problems: {len(self.problems)}"
        )


@dataclass
class _Workload:
    events: list[DeletionEvent]
    values: list[tuple[bytes | None, bytes]]
    poison: dict[str, str]  # event id -> expected dead-letter reason
    poison_ids: frozenset[str]


def _make_workload(
    sandbox: Sandbox, cfg: ChaosConfig, rng: random.Random
) -> tuple[_Workload, dict[str, dict[str, Any]]]:
    users = max(20, cfg.events // 3)
    rows: list[dict[str, Any]] = []
    for u in range(users):
        user = f"user-{u}"
        rows += [{"user_id": user, "agent_id": "assistant", "memory": "m"}] * 2
        for r in range(2):
            rows += [{"user_id": user, "run_id": f"run-{u}-{r}", "memory": "m"}] * 2
        rows.append({"user_id": user, "agent_id": "support", "metadata": {"topic": "billing"}})
    ids = sandbox.add_memories(rows)
    store = {i: {**row, "id": i} for i, row in zip(ids, rows, strict=True)}
    # Poison ids among the memories no compound scope reaches: a compound scope is resolved to
    # ids, so a poison id inside one would (rightly) dead-letter that valid event too.
    plain = [i for i, row in zip(ids, rows, strict=True) if row.get("agent_id") == "assistant"]
    poison_ids = frozenset(rng.sample(plain, max(1, int(cfg.events * cfg.poison_share / 2))))
    clean_ids = [i for i in ids if i not in poison_ids]

    def make(kind: EventType, **fields: Any) -> DeletionEvent:
        memory_ids = tuple(fields.pop("memory_ids", ()))
        return DeletionEvent(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            occurred_at_ms=int(time.time() * 1000),
            type=kind,
            scope=None if kind is EventType.MEMORIES_DELETED else Scope.of(**fields),
            memory_ids=memory_ids,
            source="chaos",
        )

    events: list[DeletionEvent] = []
    poison: dict[str, str] = {}
    spare_poison = list(poison_ids)
    for _ in range(cfg.events):
        u = rng.randrange(users)
        draw = rng.random()
        if draw < cfg.poison_share:
            if spare_poison and rng.random() < 0.5:
                bad = make(
                    EventType.MEMORIES_DELETED,
                    memory_ids=[spare_poison.pop(), rng.choice(clean_ids)],
                )
                poison[bad.event_id] = "rejected"
            else:
                bad = make(EventType.USER_DELETED, user_id="*")
                poison[bad.event_id] = "invalid_scope"
            events.append(bad)
        elif draw < 0.30:
            events.append(make(EventType.USER_DELETED, user_id=f"user-{u}"))
        elif draw < 0.55:
            run = f"run-{u}-{rng.randrange(2)}"
            extra = {"user_id": f"user-{u}"} if rng.random() < 0.3 else {}
            events.append(make(EventType.SESSION_EXPIRED, run_id=run, **extra))
        elif draw < 0.70:
            events.append(
                make(
                    EventType.SCOPE_DELETED,
                    user_id=f"user-{u}",
                    agent_id="support",
                    metadata={"topic": "billing"},
                )
            )
        else:
            k = rng.randint(1, 10)
            events.append(make(EventType.MEMORIES_DELETED, memory_ids=rng.sample(clean_ids, k)))
        if rng.random() < 0.05:  # a re-delivery
            events.append(events[-1])
    values = [(partition_key(event_to_record(e)), _ENCODER.single_object(e)) for e in events]
    return _Workload(events, values, poison, poison_ids), store


class _Member:
    """One consumer process of the group."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str) -> None:
        self._env = env
        self._log_dir = log_dir
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self._log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"], env=self._env, stdout=log, stderr=log
        )
        log.close()

    def assigned(self) -> bool:
        """Whether the current process has logged an assignment (it is working)."""
        log = self._log_dir / f"{self.name}-{self.starts}.log"
        return log.exists() and b"partitions assigned" in log.read_bytes()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _progress(bootstrap: str, group: str, ends: dict[TP, int]) -> float:
    committed = committed_positions(bootstrap, group, ends)
    done = sum(max(0, min(committed.get(tp, 0), end)) for tp, end in ends.items())
    return done / max(1, sum(ends.values()))


def run_chaos(bootstrap: str, cfg: ChaosConfig, log_dir: Path) -> ChaosReport:
    rng = random.Random(cfg.seed)
    report = ChaosReport()
    topics = new_topics()
    create_topics(bootstrap, [topics.input, topics.dlq], partitions=cfg.partitions)
    faults = Faults(
        error_rate=cfg.error_rate,
        rate_limit_rate=cfg.rate_limit_rate,
        retry_after_s=cfg.retry_after_s,
        latency_ms=cfg.latency_ms,
        latency_jitter_ms=cfg.latency_jitter_ms,
        job_fail_rate=cfg.job_fail_rate,
        job_delay_ms=cfg.job_delay_ms,
    )
    started = time.monotonic()
    with Sandbox(seed=cfg.seed) as sandbox:
        workload, store = _make_workload(sandbox, cfg, rng)
        sandbox.set_faults(poison_ids=workload.poison_ids)
        report.events = len(workload.events)
        report.poison = len(workload.poison)
        ends = publish(bootstrap, topics.input, workload.values)
        sandbox.set_faults(**{k: getattr(faults, k) for k in _FAULT_FIELDS})

        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": topics.group,
            "KAFKA_SESSION_TIMEOUT_MS": "3000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "DELETION_TOPICS": topics.input,
            "DLQ_TOPIC": topics.dlq,
            "RECEIPTS_TOPIC": "",
            "MEM0_BASE_URL": sandbox.url,
            "MEM0_API_KEY": sandbox.api_key,
            "METRICS_PORT": "0",
            "FLUSH_MAX_WAIT_MS": "50",
            "COMMIT_INTERVAL_MS": "200",
            "MEM0_JOB_POLL_INTERVAL_MS": "20",
            "RETRY_BASE_MS": "50",
            "RETRY_CAP_S": "2",
            "RETRY_AFTER_CAP_S": "5",
            "SHUTDOWN_TIMEOUT_S": "10",
            "LOG_LEVEL": "INFO",
        }
        first, second = _Member(env, log_dir, "a"), _Member(env, log_dir, "b")
        first.start()
        # Milestones of committed progress at which something bad happens.
        # Milestones are shares of the Mem0 calls the run is expected to make (about 1.5 per
        # event), read cheaply from the sandbox, and early: a kill or an outage stalls the work
        # for seconds, so the later milestones are still ahead when it resumes.
        expected_calls = 1.5 * len(workload.events)
        kill_at = sorted(rng.uniform(0.05, 0.5) for _ in range(cfg.kills))
        join_at, outage_at, leave_at = 0.1, 0.2, 0.4
        outage_until: float | None = None
        outage_done = holding = second_left = second_gone = False
        changed_at = 0.0  # when the group's membership last changed
        progress = share = 0.0

        def mark(what: str) -> None:
            elapsed = time.monotonic() - started
            report.timeline.append(
                f"{elapsed:.1f} s, calls {share:.2f}, committed {progress:.2f}: {what}"
            )

        deadline = time.monotonic() + cfg.timeout_s
        next_check = 0.0
        resumed_at = 0.0
        last_calls, last_change = 0, time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now >= next_check:
                    progress = _progress(bootstrap, topics.group, ends)
                    if progress >= 1.0:
                        mark("drained")
                        break
                    next_check = time.monotonic() + 0.5
                if now > deadline:
                    report.problems.append(f"not drained in {cfg.timeout_s} s")
                    break
                calls = sandbox.stats()["calls"]
                share = calls / expected_calls
                # The next kill only once the restarted member holds partitions again (Tansu
                # can leave a group stuck for good when members die in mid-rebalance).
                # A fast machine could drain the topic before the restarted member rejoins:
                # past half the events, hold the sandbox down (503s) until every planned
                # kill has happened, so the run always has the kills it was asked for.
                if kill_at and progress >= _HOLD_AT and not holding:
                    holding = True
                    sandbox.set_faults(outage=True)
                    mark("hold")
                # Nor while the group may be rebalancing: Tansu can also lose a group when a
                # member dies while another one leaves.
                if second_left and not second_gone and second.exited():
                    second_gone, changed_at = True, now
                settled = now - changed_at >= _SETTLE_S and second_gone == second_left
                if (
                    kill_at
                    and share >= kill_at[0]
                    and first.assigned()
                    and settled
                    and (calls >= resumed_at or holding)
                ):
                    kill_at.pop(0)
                    first.kill()
                    mark("kill a")
                    report.kills += 1
                    first.start()
                    report.restarts += 1
                    changed_at = now
                    resumed_at = calls + 0.02 * expected_calls
                if holding and not kill_at:
                    holding = False
                    if outage_until is None or outage_done:  # not inside the planned outage
                        sandbox.set_faults(outage=False)
                        mark("release hold")
                if calls > last_calls:
                    last_calls, last_change = calls, now
                elif now - last_change > 120:
                    report.problems.append("no Mem0 call for 120 s: stalled")
                    break
                if second.starts == 0 and share >= join_at:
                    second.start()
                    changed_at = now
                    mark("start b")
                # It leaves once it works: a SIGTERM before its handlers are installed would
                # kill it outright (exit -15), which is not the graceful leave this tests.
                if second.starts and not second_left and share >= leave_at and second.assigned():
                    second_left, changed_at = True, now
                    second.terminate()  # it drains in its own time; the loop goes on
                    mark("stop b")
                if outage_until is None and share >= outage_at and cfg.outage_s > 0:
                    sandbox.set_faults(outage=True)
                    mark("outage")
                    outage_until = now + cfg.outage_s
                if (
                    outage_until is not None
                    and not outage_done
                    and now >= outage_until
                    # Not over before the consumer has met it (it may have been rejoining).
                    and any(c["fault"] == "outage" for c in sandbox.calls()[-50:])
                ):
                    outage_done = True
                    if not holding:
                        sandbox.set_faults(outage=False)
                        mark("outage over")
                    report.outage_s = now - outage_until + cfg.outage_s
                time.sleep(0.05)
        finally:
            sandbox.set_faults(outage=False)
            for member in (first, second):
                code = member.stop()
                if code not in (None, 0):
                    report.problems.append(f"consumer {member.name} exited {code}")
        report.wall_s = time.monotonic() - started
        _verify(report, bootstrap, topics.dlq, topics.group, ends, workload, store, sandbox)
    return report


_SETTLE_S = 3.0  # the members' session timeout: a rebalance is over by then
_HOLD_AT = 0.5  # share of the committed events past which pending kills hold the work
_ENTITIES = ("user_id", "agent_id", "run_id", "app_id")
_FAULT_FIELDS = (
    "error_rate",
    "rate_limit_rate",
    "retry_after_s",
    "latency_ms",
    "latency_jitter_ms",
    "job_fail_rate",
    "job_delay_ms",
)


def _verify(  # noqa: PLR0917 - one call site
    report: ChaosReport,
    bootstrap: str,
    dlq: str,
    group: str,
    ends: dict[TP, int],
    workload: _Workload,
    store: dict[str, dict[str, Any]],
    sandbox: Sandbox,
) -> None:
    problems = report.problems
    left = {m["id"] for m in sandbox.memories()}
    gone = set(store) - left

    # Memories by each (identifier, value), so a scope's candidates are one lookup away (a
    # scan of the store per event would be quadratic at the long form's size).
    index: dict[tuple[str, str], list[str]] = {}
    for memory_id, memory in store.items():
        for key in _ENTITIES:
            if memory.get(key):
                index.setdefault((key, memory[key]), []).append(memory_id)

    def asked(event: DeletionEvent) -> set[str]:
        scope = event.scope
        if scope is not None:
            if not scope.entities:
                return set()
            candidates = index.get(scope.entities[0], [])
            return {i for i in candidates if scope.matches(store[i])}
        return set(event.memory_ids) & store.keys()

    valid = [e for e in workload.events if e.event_id not in workload.poison]
    must_go = set().union(*(asked(e) for e in valid)) if valid else set()
    # A poison id may still go, with a scope that covers it (the sandbox refuses it by id only).
    may_go = must_go | set().union(*(asked(e) for e in workload.events))
    if missing := must_go - gone:
        problems.append(f"{len(missing)} memories a valid event asked for are still there")
    if extra := gone - may_go:
        problems.append(f"{len(extra)} memories no event asked for were deleted")

    # A poison event may be dead-lettered more than once (redone after a kill): read them all.
    letters = read_all(bootstrap, dlq, expected=len(workload.poison), timeout_s=30, idle_s=2.0)
    report.dead_letters = len(letters)
    reasons: dict[str, set[str]] = {}
    for letter in letters:
        headers = header_dict(letter)
        event_id = (headers.get("dlq.event_id") or b"").decode()
        reasons.setdefault(event_id, set()).add((headers.get("dlq.reason") or b"").decode())
    for event_id, reason in workload.poison.items():
        if reason not in reasons.get(event_id, set()):
            problems.append(f"poison event not dead-lettered as {reason}")
    if unexpected := set(reasons) - set(workload.poison):
        why = Counter(r for event_id in unexpected for r in reasons[event_id])
        problems.append(f"{len(unexpected)} valid events were dead-lettered: {dict(why)}")

    calls = sandbox.calls()
    report.calls = Counter(c["operation"] for c in calls)
    report.faults = Counter(c["fault"] for c in calls if c["fault"])
    for call in calls:
        if call["operation"] == "delete_all":
            identifiers = [
                k for k in ("user_id", "agent_id", "run_id", "app_id") if k in call["query"]
            ]
            if len(identifiers) != 1:
                problems.append(f"a delete_all with identifiers {identifiers}")
    deleted_ids = Counter(
        m["memory_id"]
        for c in calls
        if c["operation"] == "batch_delete" and c["status"] == 200
        for m in c["body"]["memories"]
    )
    scopes = Counter(
        tuple(sorted(c["query"].items()))
        for c in calls
        if c["operation"] == "delete_all" and c["status"] == 200
    )
    report.duplicate_deletes = sum(n - 1 for n in deleted_ids.values() if n > 1) + sum(
        n - 1 for n in scopes.values() if n > 1
    )

    committed = committed_positions(bootstrap, group, ends)
    if any(committed.get(tp, -1) < end for tp, end in ends.items()):
        problems.append(f"offsets not all committed: {committed} < {ends}")
