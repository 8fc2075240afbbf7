"""The health endpoint under hostile clients: idle and slow connections cost a socket, not a
thread, are dropped after the request timeout or when too many are open, and /healthz still
answers at once."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from consumer.telemetry.health import HealthServer


def ready() -> tuple[bool, str]:
    return True, ""


def healthz(port: int) -> tuple[int, float]:
    """Status of GET /healthz and how long it took, seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


@pytest.fixture
def idle() -> Iterator[list[socket.socket]]:
    """Client sockets the test opens and never writes to; all closed at the end."""
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def open_idle(port: int, count: int, into: list[socket.socket]) -> None:
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        into.append(sock)


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` within `within_s` (a read returns end of file)."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_many_idle_connections_hold_no_threads_and_healthz_answers_at_once(
    idle: list[socket.socket],
) -> None:
    threads_before = threading.active_count()
    with HealthServer(0, CollectorRegistry(), ready, host="127.0.0.1") as health:
        open_idle(health.port, 300, idle)
        # Some also send half a request, as a slow client would.
        for sock in idle[::3]:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, seconds = healthz(health.port)
        assert status == 200
        assert seconds < 1.0
        # Each connection was accepted before the probe's, so a thread per connection
        # would exist by now.
        assert threading.active_count() <= threads_before + 2


def test_an_idle_connection_is_dropped_after_the_request_timeout(
    idle: list[socket.socket],
) -> None:
    with HealthServer(
        0, CollectorRegistry(), ready, host="127.0.0.1", request_timeout_s=0.2
    ) as health:
        open_idle(health.port, 1, idle)
        assert closed_by_server(idle[0], within_s=5)
        trickled = socket.create_connection(("127.0.0.1", health.port), timeout=5)
        idle.append(trickled)
        trickled.sendall(b"GET /healthz HTTP/1.0\r\n")  # and never the end of the head
        assert closed_by_server(trickled, within_s=5)
        assert healthz(health.port)[0] == 200


def test_past_the_cap_the_oldest_connections_are_dropped(idle: list[socket.socket]) -> None:
    with HealthServer(
        0, CollectorRegistry(), ready, host="127.0.0.1", request_timeout_s=60, max_connections=8
    ) as health:
        open_idle(health.port, 20, idle)
        assert healthz(health.port)[0] == 200
        # The twelve oldest made room; the timeout (a minute) has nothing to do with it.
        assert all(closed_by_server(sock, within_s=5) for sock in idle[:12])
        assert not closed_by_server(idle[-1], within_s=0.05)


def test_a_malformed_request_is_refused_and_other_methods_are_not_allowed() -> None:
    with HealthServer(0, CollectorRegistry(), ready, host="127.0.0.1") as health:
        with socket.create_connection(("127.0.0.1", health.port), timeout=5) as sock:
            sock.sendall(b"nonsense\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.0 400 ")
        connection = http.client.HTTPConnection("127.0.0.1", health.port, timeout=5)
        try:
            connection.request("POST", "/healthz", body=b"")
            response = connection.getresponse()
            assert (response.status, response.getheader("Allow")) == (405, "GET, HEAD")
        finally:
            connection.close()


def test_a_port_in_use_raises_in_start() -> None:
    with HealthServer(0, CollectorRegistry(), ready, host="127.0.0.1") as first:
        second = HealthServer(first.port, CollectorRegistry(), ready, host="127.0.0.1")
        with pytest.raises(OSError):
            second.start()
        second.stop()
