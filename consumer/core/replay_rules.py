"""What `replay` does with one dead letter, and how it rewrites it.

A dead letter's headers are the original record's headers first (those named `dlq.*` renamed
`dlq.original-header.<name>`), then the consumer's `dlq.*` headers of the failure, each once
(README "Dead letters", `core.dlq`). Replay reads only those, and only as the consumer writes
them: a letter with a header missing, repeated, null, not UTF-8 or not well-formed is skipped
and counted under its first flaw (`Letter.flaw`), so that no record, forged or damaged, can
stop a run or be replayed on values nobody vouches for. `Letter.of` never raises.

Replaying a letter republishes the original headers byte for byte, in order, without any
`dlq.*` header, plus `dlq.replay.count`: one more than the letter's count (a record replayed,
failed again and dead-lettered again carries the count it came back with, which the consumer
writes as its own). The loop guard refuses a record whose count has reached `max_replays`, or
whose count cannot be read (then `--force` starts it over at 1), so a poison event cannot
circle for ever.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TypeVar

from consumer.core.dlq import (
    DLQ_PREFIX,
    DLQ_REASONS,
    OWN_HEADERS,
    REPLAY_COUNT_HEADER,
    DlqReason,
    printable,
    replay_count,
)

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
    "loop_guard_lines",
    "malformed_lines",
    "parse_when",
    "replay_headers",
]

DEFAULT_MAX_REPLAYS = 3
# How many skipped letters a report lists by position (all are counted).
LISTED = 100

Headers = Sequence[tuple[str, bytes | None]]
_T = TypeVar("_T")

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1
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


def _number(text: str, digits: int, limit: int) -> int | None:
    """A non-negative decimal as the consumer writes it (ASCII, no sign, no leading zero)."""
    if not (text.isascii() and text.isdigit()) or len(text) > digits:
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    value = int(text)
    return value if value <= limit else None


def _rfc3339(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _topic(text: str) -> str | None:
    """A legal Kafka topic name, else None: the destination must be one the broker takes."""
    return text if _TOPIC.fullmatch(text) and text not in (".", "..") else None


class _Reading:
    """The consumer's headers of one dead letter, read strictly; `flaw` is the first problem."""

    __slots__ = ("counts", "flaw", "headers")

    def __init__(self, headers: Headers) -> None:
        self.headers = tuple(headers)
        self.flaw: str | None = None
        self.counts = Counter(key for key, _ in self.headers if key in OWN_HEADERS)
        for name in OWN_HEADERS:
            # The consumer writes each once; a second one is not its word (an older version
            # copied a producer's, or something else wrote to the DLQ). An unreadable count
            # is the loop guard's business (`_previous_count`).
            if self.counts[name] > 1 and name != REPLAY_COUNT_HEADER:
                self.note(f"duplicated {name}")

    def note(self, flaw: str) -> None:
        if self.flaw is None:
            self.flaw = flaw

    def text(self, name: str, *, required: bool) -> str | None:
        """The header's one value as text; None (and a flaw) when it is not that."""
        found = self.counts[name]
        if found != 1:
            if found == 0 and required:
                self.note(f"missing {name}")
            return None  # a duplicate is noted already
        value = next(value for key, value in self.headers if key == name)
        if value is None:
            self.note(f"null {name}")
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            self.note(f"non-UTF-8 {name}")
            return None

    def parsed(
        self,
        name: str,
        parse: Callable[[str], _T | None],
        *,
        required: bool,
        bad: str = "malformed",
    ) -> _T | None:
        text = self.text(name, required=required)
        if text is None:
            return None
        value = parse(text)
        if value is None:
            self.note(f"{bad} {name}")
        return value


def _reason(text: str) -> DlqReason | None:
    return DlqReason(text) if text in DLQ_REASONS else None


