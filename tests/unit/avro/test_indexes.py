"""Negative union and enum indexes, and stray boolean bytes, are refused on the general path.

fastavro reads such an index with Python's indexing (a branch from the end): a body whose
payload branch is 0x01 decoded as a MemoriesDeleted, a delete nobody asked for. Found by the
sanitizer fuzz (tests/fuzz); these bodies are the corpus' `edge-odd-branch-1` and
`edge-reason-negative` kind.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.avro.codec import DecodeError, Decoder, SchemaStore
from consumer.avro.indexes import out_of_range
from tests.unit.avro.test_event_reader import GENERAL, MUTATED, RECORDS, encode, general

STORE = SchemaStore.from_directory()
DECODER = Decoder(STORE)
HEADER = b"\xc3\x01" + STORE.reader.fingerprint

# event_id "e", occurred_at 1, source "s", reason GDPR, then the payload.
PREFIX = b"\x02e\x02\x02s\x02"


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        (PREFIX + b"\x01\x02\x02m\x00\x00\x01", "union index -1 of 4 branches"),  # -1: last
        (PREFIX + b"\x07\x02a", "union index -4 of 4 branches"),  # -4: UserDeleted
        (b"\x02e\x02\x02s\x01\x00\x02a", "enum index -1 of 6 symbols"),  # reason -1: OTHER
        (PREFIX + b"\x02\x02r\x01\x02u\x00", "union index -1 of 2 branches"),  # optional -1
    ],
)
def test_an_index_from_the_end_is_a_decode_error(body: bytes, fault: str) -> None:
    with pytest.raises(DecodeError) as info:
        DECODER.decode(HEADER + body)
    assert info.value.reason == "decode_error"
    assert str(info.value) == fault


@pytest.mark.parametrize("linked", [True, False], ids=["v2", "v1"])
@given(record=RECORDS)
@settings(max_examples=300)
def test_every_valid_body_is_in_range(linked: bool, record: dict[str, object]) -> None:
    body = encode(record, linked)
    assert out_of_range(GENERAL[linked].writer, body, 0) is None
    assert general(body, linked) is not None


@pytest.mark.parametrize("linked", [True, False], ids=["v2", "v1"])
@given(body=st.one_of(st.binary(max_size=200), MUTATED(True), MUTATED(False)))
@settings(max_examples=1000, deadline=1000)
# A negative string length in an array: the walk stepped back onto the count, for ever.
@example(body=PREFIX + b"\x06\x02\x03")
# A block count far past the bytes left.
@example(body=PREFIX + b"\x06\xfe\xff\xff\xff\x0f")
def test_the_walk_never_raises(linked: bool, body: bytes) -> None:
    fault = out_of_range(GENERAL[linked].writer, body, 0)
    assert fault is None or isinstance(fault, str)
