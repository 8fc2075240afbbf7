"""Writer schemas by registry id: what the decoder remembers of them, and how it asks.

A Confluent-framed value names its writer by a 4-byte id, so any producer (or a flipped bit)
can name any of four billion. What is remembered of them is bounded, and so is what a flood of
unknown ones may cost the registry and the consumer:

- usable schemas, as the decoder's read plans: in the plain dict the decoder reads first for
  every message (no call and no bookkeeping on that path), at most `MAX_PLANS`, oldest out first;
- ids the registry has no schema for: forgotten `NOT_FOUND_TTL_S` later (then asked again: the
  schema may have been registered since), at most `MAX_MISSES`, least recently used out first;
- ids whose schema is unusable (no event, unbounded): kept, as ids are immutable, but at most
  `MAX_MISSES` too.

Two ways to ask. Inline (the commands, tests): the registry is asked there and then, and its
failures raise to the caller. Deferred (the consumer's loop, `defer=True`): a miss raises
`SchemaPending` instead, and the flush asks `look_up`, which fetches on threads of its own, never
on the event loop; at most `LOOKUP_RATE` fetches a second (a token bucket of `LOOKUP_BURST`),
`LOOKUP_THREADS` at once, one per id however many records wait on it. Once `MAX_PENDING` ids
wait, another unknown id is not asked for at all: its record is `unknown_schema` at once (its
dead letter holds the bytes, and a replay once the flood is over decodes it). So a flood of
unknown ids costs at most `LOOKUP_RATE` fetches a second and about `MAX_PENDING / LOOKUP_RATE`
seconds of waiting per record, however large it is, while a known id decodes at once from the
dict. A registry that fails is waited out, as inline: that is no record's fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from consumer.avro.registry import RegistryError, SchemaNotFound
from consumer.core.bounded import TokenBucket, TtlCache
from consumer.core.errors import ConsumerError
from consumer.core.retry import wait_out_delays

__all__ = [
    "LOOKUP_BURST",
    "LOOKUP_RATE",
    "LOOKUP_THREADS",
    "MAX_MISSES",
    "MAX_PENDING",
    "MAX_PLANS",
    "NOT_FOUND_TTL_S",
    "LookupLimits",
    "SchemaIds",
    "SchemaPending",
    "SchemaSource",
    "UnknownSchemaId",
]

log = logging.getLogger(__name__)

P = TypeVar("P")

# A schema registered after the first event that names it is found within a minute, and an id
# the registry lacks costs at most one fetch a minute (fewer: the rate below bounds them all).
NOT_FOUND_TTL_S: Final = 60.0
# A few thousand ids, well under a megabyte: more than a deployment meets in its life. A flood
# past it only makes an id be asked for again, which the rate bounds.
MAX_MISSES: Final = 4096
# A plan holds two parsed schemas (a few kB); a topic has a handful of writer versions.
MAX_PLANS: Final = 1024
# A restart with a dozen writer ids warms up in under a second; a flood costs the registry at
# most this many fetches a second per process, which it serves from memory.
LOOKUP_RATE: Final = 20.0
LOOKUP_BURST: Final = 20
# A registry answers in milliseconds: four at once keep up with the rate, and a slow one (up to
# the client's timeout) holds at most four threads.
LOOKUP_THREADS: Final = 4
# About three seconds of fetches at the rate: the longest a record waits for its writer.
MAX_PENDING: Final = 64


@dataclass(frozen=True, slots=True)
class LookupLimits:
    """How much deferred lookups may cost (the defaults above say why their values)."""

    rate: float = LOOKUP_RATE
    burst: int = LOOKUP_BURST
    threads: int = LOOKUP_THREADS
    max_pending: int = MAX_PENDING


class SchemaSource(Protocol):
    """Where Confluent-framed messages find their writer schema (a SchemaRegistryClient)."""

    def get_schema(self, schema_id: int) -> str: ...


class UnknownSchemaId(ConsumerError):
    """No usable writer under this id: none registered, no registry, unusable, or not asked for
    (too many lookups waiting). The message never holds schema content."""


class SchemaPending(ConsumerError):
    """Deferred lookups: this id's writer must be looked up first (`SchemaIds.look_up`)."""

    retriable = True

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"schema id {schema_id} is to be looked up")
        self.schema_id = schema_id


