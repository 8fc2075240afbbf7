"""The batch_delete body built by hand is the JSON the API documents, whatever the ids."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from consumer.mem0.http import RawJson
from consumer.mem0.platform_client import _batch_body

_IDS = st.one_of(st.uuids().map(str), st.text(max_size=40))


@given(st.lists(_IDS, min_size=1, max_size=20))
def test_the_body_decodes_to_the_documented_shape(ids: list[str]) -> None:
    body = _batch_body(ids)
    decoded = json.loads(body.data) if isinstance(body, RawJson) else json.loads(json.dumps(body))
    assert decoded == {"memories": [{"memory_id": i} for i in ids]}


def test_uuids_take_the_fast_path_and_anything_else_goes_through_json() -> None:
    assert isinstance(_batch_body(["0b0e7c1e-6f5a-4a8e-9a51-3f1f2c9d7e10"]), RawJson)
    assert not isinstance(_batch_body(['a"b']), RawJson)
