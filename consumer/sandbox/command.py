"""The command line that starts the sandbox in a process of its own: `python -m consumer.sandbox`.

Most users run the sandbox in their own process (`Sandbox`, a thread: the demo and the tests).
Those that need it apart, so that its CPU is its own (the end-to-end benchmark), start it with
`sandbox_command`: one spelling of the flags `__main__.py` parses, with the same parameters as
`Sandbox`, so the two ways cannot drift apart. Only the standard library and the sandbox's own
modules: the sandbox stays independent of the consumer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection

from consumer.sandbox.faults import Faults

__all__ = ["sandbox_command"]


def sandbox_command(
    host: str | None = None,
    port: int | None = None,
    api_key: str | None = None,
    faults: Faults | None = None,
    seed: int | None = None,
    *,
    call_log_limit: int | None = None,
    user_api_keys: Collection[str] = (),
) -> list[str]:
    """`python -m consumer.sandbox` with these settings; None (or empty) leaves a flag out, so
    the command's own default applies (`--port 8765`, the default key, no faults...)."""
    command = [sys.executable, "-m", "consumer.sandbox"]
    if host is not None:
        command += ["--host", host]
    if port is not None:
        command += ["--port", str(port)]
    if api_key is not None:
        command += ["--api-key", api_key]
    for key in user_api_keys:
        command += ["--user-key", key]
    if faults is not None:
        command += ["--faults", json.dumps(faults.to_json())]
    if seed is not None:
        command += ["--seed", str(seed)]
    if call_log_limit is not None:
        command += ["--call-log-limit", str(call_log_limit)]
    return command
