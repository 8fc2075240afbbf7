"""The chaos run, long form: `python -m bench.chaos [--events 50000] [--kills 5] [--outage 20]`.

Starts Tansu (or uses KAFKA_BOOTSTRAP_SERVERS) and runs tests/support/chaos.py at full size,
printing the figures: events, kills, faults injected, duplicate deletes, wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from consumer.kafka.broker import LocalBroker
from tests.support.chaos import ChaosConfig, run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args()
    cfg = ChaosConfig(
        events=args.events, kills=args.kills, outage_s=args.outage, seed=args.seed, timeout_s=3600
    )
    logs = Path(tempfile.mkdtemp(prefix="chaos-"))
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        report = run_chaos(existing, cfg, logs)
    else:
        with LocalBroker() as broker:
            report = run_chaos(broker.bootstrap, cfg, logs)
    print(report.summary())
    print(f"consumer logs: {logs}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
