from typing import Any

# (event_id, occurred_at, source, reason index, branch, f1..f5): consumer/event_reader.Fields
# and the head of _scan.c say what f1..f5 hold per branch (MemoriesDeleted: ids, user_id,
# include_linked).
Fields = tuple[str, int, str, int, int, Any, Any, Any, Any, Any]

# linked: whether the writer's MemoriesDeleted has include_linked (version 2, not version 1).
def scan(data: bytes, start: int, linked: bool, /) -> Fields | None: ...