def _previous_count(headers: Headers) -> int | None:
    """How many times the record was replayed before (0: never); None when unreadable (a
    value `replay` would not have written, a null, or more than one)."""
    counts = [value for key, value in headers if key == REPLAY_COUNT_HEADER]
    if not counts:
        return 0
    return replay_count(counts[0]) if len(counts) == 1 else None


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as `replay` sees it: where it is, and what its headers say.

    `flaw` names the first header that is not as the consumer writes it (`missing dlq.reason`,
    `duplicated dlq.event_id`, `malformed dlq.original.partition`...): such a letter is skipped
    and counted, never replayed on values nobody vouches for.
    """

    partition: int
    offset: int
    headers: Headers
    reason: DlqReason | None = None
    event_id: str | None = None
    failed_at: datetime | None = None
    original_topic: str | None = None
    original_partition: int | None = None
    replays: int | None = 0  # None: the count header is unreadable
    flaw: str | None = None

    @classmethod
    def of(cls, partition: int, offset: int, headers: Headers) -> Letter:
        """Never raises, whatever the headers: what cannot be read is a `flaw`."""
        read = _Reading(headers)
        reason = read.parsed("dlq.reason", _reason, required=True, bad="unknown")
        original_topic = read.parsed("dlq.original.topic", _topic, required=True)
        original_partition = read.parsed(
            "dlq.original.partition", lambda t: _number(t, 10, _MAX_PARTITION), required=True
        )
        read.parsed("dlq.original.offset", lambda t: _number(t, 19, _MAX_OFFSET), required=True)
        failed_at = read.parsed("dlq.failed_at", _rfc3339, required=True)
        event_id = read.parsed("dlq.event_id", lambda t: t or None, required=False)
        return cls(
            partition=partition,
            offset=offset,
            headers=read.headers,
            reason=reason,
            event_id=event_id,
            failed_at=failed_at,
            original_topic=original_topic,
            original_partition=original_partition,
            replays=_previous_count(read.headers),
            flaw=read.flaw,
        )


class Verdict(Enum):
    REPLAY = "replay"
    FILTERED = "filtered"  # left out by a filter
    LOOP_GUARD = "loop_guard"  # replayed max_replays times already, or the count unreadable
    MALFORMED = "malformed"  # a header not as the consumer writes it (`Letter.flaw`)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a replay takes. Empty sets and None mean "no filter"."""

    # A letter whose reason this version does not know has none (`Letter.reason`, its flaw
    # says why): no reason filter selects it.
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
    """Replay it, leave it out, skip it as malformed, or stop it at the loop guard (unless
    forced). The filters come first: a letter they leave out is none of this run's business,
    malformed or not. `--force` passes the loop guard only: a malformed letter has no values to
    replay it on (its destination, its partition) that the consumer vouches for."""
    if not selection.selects(letter):
        return Verdict.FILTERED
    if letter.flaw is not None:
        return Verdict.MALFORMED
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
    """What a replay did; `by_kind` counts the replayed (or would-be) letters, `by_flaw` the
    malformed ones, and `malformed` lists the first `LISTED` of those (a DLQ full of junk must
    not fill memory)."""

    read: int = 0
    replayed: int = 0
    skipped_filter: int = 0
    skipped_loop_guard: int = 0
    skipped_malformed: int = 0
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_flaw: Counter[str] = field(default_factory=Counter)
    loop_guarded: list[Letter] = field(default_factory=list)
    malformed: list[Letter] = field(default_factory=list)

    def count(self, letter: Letter, verdict: Verdict, event_type: str) -> None:
        self.read += 1
        if verdict is Verdict.REPLAY:
            self.replayed += 1
            self.by_kind[(letter.reason or "unknown", event_type)] += 1
        elif verdict is Verdict.FILTERED:
            self.skipped_filter += 1
        elif verdict is Verdict.MALFORMED:
            self.skipped_malformed += 1
            self.by_flaw[letter.flaw or "?"] += 1
            if len(self.malformed) < LISTED:
                self.malformed.append(letter)
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
    return _lines(
        letters,
        lambda letter: (
            f" replayed {letter.replays} times"
            if letter.replays is not None
            else " replay count unreadable"
        ),
        limit,
    )


def malformed_lines(letters: Iterable[Letter], limit: int = 10) -> list[str]:
    """A few lines naming the malformed letters by DLQ position, with their first flaw."""
    return _lines(letters, lambda letter: f": {letter.flaw}", limit)


def _lines(letters: Iterable[Letter], tail: Callable[[Letter], str], limit: int) -> list[str]:
    letters = list(letters)
    lines = [
        f"partition {letter.partition} offset {letter.offset}"
        # Anyone's text: shown escaped, so that it cannot rewrite the operator's terminal.
        + (f" event {printable(letter.event_id)}" if letter.event_id else "")
        + tail(letter)
        for letter in letters[:limit]
    ]
    if len(letters) > limit:
        lines.append(f"... and {len(letters) - limit} more")
    return lines
