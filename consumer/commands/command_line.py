"""What the commands beside `run` share on the command line: where they write, `--event-id`.

A command writes its output, and its complaints as one line that names it. The commands print to
stdout and stderr; a caller in the same process (a test) passes its own streams instead, so the
streams are looked up when the command runs, not when it is defined (pytest swaps `sys.stdout`
per test). A complaint is one line, `deletion-consumer <command>: <what>`, so that an operator's
script can grep it whichever command failed.

`--event-id` selects events in `replay` and `receipts` alike: repeatable, each value stripped,
blank ones dropped, and only blank ones refused (a typo'd empty shell variable must not turn a
narrow command into one over every event).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Console", "add_event_id_option", "event_ids_of"]


@dataclass(frozen=True, slots=True)
class Console:
    command: str  # the subcommand's name, as typed: "replay", "receipts"
    out: TextIO
    err: TextIO

    @classmethod
    def of(cls, command: str, out: TextIO | None = None, err: TextIO | None = None) -> Console:
        """The given streams, else the process's current stdout and stderr."""
        return cls(
            command,
            out if out is not None else sys.stdout,
            err if err is not None else sys.stderr,
        )

    def complain(self, what: object) -> None:
        """One line on stderr naming the command."""
        print(f"deletion-consumer {self.command}: {what}", file=self.err)


def add_event_id_option(
    group: argparse._ArgumentGroup, *, help: str, required: bool = False
) -> None:
    """`--event-id ID`, repeatable, into `args.event_ids` (None when not given)."""
    group.add_argument(
        "--event-id",
        dest="event_ids",
        action="append",
        required=required,
        metavar="ID",
        help=help,
    )


def event_ids_of(values: Sequence[str] | None) -> list[str]:
    """The ids given, stripped, in order; raises ValueError when all of them are blank."""
    ids = [item.strip() for item in values or () if item.strip()]
    if values and not ids:
        raise ValueError("--event-id: empty")
    return ids
