"""The README's first command: `./dev demo` runs the whole job on the embedded default."""

from __future__ import annotations

import io

import pytest

from consumer.commands.demo import run_demo


def test_the_demo_erases_what_each_event_asks_and_prints_only_its_report(
    capfd: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    assert run_demo(out=out) == 0
    lines = out.getvalue().splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ")}
    # before, after, entity: as the README's sample shows them.
    assert rows["alice"] == ["4", "0", "erased"]
    assert rows["bob"] == ["3", "1", "kept"]
    assert rows["carol"] == ["3", "2", "kept"]
    assert rows["dave"] == ["3", "1", "kept"]
    assert rows["erin"] == ["2", "2", "kept"]
    assert (rows["deleted"], rows["duplicate"], rows["dead_lettered"]) == (["4"], ["1"], ["2"])
    assert lines[0].startswith("Broker: Tansu, ")
    # The two expected dead letters are in the report, not repeated as log lines.
    assert capfd.readouterr().err == ""