class SchemaIds(Generic[P]):
    """What is known of registry ids, as plans `accept` makes of their schemas' text.

    `accept(schema_id, text)` returns the plan, or raises UnknownSchemaId if the schema is unusable
    (remembered for good). Deferred lookups run on the event loop that calls `look_up`.
    """

    def __init__(
        self,
        registry: SchemaSource | None,
        accept: Callable[[int, str], P],
        *,
        defer: bool = False,
        not_found_ttl: float = NOT_FOUND_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        limits: LookupLimits | None = None,
    ) -> None:
        limits = limits or LookupLimits()
        self._registry = registry
        self._accept = accept
        self._defer = defer
        # The decoder reads this dict itself: a hit costs one dict lookup, nothing else.
        self.plans: dict[int, P] = {}
        self._unusable: TtlCache[int, str] = TtlCache(MAX_MISSES, clock=clock)
        self._missing: TtlCache[int, bool] = TtlCache(MAX_MISSES, not_found_ttl, clock)
        # Inline lookups may run on several threads at once (the replay's, a test's).
        self._lock = threading.Lock()
        # The bucket paces real waits (asyncio.sleep), so it reads the real clock.
        self._bucket = TokenBucket(limits.rate, limits.burst)
        self._threads = limits.threads
        self._max_pending = limits.max_pending
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._executor: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """Ids being looked up now."""
        return len(self._pending)

    def resolve(self, schema_id: int) -> P:
        """The plan of an id not in `plans`: UnknownSchemaId if it is known to have none; else
        inline, asked for now (RegistryError if the registry fails), deferred, SchemaPending."""
        if self._registry is None:
            raise UnknownSchemaId(f"schema id {schema_id}: no schema registry set")
        with self._lock:
            found = self.plans.get(schema_id)
            if found is not None:  # a lookup finished meanwhile
                return found
            unusable = self._unusable.get(schema_id)
            if unusable is not None:
                raise UnknownSchemaId(unusable)
            if self._missing.get(schema_id) is not None:
                raise UnknownSchemaId(f"schema id {schema_id} not in the registry")
        if self._defer:
            raise SchemaPending(schema_id)
        try:
            text = self._registry.get_schema(schema_id)
        except SchemaNotFound as exc:
            self._not_found(schema_id)
            raise UnknownSchemaId(f"schema id {schema_id} not in the registry") from exc
        # RegistryUnavailable and other RegistryErrors propagate: not this message's fault.
        return self._found(schema_id, text)

    def look_up(self, schema_id: int) -> asyncio.Task[None]:
        """Start looking `schema_id` up, or join the lookup under way; the task ends once the
        registry has answered (failures are waited out), its answer in the caches. Await it
        with `asyncio.wait`, which leaves it running for the others waiting on it if the waiter
        is cancelled. UnknownSchemaId, asking nothing, when `MAX_PENDING` ids already wait."""
        task = self._pending.get(schema_id)
        if task is not None:
            return task
        if len(self._pending) >= self._max_pending:
            raise UnknownSchemaId(
                f"schema id {schema_id} not looked up: {len(self._pending)} lookups already "
                "wait (a flood of unknown schema ids?); replay it once they are done"
            )
        task = asyncio.get_running_loop().create_task(self._fetch(schema_id))
        self._pending[schema_id] = task
        task.add_done_callback(lambda _: self._pending.pop(schema_id, None))
        return task

    def close(self) -> None:
        """Stop the lookups under way (call it on their loop); a fetch in progress on a thread
        ends with the client's timeout, its answer unused."""
        for task in list(self._pending.values()):
            task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _fetch(self, schema_id: int) -> None:
        registry = self._registry
        assert registry is not None  # resolve refuses every id without one, so none is pending
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="schema-ids")
        delays = wait_out_delays()
        while True:
            wait = self._bucket.reserve(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)  # the rate's own wait, not a synchronisation
            try:
                text = await loop.run_in_executor(self._executor, registry.get_schema, schema_id)
            except SchemaNotFound:
                self._not_found(schema_id)
                return
            except RegistryError as exc:
                delay = next(delays)
                level = logging.WARNING if exc.retriable else logging.ERROR
                log.log(level, "schema registry failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            # An unusable schema is remembered as such: its records are told when they decode.
            with contextlib.suppress(UnknownSchemaId):
                self._found(schema_id, text)
            return

    def _not_found(self, schema_id: int) -> None:
        with self._lock:
            self._missing.put(schema_id, True)

    def _found(self, schema_id: int, text: str) -> P:
        try:
            plan = self._accept(schema_id, text)
        except UnknownSchemaId as exc:
            with self._lock:
                self._unusable.put(schema_id, str(exc))
            raise
        with self._lock:
            self._missing.pop(schema_id)
            plans = self.plans
            if schema_id not in plans and len(plans) >= MAX_PLANS:
                # Oldest first, not least recently used: keeping the order of use would cost
                # every hit a call, and a real topic never comes near the bound.
                del plans[next(iter(plans))]
            plans[schema_id] = plan
        return plan
