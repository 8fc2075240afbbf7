"""The sandbox's HTTP protocol stops reading while bytes pile up behind a request it holds for
its injected latency, and reads again once they are taken: a client that pipelines without end
cannot fill the sandbox's memory."""

from __future__ import annotations

import asyncio

import pytest

from consumer.sandbox import http
from consumer.sandbox.http import Connections, Request, Response

PING = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"


class HeldApp:
    """Holds the first request for a moment (as injected latency does), the rest not at all."""

    def __init__(self) -> None:
        self.handled = 0

    def delay_for(self, request: Request) -> float:
        return 0.05 if self.handled == 0 else 0.0

    def handle(self, request: Request) -> Response:
        self.handled += 1
        return Response(200, {"n": self.handled})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.paused = False
        self.resumed = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        self.resumed.set()

    def close(self) -> None:
        pass


def test_reading_pauses_past_the_high_water_mark_and_resumes_once_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "_HIGH_WATER", 4 * len(PING))
    app = HeldApp()

    async def scenario() -> None:
        protocol = http._HttpProtocol(app, Connections())
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(PING)  # held for its latency
        assert not transport.paused
        for _ in range(10):  # pipelined behind it
            protocol.data_received(PING)
        assert transport.paused
        await asyncio.wait_for(transport.resumed.wait(), timeout=5)
        assert app.handled == 11
        assert transport.written.count(b"HTTP/1.1 200 OK") == 11

    asyncio.run(scenario())
