"""The sandbox's own tests: one sandbox per module, reset before each test, with an admin key
and a self-hosted key without the admin role, and an HTTP client for each way in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from consumer.sandbox import Sandbox
from tests.integration.sandbox.helpers import ADMIN_KEY, OSS, PLATFORM, USER, USER_KEY


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(api_key=ADMIN_KEY, seed=7, user_api_keys=[USER_KEY]) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(sandbox: Sandbox) -> None:
    sandbox.reset()


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """The Platform routes, with the key."""
    with httpx.Client(base_url=sandbox.url, headers=PLATFORM) as client:
        yield client


@pytest.fixture
def oss(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """The self-hosted routes, with the admin key."""
    with httpx.Client(base_url=sandbox.url, headers=OSS) as client:
        yield client


@pytest.fixture
def user(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """The self-hosted routes, with a key without the admin role."""
    with httpx.Client(base_url=sandbox.url, headers=USER) as client:
        yield client


@pytest.fixture
def admin(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """The /_sandbox/... routes (no key)."""
    with httpx.Client(base_url=sandbox.url) as client:
        yield client


@pytest.fixture(scope="module")
def memory_client_class(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The official SDK's MemoryClient, imported without telemetry or writes to the home."""
    with pytest.MonkeyPatch.context() as patch:
        # Read when mem0 is imported: no telemetry, and no writes to the real home directory.
        patch.setenv("MEM0_TELEMETRY", "false")
        patch.setenv("MEM0_DIR", str(tmp_path_factory.mktemp("mem0")))
        from mem0 import MemoryClient
    return MemoryClient
