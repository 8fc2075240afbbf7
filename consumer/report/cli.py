"""`deletion-consumer report` as a command: options in, the report on stdout, an exit code out.

The options are checked before anything connects (`options`); the topics are read (`scan`),
the figures made (`core.erasure_report`), and the report printed as text (`text`) or JSON
(`json_form`); with `--html FILE` the HTML form (`html`) is written to FILE as well.

Exit codes, as `receipts` has them: 0 the report is out; 1 the broker failed us or nothing
could be read (the receipts topic does not exist or cannot be read: no report; or every record
on it was unreadable: the report is printed all the same), or the HTML file could not be
written; 2 bad arguments. A DLQ that cannot be read is no failure: the report says so.
Interrupted (Ctrl-C, SIGTERM), it stops where it is and prints nothing: `deletion-consumer`'s
`main` says so in one line and exits 128 + the signal's number, as every command does.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from consumer.commands.command_line import Console
from consumer.core.erasure_report import ErasureReport
from consumer.report.json_form import report_json
from consumer.report.options import ReportOptions, add_report_arguments, report_options
from consumer.report.scan import ScanError, ScanProgress, scan_topics
from consumer.report.text import render_text
from consumer.settings import Settings

__all__ = [
    "EXIT_BAD_ARGUMENTS",
    "EXIT_FAILED",
    "EXIT_OK",
    "add_report_arguments",
    "make_report",
    "run_report",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2


def make_report(options: ReportOptions, settings: Settings, console: Console) -> ErasureReport:
    """Read the topics and make the figures; raises `ScanError` when no report can be made."""

    def warn(line: str) -> None:
        print(line, file=console.err)

    scanned = scan_topics(settings, warn=warn, progress=ScanProgress(warn))
    return scanned.tally.report(
        now_ms=options.now_ms,
        since_ms=options.since_ms,
        until_ms=options.until_ms,
        deadline_ms=options.deadline_ms,
        target_ms=options.target_ms,
        scan=scanned.facts,
    )


def _write_html(report: ErasureReport, path: Path) -> None:
    """Raises OSError (or ImportError, should the HTML form be missing from the install)."""
    from consumer.report.html import render_html

    # Written whole, then moved into place: a reader never sees half a page.
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(render_html(report), encoding="utf-8")
        partial.replace(path)
    except BaseException:  # an OSError, or Ctrl-C mid-write: no half page left beside it
        partial.unlink(missing_ok=True)
        raise


def run_report(args: argparse.Namespace, settings: Settings, console: Console | None = None) -> int:
    """Run `report` with parsed arguments; the exit code. `console`: stdout and stderr."""
    console = console if console is not None else Console.of("report")
    try:
        options = report_options(args, datetime.now(UTC))
    except ValueError as exc:
        console.complain(exc)
        return EXIT_BAD_ARGUMENTS
    if not settings.receipts_topic:
        console.complain("RECEIPTS_TOPIC is empty: no receipts to report on")
        return EXIT_BAD_ARGUMENTS
    try:
        report = make_report(options, settings, console)
    except ScanError as exc:
        console.complain(exc)
        return EXIT_FAILED
    if options.as_json:
        print(json.dumps(report_json(report), indent=2), file=console.out)
    else:
        print(render_text(report), file=console.out)
    code = EXIT_OK
    scan = report.scan
    if scan.receipts_read == 0 and scan.receipts_unreadable:
        console.complain(f"none of the {scan.receipts_unreadable:,} records could be read")
        code = EXIT_FAILED
    if options.html is not None:
        try:
            _write_html(report, options.html)
        except (OSError, ImportError) as exc:
            console.complain(f"--html: not written: {exc}")
            code = EXIT_FAILED
    return code
