"""The sandbox's one command line: `python -m consumer.sandbox`, `deletion-consumer sandbox`.

[--host H] [--port P] [--api-key K] [--user-key K ...] [--faults JSON] [--seed N]
[--call-log-limit N], and the common faults as flags of their own (--latency-ms, --error-rate,
--rate-limit-rate, --job-delay-ms, --job-fail-rate), which override the same fields of
--faults. The admin key defaults to SANDBOX_API_KEY, else "sandbox-key".
"""

from __future__ import annotations

import argparse
import json
import os

from consumer.sandbox.faults import Faults
from consumer.sandbox.server import DEFAULT_API_KEY, DEFAULT_CALL_LOG_LIMIT, main_sandbox
from consumer.sandbox.state import check_user_keys

__all__ = ["add_arguments", "main", "run"]

# The faults that have a flag of their own (the rest go in --faults).
_FAULT_FLAGS = ("latency_ms", "error_rate", "rate_limit_rate", "job_delay_ms", "job_fail_rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SANDBOX_API_KEY", DEFAULT_API_KEY),
        help="the admin key [env SANDBOX_API_KEY]",
    )
    parser.add_argument(
        "--user-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a self-hosted key without the admin role (repeatable)",
    )
    parser.add_argument("--faults", default="{}", help="a JSON object of Faults fields")
    for name in _FAULT_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--call-log-limit", type=int, default=DEFAULT_CALL_LOG_LIMIT)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Serve until interrupted; a bad key set or fault is the parser's error (exit 2)."""
    try:
        check_user_keys(args.api_key, args.user_key)
        fields = json.loads(args.faults)
        if not isinstance(fields, dict):
            raise ValueError("--faults must be a JSON object")
        fields.update(
            {name: getattr(args, name) for name in _FAULT_FLAGS if getattr(args, name) is not None}
        )
        faults = Faults.from_json(fields)
    except ValueError as exc:  # json.JSONDecodeError is one
        parser.error(str(exc))
    main_sandbox(
        args.host,
        args.port,
        args.api_key,
        faults,
        seed=args.seed,
        call_log_limit=args.call_log_limit,
        user_api_keys=args.user_key,
    )
    return 0


def main(argv: list[str] | None = None, *, prog: str = "python -m consumer.sandbox") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_arguments(parser)
    return run(parser, parser.parse_args(argv))
