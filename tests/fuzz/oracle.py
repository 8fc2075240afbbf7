"""What must hold between the compiled scan, the Python scan and fastavro, for one input.

The scans are shortcuts, never judges (consumer/avro/event_reader.py): each may step aside
(None) for anything, and the codec then takes fastavro's general path. So, for one input:

- the compiled scan and the Python scan give the same answer: both step aside, or both read
  the same fields, value for value and type for type (a bool is not an int), but for the
  memory ids, which the compiled scan may hand over as a tuple, and then only if they need no
  cleaning (not empty, not padded, no repeats);
- when they read the fields, the event built from them is the one the general path (the
  codec's own plan for that writer with the shortcut off) builds; if the general path refuses
  the bytes, the scans must not have accepted them.

Import this only after scan_fuzz.py has put the sanitized module in place: the codec reads
`event_reader.scan`, picked when event_reader is first imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from consumer.avro import event_reader
from consumer.avro.codec import DecodeError, Decoder, SchemaStore
from consumer.avro.event_reader import Fields, scan_py
from consumer.core.events import DeletionEvent, clean_memory_ids
from tests.fuzz.inputs import WRITERS, Case

__all__ = ["DECODER", "Oracle", "same"]

DECODER: Final = Decoder(SchemaStore.from_directory())
# The decoder's own plans for either writer, shortcut off: the general path (fastavro).
_GENERAL: Final = {
    linked: dataclasses.replace(DECODER._by_fingerprint[writer.fingerprint], fast=False)
    for linked, writer in WRITERS.items()
}


def same(a: DeletionEvent, b: DeletionEvent) -> bool:
    """Equal events, and equal in what equality leaves out (tests/unit/avro/test_event_reader.py):
    informational_user_id, and include_linked by identity (a bool, not just equal to one)."""
    return (
        a == b
        and a.informational_user_id == b.informational_user_id
        and a.include_linked is b.include_linked
    )


def general(case: Case) -> DeletionEvent | None:
    """fastavro's answer through the codec's general path: the event, or None (DecodeError)."""
    try:
        return DECODER._read(_GENERAL[case.linked], case.value, case.start)
    except DecodeError:
        return None


def _typed(fields: Fields) -> list[tuple[type, Any]]:
    """The fields with their types (True == 1, and must not pass), ids as a list."""
    listed = [list(f) if type(f) is tuple else f for f in fields]
    return [(type(f), f) for f in listed]


class Oracle:
    """Checks inputs against the compiled scan given; counts what it saw."""

    def __init__(self, compiled: Callable[[bytes, int, bool], Fields | None]) -> None:
        if event_reader.scan is not compiled:
            raise RuntimeError("event_reader does not use the module under test")
        self.compiled = compiled
        self.inputs = 0
        self.accepted = 0

    def check(self, case: Case) -> str | None:
        """None if the input is handled as it must be, else what went wrong."""
        self.inputs += 1
        value, start, linked = case.value, case.start, case.linked
        fast = self.compiled(value, start, linked)
        slow = scan_py(value, start, linked)
        if fast is None or slow is None:
            if fast is not slow:
                said = ("accepts", "steps aside") if slow is None else ("steps aside", "accepts")
                return f"the compiled scan {said[0]}, the Python scan {said[1]}"
            return None
        self.accepted += 1
        if _typed(fast) != _typed(slow):
            return f"the scans read different fields:\n  C      {fast!r}\n  Python {slow!r}"
        ids = fast[5]
        if fast[4] == 3 and type(ids) is tuple and clean_memory_ids(ids) != ids:
            return f"the compiled scan hands over ids as clean that are not: {ids!r}"
        event = event_reader.read_event(value, start, linked)
        reference = general(case)
        if reference is None:
            return "the scans accept what fastavro (the general path) refuses"
        if event is None or not same(event, reference):
            return (
                f"the scans' event is not fastavro's:\n  scans   {event!r}\n  general {reference!r}"
            )
        return None

    def check_valid(self, case: Case) -> str | None:
        """As `check`, and a valid body must be read by the scans (the shortcut is taken)."""
        problem = self.check(case)
        if problem is None and self.compiled(case.value, case.start, case.linked) is None:
            problem = "the scans step aside for a valid body (the shortcut is never taken)"
        return problem
