"""The ops/ files as the tests read them: metric names in PromQL, names in an exposition."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
DASHBOARD = OPS / "grafana" / "mem0-deletion-consumer.json"
ALERTS = OPS / "prometheus" / "alerts.yml"
ALERTS_TEST = OPS / "prometheus" / "alerts_test.yml"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"

# A metric of ours inside a PromQL expression; recording rules (`mem0_deletion:...`) excluded.
_METRIC = re.compile(r"\bmem0_deletion_[A-Za-z0-9_]+")
_RECORDED = re.compile(r"\bmem0_deletion:[A-Za-z0-9_:]+")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _strings(node: object, key: str) -> Iterator[str]:
    """Every string stored under `key` anywhere in a JSON tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v
            elif k == key and isinstance(v, dict):  # a variable's {"query": ...}
                yield from _strings(v, "query")
            else:
                yield from _strings(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)


def dashboard_expressions() -> list[str]:
    """The PromQL of every panel target and every templating query."""
    data = dashboard()
    return [*_strings(data["panels"], "expr"), *_strings(data["templating"], "query")]


def metric_names(text: str) -> set[str]:
    return set(_METRIC.findall(text))


def recorded_names(text: str) -> set[str]:
    return set(_RECORDED.findall(text))


def names_used() -> dict[str, set[str]]:
    """Our metric names per ops file: the dashboard's expressions and the whole rule file."""
    return {
        "dashboard": set().union(*(metric_names(e) for e in dashboard_expressions())),
        "alerts.yml": metric_names(ALERTS.read_text()),
    }


def exposed_names(exposition: str) -> set[str]:
    """Every sample name of a /metrics text (`_total`, `_bucket`, `_sum`, `_count` included)."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
