"""A scripted, malicious HTTP server on the loopback, for tests/integration/test_hostile_http.py.

Each accepted connection runs the test's script (an async function of a `Peer`); the server
counts connections and keeps every request head it read, so a test can say what the client
sent and where. Everything it writes is bounded in bytes and in time (`Peer.stream` stops at
its byte budget, or as soon as the client stops reading for `stall_s`), so a client that keeps
reading for ever still ends, and the server stops by itself when the test leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["HostileServer", "Peer", "Request", "hostile_server"]

# What one `stream` writes at most, whatever the client does: well past any cap under test.
STREAM_BUDGET = 16 * 1024 * 1024
_PIECE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    line: str
    headers: dict[str, str]
    body: bytes


class Peer:
    """One accepted connection, as the script sees it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        index: int,
        cue: asyncio.Event,
    ) -> None:
        self.index = index  # 0 for the server's first connection, 1 for the next, ...
        self.cue = cue  # the server's `cue`: set by the test when a script is to go on
        self.reader = reader
        self.writer = writer
        self.requests: list[Request] = []
        # Set when a `stream` ended (budget spent, or the client stopped reading or left).
        self.streamed = asyncio.Event()
        self.sent = 0

    async def read_request(self) -> Request:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line, *fields = head[:-4].split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(line, headers, body)
        self.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        self.sent += len(data)
        await self.writer.drain()

    async def stream(
        self, piece: bytes = b"x" * _PIECE, budget: int = STREAM_BUDGET, stall_s: float = 0.5
    ) -> None:
        """Write `piece` over and over until `budget` bytes are out, the client closes, or it
        has not read for `stall_s` (its socket buffers are full: it stopped reading)."""
        try:
            while self.sent < budget:
                self.writer.write(piece)
                self.sent += len(piece)
                await asyncio.wait_for(self.writer.drain(), stall_s)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.streamed.set()

    async def hold(self) -> None:
        """Keep the connection open until the client closes it (or the server stops)."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(_PIECE):
                pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class HostileServer:
    url: str
    peers: list[Peer] = field(default_factory=list)
    # What a test sets to let a waiting script go on (`await peer.cue.wait()`).
    cue: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def requests(self) -> list[Request]:
        return [request for peer in self.peers for request in peer.requests]


@contextlib.asynccontextmanager
async def hostile_server(script: Script) -> AsyncIterator[HostileServer]:
    """A server on 127.0.0.1 running `script` once per accepted connection; on leaving, every
    connection is closed and every script cancelled."""
    tasks: set[asyncio.Task[None]] = set()
    state = HostileServer("")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer, len(state.peers), state.cue)
        state.peers.append(peer)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await script(peer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client left: what a hostile server expects
        except asyncio.CancelledError:
            # The test is over. Ended, not cancelled: asyncio's callback for a connection's
            # task reports a cancelled one as an error in the event loop, which tests watch.
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in state.peers:
            peer.writer.close()
        await server.wait_closed()
