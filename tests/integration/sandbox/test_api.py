"""The Mem0 sandbox over real HTTP on loopback: shapes, statuses, faults and the official SDK."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.sandbox import Faults, Sandbox
from tests.integration.sandbox.helpers import ADMIN_KEY as API_KEY
from tests.integration.sandbox.helpers import OSS, PLATFORM, remaining, wait_for_job


def batch(api: httpx.Client, ids: list[str]) -> httpx.Response:
    return api.request("DELETE", "/v1/batch/", json={"memories": [{"memory_id": i} for i in ids]})


# ping and authentication


def test_ping_answers_what_memory_client_reads(api: httpx.Client) -> None:
    response = api.get("/v1/ping/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["org_id"] and body["project_id"] and "@" in body["user_email"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Token wrong"}, OSS])
def test_platform_routes_need_the_token_header(sandbox: Sandbox, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=sandbox.url, headers=headers) as client:
        for response in (client.get("/v1/ping/"), client.delete(f"/v1/memories/{uuid.uuid4()}/")):
            assert response.status_code == 401
            assert "detail" in response.json()


def test_paths_need_their_trailing_slash(api: httpx.Client) -> None:
    response = api.delete(f"/v1/memories/{uuid.uuid4()}")
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    assert api.get("/v1/batch/").status_code == 405


# single delete and get


def test_delete_one_memory(sandbox: Sandbox, api: httpx.Client) -> None:
    kept, doomed = sandbox.add_memories([{"user_id": "u"}, {"user_id": "u", "memory": "x"}])
    assert api.get(f"/v1/memories/{doomed}/").json()["memory"] == "x"
    response = api.delete(f"/v1/memories/{doomed}/", params={"delete_linked": "true"})
    # With delete_linked the answer counts the linked memories deleted too: none here.
    assert response.json() == {"message": "Memory deleted successfully!", "cascade_count": 0}
    assert remaining(sandbox) == {kept}
    again = api.delete(f"/v1/memories/{doomed}/")
    assert (again.status_code, again.json()) == (404, {"error": "Memory not found!"})
    assert api.get(f"/v1/memories/{doomed}/").status_code == 404
    bad = api.delete("/v1/memories/not-a-uuid/")
    assert (bad.status_code, bad.json()) == (400, {"error": "memory_id should be a valid UUID"})


def test_memory_shape(sandbox: Sandbox, api: httpx.Client) -> None:
    (memory_id,) = sandbox.add_memories(
        [{"user_id": "u", "agent_id": "a", "run_id": "r", "app_id": "p", "metadata": {"k": "v"}}]
    )
    body = api.get(f"/v1/memories/{memory_id}/").json()
    assert set(body) == {
        "id",
        "memory",
        "user_id",
        "agent_id",
        "run_id",
        "app_id",
        "metadata",
        "categories",
        "created_at",
        "updated_at",
        "expiration_date",
    }
    assert (body["id"], body["app_id"], body["metadata"]) == (memory_id, "p", {"k": "v"})
    assert body["created_at"].endswith("+00:00") and body["expiration_date"] is None


# batch delete


def test_batch_delete_counts_what_it_deleted(sandbox: Sandbox, api: httpx.Client) -> None:
    ids = sandbox.add_memories([{"user_id": "u"}] * 3)
    response = batch(api, [ids[0], ids[1], str(uuid.uuid4())])
    assert response.json() == {"message": "Successfully deleted 2 memories"}
    assert remaining(sandbox) == {ids[2]}


def test_batch_delete_limits(sandbox: Sandbox, api: httpx.Client) -> None:
    (memory_id,) = sandbox.add_memories([{"user_id": "u"}])
    too_many = batch(api, [str(uuid.uuid4()) for _ in range(1001)])
    assert too_many.status_code == 400
    assert too_many.json() == {
        "error": "Maximum of 1000 memories can be deleted in a single request"
    }
    assert batch(api, []).status_code == 400
    assert batch(api, [str(uuid.uuid4()) for _ in range(1000)]).status_code == 200
    not_uuid = batch(api, [memory_id, "nope"])
    assert not_uuid.status_code == 400 and "nope" in not_uuid.json()["error"]
    assert remaining(sandbox) == {memory_id}


def test_poison_ids_are_rejected_and_block_their_batch(sandbox: Sandbox, api: httpx.Client) -> None:
    good, poison = sandbox.add_memories([{"user_id": "u"}, {"user_id": "u"}])
    sandbox.set_faults(poison_ids=[poison])
    rejected = batch(api, [good, poison])
    assert rejected.status_code == 400 and poison in rejected.json()["error"]
    assert api.delete(f"/v1/memories/{poison}/").status_code == 400
    assert remaining(sandbox) == {good, poison}
    assert batch(api, [good]).status_code == 200
    assert remaining(sandbox) == {poison}


# delete_all and its jobs


def test_delete_all_needs_a_filter(api: httpx.Client) -> None:
    response = api.delete("/v1/memories/")
    assert response.status_code == 400
    assert response.json()["error"].startswith("At least one filter is required")


def test_delete_all_of_one_user(sandbox: Sandbox, api: httpx.Client) -> None:
    ids = sandbox.add_memories([{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u1"}])
    response = api.delete("/v1/memories/", params={"user_id": "u1"})
    body = response.json()
    assert response.status_code == 200
    assert body["message"] == "Delete in progress. This may take some time."
    job = wait_for_job(api, body["event_id"])
    assert job["status"] == "SUCCEEDED" and job["error"] is None
    assert job["id"] == body["event_id"] and job["event_type"] == "DELETE"
    assert remaining(sandbox) == {ids[1]}


def test_delete_all_with_two_entities_deletes_the_union(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    # The documented trap: entity filters of one delete_all are not guaranteed to be ANDed.
    ids = sandbox.add_memories(
        [
            {"user_id": "u1", "agent_id": "a1"},
            {"user_id": "u1", "agent_id": "a2"},
            {"user_id": "u2", "agent_id": "a1"},
            {"user_id": "u2", "agent_id": "a2"},
        ]
    )
    body = api.delete("/v1/memories/", params={"user_id": "u1", "agent_id": "a1"}).json()
    assert wait_for_job(api, body["event_id"])["status"] == "SUCCEEDED"
    assert remaining(sandbox) == {ids[3]}


def test_delete_all_ands_metadata_and_honours_star(sandbox: Sandbox, api: httpx.Client) -> None:
    ids = sandbox.add_memories(
        [
            {"user_id": "u1", "metadata": {"topic": "a"}},
            {"user_id": "u1", "metadata": {"topic": "b"}},
            {"user_id": "u2", "metadata": {"topic": "a"}},
            {"agent_id": "a1"},
        ]
    )
    params = {"user_id": "u1", "metadata": '{"topic": "a"}'}
    wait_for_job(api, api.delete("/v1/memories/", params=params).json()["event_id"])
    assert remaining(sandbox) == set(ids[1:])
    wait_for_job(api, api.delete("/v1/memories/", params={"user_id": "*"}).json()["event_id"])
    assert remaining(sandbox) == {ids[3]}
    assert api.delete("/v1/memories/", params={"metadata": "[1]"}).status_code == 400


def test_delayed_job_goes_pending_then_succeeded(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(job_delay_ms=300)
    (memory_id,) = sandbox.add_memories([{"user_id": "u"}])
    event_id = api.delete("/v1/memories/", params={"user_id": "u"}).json()["event_id"]
    assert api.get(f"/v1/event/{event_id}/").json()["status"] == "PENDING"
    assert remaining(sandbox) == {memory_id}
    seen = set()
    while (status := api.get(f"/v1/event/{event_id}/").json()["status"]) != "SUCCEEDED":
        seen.add(status)
        time.sleep(0.02)
    assert seen == {"PENDING", "RUNNING"}
    assert remaining(sandbox) == set()


def test_failed_job_deletes_nothing(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(job_fail_rate=1.0)
    ids = sandbox.add_memories([{"user_id": "u"}] * 2)
    job = wait_for_job(api, api.delete("/v1/memories/", params={"user_id": "u"}).json()["event_id"])
    assert job["status"] == "FAILED" and job["error"]
    assert remaining(sandbox) == set(ids)


def test_leave_behind_reports_success_but_keeps_memories(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    sandbox.set_faults(leave_behind_rate=1.0)
    ids = sandbox.add_memories([{"user_id": "u"}] * 2)
    job = wait_for_job(api, api.delete("/v1/memories/", params={"user_id": "u"}).json()["event_id"])
    assert job["status"] == "SUCCEEDED"
    assert remaining(sandbox) == set(ids)


def test_events(api: httpx.Client) -> None:
    assert api.get(f"/v1/event/{uuid.uuid4()}/").status_code == 404
    first = api.delete("/v1/memories/", params={"user_id": "a"}).json()["event_id"]
    second = api.delete("/v1/memories/", params={"user_id": "b"}).json()["event_id"]
    page = api.get("/v1/events/", params={"page_size": 1}).json()
    assert page["count"] == 2 and page["previous"] is None
    assert [job["id"] for job in page["results"]] == [second]
    following = api.get(page["next"]).json()
    assert [job["id"] for job in following["results"]] == [first]
    assert following["next"] is None and following["previous"]


def test_a_new_job_can_be_unknown_for_a_while(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(job_hidden_ms=300)
    not_found = {"error": "Event not found or you don't have permission"}
    (memory_id,) = sandbox.add_memories([{"user_id": "u"}])
    sandbox.add_entities([{"type": "user", "id": "v"}])
    started = time.monotonic()
    event_ids = [
        api.delete("/v1/memories/", params={"user_id": "u"}).json()["event_id"],
        api.delete("/v2/entities/user/v/").json()["event_id"],
    ]
    sandbox.set_faults(job_hidden_ms=0)  # a job keeps the delay it was created with
    for event_id in event_ids:
        hidden = api.get(f"/v1/event/{event_id}/")
        assert (hidden.status_code, hidden.json()) == (404, not_found)
    assert memory_id not in remaining(sandbox)  # the job ran on time all the same
    assert [e["name"] for e in sandbox.entities()] == ["u"]  # v's delete ran; u's entity stays
    while api.get(f"/v1/event/{event_ids[0]}/").status_code == 404:
        time.sleep(0.02)
    assert time.monotonic() - started >= 0.3
    for event_id in event_ids:
        assert api.get(f"/v1/event/{event_id}/").json()["status"] == "SUCCEEDED"
    unknown = api.get(f"/v1/event/{uuid.uuid4()}/")
    assert (unknown.status_code, unknown.json()) == (404, not_found)


# listing (POST /v3/memories/)


def test_list_pages_through_and_filters(sandbox: Sandbox, api: httpx.Client) -> None:
    wanted = sandbox.add_memories(
        [{"user_id": "u", "run_id": "r", "metadata": {"k": "v", "n": i}} for i in range(5)]
    )
    sandbox.add_memories(
        [
            {"user_id": "u", "run_id": "r", "metadata": {"k": "other"}},
            {"user_id": "u", "run_id": "s", "metadata": {"k": "v"}},
            {"user_id": "x", "run_id": "r", "metadata": {"k": "v"}},
        ]
    )
    body = {
        "filters": {"AND": [{"user_id": "u"}, {"run_id": "r"}, {"metadata": {"k": "v"}}]},
        "show_expired": True,
    }
    seen: list[str] = []
    url: str | None = "/v3/memories/?page=1&page_size=2"
    while url is not None:
        page = api.post(url, json=body).json()
        assert page["count"] == 5
        seen += [memory["id"] for memory in page["results"]]
        url = page["next"]
    assert seen == wanted
    past_the_end = api.post("/v3/memories/", params={"page": 4, "page_size": 2}, json=body)
    assert past_the_end.status_code == 404


def test_list_filter_operators(sandbox: Sandbox, api: httpx.Client) -> None:
    ids = sandbox.add_memories(
        [
            {"user_id": "a", "agent_id": "x"},
            {"user_id": "b"},
            {"user_id": "c", "categories": ["food"]},
            {"agent_id": "x", "metadata": {"tag": 1}},
        ]
    )

    def listed(filters: dict[str, Any]) -> list[str]:
        response = api.post("/v3/memories/", json={"filters": filters})
        assert response.status_code == 200, response.text
        return [memory["id"] for memory in response.json()["results"]]

    assert listed({"user_id": {"in": ["a", "c"]}}) == [ids[0], ids[2]]
    assert listed({"OR": [{"user_id": "b"}, {"agent_id": "x"}]}) == [ids[0], ids[1], ids[3]]
    assert listed({"AND": [{"agent_id": "x"}, {"NOT": [{"user_id": "a"}]}]}) == [ids[3]]
    assert listed({"user_id": "*"}) == ids[:3]
    assert listed({"user_id": "a", "agent_id": "x"}) == [ids[0]]
    assert listed({"metadata": {"tag": "*"}}) == [ids[3]]
    assert listed({"categories": {"contains": "food"}}) == [ids[2]]


def test_list_rejects_bad_requests(api: httpx.Client) -> None:
    top_level = api.post("/v3/memories/", json={"user_id": "u", "filters": {"user_id": "u"}})
    assert top_level.status_code == 400 and "error" in top_level.json()
    assert api.post("/v3/memories/", json={"filters": {"colour": "red"}}).status_code == 400
    assert api.post("/v3/memories/", json={}).status_code == 400
    assert api.post("/v3/memories/", content=b"{not json").status_code == 400


def test_list_hides_expired_memories_unless_asked(sandbox: Sandbox, api: httpx.Client) -> None:
    live, expired = sandbox.add_memories(
        [{"user_id": "u"}, {"user_id": "u", "expiration_date": "2020-01-01"}]
    )
    hidden = api.post("/v3/memories/", json={"filters": {"user_id": "u"}}).json()
    assert [m["id"] for m in hidden["results"]] == [live]
    shown = api.post("/v3/memories/", json={"filters": {"user_id": "u"}, "show_expired": True})
    assert [m["id"] for m in shown.json()["results"]] == [live, expired]


def test_list_page_size_is_capped_at_200(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.add_memories([{"user_id": "u"}] * 250)
    page = api.post("/v3/memories/?page_size=500", json={"filters": {"user_id": "u"}}).json()
    assert (page["count"], len(page["results"])) == (250, 200)


# faults


def test_rate_limit_answers_429_with_retry_after(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(rate_limit_rate=1.0, retry_after_s=3)
    response = api.delete(f"/v1/memories/{uuid.uuid4()}/")
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert api.get("/v1/ping/").status_code == 200  # random faults spare ping
    assert sandbox.calls()[0]["fault"] == "rate_limit"


def test_error_rate_answers_one_of_the_codes(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(error_rate=1.0, error_codes=(502,))
    assert api.delete(f"/v1/memories/{uuid.uuid4()}/").status_code == 502
    sandbox.set_faults(error_rate=0.5, error_codes=(500, 503))
    statuses = {api.delete(f"/v1/memories/{uuid.uuid4()}/").status_code for _ in range(40)}
    assert statuses == {404, 500, 503}


def test_outage_and_auth_failure_reach_ping_too(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(outage=True)
    assert api.get("/v1/ping/").status_code == 503
    assert api.request("DELETE", "/v1/batch/", json={"memories": []}).status_code == 503
    sandbox.set_faults(outage=False, auth_failure=True)
    response = api.get("/v1/ping/")
    assert (response.status_code, response.json()) == (401, {"detail": "Invalid API key"})
    assert [call["fault"] for call in sandbox.calls()] == ["outage", "outage", "auth"]


def test_latency_does_not_block_other_connections(sandbox: Sandbox) -> None:
    sandbox.set_faults(latency_ms=200)
    clients = [httpx.Client(base_url=sandbox.url, headers=PLATFORM) for _ in range(6)]
    durations: list[float] = []

    def one_call(client: httpx.Client) -> None:
        started = time.perf_counter()
        client.get("/v1/ping/")
        durations.append(time.perf_counter() - started)

    threads = [threading.Thread(target=one_call, args=(client,)) for client in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    assert len(durations) == 6 and min(durations) >= 0.2
    assert elapsed < 0.9  # the six calls overlapped rather than taking 1.2 s in a row


# self-hosted (OSS) routes


def test_oss_single_memory_routes(sandbox: Sandbox, oss: httpx.Client) -> None:
    (memory_id,) = sandbox.add_memories([{"user_id": "u"}])
    assert oss.get(f"/memories/{memory_id}").json()["id"] == memory_id
    response = oss.delete(f"/memories/{memory_id}")
    assert response.json() == {"message": "Memory deleted successfully"}
    assert oss.delete(f"/memories/{memory_id}").status_code == 404
    missing = oss.get(f"/memories/{memory_id}")
    assert (missing.status_code, missing.json()) == (200, None)
    with httpx.Client(base_url=sandbox.url, headers=PLATFORM) as wrong_header:
        assert wrong_header.get(f"/memories/{memory_id}").status_code == 401


def test_oss_delete_all_ands_and_is_synchronous(sandbox: Sandbox, oss: httpx.Client) -> None:
    ids = sandbox.add_memories(
        [{"user_id": "u", "run_id": "r"}, {"user_id": "u", "run_id": "s"}, {"user_id": "v"}]
    )
    listed = oss.get("/memories", params={"user_id": "u", "run_id": "r"}).json()
    assert [m["id"] for m in listed["results"]] == [ids[0]]
    response = oss.delete("/memories", params={"user_id": "u", "run_id": "r"})
    assert response.json() == {"message": "All relevant memories deleted"}
    assert remaining(sandbox) == set(ids[1:])
    no_identifier = oss.delete("/memories")
    assert (no_identifier.status_code, no_identifier.json()) == (
        400,
        {"detail": "At least one identifier is required."},
    )
    # With no identifier, today's server lists everything, for the admin key (as here) only.
    listed_all = oss.get("/memories")
    assert listed_all.status_code == 200
    assert [m["id"] for m in listed_all.json()["results"]] == ids[1:]


def test_oss_delete_all_limit_leaves_the_rest(sandbox: Sandbox, oss: httpx.Client) -> None:
    sandbox.set_faults(oss_delete_all_limit=2)
    ids = sandbox.add_memories([{"user_id": "u"}] * 5)
    assert oss.delete("/memories", params={"user_id": "u"}).status_code == 200
    assert remaining(sandbox) == set(ids[2:])
    while oss.get("/memories", params={"user_id": "u"}).json()["results"]:
        oss.delete("/memories", params={"user_id": "u"})
    assert remaining(sandbox) == set()


# admin routes and the call log


def test_admin_routes(sandbox: Sandbox, admin: httpx.Client) -> None:
    ids = admin.post("/_sandbox/memories", json=[{"user_id": "u", "memory": "m"}]).json()["ids"]
    assert [m["id"] for m in admin.get("/_sandbox/memories").json()["memories"]] == ids
    assert admin.post("/_sandbox/memories", json=[{"colour": "red"}]).status_code == 400
    faults = admin.put("/_sandbox/faults", json={"error_rate": 0.25, "poison_ids": ids}).json()
    assert faults["error_rate"] == 0.25 and faults["poison_ids"] == ids
    assert admin.get("/_sandbox/faults").json() == faults
    assert admin.put("/_sandbox/faults", json={"error_rate": 2}).status_code == 400
    assert admin.put("/_sandbox/faults", json={"nonsense": 1}).status_code == 400
    sandbox.set_faults(outage=True)  # admin routes never see faults
    with httpx.Client(base_url=sandbox.url, headers=PLATFORM) as api:
        api.get("/v1/ping/")
    assert len(admin.get("/_sandbox/calls").json()["calls"]) == 1
    assert admin.get("/_sandbox/stats").json()["memories"] == 1
    assert admin.delete("/_sandbox/calls").json() == {"cleared": 1}
    assert sandbox.calls() == []
    assert admin.post("/_sandbox/reset").status_code == 200
    assert sandbox.memories() == [] and sandbox.faults == Faults()


def test_call_log_records_each_api_call(sandbox: Sandbox, api: httpx.Client) -> None:
    memory_id = str(uuid.uuid4())
    api.delete(f"/v1/memories/{memory_id}/")
    batch(api, [memory_id])
    api.delete("/v1/memories/", params={"user_id": "u"})
    first, second, third = sandbox.calls()
    assert first["seq"] < second["seq"] < third["seq"]
    assert first["method"] == "DELETE" and first["path"] == f"/v1/memories/{memory_id}/"
    assert (first["operation"], first["status"], first["fault"]) == ("delete", 404, None)
    assert second["operation"] == "batch_delete"
    assert second["body"] == {"memories": [{"memory_id": memory_id}]}
    assert (third["operation"], third["query"]) == ("delete_all", {"user_id": "u"})
    assert isinstance(first["at"], float)


# HTTP details


def raw_exchange(sandbox: Sandbox, payload: bytes, responses: int) -> bytes:
    with socket.create_connection((sandbox.host, sandbox.port), timeout=5) as conn:
        conn.sendall(payload)
        received = b""
        while received.count(b"HTTP/1.1 ") < responses or not received.endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_pipelined_and_chunked_requests(sandbox: Sandbox) -> None:
    auth = f"Authorization: Token {API_KEY}\r\n".encode()
    ping = b"GET /v1/ping/ HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
    body = b'{"filters": {"user_id": "u"}}'
    chunked = (
        b"POST /v3/memories/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + auth
        + b"\r\n"
        + f"{len(body[:10]):x}\r\n".encode()
        + body[:10]
        + b"\r\n"
        + f"{len(body[10:]):x}\r\n".encode()
        + body[10:]
        + b"\r\n0\r\n\r\n"
    )
    received = raw_exchange(sandbox, ping + chunked, responses=2)
    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert received.index(b'"pong"') < received.index(b'"count":0')


def test_connection_close_is_honoured(sandbox: Sandbox) -> None:
    request = b"GET /v1/ping/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    received = raw_exchange(sandbox, request, responses=1)
    assert received.startswith(b"HTTP/1.1 401") and b"Connection: close" in received


def test_half_closed_connection_still_gets_its_delayed_answer(sandbox: Sandbox) -> None:
    sandbox.set_faults(latency_ms=50)
    request = f"GET /v1/ping/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {API_KEY}\r\n\r\n"
    with socket.create_connection((sandbox.host, sandbox.port), timeout=5) as conn:
        conn.sendall(request.encode())
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK")


def test_a_stopped_sandbox_can_start_again() -> None:
    sandbox = Sandbox(api_key=API_KEY)
    for _ in range(2):
        with sandbox, httpx.Client(base_url=sandbox.url, headers=PLATFORM) as client:
            assert client.get("/v1/ping/").status_code == 200


def test_command_line_server_prints_its_url_and_stops_on_sigterm() -> None:
    root = Path(__file__).resolve().parents[3]
    command = [sys.executable, "-m", "consumer.sandbox", "--port", "0", "--api-key", API_KEY]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, headers=PLATFORM) as client:
            assert client.get("/v1/ping/").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


# the official SDK


def test_official_sdk_against_the_sandbox(sandbox: Sandbox, memory_client_class: Any) -> None:
    ids = sandbox.add_memories(
        [{"user_id": "u1"}, {"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u3"}]
    )
    with httpx.Client() as transport:
        client = memory_client_class(api_key=API_KEY, host=sandbox.url, client=transport)
        assert client.org_id and client.project_id
        listed = client.get_all(filters={"AND": [{"user_id": "u1"}]}, page=1, page_size=50)
        assert [m["id"] for m in listed["results"]] == ids[:2]
        assert client.delete(ids[0])["message"] == "Memory deleted successfully!"
        assert client.batch_delete([{"memory_id": ids[1]}]) == {
            "message": "Successfully deleted 1 memories"
        }
        event_id = client.delete_all(user_id="u2")["event_id"]
    with httpx.Client(base_url=sandbox.url, headers=PLATFORM) as api:
        assert wait_for_job(api, event_id)["status"] == "SUCCEEDED"
    assert remaining(sandbox) == {ids[3]}
    assert [call["operation"] for call in sandbox.calls()] == [
        "ping",
        "list",
        "delete",
        "batch_delete",
        "delete_all",
        "job_status",
    ]
