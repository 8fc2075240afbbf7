"""A Mem0-compatible HTTP server holding memories in memory, with injectable faults.

It speaks the Platform API (`Authorization: Token`, trailing slashes) and the self-hosted REST
API (`X-API-Key`, no trailing slash) on one port, plus `/_sandbox/...` admin routes:

    POST   /_sandbox/memories   seed memories (a JSON list of records) -> {"ids": [...]}
    GET    /_sandbox/memories   every stored memory, merged and superseded ones too, with
                                `merged` and `superseded_by` -> {"memories": [...]}
    POST   /_sandbox/entities   seed entities ([{"type": "user", "id": "alice"}, ...])
                                -> {"entities": [...]}
    GET    /_sandbox/entities   every entity -> {"entities": [...]}
    GET    /_sandbox/keys       the self-hosted keys without the admin role
                                -> {"user_api_keys": [...]}
    PUT    /_sandbox/keys       replace them, the admin key, or both:
                                {"user_api_keys": [...], "api_key": "..."} -> the user keys
    GET    /_sandbox/calls      the call log -> {"calls": [...]}
    DELETE /_sandbox/calls      clear the call log
    GET    /_sandbox/faults     the current faults
    PUT    /_sandbox/faults     change some faults (partial) -> the new faults
    POST   /_sandbox/reset      forget memories, entities, jobs and calls; restore the starting
                                faults and keys
    GET    /_sandbox/stats      counts of memories, entities, calls and jobs by status

The main API key is the admin key; the Platform routes take only it. Self-hosted routes also
take the user keys (`user_api_keys`), which may not `DELETE /memories` (403).

A seed record has `user_id`, `agent_id`, `run_id`, `app_id`, `memory`, `metadata`,
`categories`, `created_at`, `expiration_date`, an optional `id` (a UUID), and Dream's marks:
`merged` (a boolean: hidden from Platform reads unless `include_merged`) and `superseded_by`
(the UUID of the newer memory: hidden by `latest_only`, deleted by `delete_linked=true` on the
newer one). Adding a memory brings its entities into being (user_id -> ("user", id), ...); no
memory delete removes them, only `DELETE /v2/entities/{type}/{name}/` does.
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
