"""The Mem0 client's errors: what a call that did not succeed means for the caller.

Every request is classified by the client (client.py, with `core.retry.classify`) into one of
these; retrying is the executor's job, and `retriable`/`halts` (from `ConsumerError`) tell it
what to do::

    Mem0Error
    ├── TransientError     retriable: 408, 429, 5xx, timeout, broken connection
    │   └── UncertainError a self-hosted 502 `unknown`: maybe deterministic, so retried a bounded
    │                      number of times (MEM0_UNKNOWN_ERROR_RETRIES)
    ├── AuthError          halts every call: 401, 403
    │   └── AdminRoleError the self-hosted server's 403 "Admin role required." (a key without
    │                      the admin role): halts too, and is probed with a delete, not a read
    └── RejectedError      this request is refused: any other 4xx, a permanent 502 code
        └── JobNotFound    a job id the API does not know (yet): see Executor._watch

(`http.TransportError`, no HTTP answer at all, stays inside the client: it becomes a
`TransientError`.)
"""

from __future__ import annotations

from typing import ClassVar

from consumer.core.errors import ConsumerError

__all__ = [
    "HALT_CAUSES",
    "AdminRoleError",
    "AuthError",
    "JobNotFound",
    "Mem0Error",
    "RejectedError",
    "TransientError",
    "UncertainError",
]


class Mem0Error(ConsumerError):
    """A Mem0 call that did not succeed; `status` is the HTTP status, None for a transport error."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.status = status
        self.retry_after_s = retry_after_s


class TransientError(Mem0Error):
    retriable = True


class UncertainError(TransientError):
    """Retried, but a bounded number of times: the server cannot tell whether it will pass."""


class AuthError(Mem0Error):
    halts = True
    # What the key lacks, for the log line, /readyz and the metric.
    cause: ClassVar[str] = "auth_refused"


class AdminRoleError(AuthError):
    cause = "admin_role_required"


class RejectedError(Mem0Error):
    pass


class JobNotFound(RejectedError):
    pass


# The halt causes, a bounded label set (`downstream_halted{cause}`).
HALT_CAUSES = (AuthError.cause, AdminRoleError.cause)
