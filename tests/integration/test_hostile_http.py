"""Hostile answers from whatever listens on the Mem0 URL, for every HTTP client kind.

Each case is a scripted server (tests/support/hostile_server.py) that answers the way a broken
or malicious one would. Whatever it does, every client kind MEM0_HTTP_CLIENT offers must end
the call with a `TransportError` that says what was wrong (a retried failure of that call,
never of the flush), hold no more memory than the body cap and a little, never hang where the
answer is already known to be bad, never follow a redirect, and never reuse a connection that
spoke out of turn. Memory is measured with tracemalloc around the call (the server's own
writes are bounded and small); time with a deadline well under the client's timeout.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumer.core.events import Scope
from consumer.mem0.client import make_http_client
from consumer.mem0.errors import RejectedError, TransientError
from consumer.mem0.http import HttpSession, Reply, TransportError
from consumer.mem0.platform_client import PlatformClient
from tests.support.hostile_server import HostileServer, Peer, hostile_server

pytestmark = pytest.mark.integration

KINDS = ("lean", "aiohttp", "httpx")
CAP = 1024 * 1024  # the body cap every session here is given
SLACK = 4 * 1024 * 1024  # what a session may hold beyond the cap while it refuses an answer
CLIENT_TIMEOUT_S = 20.0
FAST_S = 5.0  # a case whose answer is known bad must end well inside the client's timeout
KEY = "Token secret-key"

Script = Callable[[Peer], Awaitable[None]]


def ok(body: bytes = b"{}", *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def always(wire: bytes) -> Script:
    """Answer every request with `wire`, on a connection kept alive."""

    async def script(peer: Peer) -> None:
        while True:
            await peer.read_request()
            await peer.send(wire)

    return script


def once(wire: bytes, then: str = "hold") -> Script:
    """Read one request, write `wire`, then hold the connection open, close it, or stream."""

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(wire)
        if then == "stream":
            await peer.stream()
        if then == "close":
            await peer.close()
            return
        await peer.hold()

    return script


@dataclass
class Outcome:
    results: list[Reply | BaseException]
    peak: int  # bytes allocated at the worst moment, over what was held before
    server: HostileServer
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def error(self) -> BaseException:
        [result] = self.results
        assert isinstance(result, BaseException), f"took {result!r} as an answer"
        return result


def exchange(
    kind: str,
    script: Script,
    *,
    calls: int = 1,
    within_s: float = FAST_S,
    timeout_s: float = CLIENT_TIMEOUT_S,
    between: Callable[[HostileServer], Awaitable[None]] | None = None,
) -> Outcome:
    """`calls` GETs through a fresh session of `kind` against a server running `script`."""

    async def main() -> Outcome:
        loop_errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _l, c: loop_errors.append(c))
        async with hostile_server(script) as server:
            http = make_http_client(
                server.url,
                {"Authorization": KEY},
                kind=kind,
                timeout_s=timeout_s,
                max_connections=2,
                max_body_bytes=CAP,
            )
            results: list[Reply | BaseException] = []
            tracemalloc.start()
            started = time.monotonic()
            try:
                for n in range(calls):
                    if n and between is not None:
                        await between(server)
                    try:
                        results.append(await asyncio.wait_for(http.request("GET", "/x"), within_s))
                    except Exception as exc:
                        results.append(exc)
                seconds = time.monotonic() - started
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
                await http.aclose()
        return Outcome(results, peak, server, loop_errors, seconds)

    return asyncio.run(main())


def refused(outcome: Outcome, *words: str) -> TransportError:
    """The call failed as it should: a TransportError (naming one of `words`, if given), in
    bounded memory, with nothing left to the event loop's error handler."""
    error = outcome.error()
    assert isinstance(error, TransportError), f"{type(error).__name__}: {error}"
    assert str(error), "a TransportError says what went wrong"
    if words:
        assert any(w.lower() in str(error).lower() for w in words), str(error)
    assert outcome.peak < CAP + SLACK, f"held {outcome.peak} bytes"
    assert outcome.loop_errors == [], outcome.loop_errors
    return error


kinds = pytest.mark.parametrize("kind", KINDS)

# Where a library offers no hook to stop early, its call ends at the client's timeout, in
# bounded memory; each is named, so that a library that starts refusing shows up here.
TIMEOUT_ONLY = {
    ("extension", "aiohttp"): "aiohttp's llhttp skips a chunk extension of any length",
    ("interim", "aiohttp"): "aiohttp reads interim (1xx) answers in a loop without a bound",
    ("interim", "httpx"): "httpcore reads interim (1xx) answers in a loop without a bound",
}


def refused_fast_or_at_timeout(kind: str, case: str, script: Script) -> None:
    if (case, kind) not in TIMEOUT_ONLY:
        refused(exchange(kind, script))
        return
    outcome = exchange(kind, script, timeout_s=1.0)
    refused(outcome, "timeout")
    assert outcome.seconds < 3


