"""Grouped emptiness checks: one listing for many scopes, and never a weaker verdict."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from consumer.core.events import Scope
from consumer.pipeline.scope_check import GroupedEmptinessCheck


def scopes(n: int) -> list[Scope]:
    return [Scope.of(user_id=f"u{i}") for i in range(n)]


def run_checks(answer: object, n: int, group_size: int = 4) -> tuple[list[bool], list[int]]:
    asked: list[int] = []

    async def any_match(group: Sequence[Scope]) -> bool:
        asked.append(len(group))
        await asyncio.sleep(0)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    async def main() -> list[bool]:
        check = GroupedEmptinessCheck(any_match, group_size=group_size, linger_s=0.001)
        return list(await asyncio.gather(*(check.empty(s) for s in scopes(n))))

    return asyncio.run(main()), asked


def test_an_empty_listing_proves_every_scope_of_the_group_empty() -> None:
    verdicts, asked = run_checks(False, 10)
    assert verdicts == [True] * 10
    assert asked == [4, 4, 2]  # full groups at once, the rest after the linger


@pytest.mark.parametrize("answer", [True, RuntimeError("503")])
def test_a_match_or_an_error_sends_every_scope_of_the_group_to_be_checked_alone(
    answer: object,
) -> None:
    verdicts, asked = run_checks(answer, 6)
    assert verdicts == [False] * 6
    assert sum(asked) == 6
