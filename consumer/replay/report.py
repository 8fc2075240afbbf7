"""What `replay` shows: a progress line while it runs, and the summary when it ends.

The progress line goes to stderr and only to a terminal, rewritten in place, so that a script
reading stdout (`--json`) or a log collector never sees it. The summary goes to stdout: a table
by reason and event type for people, or one JSON object for scripts; both name the cursor group,
the letters stopped by the loop guard, with the options that would replay one anyway, and the
letters skipped as malformed, counted by their first flaw, so that an operator learns of a
record that is not a dead letter of ours without it ever stopping the run. Event ids are shown
escaped (`core.dlq.printable`): they are anyone's text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TextIO

from consumer.core.replay_rules import Tally, loop_guard_lines, malformed_lines
from consumer.replay.options import ReplayOptions
from consumer.settings import Settings

__all__ = ["Progress", "print_report"]

# Rewriting the line more often than this only makes the terminal flicker.
_PROGRESS_EVERY_S = 0.1


class Progress:
    """One stderr line rewritten in place, only on a terminal."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._clock = clock
        self._last = 0.0
        self._width = 0

    def show(self, tally: Tally, total: int) -> None:
        if not self._enabled or self._clock() - self._last < _PROGRESS_EVERY_S:
            return
        self._last = self._clock()
        share = tally.read / total if total else 1.0
        filled = int(share * 20)
        skipped = tally.skipped_filter + tally.skipped_loop_guard + tally.skipped_malformed
        line = (
            f"replay [{'#' * filled}{'.' * (20 - filled)}] {tally.read}/{total} read, "
            f"{tally.replayed} replayed, {skipped} skipped"
        )
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def finish(self) -> None:
        if self._enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


def print_report(
    tally: Tally, options: ReplayOptions, settings: Settings, out: TextIO, *, interrupted: bool
) -> None:
    guarded = [
        {"partition": letter.partition, "offset": letter.offset, "event_id": letter.event_id}
        for letter in tally.loop_guarded
    ]
    if options.as_json:
        summary = {
            "dlq_topic": settings.dlq_topic,
            "group": options.group,
            "dry_run": options.dry_run,
            "interrupted": interrupted,
            "read": tally.read,
            "replayed": tally.replayed,
            "skipped_filter": tally.skipped_filter,
            "skipped_loop_guard": tally.skipped_loop_guard,
            "skipped_malformed": tally.skipped_malformed,
            "by_reason_and_type": [
                {"reason": reason, "type": kind, "count": n} for reason, kind, n in tally.table()
            ],
            "loop_guarded": guarded,
            "malformed_by_flaw": [
                {"flaw": flaw, "count": n} for flaw, n in sorted(tally.by_flaw.items())
            ],
            # The first `replay_rules.LISTED` of them; all are counted above.
            "malformed": [
                {"partition": letter.partition, "offset": letter.offset, "flaw": letter.flaw}
                for letter in tally.malformed
            ],
        }
        print(json.dumps(summary), file=out)
        return
    verb = "would replay" if options.dry_run else "replayed"
    title = f"replay of {settings.dlq_topic} (cursor group {options.group})"
    if options.dry_run:
        title += ": dry run, nothing published or committed"
    lines = [title]
    table = tally.table()
    if table:
        width = max(len("reason"), *(len(reason) for reason, _, _ in table))
        kind_width = max(len("event type"), *(len(kind) for _, kind, _ in table))
        lines.append(f"  {'reason':<{width}}  {'event type':<{kind_width}}  {verb}")
        lines.extend(
            f"  {reason:<{width}}  {kind:<{kind_width}}  {n:>{len(verb)}}"
            for reason, kind, n in table
        )
    lines += [
        f"  read                   {tally.read}",
        f"  {verb:<21}  {tally.replayed}",
        f"  skipped by filter      {tally.skipped_filter}",
        f"  skipped by loop guard  {tally.skipped_loop_guard}",
        f"  skipped as malformed   {tally.skipped_malformed}",
    ]
    if tally.loop_guarded:
        lines.append(
            f"  stopped by the loop guard (replayed {options.selection.max_replays} times "
            "already; to replay one anyway: --force --partition P --from-offset O --to-offset O):"
        )
        lines.extend(f"    {line}" for line in loop_guard_lines(tally.loop_guarded))
    if tally.skipped_malformed:
        lines.append(
            "  skipped as malformed (a dlq.* header not as the consumer writes it; not replayed, "
            "--force included):"
        )
        lines.extend(f"    {n} {flaw}" for flaw, n in sorted(tally.by_flaw.items()))
        lines.extend(f"    {line}" for line in malformed_lines(tally.malformed))
    if interrupted:
        lines.append("  interrupted: what was acknowledged is committed; run again to go on")
    print("\n".join(lines), file=out)
