"""A Mem0-compatible HTTP server holding memories in memory, with injectable faults.

It speaks the Platform API (`Authorization: Token`, trailing slashes) and the self-hosted REST
API (`X-API-Key`, no trailing slash) on one port, plus `/_sandbox/...` admin routes:

    POST   /_sandbox/memories   seed memories (a JSON list of records) -> {"ids": [...]}
    GET    /_sandbox/memories   every stored memory -> {"memories": [...]}
    GET    /_sandbox/calls      the call log -> {"calls": [...]}
    DELETE /_sandbox/calls      clear the call log
    GET    /_sandbox/faults     the current faults
    PUT    /_sandbox/faults     change some faults (partial) -> the new faults
    POST   /_sandbox/reset      forget memories, jobs and calls; restore the starting faults
    GET    /_sandbox/stats      counts of memories, calls and jobs by status
"""

from consumer.sandbox.faults import Faults
from consumer.sandbox.server import DEFAULT_API_KEY, Sandbox, main_sandbox, serve_forever
from consumer.sandbox.state import SandboxState

__all__ = [
    "DEFAULT_API_KEY",
    "Faults",
    "Sandbox",
    "SandboxState",
    "main_sandbox",
    "serve_forever",
]
