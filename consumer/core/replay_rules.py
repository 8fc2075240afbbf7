"""What `replay` does with one dead letter, and how it rewrites it.

A dead letter's headers are the original record's headers, unchanged and first, then the `dlq.*`
headers of the failure (README "Dead letters"). Replaying it republishes the original headers
byte for byte, in order, without any `dlq.*` header, plus `dlq.replay.count`: one more than the
count the original headers already carried (a record replayed, failed again and dead-lettered
again keeps its replay count among its original headers). The loop guard refuses a record whose
count has reached `max_replays`, so a poison event cannot circle for ever.

Each selection of dead letters (its filters) keeps its own cursor, a consumer group named by
`cursor_group`: re-running the same replay picks up where it stopped and republishes nothing it
already did, and a narrow replay (one reason, one event id) never moves the cursor of another.

No clock, no I/O: the caller passes `now`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum

from consumer.core.dlq import DlqReason

__all__ = [
    "DLQ_PREFIX",
    "REPLAY_COUNT_HEADER",
    "Letter",
    "Pacer",
    "Selection",
    "Tally",
    "Verdict",
    "cursor_group",
    "decide",
    "parse_when",
    "replay_headers",
]

DLQ_PREFIX = "dlq."
REPLAY_COUNT_HEADER = "dlq.replay.count"
DEFAULT_MAX_REPLAYS = 3

Headers = Sequence[tuple[str, bytes | None]]

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC when it names no offset) or a duration before `now` (`2h`, `1d12h`).

    Raises ValueError with a message fit for the command line.
    """
    value = text.strip()
    if _DURATION.fullmatch(value):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value))
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time nor a duration like 30m, 2h or 7d"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _last(headers: Headers, name: str) -> str | None:
    """The last header of that name: the `dlq.*` headers of the latest failure come last."""
    found: str | None = None
    for key, value in headers:
        if key == name:
            found = _text(value)
    return found


def _previous_count(headers: Headers) -> int | None:
    """How many times the record was replayed before (0: never); None when unreadable."""
    counts = [value for key, value in headers if key == REPLAY_COUNT_HEADER]
    if not counts:
        return 0
    parsed = [_text(value) for value in counts]
    if not all(text is not None and text.isdigit() for text in parsed):
        return None
    return max(int(text) for text in parsed if text is not None)


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as `replay` sees it: where it is, and what its headers say."""

    partition: int
    offset: int
    headers: Headers
    reason: str | None = None
    event_id: str | None = None
    failed_at: datetime | None = None
    original_topic: str | None = None
    original_partition: int | None = None
    replays: int | None = 0  # None: the count header is unreadable

    @classmethod
    def of(cls, partition: int, offset: int, headers: Headers) -> Letter:
        failed_at = _last(headers, "dlq.failed_at")
        original_partition = _last(headers, "dlq.original.partition")
        return cls(
            partition=partition,
            offset=offset,
            headers=tuple(headers),
            reason=_last(headers, "dlq.reason"),
            event_id=_last(headers, "dlq.event_id"),
            failed_at=_rfc3339(failed_at) if failed_at else None,
            original_topic=_last(headers, "dlq.original.topic") or None,
            original_partition=(
                int(original_partition)
                if original_partition is not None and original_partition.isdigit()
                else None
            ),
            replays=_previous_count(headers),
        )


def _rfc3339(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Verdict(Enum):
    REPLAY = "replay"
    FILTERED = "filtered"  # left out by a filter
    LOOP_GUARD = "loop_guard"  # replayed max_replays times already


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a replay takes. Empty sets and None mean "no filter"."""

    # A letter's own reason stays a string (`Letter.reason`): a header may carry one this
    # version does not know, which no reason filter selects.
    reasons: frozenset[DlqReason] = frozenset()
    event_ids: frozenset[str] = frozenset()
    since: datetime | None = None  # failed at or after
    until: datetime | None = None  # failed before
    partitions: frozenset[int] = frozenset()
    from_offset: int | None = None  # inclusive
    to_offset: int | None = None  # inclusive
    max_replays: int = DEFAULT_MAX_REPLAYS
    force: bool = False

    def selects(self, letter: Letter) -> bool:
        """Whether the filters take this letter (the loop guard aside)."""
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.event_ids and letter.event_id not in self.event_ids:
            return False
        if self.partitions and letter.partition not in self.partitions:
            return False
        if self.from_offset is not None and letter.offset < self.from_offset:
            return False
        if self.to_offset is not None and letter.offset > self.to_offset:
            return False
        if self.since is not None or self.until is not None:
            # A letter whose failure time is unknown cannot be shown to be in the window.
            if letter.failed_at is None:
                return False
            if self.since is not None and letter.failed_at < self.since:
                return False
            if self.until is not None and letter.failed_at >= self.until:
                return False
        return True