@kinds
def test_a_huge_chunk_size_then_a_stream_is_cut_at_the_cap(kind: str) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"
    refused(exchange(kind, once(head, then="stream")), "too long", "toolong", "cap")


@kinds
# (Blanks after the size, before the line's end, are not here: h11 admits them on purpose, and
# the size is still exact.)
@pytest.mark.parametrize("size", ["-2", "+5", "0x5", "1_0", "5 5", " 5"])
def test_a_chunk_size_that_is_not_plain_hex_is_refused(kind: str, size: str) -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%b\r\nhello\r\n0\r\n\r\n"
    refused(exchange(kind, once(wire % size.encode())))


@kinds
@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "br", "gzip, identity"])
def test_a_content_encoding_is_refused_not_undone(kind: str, encoding: str) -> None:
    # A 32 MiB inflation in 32 KiB: undone, it would pass the cap and stall the event loop.
    bomb = gzip.compress(b"\0" * (32 * 1024 * 1024))
    wire = ok(bomb, f"Content-Encoding: {encoding}")
    refused(exchange(kind, once(wire)), "encoding")


async def fresh(peer: Peer) -> None:
    """Every request answered `fresh`, on a connection kept alive."""
    while True:
        await peer.read_request()
        await peer.send(ok(b"fresh"))


@kinds
def test_bytes_on_an_idle_connection_close_it(kind: str) -> None:
    async def script(peer: Peer) -> None:
        if peer.index:
            return await fresh(peer)
        await peer.read_request()
        await peer.send(ok(b"first"))
        await peer.cue.wait()  # the client has the answer: the connection is idle
        await peer.stream()  # 16 MiB nobody asked for
        await peer.hold()

    async def until_streamed(server: HostileServer) -> None:
        server.cue.set()
        await asyncio.wait_for(server.peers[0].streamed.wait(), FAST_S)

    outcome = exchange(kind, script, calls=2, between=until_streamed)
    assert [r.body if isinstance(r, Reply) else r for r in outcome.results] == [b"first", b"fresh"]
    assert outcome.peak < CAP + SLACK, f"held {outcome.peak} bytes"
    assert len(outcome.server.peers) == 2


@pytest.mark.parametrize(
    "kind",
    [
        "lean",
        "aiohttp",
        pytest.param(
            "httpx",
            marks=pytest.mark.xfail(
                strict=True,
                reason="h11 keeps bytes read past an answer and, the connection back in "
                "httpcore's pool, parses them as the next request's answer",
            ),
        ),
    ],
)
def test_an_answer_before_its_request_is_not_taken_for_it(kind: str) -> None:
    async def script(peer: Peer) -> None:
        if peer.index:
            return await fresh(peer)
        await peer.read_request()
        # The answer, and in the same write one to a request not yet made.
        await peer.send(ok(b"first") + ok(b"early"))
        await peer.hold()

    outcome = exchange(kind, script, calls=2)
    assert [r.body if isinstance(r, Reply) else r for r in outcome.results] == [b"first", b"fresh"]


@kinds
@pytest.mark.parametrize("length", ["\u00b2", "1_0", "+5", "0x5", "5 5", "-1", "5,6", ""])
def test_a_content_length_that_is_not_plain_digits_is_refused(kind: str, length: str) -> None:
    # latin-1: the byte 0xB2 is what a server sends for "²", a digit to str.isdigit.
    wire = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nhello".encode("latin-1")
    refused(exchange(kind, once(wire)))


@kinds
@pytest.mark.parametrize("status", ["9" * 5000, "999", "600", "000", "099", "20", "2000", "2x0"])
def test_a_status_that_is_not_three_digits_from_100_to_599_is_refused(
    kind: str, status: str
) -> None:
    wire = f"HTTP/1.1 {status} Odd\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    refused(exchange(kind, once(wire)))


@kinds
@pytest.mark.parametrize(
    "coding", ["xchunked", "gzip, chunked", "chunked, gzip", "chunked, chunked", "identity"]
)
def test_a_transfer_coding_other_than_chunked_alone_is_refused(kind: str, coding: str) -> None:
    wire = f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    refused(exchange(kind, once(wire.encode())))


@kinds
def test_transfer_encoding_with_content_length_is_refused(kind: str) -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
    refused(exchange(kind, once(wire + b"2\r\n{}\r\n0\r\n\r\n")))


@kinds
@pytest.mark.parametrize("length", ["99999999999", str(1 << 64), "9" * 40])
def test_a_huge_content_length_is_refused_before_the_body(kind: str, length: str) -> None:
    wire = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode()
    refused(exchange(kind, once(wire, then="stream")))


@kinds
@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n",  # then header after header, for ever
        b"HTTP/1.1 200 OK\r\nX-Long: ",  # then one header value, for ever
        b"HTTP/1.1 200 ",  # then one status line, for ever
    ],
)
def test_an_endless_head_is_refused_in_bounded_memory(kind: str, head: bytes) -> None:
    piece = b"X-A: a\r\n" * 1024 if head.endswith(b"\r\n") else b"a" * 8192

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(head)
        await peer.stream(piece)
        await peer.hold()

    refused(exchange(kind, script))


