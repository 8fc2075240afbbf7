"""Bytes to DeletionEvent and back: both wire framings, Avro schema resolution, DecodeError.

Wire formats (README "Publishing events"; framing.py has them)::

    0x00 | schema id, 4 bytes big-endian | Avro body          writer schema from the registry
    0xC3 0x01 | fingerprint, 8 bytes LE | Avro body           writer schema from schemas/

What `Decoder.decode` can end in:

- a `DeletionEvent`;
- `DecodeError`: the message's own fault, dead-letter it with `reason` (`decode_error` or
  `unknown_schema`);
- `RegistryError` (from registry.py): not the message's fault; back off when `retriable`, else halt.
  Never dead-letter for it, or a registry blip would throw good events away;
- `SchemaPending` (from schema_ids.py), only with `defer_lookups`: the writer of its schema id is
  not known yet; `look_up` it off the event loop, then decode again. The consumer's loop decodes
  so; the commands and tests ask the registry inline.

What is remembered of registry ids, and how often the registry is asked, is bounded
(schema_ids.py): any producer can name any of four billion ids.

`DecodeError` and `SchemaError` (a schema the codec will not read with; also a ValueError) derive
from `consumer.core.errors.ConsumerError`, as the registry's errors do.

A writer schema that Avro resolution cannot reconcile with the reader counts as `unknown_schema`,
not `decode_error`: the bytes may be fine, this consumer just cannot read that schema yet, and
replaying once a reader that can is deployed recovers them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Final, Literal

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form

from consumer.avro.event_reader import CANONICAL as _FAST_CANONICAL
from consumer.avro.event_reader import CANONICAL_V1 as _FAST_CANONICAL_V1
from consumer.avro.event_reader import read_event
from consumer.avro.framing import (
    CONFLUENT_HEADER,
    CONFLUENT_MAGIC,
    SCHEMA_ID,
    SINGLE_OBJECT_HEADER,
    SINGLE_OBJECT_MAGIC,
    FramingError,
    frame_confluent,
    frame_single_object,
    split_header,
)
from consumer.avro.indexes import out_of_range
from consumer.avro.schema_ids import (
    NOT_FOUND_TTL_S,
    LookupLimits,
    SchemaIds,
    SchemaPending,
    SchemaSource,
    UnknownSchemaId,
)
from consumer.core.dlq import DlqReason
from consumer.core.errors import ConsumerError
from consumer.core.events import DeletionEvent, event_from_record, event_to_record

__all__ = [
    "DECODE_ERROR",
    "READER_FILE",
    "UNKNOWN_SCHEMA",
    "AvroSchema",
    "DecodeError",
    "DecodeReason",
    "Decoder",
    "Encoder",
    "SchemaError",
    "SchemaPending",
    "SchemaSource",
    "SchemaStore",
    "default_schema_dir",
    "encode_record",
]

DecodeReason = Literal[DlqReason.DECODE_ERROR, DlqReason.UNKNOWN_SCHEMA]
DECODE_ERROR: Final = DlqReason.DECODE_ERROR
UNKNOWN_SCHEMA: Final = DlqReason.UNKNOWN_SCHEMA

# The current reader schema's file; every other *.avsc beside it is an older or newer writer.
READER_FILE = "deletion_event.avsc"

# The single-object marker's two bytes as ints, compared with `value[0]` and `value[1]` in
# `Decoder.decode` without indexing the marker for every message.
_SINGLE_OBJECT_FIRST: Final = SINGLE_OBJECT_MAGIC[0]
_SINGLE_OBJECT_SECOND: Final = SINGLE_OBJECT_MAGIC[1]

# Deeper than any real event schema; bounds the C recursion in fastavro's compiled reader.
_MAX_DEPTH = 32
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class DecodeError(ConsumerError):
    """The message cannot become an event. The message never holds payload bytes or ids."""

    def __init__(self, reason: DecodeReason, message: str) -> None:
        super().__init__(message)
        self.reason: DecodeReason = reason


class SchemaError(ConsumerError, ValueError):
    """A schema this codec will not decode with: unparseable, recursive, or unbounded."""


@dataclass(frozen=True, slots=True, eq=False)
class AvroSchema:
    """One parsed schema, in the two forms the codec needs, and its identity."""

    full_name: str
    # For encoding: as written, logical types included.
    parsed: Any
    # For decoding: logical types dropped, so timestamp-millis stays the long that events.py
    # wants, not a datetime that fastavro builds and events.py takes apart again; fastavro's
    # read alone gets 10-20% faster (bench/decode_bench.py).
    decoding: Any
    # Parsing Canonical Form: equal forms read the same bytes the same way.
    canonical: str
    # CRC-64-AVRO of the canonical form, as the 8 bytes single-object encoding carries.
    fingerprint: bytes

    @classmethod
    def parse(cls, source: str | Mapping[str, Any]) -> AvroSchema:
        """Parse Avro JSON text or its decoded form; SchemaError if it is unusable for decoding."""
        try:
            raw = json.loads(source) if isinstance(source, str) else dict(source)
            parsed = parse_schema(raw)
            decoding = parse_schema(_without_logical_types(raw))
            canonical = to_parsing_canonical_form(parsed)
            digest = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        except Exception as exc:  # fastavro raises a zoo of types on malformed schemas
            raise SchemaError(f"not a valid Avro schema ({type(exc).__name__})") from exc
        _check_bounded(decoding, set(), {}, 0)
        name = parsed.get("name", "") if isinstance(parsed, dict) else ""
        return cls(str(name), parsed, decoding, canonical, digest)


class SchemaStore:
    """The reader schema and every known writer of its record, by fingerprint."""

    def __init__(self, reader: AvroSchema, writers: Iterable[AvroSchema] = ()) -> None:
        self.reader = reader
        by_fingerprint = {reader.fingerprint: reader}
        # Another record's schema (a receipt, say) in the same folder is not a writer of events.
        same = (w for w in writers if w.full_name == reader.full_name)
        by_fingerprint.update((w.fingerprint, w) for w in same)
        self._by_fingerprint = by_fingerprint

    @classmethod
    def from_directory(cls, path: Path | str | None = None) -> SchemaStore:
        """Load `deletion_event.avsc` as the reader and every `*.avsc` there as a writer."""
        directory = Path(path) if path is not None else default_schema_dir()
        if not (directory / READER_FILE).is_file():
            raise FileNotFoundError(f"no {READER_FILE} in {directory}")
        reader = _load(directory / READER_FILE)
        return cls(reader, [_load(file) for file in sorted(directory.glob("*.avsc"))])

    @property
    def writers(self) -> Mapping[bytes, AvroSchema]:
        """Every usable writer schema, the reader included, by its 8-byte fingerprint."""
        return self._by_fingerprint


def default_schema_dir() -> Path:
    """The schemas shipped with the code.

    A wheel carries them inside the package as `consumer/schemas_data/` (a build mapping, so
    `schemas/` stays the one copy in the repository); a checkout reads `schemas/` directly. The
    packaged folder is tried first so an unrelated top-level `schemas/` in site-packages is never
    picked up by mistake.
    """
    package = Path(__file__).resolve().parents[1]  # consumer/
    for candidate in (package / "schemas_data", package.parent / "schemas"):
        if (candidate / READER_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"{READER_FILE} is in neither {package / 'schemas_data'} nor a checkout"
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read one writer's bodies; `reader` None means no resolution is needed."""

    writer: Any
    reader: Any
    # Written with a schema event_reader.py knows (version 2 or 1), for the reader it knows: try
    # its shortcut first.
    fast: bool = False
    # Written with the reader schema itself, version 2 (no resolution): its MemoriesDeleted ends
    # with include_linked, so a MemoriesDeleted body's last byte is that boolean. The shortcut
    # reads the byte; the general path refuses it unless it is 0 or 1 (see `indexes.py`).
    linked: bool = False


