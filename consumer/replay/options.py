"""What the operator asked of `replay`: its command-line options, checked, as `ReplayOptions`.

Parsing is kept apart from the run so that a bad option is refused (exit 2) before anything
connects to the broker, and so that the cursor group, which names the selection, is derived in
one place from what the operator wrote (`--since 2h` counts as written, not as a time).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime

from consumer.commands.command_line import add_event_id_option, event_ids_of
from consumer.core.dlq import DLQ_REASONS, DlqReason
from consumer.core.errors import ConsumerError
from consumer.core.replay_rules import DEFAULT_MAX_REPLAYS, Selection, cursor_group, parse_when
from consumer.settings import Settings

__all__ = ["ReplayError", "ReplayOptions", "add_replay_arguments", "replay_options"]


class ReplayError(ConsumerError):
    """The run cannot go on; the message is one line for the operator."""


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 (unlimited) or more, not {text}")
    return value


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `replay` (the settings' own options are added separately)."""
    group = parser.add_argument_group("replay")
    group.add_argument(
        "--reason",
        dest="reasons",
        action="append",
        choices=DLQ_REASONS,
        metavar="REASON",
        help=f"only dead letters of this reason, repeatable ({', '.join(DLQ_REASONS)})",
    )
    group.add_argument(
        "--since",
        metavar="WHEN",
        help="only letters that failed at or after WHEN: ISO 8601 (UTC unless it says) or a "
        "duration ago (30m, 2h, 7d, 1d12h)",
    )
    group.add_argument("--until", metavar="WHEN", help="only letters that failed before WHEN")
    add_event_id_option(group, help="repeatable")
    group.add_argument(
        "--partition",
        dest="partitions",
        action="append",
        type=_count,
        metavar="N",
        help="only this DLQ partition, repeatable",
    )
    group.add_argument("--from-offset", type=_count, metavar="N", help="first DLQ offset")
    group.add_argument("--to-offset", type=_count, metavar="N", help="last DLQ offset, included")
    group.add_argument("--limit", type=_positive, metavar="N", help="replay at most N records")
    group.add_argument(
        "--to",
        metavar="TOPIC",
        help="publish here (default: each letter's dlq.original.topic, else the first input topic)",
    )
    group.add_argument(
        "--rate", type=_rate, default=0.0, metavar="N", help="records per second (0: unlimited)"
    )
    group.add_argument(
        "--max-replays",
        type=_count,
        default=DEFAULT_MAX_REPLAYS,
        metavar="N",
        help=f"loop guard: skip a record replayed N times already (default {DEFAULT_MAX_REPLAYS})",
    )
    group.add_argument("--force", action="store_true", help="replay past the loop guard")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be replayed, by reason and event type; publish and commit nothing",
    )
    group.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    group.add_argument(
        "--replay-group",
        metavar="NAME",
        help="base of the cursor groups (default: KAFKA_GROUP_ID + '.replay'); a filtered "
        "replay adds its selection to the name",
    )


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    selection: Selection
    group: str  # the cursor group of this selection
    to: str | None
    limit: int | None
    rate: float
    dry_run: bool
    as_json: bool


def replay_options(args: argparse.Namespace, settings: Settings, now: datetime) -> ReplayOptions:
    """Raises ValueError with a line naming the option."""
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        text = getattr(args, name)
        try:
            times[name] = parse_when(text, now) if text is not None else None
        except ValueError as exc:
            raise ValueError(f"--{name}: {exc}") from None
    if times["since"] and times["until"] and times["since"] >= times["until"]:
        raise ValueError("--since must be before --until")
    if args.to_offset is not None and (args.from_offset or 0) > args.to_offset:
        raise ValueError("--from-offset must not be past --to-offset")
    event_ids = frozenset(event_ids_of(args.event_ids))
    selection = Selection(
        # argparse's `choices` let only DLQ_REASONS through, so each one is a DlqReason.
        reasons=frozenset(DlqReason(reason) for reason in args.reasons or ()),
        event_ids=event_ids,
        since=times["since"],
        until=times["until"],
        partitions=frozenset(args.partitions or ()),
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        max_replays=args.max_replays,
        force=args.force,
    )
    base = args.replay_group or f"{settings.group_id}.replay"
    return ReplayOptions(
        selection=selection,
        group=cursor_group(base, selection, to=args.to, since=args.since, until=args.until),
        to=args.to,
        limit=args.limit,
        rate=args.rate,
        dry_run=args.dry_run,
        as_json=args.json,
    )
