"""The `filters` tree of `POST /v3/memories/`: parsed once, then matched against memories.

Grammar: `{"AND": [...]}`, `{"OR": [...]}`, `{"NOT": [...] or {...}}` (none of them matches), and
leaf dicts whose keys are ANDed: `{"user_id": "u"}`, `{"user_id": {"in": [...]}}`, `"*"` (the key
is set), `{"metadata": {"k": "v"}}`, `{"categories": {"contains": "c"}}`, and comparisons on
`created_at` / `updated_at`. Each node can also name the ids it may match through the store's
entity indexes, so a listing of one user does not scan every memory.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from consumer.sandbox.records import ENTITY_KEYS, Memory, parse_time

__all__ = ["FilterError", "Index", "Node", "parse_filters"]

_TIME_KEYS = ("created_at", "updated_at")
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


class FilterError(ValueError):
    """The filters are malformed; the API answers 400 with this text."""


class Index(Protocol):
    """The store's entity indexes, as the filters see them."""

    def ids_of(self, key: str, value: str) -> Collection[str]: ...

    def ids_with(self, key: str) -> set[str]: ...


class Node(Protocol):
    def matches(self, memory: Memory) -> bool: ...

    def candidates(self, index: Index) -> set[str] | None:
        """A superset of the matching ids, or None when only a scan can tell."""


@dataclass(frozen=True, slots=True)
class _All:
    parts: tuple[Node, ...]

    def matches(self, memory: Memory) -> bool:
        return all(part.matches(memory) for part in self.parts)

    def candidates(self, index: Index) -> set[str] | None:
        known = [c for part in self.parts if (c := part.candidates(index)) is not None]
        if not known:
            return None
        known.sort(key=len)
        result = set(known[0])
        for other in known[1:]:
            result &= other
        return result


@dataclass(frozen=True, slots=True)
class _Any:
    parts: tuple[Node, ...]

    def matches(self, memory: Memory) -> bool:
        return any(part.matches(memory) for part in self.parts)

    def candidates(self, index: Index) -> set[str] | None:
        result: set[str] = set()
        for part in self.parts:
            found = part.candidates(index)
            if found is None:
                return None
            result |= found
        return result


@dataclass(frozen=True, slots=True)
class _Not:
    part: Node

    def matches(self, memory: Memory) -> bool:
        return not self.part.matches(memory)

    def candidates(self, index: Index) -> set[str] | None:
        return None


@dataclass(frozen=True, slots=True)
class _Entity:
    key: str
    op: str  # "eq", "in", "ne" or "any"
    values: frozenset[str]

    def matches(self, memory: Memory) -> bool:
        value = memory.entity(self.key)
        if self.op == "any":
            return value is not None
        if self.op == "ne":
            return value not in self.values
        return value in self.values

    def candidates(self, index: Index) -> set[str] | None:
        if self.op == "any":
            return index.ids_with(self.key)
        if self.op == "ne":
            return None
        result: set[str] = set()
        for value in self.values:
            result.update(index.ids_of(self.key, value))
        return result


@dataclass(frozen=True, slots=True)
class _Meta:
    key: str
    op: str  # "eq", "in", "ne", "any" or "contains"
    values: tuple[Any, ...]

    def matches(self, memory: Memory) -> bool:
        meta = memory.meta()
        if self.op == "any":
            return self.key in meta
        value = meta.get(self.key)
        if self.op == "ne":
            return value not in self.values
        if self.op == "contains":
            return isinstance(value, str | list) and self.values[0] in value
        return value in self.values

    def candidates(self, index: Index) -> set[str] | None:
        return None


@dataclass(frozen=True, slots=True)
class _Categories:
    values: frozenset[str]

    def matches(self, memory: Memory) -> bool:
        return not self.values.isdisjoint(memory.categories)

    def candidates(self, index: Index) -> set[str] | None:
        return None