class Decoder:
    """Framed bytes to events; parses every writer schema once and keeps its read plan."""

    def __init__(
        self,
        store: SchemaStore,
        registry: SchemaSource | None = None,
        *,
        not_found_ttl: float = NOT_FOUND_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        defer_lookups: bool = False,
        lookup_limits: LookupLimits | None = None,
    ) -> None:
        self._reader = store.reader
        self._by_fingerprint = {fp: self._plan(w) for fp, w in store.writers.items()}
        self._ids = SchemaIds(
            registry,
            self._accept,
            defer=defer_lookups,
            not_found_ttl=not_found_ttl,
            clock=clock,
            limits=lookup_limits,
        )
        # The plans of registry ids, read here first for every message (see `decode`).
        self._by_id = self._ids.plans

    def decode(self, value: bytes | None) -> DeletionEvent:
        """One Kafka message value to an event; DecodeError or RegistryError otherwise."""
        # The two well-formed headers are read here, inline, with framing.py's constants: this
        # runs for every message (see framing.py). Any other value is refused below.
        if value:
            magic = value[0]
            if magic == CONFLUENT_MAGIC and len(value) >= CONFLUENT_HEADER:
                (schema_id,) = SCHEMA_ID.unpack_from(value, 1)
                plan = self._by_id.get(schema_id) or self._fetch(schema_id)
                return self._read(plan, value, CONFLUENT_HEADER)
            if (
                magic == _SINGLE_OBJECT_FIRST
                and len(value) >= SINGLE_OBJECT_HEADER
                and value[1] == _SINGLE_OBJECT_SECOND
            ):
                digest = value[2:SINGLE_OBJECT_HEADER]
                found = self._by_fingerprint.get(digest)
                if found is None:
                    raise DecodeError(UNKNOWN_SCHEMA, f"unknown writer fingerprint {digest.hex()}")
                return self._read(found, value, SINGLE_OBJECT_HEADER)
        raise DecodeError(DECODE_ERROR, _header_fault(value))

    def _plan(self, writer: AvroSchema) -> _Plan:
        known = self._reader.canonical == _FAST_CANONICAL
        if writer.canonical == self._reader.canonical:
            # Same bytes, same meaning: skipping resolution makes fastavro's read much cheaper.
            return _Plan(self._reader.decoding, None, known, linked=known)
        # Version 1 resolves to the reader's default include_linked, which the shortcut gives.
        fast = known and writer.canonical == _FAST_CANONICAL_V1
        return _Plan(writer.decoding, self._reader.decoding, fast)

    def look_up(self, schema_id: int) -> asyncio.Task[None]:
        """With `defer_lookups`, after SchemaPending: the lookup of `schema_id`, off the event
        loop and rate-limited (see schema_ids.py); decode again once it is done. DecodeError
        (`unknown_schema`) when too many lookups wait already: that id is not asked for."""
        try:
            return self._ids.look_up(schema_id)
        except UnknownSchemaId as exc:
            raise DecodeError(UNKNOWN_SCHEMA, str(exc)) from None

    def close(self) -> None:
        """Stop the deferred lookups under way (on their event loop)."""
        self._ids.close()

    def _fetch(self, schema_id: int) -> _Plan:
        try:
            return self._ids.resolve(schema_id)
        except UnknownSchemaId as exc:
            raise DecodeError(UNKNOWN_SCHEMA, str(exc)) from exc

    def _accept(self, schema_id: int, text: str) -> _Plan:
        """The plan for the registry's schema `text`; UnknownSchemaId if it is unusable."""
        try:
            writer = AvroSchema.parse(text)
        except SchemaError as exc:
            raise UnknownSchemaId(f"schema id {schema_id} is unusable: {exc}") from exc
        if _unqualified(writer.full_name) != _unqualified(self._reader.full_name):
            raise UnknownSchemaId(f"schema id {schema_id} is not a {self._reader.full_name}")
        return self._plan(writer)

    def _read(self, plan: _Plan, value: bytes, start: int) -> DeletionEvent:
        if plan.fast and (event := read_event(value, start, plan.linked)) is not None:
            return event
        fo = BytesIO(value)  # shares the bytes, no copy; seek instead of slicing the header off
        fo.seek(start)
        try:
            record = schemaless_reader(fo, plan.writer, plan.reader, return_record_name=True)
        except SchemaResolutionError as exc:
            raise DecodeError(UNKNOWN_SCHEMA, "writer schema does not resolve to reader") from exc
        except Exception as exc:  # arbitrary bytes make fastavro raise almost anything
            raise DecodeError(
                DECODE_ERROR,
                f"body does not match its schema ({type(exc).__name__} at byte {fo.tell()} "
                f"of {len(value)})",
            ) from exc
        end = fo.tell()
        if end != len(value):
            raise DecodeError(DECODE_ERROR, f"{len(value) - end} trailing bytes after the record")
        if not isinstance(record, dict):
            raise DecodeError(DECODE_ERROR, "body is not a record")
        fault = out_of_range(plan.writer, value, start)
        if fault is not None:
            # fastavro reads a union or enum index with Python's indexing, so a negative one
            # picks a branch from the end (0x01 turns a body into a MemoriesDeleted): no valid
            # Avro, and a delete nobody asked for.
            raise DecodeError(DECODE_ERROR, fault)
        try:
            event = event_from_record(record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DecodeError(DECODE_ERROR, f"not an event ({type(exc).__name__})") from exc
        return event


class Encoder:
    """Events (or raw records, for `produce` and tests) to framed bytes."""

    def __init__(self, store: SchemaStore) -> None:
        self._reader = store.reader

    def single_object(
        self, event: DeletionEvent | Mapping[str, Any], schema: AvroSchema | None = None
    ) -> bytes:
        """Avro single-object encoding, written with `schema` (default: the reader schema)."""
        writer = schema or self._reader
        return frame_single_object(encode_record(_record(event), writer), writer.fingerprint)

    def confluent(
        self,
        event: DeletionEvent | Mapping[str, Any],
        schema_id: int,
        schema: AvroSchema | None = None,
    ) -> bytes:
        """Confluent framing; `schema` must be what the registry holds under `schema_id`."""
        return frame_confluent(encode_record(_record(event), schema or self._reader), schema_id)


def encode_record(record: Mapping[str, Any], schema: AvroSchema) -> bytes:
    """The bare Avro body of `record`; a union of records takes `(full_name, fields)`."""
    buffer = BytesIO()
    # Not strict=True: fastavro 1.13's strict mode rejects a missing field whose default is null.
    # Missing fields take their default; jsonlines.py refuses unknown fields before this.
    schemaless_writer(buffer, schema.parsed, dict(record))
    return buffer.getvalue()


def _header_fault(value: bytes | None) -> str:
    """What is wrong with the header of a value `Decoder.decode` did not read, in the words of
    `framing.split_header`, the one reader of both headers."""
    try:
        split_header(value)
    except FramingError as exc:
        return str(exc)
    # Unreachable while decode reads every header split_header reads.
    raise AssertionError("framing.split_header reads a header Decoder.decode refused")


def _record(event: DeletionEvent | Mapping[str, Any]) -> Mapping[str, Any]:
    return event_to_record(event) if isinstance(event, DeletionEvent) else event


def _load(file: Path) -> AvroSchema:
    try:
        return AvroSchema.parse(file.read_text(encoding="utf-8"))
    except SchemaError as exc:
        raise SchemaError(f"{file.name}: {exc}") from exc


def _unqualified(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(v) for v in schema]
    return schema


def _check_bounded(schema: Any, open_names: set[str], widths: dict[str, bool], depth: int) -> bool:
    """Refuse writer schemas whose reading has no bound; True if a value may take zero bytes.

    fastavro's compiled reader recurses in C, so data nested through a recursive schema crashes
    the process (a segfault, not an exception) at a few thousand levels; and an array of
    zero-width items (null, empty records) lets a 10-byte count spin for ever. Neither can
    describe a deletion event, and a registry or a file could hand us either.
    """
    if depth > _MAX_DEPTH:
        raise SchemaError(f"schema nests deeper than {_MAX_DEPTH} levels")
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema == "null"
        if schema in open_names:
            raise SchemaError("recursive schemas are not supported")
        if schema not in widths:
            raise SchemaError("schema refers to an undefined type")
        return widths[schema]
    if isinstance(schema, list):
        for branch in schema:
            _check_bounded(branch, open_names, widths, depth + 1)
        return False  # the branch index takes a byte
    if not isinstance(schema, dict):
        raise SchemaError("schema node is neither a name, a union nor an object")
    kind = schema.get("type")
    name = str(schema.get("name"))
    if kind in ("record", "error"):
        open_names.add(name)
        fields = [
            _check_bounded(field["type"], open_names, widths, depth + 1)
            for field in schema["fields"]
        ]
        open_names.discard(name)
        widths[name] = all(fields)
        return widths[name]
    if kind == "enum":
        widths[name] = False
        return False
    if kind == "fixed":
        widths[name] = schema.get("size") == 0
        return widths[name]
    if kind == "array":
        if _check_bounded(schema["items"], open_names, widths, depth + 1):
            raise SchemaError("array of zero-width items")
        return False
    if kind == "map":
        _check_bounded(schema["values"], open_names, widths, depth + 1)
        return False  # every entry carries a key
    return _check_bounded(kind, open_names, widths, depth + 1)
