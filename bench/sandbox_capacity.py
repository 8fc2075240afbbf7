"""How many requests per second the sandbox answers: N keep-alive clients deleting.

Run by hand: `.venv/bin/python bench/sandbox_capacity.py [--clients 64] [--seconds 5]
[--client httpx|raw] [--op delete|delete_all] [--memories N] [--url http://host:port]`.

`--op delete` (the default) deletes missing ids (`DELETE /v1/memories/{id}/`, 404 each);
`--op delete_all` deletes users (`DELETE /v1/memories/?user_id=...`) from `--memories` seeded
memories, ten per user. Without --url it starts the sandbox in a child process
(`python -m consumer.sandbox`), so the server and the load generator do not share a GIL.
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


class Targets:
    """The request paths the workers take turns on, and the status each should answer."""

    def __init__(self, op: str, users: int) -> None:
        if op == "delete":
            self.paths = [f"/v1/memories/{uuid.uuid4()}/" for _ in range(1000)]
            self.status = 404
        else:
            self.paths = [f"/v1/memories/?user_id=u{i}" for i in range(max(1, users))]
            self.status = 200
        self.next = 0

    def take(self) -> str:
        path = self.paths[self.next % len(self.paths)]
        self.next += 1
        return path


def seed(url: str, memories: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, memories, 50_000):
            records = [
                {"user_id": f"u{i // 10}", "memory": "m"}
                for i in range(start, min(memories, start + 50_000))
            ]
            client.post("/_sandbox/memories", json=records).raise_for_status()


async def httpx_worker(
    url: str, targets: Targets, deadline: float, client: httpx.AsyncClient
) -> int:
    done = 0
    while time.perf_counter() < deadline:
        response = await client.delete(url + targets.take())
        assert response.status_code == targets.status, response.text
        done += 1
    return done


async def raw_worker(url: str, targets: Targets, deadline: float) -> int:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    expected = f"HTTP/1.1 {targets.status}".encode()
    done = 0
    try:
        while time.perf_counter() < deadline:
            request = (
                f"DELETE {targets.take()} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Token {API_KEY}\r\nContent-Length: 0\r\n\r\n"
            )
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(expected), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return done


async def measure(
    url: str, clients: int, seconds: float, kind: str, targets: Targets
) -> tuple[int, float]:
    headers = {"Authorization": f"Token {API_KEY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits) as client:
        work: Callable[[float], Awaitable[int]]
        if kind == "httpx":
            await client.get(f"{url}/v1/ping/")  # warm up

            def work(deadline: float) -> Awaitable[int]:
                return httpx_worker(url, targets, deadline, client)
        else:

            def work(deadline: float) -> Awaitable[int]:
                return raw_worker(url, targets, deadline)

        started = time.perf_counter()
        deadline = started + seconds
        counts = await asyncio.gather(*(work(deadline) for _ in range(clients)))
        return sum(counts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx")
    parser.add_argument("--op", choices=("delete", "delete_all"), default="delete")
    parser.add_argument("--memories", type=int, default=0, help="seed this many first")
    parser.add_argument("--url", help="an already running sandbox (else one is started)")
    args = parser.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server()
    try:
        if args.memories:
            started = time.perf_counter()
            seed(url, args.memories)
            print(f"seeded {args.memories} memories in {time.perf_counter() - started:.1f} s")
        targets = Targets(args.op, args.memories // 10)
        total, elapsed = asyncio.run(measure(url, args.clients, args.seconds, args.client, targets))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    print(
        f"{args.op} by {args.client} client, {args.clients} keep-alive connections, "
        f"{elapsed:.1f} s: "
        f"{total} requests, {total / elapsed:,.0f} req/s"
    )


if __name__ == "__main__":
    main()
