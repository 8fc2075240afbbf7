"""Entities in the sandbox, over HTTP: they outlive every memory delete, and only an entity
delete (a background job) removes them with their memories."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from consumer.sandbox import Sandbox
from tests.integration.sandbox.helpers import ADMIN_KEY as API_KEY
from tests.integration.sandbox.helpers import remaining, wait_for_job

IN_PROGRESS = "Delete in progress. This may take some time."
EXPIRED = "2020-01-01"


def entities(sandbox: Sandbox) -> dict[tuple[str, str], int]:
    """(type, name) -> total_memories of every entity the sandbox holds."""
    return {(e["type"], e["name"]): e["total_memories"] for e in sandbox.entities()}


def test_memories_bring_their_entities_into_being(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.add_memories(
        [
            {"user_id": "alice", "agent_id": "helper", "app_id": "shop", "run_id": "r1"},
            {"user_id": "alice"},
            {"user_id": "bob", "agent_id": "alice"},
        ]
    )
    response = api.get("/v1/entities/")
    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["previous"]) == (6, None, None)
    found = {(e["type"], e["name"]): e for e in body["results"]}
    assert {key: e["total_memories"] for key, e in found.items()} == {
        ("user", "alice"): 2,
        ("agent", "helper"): 1,
        ("app", "shop"): 1,
        ("run", "r1"): 1,
        ("user", "bob"): 1,
        ("agent", "alice"): 1,
    }
    alice = found["user", "alice"]
    assert set(alice) >= {"id", "name", "type", "total_memories", "created_at", "updated_at"}
    assert alice["owner"] and alice["organization"]
    uuid.UUID(alice["id"])  # an opaque id; paths name an entity by its name
    assert alice["id"] != found["agent", "alice"]["id"]
    assert alice["created_at"].endswith("+00:00")


def test_entity_list_counts(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.add_memories([{"user_id": "alice", "agent_id": "alice"}, {"user_id": "bob"}])
    body = api.get("/v1/entities/").json()
    assert body["count"] == 3
    assert [(e["type"], e["name"]) for e in body["results"]] == [
        ("user", "alice"),
        ("agent", "alice"),
        ("user", "bob"),
    ]


def test_entity_list_pages(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.add_entities([{"type": "user", "id": f"u{i}"} for i in range(5)])
    first = api.get("/v1/entities/", params={"page_size": 2}).json()
    assert first["count"] == 5 and [e["name"] for e in first["results"]] == ["u0", "u1"]
    names = [e["name"] for e in first["results"]]
    url = first["next"]
    while url is not None:
        page = api.get(url).json()
        names += [e["name"] for e in page["results"]]
        url = page["next"]
    assert names == [f"u{i}" for i in range(5)]


def test_memory_deletes_leave_the_entity_behind(sandbox: Sandbox, api: httpx.Client) -> None:
    first, second, third = sandbox.add_memories([{"user_id": "alice", "merged": True}] * 3)
    assert api.delete(f"/v1/memories/{first}/").status_code == 200
    memories = [{"memory_id": second}]
    assert api.request("DELETE", "/v1/batch/", json={"memories": memories}).status_code == 200
    event_id = api.delete("/v1/memories/", params={"user_id": "alice"}).json()["event_id"]
    assert wait_for_job(api, event_id)["status"] == "SUCCEEDED"
    assert third not in remaining(sandbox)
    assert entities(sandbox) == {("user", "alice"): 0}
    assert api.get("/v2/entities/user/alice/").json()["total_memories"] == 0


def test_self_hosted_deletes_leave_the_entity_behind_too(sandbox: Sandbox) -> None:
    sandbox.add_memories([{"user_id": "alice"}])
    with httpx.Client(base_url=sandbox.url, headers={"X-API-Key": API_KEY}) as oss:
        assert oss.delete("/memories", params={"user_id": "alice"}).status_code == 200
    assert remaining(sandbox) == set()
    assert entities(sandbox) == {("user", "alice"): 0}


# GET /v2/entities/{type}/{name}/


def test_get_one_entity(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.add_memories([{"user_id": "alice"}, {"user_id": "alice"}])
    response = api.get("/v2/entities/user/alice/")
    assert response.status_code == 200
    body = response.json()
    assert (body["type"], body["name"], body["total_memories"]) == ("user", "alice", 2)
    missing = api.get("/v2/entities/agent/alice/")
    assert (missing.status_code, missing.json()) == (404, {"error": "Entity not found"})
    unknown = api.get("/v2/entities/person/alice/")
    assert unknown.status_code == 400 and "error" in unknown.json()
    assert api.get("/v2/entities/user/").status_code == 404  # no name: no such route


# DELETE /v2/entities/{type}/{name}/


def test_entity_delete_is_a_job_that_takes_the_memories(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    kept = sandbox.add_memories(
        [{"user_id": "bob"}, {"agent_id": "alice"}, {"user_id": "bob", "run_id": "alice"}]
    )
    sandbox.add_memories(
        [
            {"user_id": "alice"},
            {"user_id": "alice", "agent_id": "helper", "merged": True},
            {"user_id": "alice", "superseded_by": str(uuid.uuid4()), "expiration_date": EXPIRED},
        ]
    )
    response = api.delete("/v2/entities/user/alice/")
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == IN_PROGRESS
    job = wait_for_job(api, body["event_id"])
    assert job["status"] == "SUCCEEDED" and job["id"] == body["event_id"]
    assert remaining(sandbox) == set(kept)  # same name, other types: untouched
    left = entities(sandbox)
    assert ("user", "alice") not in left
    assert left[("agent", "helper")] == 0  # the other entities of its memories stay
    assert {("agent", "alice"), ("run", "alice"), ("user", "bob")} <= left.keys()
    again = api.delete("/v2/entities/user/alice/")
    assert (again.status_code, again.json()) == (404, {"error": "Entity not found"})


def test_entity_delete_of_a_seeded_entity_without_memories(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    sandbox.add_entities([{"type": "run", "id": "r1"}])
    event_id = api.delete("/v2/entities/run/r1/").json()["event_id"]
    assert wait_for_job(api, event_id)["status"] == "SUCCEEDED"
    assert entities(sandbox) == {}


def test_entity_delete_rejects_unknown_types_and_names(api: httpx.Client) -> None:
    unknown = api.delete("/v2/entities/person/alice/")
    assert unknown.status_code == 400 and "error" in unknown.json()
    missing = api.delete("/v2/entities/user/nobody/")
    assert (missing.status_code, missing.json()) == (404, {"error": "Entity not found"})


def test_a_star_names_an_entity_and_is_no_wildcard(sandbox: Sandbox, api: httpx.Client) -> None:
    kept, _ = sandbox.add_memories([{"user_id": "alice"}, {"user_id": "*"}])
    event_id = api.delete("/v2/entities/user/*/").json()["event_id"]
    assert wait_for_job(api, event_id)["status"] == "SUCCEEDED"
    assert remaining(sandbox) == {kept}
    assert entities(sandbox) == {("user", "alice"): 1}


def test_delayed_entity_delete(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(job_delay_ms=300)
    (memory_id,) = sandbox.add_memories([{"user_id": "alice"}])
    event_id = api.delete("/v2/entities/user/alice/").json()["event_id"]
    assert api.get(f"/v1/event/{event_id}/").json()["status"] == "PENDING"
    assert remaining(sandbox) == {memory_id} and entities(sandbox) == {("user", "alice"): 1}
    assert wait_for_job(api, event_id)["status"] == "SUCCEEDED"
    assert remaining(sandbox) == set() and entities(sandbox) == {}


def test_failed_entity_delete_deletes_nothing(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(job_fail_rate=1.0)
    ids = sandbox.add_memories([{"user_id": "alice"}] * 2)
    job = wait_for_job(api, api.delete("/v2/entities/user/alice/").json()["event_id"])
    assert job["status"] == "FAILED" and job["error"]
    assert remaining(sandbox) == set(ids)
    assert entities(sandbox) == {("user", "alice"): 2}


def test_entity_routes_take_only_the_platform_key(sandbox: Sandbox) -> None:
    sandbox.add_memories([{"user_id": "alice"}])
    for headers in ({}, {"Authorization": "Token wrong"}, {"X-API-Key": API_KEY}):
        with httpx.Client(base_url=sandbox.url, headers=headers) as client:
            assert client.get("/v1/entities/").status_code == 401
            assert client.delete("/v2/entities/user/alice/").status_code == 401
    assert entities(sandbox) == {("user", "alice"): 1}


def test_entity_operations_in_the_call_log(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.add_memories([{"user_id": "alice"}])
    api.get("/v1/entities/")
    api.get("/v2/entities/user/alice/")
    api.delete("/v2/entities/user/alice/")
    assert [c["operation"] for c in sandbox.calls()] == ["entities", "entity_get", "entity_delete"]


# admin routes


def test_admin_entity_routes(sandbox: Sandbox, admin: httpx.Client) -> None:
    created = admin.post(
        "/_sandbox/entities", json=[{"type": "user", "id": "alice"}, {"type": "app", "id": "shop"}]
    )
    assert created.status_code == 201
    assert [(e["type"], e["name"]) for e in created.json()["entities"]] == [
        ("user", "alice"),
        ("app", "shop"),
    ]
    # Seeding an entity that exists is harmless; a memory for it then counts.
    again = admin.post("/_sandbox/entities", json={"entities": [{"type": "user", "id": "alice"}]})
    assert again.status_code == 201
    sandbox.add_memories([{"user_id": "alice"}])
    shown = admin.get("/_sandbox/entities").json()["entities"]
    assert [(e["type"], e["name"], e["total_memories"]) for e in shown] == [
        ("user", "alice", 1),
        ("app", "shop", 0),
    ]
    assert admin.get("/_sandbox/stats").json()["entities"] == 2
    for bad in ([{"type": "person", "id": "x"}], [{"type": "user"}], [{"type": "user", "id": ""}]):
        assert admin.post("/_sandbox/entities", json=bad).status_code == 400
    extra_field = [{"type": "user", "id": "x", "colour": 1}]
    assert admin.post("/_sandbox/entities", json=extra_field).status_code == 400
    assert admin.post("/_sandbox/reset").status_code == 200
    assert admin.get("/_sandbox/entities").json() == {"entities": []}
    assert admin.get("/_sandbox/stats").json()["entities"] == 0


# the official SDK


def test_sdk_users_and_delete_users(
    sandbox: Sandbox, api: httpx.Client, memory_client_class: Any
) -> None:
    (kept,) = sandbox.add_memories([{"user_id": "bob"}])
    sandbox.add_memories([{"user_id": "alice"}, {"user_id": "a/b c", "agent_id": "helper"}])
    with httpx.Client() as transport:
        client = memory_client_class(api_key=API_KEY, host=sandbox.url, client=transport)
        users = client.users()
        assert {(e["type"], e["name"]) for e in users["results"]} == {
            ("user", "bob"),
            ("user", "alice"),
            ("user", "a/b c"),
            ("agent", "helper"),
        }
        assert client.delete_users(user_id="alice") == {"message": "Entity deleted successfully."}
        client.delete_users(user_id="a/b c")  # the SDK encodes the slash and the space
        assert remaining(sandbox) == {kept}
        assert entities(sandbox) == {("user", "bob"): 1, ("agent", "helper"): 0}
        client.delete_users()  # every entity the listing names
    assert remaining(sandbox) == set() and entities(sandbox) == {}
    operations = [c["operation"] for c in sandbox.calls()]
    assert (
        operations
        == ["ping", "entities", "entity_delete", "entity_delete", "entities"]
        + ["entity_delete"] * 2
    )
