"""What the Mem0 client makes of answers it cannot use, with no socket (a session that raises,
httpx's mock transport): every one a failure of its call, as a `TransientError`, and never a
label value or an exception the executor does not know (tests/integration/test_hostile_http.py
has the same over real sockets, for every client kind)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import httptools
import httpx
import pytest

from consumer.core.events import Scope
from consumer.mem0.client import Mem0Client
from consumer.mem0.errors import Mem0Error, TransientError
from consumer.mem0.http import (
    HeadFields,
    HttpSession,
    HttpxSession,
    Reply,
    TransportError,
    check_head,
)
from consumer.mem0.oss_client import OssClient
from consumer.mem0.platform_client import PlatformClient


class Raising(HttpSession):
    """A session whose every call raises `error`, as a parser or a library might."""

    def __init__(self, error: BaseException) -> None:
        super().__init__("http://mem0.test", {}, timeout_s=1, max_connections=1)
        self.error = error

    async def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None
    ) -> Reply:
        raise self.error

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(
    "error",
    [
        ValueError("invalid literal for int()"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        RecursionError("maximum recursion depth exceeded"),
        httptools.HttpParserError("Invalid character in chunk size"),
        KeyError("content-length"),
        TypeError("unsupported operand"),
    ],
)
def test_any_exception_of_a_session_is_a_transport_error(error: Exception) -> None:
    async def main() -> None:
        with pytest.raises(TransportError, match=type(error).__name__):
            await Raising(error).request("GET", "/v1/memories/m/")
        # Through the client: a TransientError, which the executor retries, naming the cause.
        with pytest.raises(TransientError, match=f"{type(error).__name__}.* on delete"):
            await PlatformClient(Raising(error)).delete("m")

    asyncio.run(main())


def test_a_cancellation_is_not_taken_for_a_failed_answer() -> None:
    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await Raising(asyncio.CancelledError()).request("GET", "/")

    asyncio.run(main())


Handler = Callable[[httpx.Request], httpx.Response]


def client(backend: type[Mem0Client], handler: Handler, **kwargs: Any) -> Mem0Client:
    session = HttpxSession(
        "http://mem0.test",
        {},
        transport=httpx.MockTransport(handler),
        timeout_s=1,
        max_connections=1,
    )
    return backend(session, **kwargs)


def answering(status: int, body: object) -> Handler:
    return lambda _request: httpx.Response(status, content=json.dumps(body).encode())


@pytest.mark.parametrize(
    "results", [[1], [{}], [{"id": 5}], [{"id": ""}], "abc", {"id": "m"}, None]
)
def test_a_listing_of_another_shape_fails_its_call(results: object) -> None:
    scope = Scope.of(user_id="alice")

    async def main() -> None:
        platform = client(PlatformClient, answering(200, {"results": results, "next": None}))
        with pytest.raises(TransientError, match="list answered"):
            await platform.list_ids(scope, 10)
        oss = client(OssClient, answering(200, results))
        with pytest.raises(TransientError, match="list answered"):
            await oss.list_ids(scope, 10)

    asyncio.run(main())


def test_a_listing_without_results_proves_nothing_either() -> None:
    async def main() -> None:
        platform = client(PlatformClient, answering(200, {"next": None}))
        with pytest.raises(TransientError, match="list answered"):
            await platform.list_ids(Scope.of(user_id="alice"), 10)

    asyncio.run(main())


def test_a_well_formed_listing_still_lists() -> None:
    async def main() -> tuple[list[str], list[str]]:
        records = [{"id": "m1"}, {"id": "m2", "memory": "x"}]
        platform = client(PlatformClient, answering(200, {"results": records, "next": None}))
        oss = client(OssClient, answering(200, {"results": records}))
        scope = Scope.of(user_id="alice")
        return await platform.list_ids(scope, 10), await oss.list_ids(scope, 10)

    assert asyncio.run(main()) == (["m1", "m2"], ["m1", "m2"])


@pytest.mark.parametrize(
    "retry_after",
    ["Mon, 01 Jan 9999999999 00:00:00 GMT", "Mon, 01 Jan 99999999999999999999999 00:00:00 GMT"],
)
def test_a_retry_after_past_any_calendar_is_ignored_not_raised(retry_after: str) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": retry_after}, content=b"{}")

    async def main() -> TransientError:
        with pytest.raises(TransientError) as caught:
            await client(PlatformClient, handler).delete("m")
        return caught.value

    error = asyncio.run(main())
    assert error.status == 429 and error.retry_after_s is None and "HTTP 429" in str(error)


def test_an_answer_that_breaks_its_reading_fails_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The net under everything that reads an answer: an exception nothing foresaw (here, the
    error text's reading itself) is a TransientError of that call."""

    def broken(_response: Reply) -> str:
        raise UnicodeError("what no test thought of")

    monkeypatch.setattr("consumer.mem0.client._error_text", broken)

    async def main() -> TransientError:
        with pytest.raises(TransientError) as caught:
            await client(PlatformClient, answering(500, {})).delete("m")
        return caught.value

    assert "UnicodeError reading the answer to delete" in str(asyncio.run(main()))


def test_the_status_label_is_a_known_status_or_a_class() -> None:
    labels: set[str] = set()

    async def main() -> None:
        for status in range(100, 600):
            mem0 = client(
                PlatformClient,
                answering(status, {}),
                observe=lambda _op, label, _s: labels.add(label),
            )
            with contextlib.suppress(Mem0Error):  # what each status means is not the point
                await mem0.delete("m")
            await mem0.aclose()

    asyncio.run(main())
    assert {"200", "404", "429", "503", "error", "2xx", "3xx", "4xx", "5xx"} <= labels
    assert "299" not in labels and "418" not in labels and "599" not in labels
    assert len(labels) <= 30  # not one per status: 500 statuses, a bounded label set


@pytest.mark.parametrize(
    ("status", "headers", "words"),
    [
        (99, [], "BadStatus"),
        (600, [], "BadStatus"),
        (101, [], "InterimStatus"),
        (200, [("Content-Encoding", "gzip")], "ContentEncoding"),
        (200, [("Content-Encoding", "identity, br")], "ContentEncoding"),
        (200, [("Transfer-Encoding", "xchunked")], "TransferEncoding"),
        (200, [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], "Transfer"),
        (200, [("Transfer-Encoding", "chunked"), ("Content-Length", "2")], "Content-Length"),
        (200, [("Content-Length", "\u00b2")], "BadContentLength"),
        (200, [("Content-Length", "+5")], "BadContentLength"),
        (200, [("Content-Length", "5"), ("Content-Length", "6")], "BadContentLength"),
        (200, [("Content-Length", "9" * 5000)], "BodyTooLong"),
        (200, [("Content-Length", "1025")], "BodyTooLong"),
    ],
)
def test_a_head_the_sessions_refuse(
    status: int, headers: list[tuple[str, str]], words: str
) -> None:
    error = check_head(status, HeadFields.of(headers), 1024)
    assert error is not None and words in str(error)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, []),
        (204, []),
        (599, [("Content-Length", "1024")]),
        (200, [("Transfer-Encoding", "Chunked")]),
        (200, [("Content-Encoding", "identity")]),
        (404, [("Content-Length", "0"), ("Content-Length", "0")]),
    ],
)
def test_a_head_the_sessions_take(status: int, headers: list[tuple[str, str]]) -> None:
    assert check_head(status, HeadFields.of(headers), 1024) is None
