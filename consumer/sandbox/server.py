"""Running a sandbox: in a background thread (`Sandbox`) or in the foreground (`main_sandbox`)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

from consumer.sandbox.app import SandboxApp
from consumer.sandbox.faults import Faults
from consumer.sandbox.http import Connections, start_http_server
from consumer.sandbox.state import SandboxState

__all__ = ["Sandbox", "main_sandbox", "serve_forever"]

DEFAULT_API_KEY = "sandbox-key"
DEFAULT_CALL_LOG_LIMIT = 100_000


class Sandbox:
    """A Mem0-compatible server on its own event loop in a daemon thread.

    The accessors are thread-safe, so a test can seed memories, read the call log and change
    faults while clients talk to `url`. `api_key` is the admin key; `user_api_keys` are
    self-hosted keys without the admin role (the Platform routes refuse them).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        faults: Faults | None = None,
        seed: int | None = None,
        *,
        call_log_limit: int | None = None,
        user_api_keys: Collection[str] = (),
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port = port
        self._state = SandboxState(
            api_key, faults, seed, call_log_limit=call_log_limit, user_api_keys=user_api_keys
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # lifecycle

    def start(self) -> Sandbox:
        """Start listening; returns once the port is open."""
        if self._thread is not None:
            raise RuntimeError("sandbox already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="mem0-sandbox", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"sandbox failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and end the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), which re-raises it
            self._error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()

        def ready(port: int) -> None:
            self._port = port
            self._ready.set()

        await serve_forever(self.host, self._requested_port, self._state, self._stop, ready)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return base_url(self.host, self._port)

    # thread-safe accessors

    def add_memories(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Store memories (user_id, agent_id, run_id, app_id, metadata, memory, ...); their ids."""
        return self._state.add_memories(records)

    def memories(self) -> list[dict[str, Any]]:
        """A snapshot of every stored memory (merged and superseded ones too), in the API's
        shape plus `merged` and `superseded_by`."""
        return self._state.memories()

    def add_entities(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Make sure entities exist ({"type": "user", "id": "alice"}, ...); their API shapes."""
        return self._state.add_entities(records)

    def entities(self) -> list[dict[str, Any]]:
        """A snapshot of every entity (user, agent, app, run), in the API's shape."""
        return self._state.entities()

    @property
    def api_key(self) -> str:
        """The admin key (the one the Platform routes take)."""
        return self._state.api_key

    @property
    def user_api_keys(self) -> list[str]:
        return self._state.get_user_keys()

    def set_keys(
        self, *, api_key: str | None = None, user_api_keys: Collection[str] | None = None
    ) -> list[str]:
        """Change the admin key, the self-hosted keys without the admin role, or both (a
        demotion: the old admin key becomes a user key). Returns the user keys."""
        return self._state.set_keys(api_key, user_api_keys)

    def calls(self) -> list[dict[str, Any]]:
        """A snapshot of the call log (API calls only, not /_sandbox/...)."""
        return self._state.calls()

    def clear_calls(self) -> None:
        self._state.clear_calls()

    @property
    def faults(self) -> Faults:
        """The live faults (prefer `set_faults`, which validates)."""
        return self._state.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some faults; returns a copy of the result."""
        return self._state.set_faults(**changes)

    def reset(self) -> None:
        """Forget memories, entities, jobs and calls; restore the faults and keys given at
        construction."""
        self._state.reset()

    def stats(self) -> dict[str, Any]:
        return self._state.stats()


async def serve_forever(
    host: str,
    port: int,
    state: SandboxState,
    stop: asyncio.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve `state` on host:port until `stop` is set; `on_ready` gets the bound port."""
    connections = Connections()
    server = await start_http_server(SandboxApp(state), host, port, connections)
    try:
        bound = server.sockets[0].getsockname()[1]
        if on_ready is not None:
            on_ready(int(bound))
        await stop.wait()
    finally:
        server.close()
        connections.close_all()
        await server.wait_closed()
        # Let the transports' connection_lost callbacks run before the loop goes away.
        await asyncio.sleep(0)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main_sandbox(
    host: str,
    port: int,
    api_key: str,
    faults: Faults,
    *,
    seed: int | None = None,
    call_log_limit: int | None = DEFAULT_CALL_LOG_LIMIT,
    user_api_keys: Collection[str] = (),
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; prints one line with the URL.

    The call log keeps only the last `call_log_limit` calls, so a long demo does not grow
    without bound. `user_api_keys` are self-hosted keys without the admin role.
    """
    state = SandboxState(
        api_key, faults, seed, call_log_limit=call_log_limit, user_api_keys=user_api_keys
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

        def ready(bound: int) -> None:
            print(f"mem0 sandbox listening on {base_url(host, bound)}", flush=True)

        await serve_forever(host, port, state, stop, ready)

    asyncio.run(run())
