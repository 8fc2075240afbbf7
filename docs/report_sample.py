"""The README's sample report: three days of a small deployment, made up, then rendered.

    .venv/bin/python docs/report_sample.py     # the text form on stdout; writes report-sample.html

The receipts are synthetic (no broker needed), but the figures come from the real tally and the
page from the real renderer, so the sample is what `deletion-consumer report` prints for such a
topic.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from pathlib import Path

from consumer.core.erasure_report import DAY_MS, DeadLetterSpot, ReceiptSeen, ScanFacts
from consumer.core.erasure_tally import tally
from consumer.report.html import render_html
from consumer.report.text import render_text

HOUR_MS = 3_600_000
NOW_MS = 1_764_590_400_000  # 2025-12-01T12:00Z
KINDS = (
    ("user_deleted", "GDPR", "accounts"),
    ("session_expired", "RETENTION", "chat-api"),
    ("memories_deleted", "USER_REQUEST", "support-desk"),
)


def main() -> None:
    rng = random.Random(3)
    receipts: list[ReceiptSeen] = []

    def add(kind: tuple[str, str, str], occurred: int, done: int, **fields: object) -> ReceiptSeen:
        offset = len(receipts) + 1
        receipt = ReceiptSeen(
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "COMPLETED",
            *kind,
            occurred,
            done,
            True,
            None,
            "memory.deletions",
            offset % 6,
            offset,
            offset % 6,
            offset,
        )
        receipt = replace(receipt, **fields)  # type: ignore[arg-type]
        receipts.append(receipt)
        return receipt

    for day in range(3):
        for n in range(40 + 10 * day):
            occurred = NOW_MS - (3 - day) * DAY_MS + n * 600_000
            add(rng.choice(KINDS), occurred, occurred + rng.randint(400, 3000))
            receipts[-1] = replace(receipts[-1], verified=rng.random() > 0.05)
    # Dead-lettered (Mem0 failing for longer than the retries), replayed 7 hours later, done.
    failed_at = NOW_MS - 2 * DAY_MS - 5 * HOUR_MS
    first = add(KINDS[0], failed_at, failed_at + 900)
    receipts[-1] = replace(first, outcome="DEAD_LETTERED", dlq_reason="retries_exhausted")
    add(KINDS[0], failed_at, NOW_MS - 2 * DAY_MS + 2 * HOUR_MS, event_id=first.event_id)
    # Refused by Mem0 and still on the DLQ.
    refused = add(("scope_deleted", "CCPA", "crm"), NOW_MS - 30 * HOUR_MS, NOW_MS - 30 * HOUR_MS)
    receipts[-1] = replace(refused, outcome="DEAD_LETTERED", dlq_reason="rejected")
    letters = {
        ("memory.deletions", refused.input_partition, refused.input_offset): DeadLetterSpot(
            4, 17, "rejected", "2025-11-30T06:00:01Z", 0
        )
    }
    report = tally(
        receipts,
        letters,
        now_ms=NOW_MS,
        since_ms=NOW_MS - 3 * DAY_MS,
        until_ms=NOW_MS,
        deadline_ms=30 * DAY_MS,
        target_ms=24 * HOUR_MS,
        scan=ScanFacts(
            "memory.deletions.receipts", "memory.deletions.dlq", len(receipts), 0, 3, None
        ),
    )
    print(render_text(report))
    (Path(__file__).parent / "report-sample.html").write_text(render_html(report), encoding="utf-8")


if __name__ == "__main__":
    main()
