"""Bounded memory and a bounded rate for what outsiders can make grow: a cache that forgets its
least recently used entries (and, if asked, entries older than a time to live), and a token
bucket.

Both serve the schema-id lookups (avro/schema_ids.py): any producer can name any of four billion
registry ids, so neither what is remembered of them nor how often the registry is asked may
depend on how many it names. The caller passes the clock, so both are deterministic under test.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["TokenBucket", "TtlCache"]

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most `capacity` entries; `ttl` seconds after it was put, an entry is gone (None: kept
    until the least recently used is pushed out). Not thread-safe: lock around it if shared."""

    def __init__(
        self,
        capacity: int,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("a cache holds at least one entry")
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        # key -> (value, when it expires); the order is that of last use, oldest first.
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        value, expires = found
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        expires = float("inf") if self.ttl is None else self._clock() + self.ttl
        entries = self._entries
        entries[key] = (value, expires)
        entries.move_to_end(key)
        while len(entries) > self.capacity:
            entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `reserve` books one and says how long
    to wait for it. Bookings queue in order: the tokens go negative by what is booked ahead."""

    rate: float
    burst: int
    _tokens: float = field(init=False)
    _at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least one")
        self._tokens = float(self.burst)

    def reserve(self, now: float) -> float:
        """Book the next token; seconds to wait before using it (0: at once)."""
        if self._at is not None and now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
