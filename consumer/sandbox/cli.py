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

_DESCRIPTION = (
    "A Mem0-compatible server (the Platform's and the self-hosted server's routes the consumer "
    "calls) that injects faults. Prints its URL, serves until Ctrl-C or SIGTERM. Point the "
    "consumer at it with MEM0_BASE_URL and the admin key (--api-key) as MEM0_API_KEY."
)

# The faults that have a flag of their own (the rest go in --faults).
_FAULT_FLAGS = ("latency_ms", "error_rate", "rate_limit_rate", "job_delay_ms", "job_fail_rate")


_FAULT_HELP = {
    "latency_ms": "added before every API call's answer, milliseconds",
    "error_rate": "share of API calls answered with an error status (--faults error_codes)",
    "rate_limit_rate": "share of API calls answered 429, with Retry-After",
    "job_delay_ms": "how long a delete-by-filter job stays pending, milliseconds",
    "job_fail_rate": "share of delete jobs that end failed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Faults()
    parser.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="the port to listen on, 0 for any free one (default: 8765)",
    )
    from_env = os.environ.get("SANDBOX_API_KEY")
    parser.add_argument(
        "--api-key",
        default=from_env or DEFAULT_API_KEY,
        metavar="KEY",
        # The key is no secret (a sandbox's), but one from the environment is not echoed.
        help="the admin key, to give the consumer as MEM0_API_KEY (default: "
        + (
            "$SANDBOX_API_KEY, which is set"
            if from_env
            else f'"{DEFAULT_API_KEY}"; env SANDBOX_API_KEY'
        )
        + ")",
    )
    parser.add_argument(
        "--user-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a self-hosted key without the admin role (repeatable)",
    )
    parser.add_argument(
        "--faults",
        default="{}",
        metavar="JSON",
        help="a JSON object of fault fields, e.g. "
        "'{\"outage\": true}' (fields: " + ", ".join(defaults.to_json()) + "; the flags "
        "below override the same fields) (default: none)",
    )
    for name in _FAULT_FLAGS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=None,
            metavar="N",
            help=f"{_FAULT_HELP[name]} (default: {getattr(defaults, name):g})",
        )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the faults' random choices, to repeat a run (default: a random one)",
    )
    parser.add_argument(
        "--call-log-limit",
        type=int,
        default=DEFAULT_CALL_LOG_LIMIT,
        metavar="N",
        help=f"API calls kept in the call log, the oldest dropped (default: "
        f"{DEFAULT_CALL_LOG_LIMIT:,})",
    )


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
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION)
    add_arguments(parser)
    return run(parser, parser.parse_args(argv))
