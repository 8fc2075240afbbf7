"""HTTP client cost against the sandbox: `python -m bench.http_client [--requests 3000]`.

Runs the Mem0 sandbox in its own process and sends the same deletes (404s, so the store stays
the same) with httpx, with this project's three sessions (consumer/mem0/http.py over aiohttp
and over httpx, and consumer/mem0/lean_http.py, whose answers llhttp parses through httptools),
with bare aiohttp, and, in a git checkout, with the lean client as it was before llhttp (its
hand-written parser, loaded from the newest commit of lean_http.py that does not import
httptools; a reference for the parser's cost, never a client to use: it took `0x5` for a chunk
size). It reports requests per second and client CPU per request, and each rate against httpx's.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from consumer.kafka.broker import free_port
from consumer.mem0.http import AiohttpSession, HttpSession, HttpxSession
from consumer.mem0.lean_http import LeanSession

Send = Callable[[str], Awaitable[int]]
_LEAN = "consumer/mem0/lean_http.py"


def legacy_lean() -> type[HttpSession] | None:
    """The lean session of the newest commit whose lean_http.py parsed answers by hand, or None
    outside a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout

    try:
        for commit in git("log", "--format=%H", "--", _LEAN).split():
            source = git("show", f"{commit}:{_LEAN}")
            if "import httptools" not in source:
                module = types.ModuleType("bench_legacy_lean_http")
                exec(compile(source, f"{commit[:10]}:{_LEAN}", "exec"), module.__dict__)
                session: type[HttpSession] = module.LeanSession
                return session
    except (OSError, subprocess.CalledProcessError):
        pass
    return None


async def measure(send: Send, requests: int, concurrency: int) -> tuple[float, float]:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            assert await send(f"/v1/memories/{uuid.uuid4()}/") == 404

    await asyncio.gather(*(one() for _ in range(min(200, requests))))  # warm the pool
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    wall = time.perf_counter() - started
    return requests / wall, (time.process_time() - cpu) / requests * 1e6


async def run(base: str, requests: int, concurrency: int) -> list[tuple[str, float, float]]:
    headers = {"Authorization": "Token sandbox-key"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results = []
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as plain:

        async def send_plain(path: str) -> int:
            return (await plain.request("DELETE", path)).status_code

        results.append(
            ("httpx (default transport)", *await measure(send_plain, requests, concurrency))
        )
    sessions: list[tuple[str, type[HttpSession]]] = [
        ("HttpxSession (ours)", HttpxSession),
        ("AiohttpSession (ours)", AiohttpSession),
        ("LeanSession (llhttp, default)", LeanSession),
    ]
    legacy = legacy_lean()
    if legacy is not None:
        sessions.append(("LeanSession (before llhttp)", legacy))
    for label, session in sessions:
        ours = session(base, headers, timeout_s=30, max_connections=concurrency)

        async def send_ours(path: str, ours: HttpSession = ours) -> int:
            return (await ours.request("DELETE", path)).status

        try:
            results.append((label, *await measure(send_ours, requests, concurrency)))
        finally:
            await ours.aclose()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as bare:

        async def send_bare(path: str) -> int:
            async with bare.delete(path) as response:
                await response.read()
                return response.status

        results.append(("aiohttp alone", *await measure(send_bare, requests, concurrency)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "consumer.sandbox", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        results = asyncio.run(run(f"http://127.0.0.1:{port}", args.requests, args.concurrency))
    finally:
        server.terminate()
        server.wait()
    base_rate = results[0][1]
    print(f"{'client':<32}{'req/s':>9}{'CPU us/req':>12}{'x rate':>9}")
    for name, rate, cpu in results:
        print(f"{name:<32}{rate:>9.0f}{cpu:>12.0f}{rate / base_rate:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
