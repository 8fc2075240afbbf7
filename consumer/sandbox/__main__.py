"""`python -m consumer.sandbox [--host H] [--port P] [--api-key K] [--user-key K ...]
[--faults JSON] [--seed N]`."""

from __future__ import annotations

import argparse
import json

from consumer.sandbox.faults import Faults
from consumer.sandbox.server import DEFAULT_API_KEY, DEFAULT_CALL_LOG_LIMIT, main_sandbox
from consumer.sandbox.state import check_user_keys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m consumer.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the admin key")
    parser.add_argument(
        "--user-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a self-hosted key without the admin role (repeatable)",
    )
    parser.add_argument("--faults", default="{}", help="a JSON object of Faults fields")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--call-log-limit", type=int, default=DEFAULT_CALL_LOG_LIMIT)
    args = parser.parse_args(argv)
    try:
        check_user_keys(args.api_key, args.user_key)
    except ValueError as exc:
        parser.error(str(exc))
    main_sandbox(
        args.host,
        args.port,
        args.api_key,
        Faults.from_json(json.loads(args.faults)),
        seed=args.seed,
        call_log_limit=args.call_log_limit,
        user_api_keys=args.user_key,
    )


if __name__ == "__main__":
    main()