@kinds
@pytest.mark.parametrize(
    "start",
    [
        b"5\r\nhello\r\n0\r\n",  # the last chunk, then trailer after trailer
        b"5;",  # one chunk extension, for ever
    ],
)
def test_endless_chunk_framing_is_refused_in_bounded_memory(kind: str, start: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"X-T: t\r\n" * 1024 if start.endswith(b"\r\n") else b"a" * 8192

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(head + start)
        await peer.stream(piece)
        await peer.hold()

    refused_fast_or_at_timeout(kind, "extension" if start == b"5;" else "trailers", script)


@kinds
def test_endless_interim_answers_are_refused(kind: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.stream(b"HTTP/1.1 100 Continue\r\n\r\n" * 256)
        await peer.hold()

    refused_fast_or_at_timeout(kind, "interim", script)


@kinds
def test_a_switch_of_protocols_is_refused(kind: str) -> None:
    wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nxx"
    refused(exchange(kind, once(wire)))


@kinds
@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n12345",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"",
    ],
)
def test_a_close_mid_answer_is_refused_at_once(kind: str, wire: bytes) -> None:
    refused(exchange(kind, once(wire, then="close")))


@kinds
def test_no_length_ends_with_the_connection_and_never_hangs_past_the_timeout(kind: str) -> None:
    wire = b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
    [reply] = exchange(kind, once(wire, then="close")).results
    assert isinstance(reply, Reply) and reply.body == b"until the end"
    # Not closed: the body may go on, so only the client's own timeout ends the call.
    outcome = exchange(kind, once(wire), timeout_s=1.0)
    refused(outcome, "timeout")
    assert outcome.seconds < 3


@kinds
def test_an_answer_that_drips_ends_at_the_client_timeout(kind: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):  # a byte every 0.05 s: no read ever waits long
            await peer.send(b"x")
            await asyncio.sleep(0.05)

    outcome = exchange(kind, script, timeout_s=1.0)
    refused(outcome, "timeout")
    assert outcome.seconds < 3


@kinds
@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary", "308 P"])
def test_a_redirect_is_never_followed_and_the_key_stays_home(kind: str, status: str) -> None:
    async def main() -> tuple[Reply, HostileServer, HostileServer]:
        async def elsewhere_script(peer: Peer) -> None:
            await peer.read_request()
            await peer.send(ok(b'{"event_id": "stolen"}'))

        async with hostile_server(elsewhere_script) as elsewhere:
            target = f"Location: {elsewhere.url}/v1/memories/"
            wire = f"HTTP/1.1 {status}\r\n{target}\r\nContent-Length: 0\r\n\r\n".encode()
            async with hostile_server(always(wire)) as server:
                http = make_http_client(
                    server.url, {"Authorization": KEY}, kind=kind, timeout_s=5, max_connections=1
                )
                try:
                    reply = await http.request("DELETE", "/v1/memories/")
                    client = PlatformClient(http)
                    with pytest.raises(RejectedError, match="HTTP 3"):
                        await client.delete_all(Scope.of(user_id="alice"))
                finally:
                    await http.aclose()
                return reply, server, elsewhere

    reply, server, elsewhere = asyncio.run(main())
    assert reply.status == int(status[:3])
    assert elsewhere.peers == []  # not one connection, so the key went nowhere else
    assert {r.headers["authorization"] for r in server.requests} == {KEY}


@kinds
@pytest.mark.parametrize("status", ["200 OK", "500 Internal Server Error"])
def test_a_nested_json_answer_fails_its_call_not_the_flush(kind: str, status: str) -> None:
    nested = b"[" * 200_000
    wire = f"HTTP/1.1 {status}\r\nContent-Length: {len(nested)}\r\n\r\n".encode() + nested

    async def main() -> TransientError:
        async with hostile_server(always(wire)) as server:
            http = make_http_client(
                server.url, {"Authorization": KEY}, kind=kind, timeout_s=5, max_connections=1
            )
            try:
                with pytest.raises(TransientError) as caught:
                    await PlatformClient(http).delete_all(Scope.of(user_id="alice"))
            finally:
                await http.aclose()
            return caught.value

    error = asyncio.run(main())
    assert "event_id" in str(error) or "HTTP 500" in str(error)


def test_every_kind_the_settings_offer_is_covered() -> None:
    from consumer.settings.parsers import HTTP_CLIENTS

    assert set(HTTP_CLIENTS) - {"auto"} == set(KINDS)
    for kind in KINDS:
        session = make_http_client(
            "http://127.0.0.1:9", {}, kind=kind, timeout_s=1, max_connections=1
        )
        assert isinstance(session, HttpSession)
        asyncio.run(session.aclose())
