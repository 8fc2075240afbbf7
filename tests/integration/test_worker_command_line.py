"""`run --workers N` end to end: the workers get the API key, but not on their command lines.

A command line is readable by every user of the machine (/proc/<pid>/cmdline); a worker's is
the parent's settings flags rendered again, with each secret given as a flag moved to the
worker's environment (`settings.flags.child_arguments`). The workers here run against a broker
and a Mem0 that are not there: their /healthz answering proves they accepted their settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumer.kafka.broker import free_port
from tests.integration.test_config_cli import CLEAN_ENV, get

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue  # gone meanwhile
            if f"\nPPid:\t{pid}\n" in status:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_workers_get_the_api_key_but_not_on_their_command_line(tmp_path: Path) -> None:
    port = free_port()
    key = "sk-workers-" + os.urandom(6).hex()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "MEM0_BASE_URL": "http://127.0.0.1:1",  # nor there
        "METRICS_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    # A file, not a pipe: the workers log every failed connection, and a full pipe would
    # block them.
    log_file = (tmp_path / "stderr").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer", "run", "--workers", "2", "--mem0-api-key", key],
        env={**CLEAN_ENV, **env},
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        # Each worker serves /healthz once its settings (the key among them) were accepted.
        deadline = time.monotonic() + 60
        for worker_port in (port, port + 1):
            while True:
                assert process.poll() is None, (tmp_path / "stderr").read_text()
                try:
                    assert get(f"http://127.0.0.1:{worker_port}/healthz")[0] == 200
                    break
                except OSError:
                    assert time.monotonic() < deadline, "a worker did not start"
                    time.sleep(0.2)
        workers = _children(process.pid)
        assert len(workers) == 2
        for pid in workers:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert key.encode() not in b" ".join(command_line)
            assert b"--mem0-api-key" not in command_line
            assert b"run" in command_line
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log_file.close()
    stderr = (tmp_path / "stderr").read_text()
    assert process.returncode == 0, stderr
    assert key not in stderr