def decide(letter: Letter, selection: Selection) -> Verdict:
    """Replay it, leave it out, or stop it at the loop guard (unless forced)."""
    if not selection.selects(letter):
        return Verdict.FILTERED
    if selection.force:
        return Verdict.REPLAY
    if letter.replays is None or letter.replays >= selection.max_replays:
        return Verdict.LOOP_GUARD
    return Verdict.REPLAY


def replay_headers(letter: Letter) -> list[tuple[str, bytes | None]]:
    """The original headers without `dlq.*` ones, in order and byte for byte, then the count."""
    kept = [(key, value) for key, value in letter.headers if not key.startswith(DLQ_PREFIX)]
    count = (letter.replays or 0) + 1
    return [*kept, (REPLAY_COUNT_HEADER, str(count).encode("ascii"))]


def cursor_group(
    base: str,
    selection: Selection,
    *,
    to: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> str:
    """The consumer group holding this selection's position in the DLQ.

    `base` alone for a replay of everything; `base.<reasons>` for a reason filter (readable in
    the broker's group list); `.sel-<digest>` added for any other filter, `--force`, a
    non-default `--max-replays` or an explicit destination `to`. The time window counts as the
    operator wrote it (`since`, `until`), so `--since 2h` tomorrow goes on from today's run.
    `--limit`, `--rate` and `--dry-run` do not change the group: they change how far or how
    fast, not what.
    """
    name = base
    if selection.reasons:
        name += "." + "+".join(sorted(selection.reasons))
    rest: dict[str, object] = {}
    if selection.event_ids:
        rest["event_ids"] = sorted(selection.event_ids)
    if selection.since is not None:
        rest["since"] = since if since is not None else selection.since.isoformat()
    if selection.until is not None:
        rest["until"] = until if until is not None else selection.until.isoformat()
    if selection.partitions:
        rest["partitions"] = sorted(selection.partitions)
    if selection.from_offset is not None:
        rest["from_offset"] = selection.from_offset
    if selection.to_offset is not None:
        rest["to_offset"] = selection.to_offset
    if selection.max_replays != DEFAULT_MAX_REPLAYS:
        rest["max_replays"] = selection.max_replays
    if selection.force:
        rest["force"] = True
    if to is not None:
        rest["to"] = to
    if rest:
        canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"))
        name += ".sel-" + hashlib.sha256(canonical.encode()).hexdigest()[:10]
    return name


@dataclass(slots=True)
class Tally:
    """What a replay did; `by_kind` counts the replayed (or would-be) letters."""

    read: int = 0
    replayed: int = 0
    skipped_filter: int = 0
    skipped_loop_guard: int = 0
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    loop_guarded: list[Letter] = field(default_factory=list)

    def count(self, letter: Letter, verdict: Verdict, event_type: str) -> None:
        self.read += 1
        if verdict is Verdict.REPLAY:
            self.replayed += 1
            self.by_kind[(letter.reason or "unknown", event_type)] += 1
        elif verdict is Verdict.FILTERED:
            self.skipped_filter += 1
        else:
            self.skipped_loop_guard += 1
            self.loop_guarded.append(letter)

    def table(self) -> list[tuple[str, str, int]]:
        """(reason, event type, count), by reason then type."""
        return sorted((reason, kind, n) for (reason, kind), n in self.by_kind.items())


@dataclass(slots=True)
class Pacer:
    """At most `rate` records a second (0: unlimited); `delay` books the next one."""

    rate: float
    _next: float | None = None

    def delay(self, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        slot = now if self._next is None else max(now, self._next)
        self._next = slot + 1.0 / self.rate
        return slot - now


def loop_guard_lines(letters: Iterable[Letter], limit: int = 10) -> list[str]:
    """A few lines naming the stopped letters by DLQ position (and event id)."""
    letters = list(letters)
    lines = [
        f"partition {letter.partition} offset {letter.offset}"
        + (f" event {letter.event_id}" if letter.event_id else "")
        + f" replayed {letter.replays if letter.replays is not None else '?'} times"
        for letter in letters[:limit]
    ]
    if len(letters) > limit:
        lines.append(f"... and {len(letters) - limit} more")
    return lines
