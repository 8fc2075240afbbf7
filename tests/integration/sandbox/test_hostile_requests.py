"""The sandbox's HTTP framing against hostile bytes, over real sockets and before any key.

Each malformed length or chunk size is a 400 (an oversized one a 413) and the connection
closes, at once: a chunk size of -6 once sent the parser back to the start of its own line for
ever, and a huge one was waited for. The sandbox answers normally afterwards.

The sandbox runs in a process of its own here, so that a parser that spins fails these tests
(the socket times out) and is killed, instead of wedging the test process's sandbox thread.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from consumer.kafka.broker import free_port
from consumer.sandbox.http import MAX_BODY, MAX_CHUNK_LINE
from tests.integration.sandbox.helpers import ADMIN_KEY, PLATFORM

HEAD = b"POST /v1/batch/ HTTP/1.1\r\nHost: x\r\n"  # no key: framing is judged first


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer.sandbox", "--port", str(port), "--api-key", ADMIN_KEY],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "the sandbox exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the sandbox did not listen"
                time.sleep(0.02)
        yield "127.0.0.1", port
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def api(address: tuple[str, int]) -> Iterator[httpx.Client]:
    host, port = address
    with httpx.Client(base_url=f"http://{host}:{port}", headers=PLATFORM, timeout=5) as client:
        yield client


def exchange(address: tuple[str, int], payload: bytes) -> bytes:
    """Send `payload`, then read until the sandbox closes the connection (5 s at most)."""
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(payload)
        received = b""
        while chunk := conn.recv(65536):  # a TimeoutError here: the sandbox never closed
            received += chunk
        return received


def refused(received: bytes, status: int) -> bool:
    return received.startswith(f"HTTP/1.1 {status} ".encode()) and b"Connection: close" in received


@pytest.mark.parametrize("size", [b"-6", b"-2", b"-1", b"+5", b"0x5", b"1_0", b"", b"zz", b"5 5"])
def test_a_malformed_chunk_size_is_a_400_and_the_connection_closes(
    address: tuple[str, int], api: httpx.Client, size: bytes
) -> None:
    body = b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabcde\r\n0\r\n\r\n"
    assert refused(exchange(address, HEAD + body), 400)
    assert api.get("/v1/ping/").status_code == 200


@pytest.mark.parametrize("length", [b"-1", b"+5", b"5_0", b"1 2", b"0x5", b"\xd9\xa5", b""])
def test_a_malformed_content_length_is_a_400(address: tuple[str, int], length: bytes) -> None:
    assert refused(exchange(address, HEAD + b"Content-Length: " + length + b"\r\n\r\nabcde"), 400)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    ],
)
def test_two_framings_of_one_body_are_refused(address: tuple[str, int], headers: bytes) -> None:
    assert refused(exchange(address, HEAD + headers + b"\r\n5\r\nabcde\r\n0\r\n\r\n"), 400)


def test_an_oversized_body_is_a_413_before_a_byte_of_it_is_sent(address: tuple[str, int]) -> None:
    too_long = f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
    assert refused(exchange(address, HEAD + too_long), 413)
    huge_chunk = b"Transfer-Encoding: chunked\r\n\r\nffffffffffff\r\n"
    assert refused(exchange(address, HEAD + huge_chunk), 413)
    # Chunks that are each under the cap but not together: refused at the one that crosses it.
    crossing = f"5\r\nabcde\r\n{MAX_BODY - 4:x}\r\n".encode()
    assert refused(exchange(address, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + crossing), 413)


def test_a_chunk_line_without_its_end_and_a_chunk_without_its_crlf_are_400s(
    address: tuple[str, int],
) -> None:
    endless = b"Transfer-Encoding: chunked\r\n\r\n5;" + b"x" * (MAX_CHUNK_LINE + 10)
    assert refused(exchange(address, HEAD + endless), 400)
    overrun = b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcdefgh\r\n0\r\n\r\n"
    assert refused(exchange(address, HEAD + overrun), 400)


def test_a_chunked_body_with_extensions_and_a_trailer_still_works(address: tuple[str, int]) -> None:
    body = b'{"memories": [{"memory_id": "00000000-0000-4000-8000-000000000000"}]}'
    request = (
        b"DELETE /v1/batch/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Token {ADMIN_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"7;name=value\r\n"
        + body[:7]
        + f"\r\n{len(body) - 7:X}\r\n".encode()
        + body[7:]
        + b"\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    received = exchange(address, request)
    assert received.startswith(b"HTTP/1.1 200 "), received
    calls = httpx.get(f"http://{address[0]}:{address[1]}/_sandbox/calls", timeout=5).json()
    assert calls["calls"][-1]["body"] == json.loads(body)