@dataclass(frozen=True, slots=True)
class _Time:
    key: str
    compare: Callable[[float, float], bool]
    bound: float

    def matches(self, memory: Memory) -> bool:
        moment: float = getattr(memory, self.key)
        return self.compare(moment, self.bound)

    def candidates(self, index: Index) -> set[str] | None:
        return None


def parse_filters(tree: object) -> Node:
    """Parse a filters tree, or raise FilterError."""
    if not isinstance(tree, Mapping) or not tree:
        raise FilterError("filters must be a non-empty object")
    parts: list[Node] = []
    for key, value in tree.items():
        if key == "AND":
            parts.append(_All(_children(key, value)))
        elif key == "OR":
            parts.append(_Any(_children(key, value)))
        elif key == "NOT":
            children = _children(key, [value] if isinstance(value, Mapping) else value)
            parts.append(_Not(_Any(children)))
        elif key in ENTITY_KEYS:
            parts.append(_entity(key, value))
        elif key == "metadata":
            parts.extend(_metadata(value))
        elif key == "categories":
            parts.append(_categories(value))
        elif key in _TIME_KEYS:
            parts.extend(_times(key, value))
        else:
            raise FilterError(f"Unsupported filter field: {key}")
    return parts[0] if len(parts) == 1 else _All(tuple(parts))


def _children(key: str, value: object) -> tuple[Node, ...]:
    if not isinstance(value, list) or not value:
        raise FilterError(f"{key} takes a non-empty list of filters")
    return tuple(parse_filters(child) for child in value)


def _entity(key: str, value: object) -> _Entity:
    if value == "*":
        return _Entity(key, "any", frozenset())
    if isinstance(value, str | int) and not isinstance(value, bool):
        return _Entity(key, "eq", frozenset({str(value)}))
    if isinstance(value, Mapping) and len(value) == 1:
        ((op, operand),) = value.items()
        if op == "in" and isinstance(operand, list):
            return _Entity(key, "in", frozenset(str(v) for v in operand))
        if op in ("eq", "ne") and isinstance(operand, str | int):
            return _Entity(key, op, frozenset({str(operand)}))
    raise FilterError(f"Unsupported condition on {key}: {value!r}")


def _metadata(value: object) -> list[Node]:
    if not isinstance(value, Mapping) or not value:
        raise FilterError("metadata filter must be a non-empty object")
    parts: list[Node] = []
    for key, condition in value.items():
        if condition == "*":
            parts.append(_Meta(key, "any", ()))
        elif isinstance(condition, Mapping) and len(condition) == 1:
            ((op, operand),) = condition.items()
            if op == "in" and isinstance(operand, list):
                parts.append(_Meta(key, "in", tuple(operand)))
            elif op in ("eq", "ne", "contains"):
                parts.append(_Meta(key, op, (operand,)))
            else:
                raise FilterError(f"Unsupported operator on metadata.{key}: {op}")
        else:
            parts.append(_Meta(key, "eq", (condition,)))
    return parts


def _categories(value: object) -> _Categories:
    if isinstance(value, str):
        return _Categories(frozenset({value}))
    if isinstance(value, Mapping) and len(value) == 1:
        ((op, operand),) = value.items()
        if op == "contains" and isinstance(operand, str):
            return _Categories(frozenset({operand}))
        if op == "in" and isinstance(operand, list):
            return _Categories(frozenset(str(v) for v in operand))
    raise FilterError(f"Unsupported condition on categories: {value!r}")


def _times(key: str, value: object) -> list[Node]:
    if not isinstance(value, Mapping) or not value:
        raise FilterError(f"{key} takes comparisons such as {{'gte': '2024-01-01'}}")
    parts: list[Node] = []
    for op, operand in value.items():
        compare = _COMPARISONS.get(op)
        if compare is None:
            raise FilterError(f"Unsupported operator on {key}: {op}")
        try:
            parts.append(_Time(key, compare, parse_time(operand)))
        except ValueError as exc:
            raise FilterError(f"{key}.{op} is not a date: {operand!r}") from exc
    return parts
