"""The package's error vocabulary: one root, and what a caller does with each error kept as data.

Every exception the consumer raises on purpose derives from `ConsumerError`. Two class
attributes tell the caller what to do without a chain of `isinstance` checks:

- `retriable`: trying the same thing again later may succeed (a 503, a broker that is down);
- `halts`: nothing else should be tried until it is fixed (a refused API key).

An error that is neither is the request's own fault: it is dead-lettered with its reason.
Subclasses live beside the code that raises them (the Mem0 client's tree, the codec's, the
registry's...); this module only holds the root, so `core/` stays free of I/O.
"""

from __future__ import annotations

__all__ = ["ConsumerError"]


class ConsumerError(Exception):
    """The root of every error this package raises on purpose."""

    # Class attributes, which an instance may override (a broker error knows only when raised).
    retriable: bool = False
    halts: bool = False
