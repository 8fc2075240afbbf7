"""What the operator asked of `report`: its command-line options, checked, as `ReportOptions`.

Checked before anything connects, so that a bad value exits 2 with one line naming the option:

- `--since`, `--until`: the range of request times (`occurred_at`), `since` included, `until`
  excluded (default: now). An RFC 3339 / ISO 8601 time or a date (UTC unless it names an
  offset), or a duration ago (`7d`, `24h`, `1d12h`), as `replay` takes them
  (`core.replay_rules.parse_when`).
- `--deadline` (default 30d) and `--target` (none by default): durations, more than zero.
- `--json`: the JSON form on stdout instead of the text form.
- `--html FILE`: also writes the HTML form to FILE (its folder must exist); stdout still gets
  the text form (or the JSON one), so that one run serves a person and a file.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consumer.core.erasure_report import DAY_MS
from consumer.core.replay_rules import parse_when

__all__ = [
    "DEFAULT_DEADLINE",
    "ReportOptions",
    "add_report_arguments",
    "parse_duration",
    "report_options",
]

DEFAULT_DEADLINE = "30d"
# Nine digits a part at most: enough for any real duration, and `int` never meets a huge one.
_DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}


def parse_duration(text: str) -> int:
    """A duration such as `30d`, `24h`, `1d12h`, `90m` in milliseconds (more than zero);
    ValueError with a message fit for the command line."""
    value = text.strip()
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{text!r} is not a duration like 30d, 24h or 1d12h")
    millis = sum(int(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(value))
    if millis <= 0:
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return millis


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `report` (the settings' own options are added separately)."""
    group = parser.add_argument_group("report")
    group.add_argument(
        "--since",
        metavar="WHEN",
        help="erasures requested at or after WHEN: an RFC 3339 time or a date (UTC unless it "
        "says), or a duration ago (7d, 24h, 1d12h); default: from the first receipt",
    )
    group.add_argument(
        "--until", metavar="WHEN", help="erasures requested before WHEN (default: now)"
    )
    group.add_argument(
        "--deadline",
        metavar="DURATION",
        default=DEFAULT_DEADLINE,
        help=f"flag erasures done later than this after the request, or still outstanding "
        f"and older (default {DEFAULT_DEADLINE})",
    )
    group.add_argument(
        "--target",
        metavar="DURATION",
        help="an internal target, flagged the same way (such as 24h; default: none)",
    )
    group.add_argument("--json", action="store_true", help="print the report as one JSON object")
    group.add_argument(
        "--html",
        metavar="FILE",
        help="also write the report as a self-contained HTML page to FILE",
    )


@dataclass(frozen=True, slots=True)
class ReportOptions:
    now_ms: int  # the report's `generated_at`, and the end of the range by default
    since_ms: int | None
    until_ms: int
    deadline_ms: int
    target_ms: int | None
    as_json: bool
    html: Path | None


def _millis(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _when(name: str, text: str, now: datetime) -> int:
    try:
        return _millis(parse_when(text, now))
    except (ValueError, OverflowError) as exc:
        # A duration too long for a date (`99999999d`) overflows instead of failing to parse.
        detail = str(exc) if isinstance(exc, ValueError) else f"{text!r} is out of range"
        raise ValueError(f"--{name}: {detail}") from None


def report_options(args: argparse.Namespace, now: datetime) -> ReportOptions:
    """Raises ValueError with one line naming the option."""
    now_ms = _millis(now)
    since_ms = None if args.since is None else _when("since", args.since, now)
    until_ms = now_ms if args.until is None else _when("until", args.until, now)
    if since_ms is not None and since_ms >= until_ms:
        raise ValueError("--since must be before --until")
    durations: dict[str, int | None] = {}
    for name in ("deadline", "target"):
        text = getattr(args, name)
        try:
            durations[name] = None if text is None else parse_duration(text)
        except ValueError as exc:
            raise ValueError(f"--{name}: {exc}") from None
    deadline_ms = durations["deadline"]
    assert deadline_ms is not None  # it has a default
    html = None
    if args.html is not None:
        html = Path(args.html)
        if not args.html.strip() or html.is_dir():
            raise ValueError(f"--html: {args.html!r} is not a file name")
        if not html.parent.is_dir():
            raise ValueError(f"--html: no folder {str(html.parent)!r} to write the file in")
    return ReportOptions(
        now_ms=now_ms,
        since_ms=since_ms,
        until_ms=until_ms,
        deadline_ms=deadline_ms,
        target_ms=durations["target"],
        as_json=args.json,
        html=html,
    )
