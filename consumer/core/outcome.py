"""What carrying out one planned operation came to, as the executor reports it.

Kept apart from the executor so that the per-flush ledger (`ledger.py`), which only reads
these, stays in the pure core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.core.dlq import DlqReason
from consumer.core.planner import Ref

__all__ = ["Failure", "Outcome"]


@dataclass(slots=True)
class Failure:
    """Why an event could not be served; becomes its dead-letter headers."""

    reason: DlqReason  # REJECTED, RETRIES_EXHAUSTED or VERIFICATION_FAILED
    message: str
    attempts: int
    http_status: int | None = None


@dataclass(slots=True)
class Outcome:
    """What an operation did: the events it failed (none on success), and the calls it made."""

    failures: dict[Ref, Failure] = field(default_factory=dict)
    calls: int = 0
    finished_at: float = 0.0  # wall clock of the confirming response
    last_status: int | None = None  # the last HTTP status Mem0 answered (None: no answer)
    job_id: str | None = None  # the last delete_all job watched, on the Platform
    verified: bool = False  # checked afterwards: nothing it deleted is left
    # A linked delete: per event, the superseded memories that went with its ids.
    cascades: dict[Ref, int] | None = None
