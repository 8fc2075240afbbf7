"""The fast id-list checks say exactly what the reference regular expressions say."""

from __future__ import annotations

import uuid

from hypothesis import example, given
from hypothesis import strategies as st

from consumer.core.memory_ids import PATH_SEGMENT_LIST, UUID_LIST, all_path_segments, all_uuids


def reference(ids: list[str], pattern: object) -> bool:
    joined = " ".join(ids)
    return (
        bool(ids) and joined.count(" ") == len(ids) - 1 and bool(pattern.match(joined))  # type: ignore[attr-defined]
    )


# Characters near the edges of the classes: hex and not, unreserved and not, separators, and
# some beyond ASCII (a digit of another script must not pass as hex).
_CHARS = "0189afAFgG-_.~ *\n/?%é٣\x00"


def _mutated_uuid() -> st.SearchStrategy[str]:
    def mutate(base: str, at: int, char: str, how: int) -> str:
        at %= len(base) + 1
        if how == 0:
            return base[:at] + char + base[at + 1 :]  # replace
        if how == 1:
            return base[:at] + char + base[at:]  # insert
        return base[:at] + base[at + 1 :]  # delete

    return st.builds(
        mutate,
        st.uuids().map(str),
        st.integers(0, 40),
        st.sampled_from(_CHARS),
        st.integers(0, 2),
    )


_IDS = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    _mutated_uuid(),
    st.text(alphabet=_CHARS, max_size=40),
    st.sampled_from([".", "..", "...", "", " ", "a b", "~", "-"]),
)


@given(st.lists(_IDS, max_size=6))
@example([str(uuid.UUID(int=0))])
@example([])
@example([""])
def test_uuid_check_matches_the_regex(ids: list[str]) -> None:
    assert all_uuids(ids) == reference(ids, UUID_LIST)


@given(st.lists(_IDS, max_size=6))
@example(["."])
@example(["a", ".."])
@example(["a", "", "b"])
@example([""])
def test_path_segment_check_matches_the_regex(ids: list[str]) -> None:
    expected = reference(ids, PATH_SEGMENT_LIST) and not {".", ".."} & set(ids)
    assert all_path_segments(ids) == expected


def test_a_flush_of_valid_uuids_passes_and_one_bad_id_fails_it() -> None:
    ids = [str(uuid.UUID(int=i)) for i in range(5000)]
    assert all_uuids(ids)
    assert all_path_segments(ids)
    ids[2500] = ids[2500][:-1] + "g"
    assert not all_uuids(ids)
    ids[2500] = "../memories?user_id=alice"
    assert not all_path_segments(ids)


def test_a_bad_id_is_found_on_either_side_of_a_chunk_boundary() -> None:
    for at in (0, 1023, 1024, 2047, 2048, 2999):
        ids = [str(uuid.UUID(int=i)) for i in range(3000)]
        ids[at] = ids[at].replace("-", "", 1) + "0"  # the right length, a dash misplaced
        assert not all_uuids(ids), at
        ids[at] = ".."
        assert not all_path_segments(ids), at
        ids[at] = "a b"
        assert not all_path_segments(ids), at
