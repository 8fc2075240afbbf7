"""Receipts to bytes and back, in the input's encodings (README "Publishing events").

With a schema registry (`SCHEMA_REGISTRY_URL`) a receipt is Confluent-framed, its schema
registered once under `<receipts topic>-value`; without one it is Avro single-object encoded, its
fingerprint that of `schemas/deletion_receipt.avsc`. The body is written by `receipt_writer`,
which is specialised for that schema, when the schema is the one it was written for, and by
fastavro otherwise. Reading takes either framing, resolving an older or newer writer against the
shipped reader schema like the event decoder does; the writers it keeps by registry id are
bounded, as any value can name any id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, Final, Protocol

from fastavro import schemaless_reader

from consumer.avro.codec import AvroSchema, SchemaSource, default_schema_dir, encode_record
from consumer.avro.framing import FramingError, frame_confluent, frame_single_object, split_header
from consumer.avro.receipt_writer import FINGERPRINT as _WRITER_FINGERPRINT
from consumer.avro.receipt_writer import (
    as_messages,
    completed_records,
    receipt_body,
    receipt_values,
)
from consumer.avro.registry import RegistryError
from consumer.core.bounded import TtlCache
from consumer.core.errors import ConsumerError
from consumer.core.receipts import CompletedReceipts, Receipt
from consumer.core.retry import wait_out_delays

__all__ = [
    "RECEIPT_FILE",
    "RECEIPT_NAME",
    "ReceiptDecodeError",
    "ReceiptDecoder",
    "ReceiptEncoder",
    "SchemaRegistrar",
    "receipt_schemas",
]

log = logging.getLogger(__name__)

RECEIPT_FILE: Final = "deletion_receipt.avsc"
RECEIPT_NAME: Final = "memory.deletion.DeletionReceipt"
# Writers kept by registry id: a receipts topic has one or two; a parsed schema is a few kB.
_WRITERS_BY_ID: Final = 256


class SchemaRegistrar(Protocol):
    """Where the receipt schema is registered (a SchemaRegistryClient)."""

    def register(self, subject: str, schema: str) -> int: ...


class ReceiptDecodeError(ConsumerError, ValueError):
    """Bytes that are not a receipt this reader understands."""


def receipt_schemas(directory: Path | None = None) -> tuple[AvroSchema, dict[bytes, AvroSchema]]:
    """The reader schema and every receipt schema shipped beside it, by fingerprint."""
    folder = directory if directory is not None else default_schema_dir()
    reader = AvroSchema.parse((folder / RECEIPT_FILE).read_text(encoding="utf-8"))
    known = {reader.fingerprint: reader}
    for file in sorted(folder.glob("*.avsc")):
        schema = AvroSchema.parse(file.read_text(encoding="utf-8"))
        if schema.full_name == RECEIPT_NAME:
            known.setdefault(schema.fingerprint, schema)
    return reader, known


class ReceiptEncoder:
    """Receipts to framed bytes; with a registry, the schema is registered on first use.

    The bodies are `receipt_writer`'s when the receipt schema in `directory` is the one it writes
    (the same fingerprint), fastavro's for any other: a schema edited without the writer still
    encodes correctly, only slower (and a unit test fails).
    """

    def __init__(
        self,
        *,
        registry: SchemaRegistrar | None = None,
        subject: str = "",
        directory: Path | None = None,
    ) -> None:
        folder = directory if directory is not None else default_schema_dir()
        self._text = (folder / RECEIPT_FILE).read_text(encoding="utf-8")
        self.schema = AvroSchema.parse(self._text)
        self._body: Callable[[Receipt], bytes] = (
            receipt_body if self.schema.fingerprint == _WRITER_FINGERPRINT else self._fastavro_body
        )
        self._registry = registry
        self._subject = subject
        self._schema_id: int | None = None
        self._lock = asyncio.Lock()

    @property
    def specialised(self) -> bool:
        """Whether bodies come from `receipt_writer` (else from fastavro)."""
        return self._body is receipt_body

    def single_object(self, receipt: Receipt) -> bytes:
        return frame_single_object(self._body(receipt), self.schema.fingerprint)

    def confluent(self, receipt: Receipt, schema_id: int) -> bytes:
        return frame_confluent(self._body(receipt), schema_id)

    async def encode(self, receipt: Receipt) -> bytes:
        if self._registry is None:
            return self.single_object(receipt)
        return self.confluent(receipt, await self._registered())

    async def encode_many(self, receipts: Sequence[Receipt]) -> list[bytes]:
        """`encode` of each, in order; the registry (if any) is asked once, before the first.
        An empty batch asks nothing, so a registry outage cannot hold it up."""
        if not receipts:
            return []
        header = await self._header()
        if self.specialised:  # compiled where it could be built
            return receipt_values(receipts, header)
        body = self._body
        return [header + body(receipt) for receipt in receipts]

    async def encode_messages(self, receipts: Sequence[Receipt]) -> list[dict[str, bytes]]:
        """Each receipt as a message, {"key": its event id, "value": `encode`'s bytes}."""
        return as_messages(receipts, await self.encode_many(receipts))

    async def encode_completed(self, batch: CompletedReceipts) -> list[dict[str, bytes]]:
        """`encode_messages` of `batch.receipts()`, written without building the receipts
        where the writer is specialised."""
        if not batch:
            return []
        if self.specialised:
            return completed_records(batch, await self._header())
        return await self.encode_messages(batch.receipts())

    async def _header(self) -> bytes:
        """The framing before every body. Made once per batch rather than per receipt
        (`confluent` packs the id each time): a tenth off a Confluent batch."""
        if self._registry is None:
            return frame_single_object(b"", self.schema.fingerprint)
        return frame_confluent(b"", await self._registered())

    def _fastavro_body(self, receipt: Receipt) -> bytes:
        return encode_record(receipt.to_record(), self.schema)

    async def _registered(self) -> int:
        """The schema id, registering the schema first; a registry that fails is waited out
        (the receipt, and so the offset, waits with it)."""
        async with self._lock:
            delays = wait_out_delays()
            while self._schema_id is None:
                registry = self._registry
                assert registry is not None
                try:
                    self._schema_id = await asyncio.get_running_loop().run_in_executor(
                        None, registry.register, self._subject, self._text
                    )
                except RegistryError as exc:
                    level = logging.WARNING if exc.retriable else logging.ERROR
                    delay = next(delays)
                    log.log(
                        level, "receipt schema not registered, retrying in %.1fs: %s", delay, exc
                    )
                    await asyncio.sleep(delay)
            return self._schema_id


class ReceiptDecoder:
    """Framed bytes to receipts; registry-framed ones need `registry`."""

    def __init__(self, registry: SchemaSource | None = None, directory: Path | None = None) -> None:
        self._reader, self._known = receipt_schemas(directory)
        self._registry = registry
        self._by_id: TtlCache[int, AvroSchema] = TtlCache(_WRITERS_BY_ID)

    def decode(self, value: bytes | None) -> Receipt:
        try:
            key, start = split_header(value)
        except FramingError as exc:
            raise ReceiptDecodeError(str(exc)) from None
        assert value is not None  # split_header refuses None
        if isinstance(key, int):
            return self._read(self._writer(key), value, start)
        writer = self._known.get(key)
        if writer is None:
            raise ReceiptDecodeError(f"unknown fingerprint {key.hex()}")
        return self._read(writer, value, start)

    def _writer(self, schema_id: int) -> AvroSchema:
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        if self._registry is None:
            raise ReceiptDecodeError(f"schema id {schema_id}: no schema registry set")
        try:
            writer = AvroSchema.parse(self._registry.get_schema(schema_id))
        except (RegistryError, ValueError) as exc:
            raise ReceiptDecodeError(f"schema id {schema_id}: {exc}") from exc
        self._by_id.put(schema_id, writer)
        return writer

    def _read(self, writer: AvroSchema, value: bytes, start: int) -> Receipt:
        reader: Any = None if writer.canonical == self._reader.canonical else self._reader.decoding
        body = BytesIO(value)
        body.seek(start)
        try:
            record = schemaless_reader(body, writer.decoding, reader)
            if not isinstance(record, dict):
                raise ReceiptDecodeError("not a record")
            return Receipt.from_record(record)
        except ReceiptDecodeError:
            raise
        except Exception as exc:  # arbitrary bytes make fastavro raise almost anything
            raise ReceiptDecodeError(f"not a receipt ({type(exc).__name__})") from exc
