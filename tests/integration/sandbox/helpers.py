"""Keys, headers and small helpers shared by the sandbox's own tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

from consumer.sandbox import Sandbox

ADMIN_KEY = "test-key"
USER_KEY = "user-key"
PLATFORM = {"Authorization": f"Token {ADMIN_KEY}"}
OSS = {"X-API-Key": ADMIN_KEY}
USER = {"X-API-Key": USER_KEY}


def remaining(sandbox: Sandbox) -> set[str]:
    return {m["id"] for m in sandbox.memories()}


def wait_for_job(api: httpx.Client, event_id: str, timeout: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.get(f"/v1/event/{event_id}/").json()
        if job["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return job
        time.sleep(0.02)
