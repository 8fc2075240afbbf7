"""The faults the sandbox injects, as one mutable settings object.

Also the self-hosted server's 502 causes (`OSS_ERROR_CODES`), which `oss_error_code` picks from,
and the UUID helpers every route module shares.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OSS_ERROR_CODES", "Faults", "all_canonical", "canonical_id"]

_RATES = ("error_rate", "rate_limit_rate", "job_fail_rate", "leave_behind_rate")
_MILLIS = ("latency_ms", "latency_jitter_ms", "job_delay_ms", "job_hidden_ms")
_FLAGS = ("outage", "auth_failure")

# The `code` of the self-hosted server's 502s and the `detail` it sends with each, as
# server/errors.py classifies provider and store failures. The first five are worth retrying,
# the auth and bad-request ones never succeed, and `unknown` may or may not.
OSS_ERROR_CODES: dict[str, str] = {
    "provider_rate_limited": "Provider rate limit hit. Retry shortly.",
    "provider_timeout": "Provider timed out. Retry shortly.",
    "provider_unavailable": "Provider is unreachable or returned a server error.",
    "datastore_unavailable": "The memory database is unreachable.",
    "vector_store_unavailable": "The vector store is unreachable or returned an error.",
    "provider_auth_failed": "Provider rejected the request (authentication). "
    "Check your LLM provider API key on the Configuration page.",
    "provider_bad_request": "Provider rejected the request as malformed.",
    "unknown": "Upstream provider error.",
}


# Ids nearly always arrive canonical already: a regex says so ten times faster than uuid.UUID,
# which a 1000-id batch would otherwise call a thousand times.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL = re.compile(_UUID)
_CANONICAL_LINES = re.compile(f"{_UUID}(?:\n{_UUID})*")


def all_canonical(ids: list[str]) -> bool:
    """Every id is a canonical UUID already (a batch's usual case): one regex for them all."""
    return bool(_CANONICAL_LINES.fullmatch("\n".join(ids)))


def canonical_id(raw: str) -> str | None:
    """The canonical text of a UUID (lower case, hyphenated), or None when it is not one."""
    if type(raw) is str and _CANONICAL.fullmatch(raw):
        return raw
    try:
        return str(uuid.UUID(raw))
    except (ValueError, TypeError, AttributeError):
        return None


@dataclass(slots=True)
class Faults:
    """What goes wrong, and how often. Rates are shares in [0, 1] of API calls (or jobs)."""

    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500, 502, 503)
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    outage: bool = False
    auth_failure: bool = False
    job_fail_rate: float = 0.0
    job_delay_ms: float = 0.0
    # How long a new job's GET /v1/event/{id}/ answers 404 (nothing says how soon it is readable).
    job_hidden_ms: float = 0.0
    poison_ids: frozenset[str] = field(default_factory=frozenset)
    oss_delete_all_limit: int | None = None
    leave_behind_rate: float = 0.0
    # The `code` of the 502s injected on self-hosted routes (error_rate, error_codes).
    oss_error_code: str = "datastore_unavailable"

    def __post_init__(self) -> None:
        # Validate and normalise the constructor's values the same way as later updates.
        self.update(**self.to_json())

    def update(self, **changes: Any) -> None:
        """Apply a partial change, validated first so a bad one changes nothing."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        checked = {name: _check(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def copy(self) -> Faults:
        return dataclasses.replace(self)

    def to_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        faults = cls()
        faults.update(**data)
        return faults


def _jsonable(value: object) -> object:
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _check(name: str, value: Any) -> Any:
    if name in _RATES:
        rate = _number(name, value)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1]")
        return rate
    if name in _MILLIS:
        millis = _number(name, value)
        if millis < 0:
            raise ValueError(f"{name} must not be negative")
        return millis
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if name == "error_codes":
        codes = tuple(_integer(name, code) for code in _sequence(name, value))
        if not codes or not all(400 <= code <= 599 for code in codes):
            raise ValueError("error_codes must be HTTP error statuses (400 to 599)")
        return codes
    if name == "retry_after_s":
        seconds = _integer(name, value)
        if seconds < 0:
            raise ValueError("retry_after_s must not be negative")
        return seconds
    if name == "poison_ids":
        return frozenset(canonical_id(str(v)) or str(v) for v in _sequence(name, value))
    if name == "oss_delete_all_limit":
        if value is None:
            return None
        limit = _integer(name, value)
        if limit < 0:
            raise ValueError("oss_delete_all_limit must not be negative")
        return limit
    if name == "oss_error_code":
        if not isinstance(value, str) or value not in OSS_ERROR_CODES:
            raise ValueError(f"oss_error_code must be one of {', '.join(OSS_ERROR_CODES)}")
        return value
    raise ValueError(f"unknown fault field: {name}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _sequence(name: str, value: Any) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list")
    return list(value)
