"""The lean HTTP/1.1 client over real sockets: scripted servers for each framing and failure,
and the sandbox for the Mem0 calls themselves."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trustme

from consumer.mem0.client import make_http_client
from consumer.mem0.http import AiohttpSession, HttpxSession, RawJson, TransportError
from consumer.mem0.lean_http import LeanSession
from consumer.sandbox import Sandbox

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    line, *fields = head[:-4].split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def with_server(script: Script, test: Callable[[str, list[int]], Awaitable[None]]) -> None:
    """Run `test(base_url, connections)` against a server running `script` per request; the
    list counts connections as they are accepted."""

    async def main() -> None:
        connections: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                while not reader.at_eof():
                    await script(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await test(f"http://127.0.0.1:{port}", connections)

    asyncio.run(main())


def session(base: str, timeout_s: float = 5.0) -> LeanSession:
    return LeanSession(base, {"Authorization": "Token k"}, timeout_s=timeout_s, max_connections=4)


def answer(status: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_one_request_is_one_write_and_says_what_it_means() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(answer("200 OK", b'{"ok": true}', "Retry-After: 7"))

    async def test(base: str, _connections: list[int]) -> None:
        client = session(base + "/api")
        params = {"user_id": "a b/é", "metadata": json.dumps({"k": "v&w"})}
        reply = await client.request("DELETE", "/v1/memories/", params=params)
        assert (reply.status, reply.json(), reply.retry_after) == (200, {"ok": True}, "7")
        reply = await client.request("POST", "/v1/x/", json={"a": [1, 2]})
        reply = await client.request("DELETE", "/v1/batch/", json=RawJson(b'{"m":[]}'))
        await client.aclose()

    with_server(script, test)
    (line, headers, body), (_, posted, post_body), (_, _, raw) = seen
    assert line.startswith("DELETE /api/v1/memories/?user_id=a%20b%2F%C3%A9&metadata=")
    assert line.endswith(" HTTP/1.1")
    assert "%7B%22k%22%3A%20%22v%26w%22%7D" in line  # the JSON filter, fully escaped
    assert headers["host"].startswith("127.0.0.1:")
    assert headers["authorization"] == "Token k"
    assert body == b"" and "content-length" not in headers
    assert json.loads(post_body) == {"a": [1, 2]}
    assert posted["content-type"] == "application/json"
    assert raw == b'{"m":[]}'


def test_keep_alive_reuses_one_connection_and_close_is_honoured() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _, _ = await read_request(reader)
        if "close" in line:
            writer.write(answer("200 OK", b"bye", "Connection: close"))
            await writer.drain()
            writer.close()
        else:
            writer.write(answer("404 Not Found", b"{}"))

    async def test(base: str, connections: list[int]) -> None:
        client = session(base)
        for _ in range(20):
            assert (await client.request("GET", "/x")).status == 404
        assert len(connections) == 1
        assert (await client.request("GET", "/close")).body == b"bye"
        assert (await client.request("GET", "/x")).status == 404
        assert len(connections) == 2
        await client.aclose()

    with_server(script, test)


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        # chunked, with an extension and a trailer, fed a few bytes at a time
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
            b"hello world",
        ),
        # an interim 100 Continue before the answer
        (b"HTTP/1.1 100 Continue\r\n\r\n" + answer("201 Created", b"made"), b"made"),
        # no length at all: the body ends with the connection
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b"until the end"),
        # 204 has no body whatever its headers say
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)
def test_bodies_in_every_framing(wire: bytes, body: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(0, len(wire), 3):  # split writes: the parser must wait for the rest
            writer.write(wire[i : i + 3])
            await writer.drain()
        if b"Content-Length" not in wire and b"chunked" not in wire and b"204" not in wire:
            writer.close()

    async def test(base: str, _connections: list[int]) -> None:
        client = session(base)
        assert (await client.request("GET", "/")).body == body
        await client.aclose()

    with_server(script, test)


@pytest.mark.parametrize(
    "wire",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # then closed
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Encoding: br\r\n\r\nabcd",
        # gzip, although identity was asked for: refused, not undone (a bomb inflates 1000-fold)
        answer("200 OK", gzip.compress(b"zipped"), "Content-Encoding: gzip"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
        b"",  # closed without a word
    ],
)
def test_broken_answers_are_transport_errors(wire: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(wire)
        await writer.drain()
        writer.close()
        await reader.read()  # hold until the client lets go

    async def test(base: str, connections: list[int]) -> None:
        client = session(base)
        with pytest.raises(TransportError):
            await client.request("GET", "/")
        await client.aclose()

    with_server(script, test)


def test_a_body_larger_than_any_mem0_answer_is_refused_at_once() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nabcd")
        await writer.drain()
        await reader.read()  # and keeps the connection open

    async def test(base: str, _connections: list[int]) -> None:
        client = session(base, timeout_s=30)
        with pytest.raises(TransportError, match="BodyTooLong"):
            await asyncio.wait_for(client.request("GET", "/"), 5)
        await client.aclose()

    with_server(script, test)


def test_a_kept_alive_connection_the_server_dropped_is_replaced_not_reported() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", b"x"))
        await writer.drain()
        writer.close()  # keep-alive advertised, then dropped (an idle timeout on the server)

    async def test(base: str, connections: list[int]) -> None:
        client = session(base)
        for _ in range(5):
            assert (await client.request("GET", "/")).body == b"x"
        assert len(connections) == 5
        await client.aclose()

    with_server(script, test)


def test_a_server_that_never_answers_times_out() -> None:
    async def script(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    async def test(base: str, _connections: list[int]) -> None:
        client = session(base, timeout_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransportError, match="Timeout"):
            await client.request("GET", "/")
        assert loop.time() - started < 2
        await client.aclose()

    with_server(script, test)


def test_nobody_listening_is_a_transport_error() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(TransportError):
            await session(f"http://127.0.0.1:{port}").request("GET", "/")

    asyncio.run(main())


def test_the_default_session_against_the_sandbox(sandbox: Sandbox) -> None:
    async def main() -> dict[str, Any]:
        http = make_http_client(
            sandbox.url, {"Authorization": "Token sandbox-key"}, timeout_s=5, max_connections=8
        )
        assert isinstance(http, LeanSession)
        replies = await asyncio.gather(
            *(
                http.request("DELETE", "/v1/memories/", params={"user_id": f"u{i}"})
                for i in range(50)
            )
        )
        assert {r.status for r in replies} == {200}
        batch = await http.request(
            "DELETE",
            "/v1/batch/",
            json={"memories": [{"memory_id": "0b5c1f0e-1111-4c3a-9d59-0f1c6e4b2a01"}]},
        )
        await http.aclose()
        return {"batch": batch.status, "event": replies[0].json()["event_id"]}

    result = asyncio.run(main())
    assert result["batch"] == 200 and result["event"]


def test_a_proxy_in_the_environment_keeps_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = make_http_client("https://api.mem0.ai", {}, timeout_s=5, max_connections=2)
    assert isinstance(http, AiohttpSession)
    forced = make_http_client(
        "https://api.mem0.ai", {}, timeout_s=5, max_connections=2, kind="lean"
    )
    assert isinstance(forced, LeanSession)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("auto", LeanSession),
        ("lean", LeanSession),
        ("aiohttp", AiohttpSession),
        ("httpx", HttpxSession),
    ],
)
def test_each_client_kind_deletes_through_the_sandbox(
    sandbox: Sandbox, kind: str, expected: type
) -> None:
    [memory_id] = sandbox.add_memories([{"user_id": "alice", "memory": "likes tea"}])

    async def main() -> int:
        http = make_http_client(
            sandbox.url,
            {"Authorization": "Token sandbox-key"},
            timeout_s=5,
            max_connections=2,
            kind=kind,
        )
        assert isinstance(http, expected)
        reply = await http.request("DELETE", f"/v1/memories/{memory_id}/")
        await http.aclose()
        return reply.status

    assert asyncio.run(main()) == 200
    assert sandbox.memories() == []


def test_a_header_that_would_split_the_request_is_refused() -> None:
    with pytest.raises(ValueError, match="Authorization"):
        LeanSession(
            "http://x", {"Authorization": "Token k\r\nX: y"}, timeout_s=1, max_connections=1
        )


def test_tls_is_spoken_and_the_certificate_checked() -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_side)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while not reader.at_eof():
                await read_request(reader)
                writer.write(answer("200 OK", b"secret"))
                await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_side)
        base = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            client = LeanSession(base, {}, timeout_s=5, max_connections=2, ssl_context=trusting)
            assert (await client.request("GET", "/")).body == b"secret"
            assert (await client.request("GET", "/")).body == b"secret"  # kept alive
            await client.aclose()
            # The system's certificate store does not know this CA: no answer is taken.
            stranger = LeanSession(base, {}, timeout_s=5, max_connections=2)
            with pytest.raises(TransportError):
                await stranger.request("GET", "/")
            await stranger.aclose()

    asyncio.run(main())
