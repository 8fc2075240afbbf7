"""The test suite never reaches an operator's cluster, Mem0 or registry by accident (issue 19).

An SRE's shell may export the service's own variables for a real deployment. Each test here runs
a child pytest on a small generated test file, with tests/conftest.py loaded as a plugin
(`-p tests.conftest`, so it applies to a file outside tests/), in an environment holding those
variables, and reads back what the child's `kafka` fixture and os.environ held. The broker test
points the child at this run's broker through TEST_KAFKA_BOOTSTRAP_SERVERS and checks that what
the child made there is gone once it has finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from hypothesis import given
from hypothesis import strategies as st

from consumer.settings.options import OPTIONS
from tests.support.harness import made_by_this_run, new_topics

REPO = Path(__file__).resolve().parents[2]
TEST_CLUSTER = "TEST_KAFKA_BOOTSTRAP_SERVERS"
NOWHERE = "127.0.0.1:1"  # the operator's "cluster": nothing listens there
API_KEY = "m0-operator-secret"  # must never be printed

# What an operator's shell may hold: every option of the table, each secret's file, librdkafka
# properties (one a secret), the configuration file. Values are taken from the table's names,
# so a new option is in here without an edit.
OPERATOR_ENV = {
    **{opt.env: f"operator-{opt.env.lower()}" for opt in OPTIONS},
    **{opt.file_env: f"/operator/{opt.env.lower()}" for opt in OPTIONS if opt.secret},
    "KAFKA_BOOTSTRAP_SERVERS": NOWHERE,
    "MEM0_API_KEY": API_KEY,
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_PASSWORD": "operator-sasl-password",
    "KAFKA_CLIENT_ID_FILE": "/operator/client-id",
}

# The child's test: what its `kafka` fixture, os.environ and a subprocess's environment held.
SEES_ENV = """
import json, os, subprocess, sys
from pathlib import Path

def test_report(kafka):
    child = subprocess.run(
        [sys.executable, "-c", "import json, os; print(json.dumps(sorted(os.environ)))"],
        capture_output=True, text=True, check=True,
    )
    seen = {{"kafka": kafka, "environ": sorted(os.environ), "subprocess": json.loads(child.stdout)}}
    Path({out!r}).write_text(json.dumps(seen))
"""

# The child's test on an existing cluster: topics from the fixture, groups it commits (the
# consumer's group and a replay cursor group named after it), all seen on the broker.
MAKES_THINGS = """
import json
from pathlib import Path
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

def test_report(kafka, topics):
    groups = [topics.group, topics.group + ".replay"]
    for group in groups:
        committer = Consumer({{"bootstrap.servers": kafka, "group.id": group}})
        committer.commit(offsets=[TopicPartition(topics.input, 0, 1)], asynchronous=False)
        committer.close()
    admin = AdminClient({{"bootstrap.servers": kafka}})
    listed = admin.list_consumer_groups(request_timeout=15).result()
    made = {{"topics": [topics.input, topics.dlq, topics.receipts], "groups": groups}}
    assert set(made["topics"]) <= set(admin.list_topics(timeout=15).topics)
    assert set(groups) <= {{g.group_id for g in listed.valid}}
    Path({out!r}).write_text(json.dumps({{"kafka": kafka, **made}}))
"""


def run_child(
    tmp_path: Path, body: str, extra_env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """A child pytest on `body` with tests/conftest.py; its output and what its test wrote."""
    out = tmp_path / "seen.json"
    test_file = tmp_path / "test_child.py"
    test_file.write_text(body.format(out=str(out)))
    # This run's own TEST_KAFKA_BOOTSTRAP_SERVERS and pytest variables are not the child's.
    inherited = {
        k: v for k, v in os.environ.items() if k != TEST_CLUSTER and not k.startswith("PYTEST_")
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "tests.conftest", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml")]
    result = subprocess.run(
        [*command, str(test_file)],
        cwd=REPO,
        env={**inherited, **OPERATOR_ENV, **extra_env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen: dict[str, Any] = json.loads(out.read_text())
    return result, seen


def test_the_services_variables_are_ignored_and_named(tmp_path: Path) -> None:
    result, seen = run_child(tmp_path, SEES_ENV, {})

    # The fixture started a broker of its own rather than take the operator's.
    assert seen["kafka"] != NOWHERE
    for where in ("environ", "subprocess"):
        assert not set(OPERATOR_ENV) & set(seen[where]), where
    # Unrelated variables pass: the filter is the settings', not a blanket prefix.
    assert "PATH" in seen["subprocess"] and "MEM0_TELEMETRY" in seen["environ"]
    summary = [line for line in result.stdout.splitlines() if "ignored the service's" in line]
    assert len(summary) == 1, result.stdout
    assert all(name in summary[0] for name in OPERATOR_ENV), summary
    assert API_KEY not in result.stdout + result.stderr
    assert NOWHERE not in result.stdout + result.stderr


@pytest.mark.integration
def test_an_existing_cluster_is_named_by_the_tests_variable_and_left_clean(
    kafka: str, tmp_path: Path
) -> None:
    result, seen = run_child(tmp_path, MAKES_THINGS, {TEST_CLUSTER: kafka})

    assert seen["kafka"] == kafka
    admin = AdminClient({"bootstrap.servers": kafka})
    assert not set(seen["topics"]) & set(admin.list_topics(timeout=15).topics)
    groups = {g.group_id for g in admin.list_consumer_groups(request_timeout=15).result().valid}
    assert not set(seen["groups"]) & groups
    assert f"deleted from {kafka} what the run made there: 3 topics, 2 groups" in result.stdout


_WORD = st.text(alphabet="abcdef0123456789xyz_", min_size=1, max_size=15).filter(
    lambda word: len(word) != 10  # a suffix is 10 characters: no such word can be one
)


@given(derive=st.sampled_from([".wide", ".replay", ".replay.decode_error.sel-1a2b", ".report"]))
def test_what_a_run_names_after_its_suffix_is_its_own(derive: str) -> None:
    topics = new_topics()
    for name in (topics.input, topics.dlq, topics.receipts, topics.group, topics.group + derive):
        assert made_by_this_run(name), name
    assert made_by_this_run(topics.receipts + derive)


@given(
    words=st.lists(_WORD, min_size=1, max_size=6),
    separator=st.sampled_from([".", "-", "+", "_."]),
    glue=st.sampled_from(["x", "0", "_"]),
)
def test_what_others_name_is_not_the_runs(words: list[str], separator: str, glue: str) -> None:
    suffix = new_topics().group.removeprefix("test-")
    assert not made_by_this_run(separator.join(words))
    # A suffix that is only part of a word is someone else's name.
    assert not made_by_this_run(f"memory.deletions.{suffix}{glue}")
    assert not made_by_this_run(f"test-{glue}{suffix}.replay")
