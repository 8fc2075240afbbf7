"""How many requests per second the sandbox answers: N keep-alive clients deleting missing ids.

Run by hand: `.venv/bin/python bench/sandbox_capacity.py [--clients 64] [--seconds 5]
[--client httpx|raw] [--url http://host:port]`. Without --url it starts the sandbox in a child
process (`python -m consumer.sandbox`), so the server and the load generator do not share a GIL.
`--client raw` is a minimal asyncio-streams client, to see past httpx's own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

API_KEY = "sandbox-key"
ROOT = Path(__file__).resolve().parent.parent


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.sandbox", "--port", "0", "--api-key", API_KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, line.rsplit(" ", 1)[-1]


async def httpx_worker(url: str, ids: list[str], deadline: float, client: httpx.AsyncClient) -> int:
    done = 0
    while time.perf_counter() < deadline:
        response = await client.delete(f"{url}/v1/memories/{ids[done % len(ids)]}/")
        assert response.status_code == 404, response.text
        done += 1
    return done


async def raw_worker(url: str, ids: list[str], deadline: float) -> int:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    done = 0
    try:
        while time.perf_counter() < deadline:
            request = (
                f"DELETE /v1/memories/{ids[done % len(ids)]}/ HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Token {API_KEY}\r\nContent-Length: 0\r\n\r\n"
            )
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 404"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return done


async def measure(url: str, clients: int, seconds: float, kind: str) -> tuple[int, float]:
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    headers = {"Authorization": f"Token {API_KEY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits) as client:
        work: Callable[[float], Awaitable[int]]
        if kind == "httpx":
            await client.get(f"{url}/v1/ping/")  # warm up

            def work(deadline: float) -> Awaitable[int]:
                return httpx_worker(url, ids, deadline, client)
        else:

            def work(deadline: float) -> Awaitable[int]:
                return raw_worker(url, ids, deadline)

        started = time.perf_counter()
        deadline = started + seconds
        counts = await asyncio.gather(*(work(deadline) for _ in range(clients)))
        return sum(counts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx")
    parser.add_argument("--url", help="an already running sandbox (else one is started)")
    args = parser.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server()
    try:
        total, elapsed = asyncio.run(measure(url, args.clients, args.seconds, args.client))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    print(
        f"{args.client} client, {args.clients} keep-alive connections, {elapsed:.1f} s: "
        f"{total} requests, {total / elapsed:,.0f} req/s"
    )


if __name__ == "__main__":
    main()
