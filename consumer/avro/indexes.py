"""Union and enum indexes, and booleans, checked in a body fastavro has read.

fastavro (1.x, its compiled reader) takes a union's or an enum's index as a Python index: a
negative one picks a branch or symbol from the end. The branch byte 0x01 (index -1) turns an
event into a MemoriesDeleted and -4 into a UserDeleted; a reason of -1 reads as OTHER. It also
reads any boolean byte but 0 as true. None of that is valid Avro, and each would carry out a
delete nobody asked for. The scans of `event_reader.py` step aside on all of it, so it reaches
the general path, which asks this module after fastavro's read succeeded.

This walks the body once more with the writer schema (fastavro's parsed form), checking only
those three things and skipping every other value. It trusts the structure fastavro has just
read, yet checks every length and count against the bytes left all the same, so any bytes
make it end, soon, with a fault or None; it never raises. It is not on the hot path: the scans
read the current schemas' bodies, and this runs only when they step aside.
"""

from __future__ import annotations

from typing import Any

__all__ = ["out_of_range"]

_FIXED_WIDTH = {"float": 4, "double": 8}
_SKIP_ONLY = frozenset({"int", "long"})


class _Fault(Exception):
    """A value out of its range: the message names it."""


def out_of_range(schema: Any, body: bytes, start: int) -> str | None:
    """The first union or enum index, or boolean, out of its range; None when all are in it."""
    try:
        _Walk(body, start).value(schema, {})
    except _Fault as fault:
        return str(fault)
    except (IndexError, KeyError, TypeError, ValueError, RecursionError):
        return "a value the schema walk could not follow"
    return None


class _Walk:
    __slots__ = ("at", "body")

    def __init__(self, body: bytes, start: int) -> None:
        self.body = body
        self.at = start

    def long(self) -> int:
        """A zigzag varint (Avro's int and long), of any width fastavro accepted."""
        body, at = self.body, self.at
        shift = result = 0
        while True:
            byte = body[at]
            at += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        self.at = at
        return (result >> 1) ^ -(result & 1)

    def skip(self, length: int) -> None:
        """Step over `length` bytes; a negative length or one past the end is no body (and a
        negative one would walk back for ever)."""
        if not 0 <= length <= len(self.body) - self.at:
            raise _Fault(f"a length of {length} with {len(self.body) - self.at} bytes left")
        self.at += length

    def value(self, schema: Any, names: dict[str, Any], field: str = "a boolean") -> None:
        if isinstance(schema, str):
            self.primitive(schema, names, field)
        elif isinstance(schema, list):
            index = self.long()
            if not 0 <= index < len(schema):
                raise _Fault(f"union index {index} of {len(schema)} branches")
            self.value(schema[index], names, field)
        else:
            self.complex(schema, names, field)

    def primitive(self, name: str, names: dict[str, Any], field: str) -> None:
        if name == "null":
            return
        if name == "boolean":
            byte = self.body[self.at]
            self.at += 1
            if byte > 1:
                raise _Fault(f"{field} is byte 0x{byte:02x}, neither 0 nor 1")
        elif name in _SKIP_ONLY:
            self.long()
        elif name in _FIXED_WIDTH:
            self.skip(_FIXED_WIDTH[name])
        elif name in ("bytes", "string"):
            self.skip(self.long())
        else:
            self.value(names[name], names, field)  # a named type defined earlier

    def complex(self, schema: dict[str, Any], names: dict[str, Any], field: str) -> None:
        kind = schema["type"]
        if "name" in schema and kind in ("record", "enum", "fixed"):
            names[schema["name"]] = schema
        if kind == "record":
            for member in schema["fields"]:
                self.value(member["type"], names, member["name"])
        elif kind == "enum":
            index = self.long()
            if not 0 <= index < len(schema["symbols"]):
                raise _Fault(f"enum index {index} of {len(schema['symbols'])} symbols")
        elif kind == "fixed":
            self.skip(schema["size"])
        elif kind in ("array", "map"):
            self.blocks(schema, names)
        else:
            self.value(kind, names, field)  # {"type": "string"} and the like

    def blocks(self, schema: dict[str, Any], names: dict[str, Any]) -> None:
        items = schema["items"] if schema["type"] == "array" else schema["values"]
        while count := self.long():
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                self.long()
            if count > len(self.body) - self.at:
                # Every item of our schemas takes a byte at least: a count past the bytes left
                # is no body (and a walk of it would take for ever).
                raise _Fault(f"a block of {count} items in {len(self.body) - self.at} bytes")
            for _ in range(count):
                if schema["type"] == "map":
                    self.skip(self.long())  # the key
                self.value(items, names)
