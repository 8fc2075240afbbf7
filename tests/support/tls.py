"""TLS for integration tests: a throwaway CA and certificates, and a TLS front for a broker.

Tansu 0.6 cannot serve TLS itself (its `--cert` and `--key` options exclude each other, and
`--cert` alone leaves the listener in plain text), so `TlsFront` terminates TLS in front of it:
the broker advertises the front's port, and the front requires a client certificate signed by
the test CA. Plain-text connections pass through too (told apart by the first byte, 0x16 for a
TLS handshake), so the harness's own plain clients keep working beside the TLS consumer.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["Certificates", "Connection", "TlsFront", "make_certificates"]

_HANDSHAKE = 0x16


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with `client_key_password`
    client_key_password: str
    client_name: str


def make_certificates(directory: Path, client_key_password: str) -> Certificates:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate (openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl")

    client_name = "deletion-consumer"
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sign = "x509 -req -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
    steps = [
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr",
        f"{sign} -in server.csr -extfile server.ext -out server.pem",
        f"req -newkey rsa:2048 -subj /CN={client_name} -passout pass:{client_key_password}"
        " -keyout client.key -out client.csr",
        f"{sign} -in client.csr -out client.pem",
    ]
    for step in steps:
        subprocess.run([openssl, *step.split()], check=True, capture_output=True, cwd=directory)
    return Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_key_password=client_key_password,
        client_name=client_name,
    )


@dataclass(frozen=True)
class Connection:
    client_id: str | None  # from the first Kafka request's header
    tls: bool
    peer: str | None  # the verified client certificate's common name


class TlsFront:
    """Listens on `port` and relays to the broker at `upstream_port`: TLS connections (client
    certificate required) and plain ones alike. `connections` records each one."""

    def __init__(self, certificates: Certificates, upstream_port: int, port: int) -> None:
        self.port = port
        self._upstream = ("127.0.0.1", upstream_port)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.server_cert, certificates.server_key)
        context.load_verify_locations(certificates.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        self._context = context
        self.connections: list[Connection] = []
        self._listener = socket.create_server(("127.0.0.1", port))
        self._running = True
        self._thread = threading.Thread(target=self._accept, name="tls-front", daemon=True)

    def __enter__(self) -> TlsFront:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running = False
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        peer = None
        try:
            first = client.recv(1, socket.MSG_PEEK)
            tls = bool(first) and first[0] == _HANDSHAKE
            if tls:
                client = self._context.wrap_socket(client, server_side=True)
                subject = dict(item[0] for item in client.getpeercert()["subject"])
                peer = str(subject["commonName"])
            size = _read_exactly(client, 4)
            request = _read_exactly(client, int.from_bytes(size, "big"))
            self.connections.append(Connection(_client_id(request), tls, peer))
            upstream = socket.create_connection(self._upstream)
            upstream.sendall(size + request)
        except (OSError, ssl.SSLError, EOFError):
            client.close()
            return
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _client_id(request: bytes) -> str | None:
    """The client id of a Kafka request header: api key, version, correlation id, client id."""
    length = int.from_bytes(request[8:10], "big", signed=True)
    return None if length < 0 else request[10 : 10 + length].decode("utf-8", "replace")


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
