"""Which deletion events must not be carried out, and why (their dead-letter reason).

An event is refused when it could delete more than it names (no identifier, a blank one for its
type, a wildcard), when its memory ids cannot be Mem0's, or when the backend cannot filter the
way it asks (the self-hosted server knows no app_id nor metadata). The planner (planner.py)
asks this module about every event it cannot wave through on its fast path, and coalesces the
rest; keeping the rules here keeps them readable apart from the coalescing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

from consumer.core.capabilities import Capabilities
from consumer.core.dlq import DlqReason
from consumer.core.events import DeletionEvent, EventType
from consumer.core.memory_ids import all_path_segments, all_uuids

__all__ = ["REQUIRED_KEY", "Rejection", "explain_ids", "ids_valid", "validate"]

# The identifier a payload type is about: without it the event would name a wider scope than
# its type says (a SessionExpired with a blank run_id would otherwise delete the whole user).
REQUIRED_KEY = {EventType.USER_DELETED: "user_id", EventType.SESSION_EXPIRED: "run_id"}


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that gets no call: it goes to the dead-letter topic with this reason."""

    reason: DlqReason  # INVALID_SCOPE or UNSUPPORTED_SCOPE
    message: str


def validate(event: DeletionEvent, caps: Capabilities) -> Rejection | None:
    """Why an event must not be carried out, or None when it is safe."""
    if event.type is EventType.MEMORIES_DELETED:
        return explain_ids(event.memory_ids, caps)
    scope = event.scope
    if scope is None or not scope.entities:
        return Rejection(DlqReason.INVALID_SCOPE, "the filter has no identifier")
    entities = scope.entities
    required = REQUIRED_KEY.get(event.type)
    # The common case, one identifier and no metadata, checked without building anything.
    if len(entities) == 1 and not scope.metadata:
        key, value = entities[0]
        if required is not None and key != required:
            return Rejection(DlqReason.INVALID_SCOPE, f"the filter has no {required}")
        if "*" in value:
            return Rejection(DlqReason.INVALID_SCOPE, "an identifier contains the wildcard '*'")
        if key == "app_id" and not caps.app_id_and_metadata:
            return Rejection(DlqReason.UNSUPPORTED_SCOPE, "the backend cannot filter by app_id")
        return None
    if required is not None and required not in dict(entities):
        return Rejection(DlqReason.INVALID_SCOPE, f"the filter has no {required}")
    # Keys and values joined, one C-level search (entity keys never hold a '*').
    if "*" in "".join(chain.from_iterable(entities)) or (
        scope.metadata and "*" in "".join(chain.from_iterable(scope.metadata))
    ):
        return Rejection(DlqReason.INVALID_SCOPE, "an identifier contains the wildcard '*'")
    if not caps.app_id_and_metadata:
        if scope.metadata:
            return Rejection(DlqReason.UNSUPPORTED_SCOPE, "the backend cannot filter by metadata")
        if any(key == "app_id" for key, _ in entities):
            return Rejection(DlqReason.UNSUPPORTED_SCOPE, "the backend cannot filter by app_id")
    return None


def explain_ids(memory_ids: Sequence[str], caps: Capabilities) -> Rejection | None:
    """Why one event's memory ids must not be deleted, or None when they may."""
    if not memory_ids:
        return Rejection(DlqReason.INVALID_SCOPE, "no memory id")
    if ids_valid(memory_ids, caps):
        return None
    # Only for events that fail: say which rule they broke.
    if any("*" in memory_id for memory_id in memory_ids):
        return Rejection(DlqReason.INVALID_SCOPE, "a memory id contains the wildcard '*'")
    if caps.uuid_ids:
        return Rejection(DlqReason.INVALID_SCOPE, "a memory id is not a UUID")
    return Rejection(DlqReason.INVALID_SCOPE, "a memory id is not a plain path segment")


def ids_valid(memory_ids: Sequence[str], caps: Capabilities) -> bool:
    """Whether every id can be one of this backend's (one pass; the planner checks a whole
    flush's ids with it at once, and asks `explain_ids` only when some fail)."""
    return all_uuids(memory_ids) if caps.uuid_ids else all_path_segments(memory_ids)
