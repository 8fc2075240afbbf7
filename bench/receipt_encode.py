"""Receipt encode throughput: fastavro against the specialised writer on the same receipts.

    .venv/bin/python -m bench.receipt_encode [--receipts 100000] [--repeat 3]

(a) is what the encoder did before: `Receipt.to_record()`, then fastavro's schemaless_writer.
(b) is consumer/avro/receipt_writer.py's `receipt_body`, the dataclass straight to the same
bytes. (a') and (b') are the same through `ReceiptEncoder`, single-object framed, as the
receipt sink writes without a registry, and (b') also as `encode_many` framing batches of 1000
for a registry. The mix is what a consumer writes: a completed user deletion (delete_all and
the entity's delete, both Platform jobs), a completed delete_ids, a dead-lettered scope
deletion and a duplicate, in equal parts. Prints receipts/s (best of --repeat) and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import cpu_rates
from consumer.avro.codec import encode_record
from consumer.avro.receipt_codec import ReceiptEncoder
from consumer.avro.receipt_writer import receipt_body
from consumer.core.events import DeletionEvent, EventType, Scope
from consumer.core.planner import DeleteAll, DeleteEntity, DeleteIds, ResolveScope
from consumer.core.receipts import (
    Position,
    Receipt,
    completed,
    dead_lettered,
    duplicate,
    operation_report,
)

GROUP = "mem0-deletion-consumer"
TOPIC = "memory.deletions"
T0 = 1_700_000_000_000


class _Registrar:
    def register(self, subject: str, schema: str) -> int:
        return 1


def _receipts(n: int, rng: random.Random) -> list[Receipt]:
    """`n` receipts, the four kinds in turn, at advancing offsets of six partitions."""

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def event(kind: EventType, scope: Scope | None, ids: tuple[str, ...] = ()) -> DeletionEvent:
        return DeletionEvent(
            event_id=uid(),
            occurred_at_ms=T0 + rng.randrange(10**9),
            type=kind,
            scope=scope,
            memory_ids=ids,
            source="accounts",
            reason=rng.choice(["GDPR", "CCPA", "USER_REQUEST"]),
            informational_user_id=None if scope is not None else f"user-{rng.randrange(10**4)}",
        )

    offsets = [rng.randrange(10**7) for _ in range(6)]

    def position() -> Position:
        partition = rng.randrange(6)
        offsets[partition] += 1
        return Position(TOPIC, partition, offsets[partition])

    out: list[Receipt] = []
    while len(out) < n:
        user = Scope.of(user_id=f"user-{rng.randrange(10**4)}")
        erased = event(EventType.USER_DELETED, user)
        done = erased.occurred_at_ms + rng.randrange(500, 30_000)
        jobs = [
            operation_report(op, calls=3, last_http_status=200, job_id=uid(), verified=True)
            for op in (DeleteAll(user, (0,)), DeleteEntity(user, (0,)))
        ]
        user_receipt = completed(
            erased, jobs, completed_at_ms=done, group=GROUP, position=position()
        )

        ids = tuple(uid() for _ in range(rng.randint(1, 5)))
        forgotten = event(EventType.MEMORIES_DELETED, None, ids)
        by_id = operation_report(
            DeleteIds.of(ids, [(0,)] * len(ids)),
            calls=2,
            last_http_status=200,
            job_id=None,
            verified=True,
        )
        ids_receipt = completed(
            forgotten,
            [by_id],
            completed_at_ms=forgotten.occurred_at_ms + rng.randrange(50, 2_000),
            group=GROUP,
            position=position(),
        )

        scope = Scope.of(user_id="u", agent_id="support-bot", metadata={"topic": "billing"})
        refused = event(EventType.SCOPE_DELETED, scope)
        listing = operation_report(
            ResolveScope(scope, (0,)), calls=7, last_http_status=503, job_id=None, verified=False
        )
        dead = dead_lettered(
            refused,
            [listing],
            dlq_reason="retries_exhausted",
            failed_at_ms=refused.occurred_at_ms + 60_000,
            group=GROUP,
            position=position(),
        )

        out += (user_receipt, ids_receipt, dead, duplicate(user_receipt, position()))
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.receipts, args.repeat

    receipts = _receipts(n, random.Random(42))
    encoder = ReceiptEncoder()
    assert encoder.specialised, "the shipped schema is not the one receipt_writer.py writes"
    schema = encoder.schema
    via_fastavro = ReceiptEncoder()
    via_fastavro._body = via_fastavro._fastavro_body  # the encoder as it was: fastavro bodies
    registered = ReceiptEncoder(registry=_Registrar(), subject="receipts-value")
    batches = [receipts[i : i + 1000] for i in range(0, n, 1000)]

    def encode_batches() -> list[list[bytes]]:
        async def run() -> list[list[bytes]]:
            return [await registered.encode_many(batch) for batch in batches]

        return asyncio.run(run())

    bodies = [encode_record(r.to_record(), schema) for r in receipts]
    assert [receipt_body(r) for r in receipts] == bodies
    assert list(map(encoder.single_object, receipts)) == list(
        map(via_fastavro.single_object, receipts)
    )

    runs: dict[str, Callable[[], object]] = {
        "(a) fastavro: to_record + schemaless_writer": lambda: [
            encode_record(r.to_record(), schema) for r in receipts
        ],
        "(b) receipt_writer.receipt_body": lambda: list(map(receipt_body, receipts)),
        "(a') ReceiptEncoder.single_object, fastavro bodies": lambda: list(
            map(via_fastavro.single_object, receipts)
        ),
        "(b') ReceiptEncoder.single_object": lambda: list(map(encoder.single_object, receipts)),
        "(b') ReceiptEncoder.encode_many, Confluent, batches of 1000": encode_batches,
    }
    rows = list(cpu_rates(runs, n, repeat).items())
    bare = rows[0][1]
    size = sum(map(len, bodies)) / n
    python = sys.version.split()[0]
    print(f"{n} mixed receipts (~{size:.0f} bytes each), best of {repeat}; Python {python}")
    for label, rate in rows:
        print(f"{label:<60} {rate:>10,.0f} receipts/s   {rate / bare:5.2f}x (a)")


if __name__ == "__main__":
    main()
