"""ops/: the dashboard and the alert rules name only real metrics; promtool accepts the rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import generate_latest

from consumer.telemetry.metrics import Metrics, new_registry
from tests.support.ops import (
    ALERTS,
    ALERTS_TEST,
    OPS,
    PROMETHEUS,
    ROOT,
    dashboard,
    dashboard_expressions,
    exposed_names,
    names_used,
    recorded_names,
)

REQUIRED_ALERTS = {
    "Mem0DeletionConsumerDown",
    "Mem0DeletionLagGrowing",
    "Mem0DeletionDeadLetters",
    "Mem0DeletionDeadLettersNotReplayed",
    "Mem0DeletionDownstreamHalted",
    "Mem0DeletionNoCommit",
    "Mem0DeletionErasureSloBreached",
    "Mem0DeletionDlqGuardTripped",
}


JOB = "mem0-deletion-consumer"
# The header's one declaration of the runbook links' base (see alerts.yml).
_RUNBOOK_BASE = re.compile(r"^#\s+RUNBOOK_BASE = (\S+)$", flags=re.MULTILINE)


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)\s*$", ALERTS.read_text(), flags=re.MULTILINE)


def alerts() -> dict[str, dict[str, Any]]:
    """Every alerting rule of alerts.yml by name, as Prometheus reads the file."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def fresh_exposition() -> str:
    registry = new_registry()  # what the service serves: the process collectors included
    metrics = Metrics(registry)
    metrics.set_lag("memory.deletions", 0, 0)  # the one series that waits for an assignment
    return generate_latest(registry).decode()


def test_every_metric_in_the_dashboard_and_the_rules_is_exposed() -> None:
    exposed = exposed_names(fresh_exposition())
    for source, names in names_used().items():
        assert names, f"no metric found in {source}"
        assert names <= exposed, f"{source} names unknown metrics: {sorted(names - exposed)}"


def test_the_dashboard_has_the_panels_an_operator_needs() -> None:
    data = dashboard()
    assert data["uid"] == "mem0-deletion-consumer" and data["title"]
    panels = [p for p in data["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in data["panels"]}) == len(data["panels"])
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    expressions = "\n".join(dashboard_expressions())
    for needle in (
        "sum by (type, outcome) (rate(mem0_deletion_events_total",  # events/s by type, outcome
        "sum by (operation, status) (rate(mem0_deletion_api_requests_total",  # calls/s
        "histogram_quantile(0.5, sum by (operation, le) (rate(mem0_deletion_api_request_duration",
        "histogram_quantile(0.99, sum by (operation, le) (rate(mem0_deletion_api_request_durati",
        "rate(mem0_deletion_api_retries_total",  # retries
        "sum by (reason) (increase(mem0_deletion_dlq_messages_total",  # dead letters by reason
        "increase(mem0_deletion_replayed_events_total",  # ... against the replays finished
        "sum by (topic, partition) (mem0_deletion_consumer_lag",  # lag per partition
        "histogram_quantile(0.5, sum by (type, le) (rate(mem0_deletion_time_to_erasure_seconds",
        "histogram_quantile(0.99, sum by (type, le) (rate(mem0_deletion_time_to_erasure_second",
        "mem0_deletion_downstream_state",
        "rate(mem0_deletion_flush_events_sum",  # coalescing: events per call
        "rate(mem0_deletion_flush_operations_sum",
    ):
        assert needle in expressions, needle
    # Recording rules the dashboard draws (the SLO line) are defined in the rule file.
    assert recorded_names(expressions) <= recorded_names(ALERTS.read_text())


def test_the_dashboard_is_provisioned_against_the_provisioned_data_source() -> None:
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "datasource")
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    datasources = (OPS / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert f"uid: {variable['current']['value']}" in datasources
    provider = (OPS / "grafana/provisioning/dashboards/mem0-deletion-consumer.yml").read_text()
    assert "type: file" in provider and "path: /var/lib/grafana/dashboards/" in provider


def readme_anchors() -> set[str]:
    """The anchors GitHub gives the README's headings."""
    readme = (ROOT / "README.md").read_text()
    return {
        re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", readme, flags=re.MULTILINE)
    }


def test_every_alert_links_its_runbook_in_the_readme() -> None:
    names = alert_names()
    assert set(names) >= REQUIRED_ALERTS
    assert len(names) == len(set(names))
    text = ALERTS.read_text()
    (base,) = _RUNBOOK_BASE.findall(text)
    assert urlsplit(base).scheme == "https" and urlsplit(base).netloc, base
    assert "runbook:" not in text  # the old key, which Alertmanager and Grafana do not read
    rules = alerts()
    assert sorted(rules) == sorted(names)
    for name, rule in rules.items():
        url = rule["annotations"].get("runbook_url")
        # One base for all, so that pointing them at a team's docs is one replacement.
        assert url == f"{base}#{name.lower()}", name
        assert urlsplit(url).fragment in readme_anchors(), f"{name}: no README heading {url}"
    # The SLO constant is set in one place only.
    assert text.count("record: mem0_deletion:erasure_slo_seconds") == 1


def test_the_down_alert_also_fires_when_the_job_has_no_instance_at_all() -> None:
    expr = " ".join(alerts()["Mem0DeletionConsumerDown"]["expr"].split())
    assert f'up{{job="{JOB}"}} == 0' in expr
    assert f'or absent(up{{job="{JOB}"}})' in expr
    jobs = [c["job_name"] for c in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]]
    assert jobs == [JOB]


def test_the_series_the_rules_read_beside_ours_are_served() -> None:
    # `up` is Prometheus's own; the no-commit clock reads the process collector's start time.
    exposed = exposed_names(fresh_exposition())
    others = set(re.findall(r"\bprocess_[a-z_]+", ALERTS.read_text()))
    assert others == {"process_start_time_seconds"}
    assert others <= exposed


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed; CI must check the rules (.ci/run installs it)")
        pytest.skip("promtool not on PATH (apt-get install prometheus); CI runs this check")
    return found


@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("check rules", ALERTS),
        ("check config", PROMETHEUS),
        ("test rules", ALERTS_TEST),  # each alert fires, and stays quiet, as designed
    ],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool_accepts(command: str, target: Path) -> None:
    result = subprocess.run(
        [_promtool(), *command.split(), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=target.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
