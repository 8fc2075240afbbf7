"""Is every memory id of a list safe to send? Checked for a whole flush at once.

Mem0 memory ids are UUIDs, and the Platform answers 400 for anything else; only the canonical
8-4-4-4-12 form is accepted, so what we send is what the API documents. Where ids are not
checked as UUIDs (the self-hosted server), an id still goes into a URL path
(`/memories/{id}`): only RFC 3986 unreserved characters, and not a dot segment, so that an id
such as `../memories?user_id=alice` cannot turn into a delete_all of someone's memories.

A regular expression says this plainly (`UUID_LIST`, `PATH_SEGMENT_LIST`, kept as the
reference the tests compare against), but it costs about 0.3 µs per id, most of the planner's
time on an id clean-up. The fast check maps every byte of the joined ids to its character class
with one `bytes.translate` and compares the result with the shape a valid list must have: a
few passes of C over the flush's bytes instead of a regex step per character.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

__all__ = ["PATH_SEGMENT_LIST", "UUID_LIST", "all_path_segments", "all_uuids"]

_UUID = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
_PATH_SEGMENT = r"[A-Za-z0-9._~-]+"
# The reference definitions: a list of ids joined by single spaces, which no valid id contains.
UUID_LIST = re.compile(rf"\A{_UUID}(?: {_UUID})*\Z")
PATH_SEGMENT_LIST = re.compile(rf"\A{_PATH_SEGMENT}(?: {_PATH_SEGMENT})*\Z")
_DOT_SEGMENTS = frozenset({".", ".."})


def _classes(word: str, keep: str) -> bytes:
    """A translate table: `word` bytes -> x, `keep` bytes -> themselves, any other byte -> !."""
    table = bytearray(b"!" * 256)
    for char in word:
        table[ord(char)] = ord("x")
    for char in keep:
        table[ord(char)] = ord(char)
    return bytes(table)


_UUID_CLASSES = _classes(string.hexdigits, "- ")
_UUID_SHAPE = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx "  # 37 bytes
_SEGMENT_CLASSES = _classes(string.ascii_letters + string.digits + "._~-", " ")


# Ids are checked in chunks: each chunk's buffers (~37 KB) come from the heap and stay in cache,
# where one buffer for a whole flush (a megabyte) would be fresh pages, faulted in every time.
_CHUNK = 1024
_CHUNK_SHAPE = _UUID_SHAPE * _CHUNK


def _ascii(ids: Sequence[str]) -> bytes | None:
    joined = " ".join(ids)
    if not joined.isascii():
        return None
    return joined.encode("ascii")


def all_uuids(ids: Sequence[str]) -> bool:
    """Every id is a canonical UUID (and there is at least one)."""
    if not ids:
        return False
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        raw = _ascii(chunk)
        # The exact shape of n UUIDs joined by spaces: a wrong length, a space inside an id, a
        # misplaced dash or a non-hex character all break the equality.
        if raw is None or raw.translate(_UUID_CLASSES) != _CHUNK_SHAPE[: len(chunk) * 37 - 1]:
            return False
    return True


def all_path_segments(ids: Sequence[str]) -> bool:
    """Every id is a non-empty run of unreserved characters and not `.` or `..`."""
    if not ids or not _DOT_SEGMENTS.isdisjoint(ids):
        return False
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        raw = _ascii(chunk)
        if raw is None:
            return False
        shape = raw.translate(_SEGMENT_CLASSES)
        if not (
            shape
            and b"!" not in shape
            # n ids, n - 1 separators: none of the ids holds a space, and none is empty.
            and shape.count(b" ") == len(chunk) - 1
            and b"  " not in shape
            and not shape.startswith(b" ")
            and not shape.endswith(b" ")
        ):
            return False
    return True
