"""`deletion-consumer report`: compliance's view of the receipts topic (README "Reports").

One job per module:

- `options`: the command-line options, checked before anything connects;
- `scan`: the DLQ's headers and the receipts topic, each read once to its end, no group joined,
  nothing committed;
- `text`, `json_form`, `html`: the report for people, for scripts, as a page to keep;
- `cli`: the command itself: options in, report and exit code out.

What the figures mean, and how they are made from receipts and dead letters, is pure, in
`core.erasure_report`.
"""

from __future__ import annotations

from consumer.report.cli import add_report_arguments, run_report

__all__ = ["add_report_arguments", "run_report"]
