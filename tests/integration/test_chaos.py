"""The chaos run, short form: faults, SIGKILLs, an outage and a member joining and leaving."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


def test_nothing_is_lost_under_chaos(kafka: str, tmp_path: Path) -> None:
    report = run_chaos(kafka, ChaosConfig(events=2000, kills=2, outage_s=3.0), tmp_path)
    print(report.summary())
    assert report.problems == [], report.summary()
    assert report.kills == 2
    assert report.faults["error"] > 0 and report.faults["rate_limit"] > 0
    assert report.faults["outage"] > 0
    assert report.dead_letters >= report.poison > 0
