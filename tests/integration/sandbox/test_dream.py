"""Dream's records in the sandbox, over HTTP: merged ones hidden from reads but deletable,
superseded ones shown unless `latest_only`, and `delete_linked` deleting the chain."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from consumer.sandbox import Sandbox
from tests.integration.sandbox.helpers import ADMIN_KEY as API_KEY
from tests.integration.sandbox.helpers import remaining, wait_for_job


def listed(api: httpx.Client, **flags: Any) -> list[str]:
    response = api.post("/v3/memories/", json={"filters": {"user_id": "u"}, **flags})
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["results"]]


# seeding and the admin view


def test_admin_view_shows_the_marks(sandbox: Sandbox) -> None:
    newer = str(uuid.uuid4())
    plain, merged, older = sandbox.add_memories(
        [
            {"user_id": "u"},
            {"user_id": "u", "merged": True},
            {"user_id": "u", "superseded_by": newer.upper()},
        ]
    )
    marks = {m["id"]: (m["merged"], m["superseded_by"]) for m in sandbox.memories()}
    assert marks == {plain: (False, None), merged: (True, None), older: (False, newer)}


@pytest.mark.parametrize(
    "record",
    [
        {"user_id": "u", "merged": "yes"},
        {"user_id": "u", "merged": 1},
        {"user_id": "u", "superseded_by": "not-a-uuid"},
        {"user_id": "u", "superseded_by": 42},
    ],
)
def test_seed_rejects_bad_marks(sandbox: Sandbox, record: dict[str, Any]) -> None:
    with httpx.Client(base_url=sandbox.url) as admin:
        response = admin.post("/_sandbox/memories", json=[{"user_id": "u"}, record])
    assert response.status_code == 400
    assert sandbox.memories() == []  # nothing of a rejected seed is stored


def test_a_memory_cannot_supersede_itself(sandbox: Sandbox) -> None:
    memory_id = str(uuid.uuid4())
    with pytest.raises(ValueError, match="itself"):
        sandbox.add_memories([{"id": memory_id, "user_id": "u", "superseded_by": memory_id}])


# reads


def test_listing_hides_merged_memories_unless_asked(sandbox: Sandbox, api: httpx.Client) -> None:
    plain, merged = sandbox.add_memories([{"user_id": "u"}, {"user_id": "u", "merged": True}])
    assert listed(api) == [plain]
    assert listed(api, include_merged=False) == [plain]
    assert listed(api, include_merged=True) == [plain, merged]
    body = api.post("/v3/memories/", json={"filters": {"user_id": "u"}}).json()
    assert body["count"] == 1  # the count leaves them out too


def test_listing_shows_superseded_memories_unless_latest_only(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    (newer,) = sandbox.add_memories([{"user_id": "u"}])
    (older,) = sandbox.add_memories([{"user_id": "u", "superseded_by": newer}])
    assert listed(api) == [newer, older]
    assert listed(api, latest_only=True) == [newer]
    # A memory whose newer one is gone is still marked superseded: latest_only still hides it.
    assert api.delete(f"/v1/memories/{newer}/").status_code == 200
    assert listed(api, latest_only=True) == []
    assert listed(api) == [older]


def test_the_flags_combine(sandbox: Sandbox, api: httpx.Client) -> None:
    (newer,) = sandbox.add_memories([{"user_id": "u"}])
    (hidden,) = sandbox.add_memories(
        [
            {
                "user_id": "u",
                "merged": True,
                "superseded_by": newer,
                "expiration_date": "2020-01-01",
            }
        ]
    )
    assert listed(api, include_merged=True) == [newer]  # still expired
    assert listed(api, include_merged=True, show_expired=True) == [newer, hidden]
    assert listed(api, include_merged=True, show_expired=True, latest_only=True) == [newer]


@pytest.mark.parametrize("flag", ["include_merged", "latest_only", "show_expired"])
@pytest.mark.parametrize("value", ["true", 1, None, [True]])
def test_listing_flags_must_be_booleans(api: httpx.Client, flag: str, value: object) -> None:
    response = api.post("/v3/memories/", json={"filters": {"user_id": "u"}, flag: value})
    assert (response.status_code, response.json()) == (400, {"error": f"{flag} must be a boolean"})


def test_get_of_a_merged_memory_is_404_unless_asked(sandbox: Sandbox, api: httpx.Client) -> None:
    merged, older = sandbox.add_memories(
        [{"user_id": "u", "merged": True}, {"user_id": "u", "superseded_by": str(uuid.uuid4())}]
    )
    hidden = api.get(f"/v1/memories/{merged}/")
    assert (hidden.status_code, hidden.json()) == (404, {"error": "Memory not found!"})
    assert api.get(f"/v1/memories/{merged}/", params={"include_merged": "false"}).status_code == 404
    shown = api.get(f"/v1/memories/{merged}/", params={"include_merged": "true"})
    assert shown.status_code == 200 and shown.json()["id"] == merged
    assert api.get(f"/v1/memories/{older}/").status_code == 200  # superseded: shown


# deletes


def test_deletes_by_id_reach_merged_and_superseded(sandbox: Sandbox, api: httpx.Client) -> None:
    merged, older, other_merged, other_older = sandbox.add_memories(
        [
            {"user_id": "u", "merged": True},
            {"user_id": "u", "superseded_by": str(uuid.uuid4())},
            {"user_id": "u", "merged": True},
            {"user_id": "u", "superseded_by": str(uuid.uuid4())},
        ]
    )
    assert api.delete(f"/v1/memories/{merged}/").status_code == 200
    assert api.delete(f"/v1/memories/{older}/").status_code == 200
    memories = [{"memory_id": i} for i in (other_merged, other_older)]
    response = api.request("DELETE", "/v1/batch/", json={"memories": memories})
    assert response.json() == {"message": "Successfully deleted 2 memories"}
    assert remaining(sandbox) == set()


def test_delete_all_reaches_merged_and_superseded(sandbox: Sandbox, api: httpx.Client) -> None:
    (newer,) = sandbox.add_memories([{"user_id": "u"}])
    (kept,) = sandbox.add_memories([{"user_id": "v", "merged": True}])
    sandbox.add_memories(
        [{"user_id": "u", "merged": True}, {"user_id": "u", "superseded_by": newer}]
    )
    event_id = api.delete("/v1/memories/", params={"user_id": "u"}).json()["event_id"]
    assert wait_for_job(api, event_id)["status"] == "SUCCEEDED"
    assert remaining(sandbox) == {kept}


def chain(sandbox: Sandbox) -> dict[str, str]:
    """newest <- middle <- oldest, newest <- sibling, and an unrelated pair (other <- its_older)."""
    ids = {name: str(uuid.uuid4()) for name in ("newest", "middle", "oldest", "sibling", "other")}
    sandbox.add_memories(
        [
            {"id": ids["oldest"], "user_id": "u", "superseded_by": ids["middle"]},
            {"id": ids["middle"], "user_id": "u", "superseded_by": ids["newest"], "merged": True},
            {"id": ids["sibling"], "user_id": "u", "superseded_by": ids["newest"]},
            {"id": ids["newest"], "user_id": "u"},
            {"id": ids["other"], "user_id": "u"},
        ]
    )
    (ids["its_older"],) = sandbox.add_memories([{"user_id": "u", "superseded_by": ids["other"]}])
    return ids


def test_delete_linked_deletes_what_it_superseded_transitively(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    ids = chain(sandbox)
    response = api.delete(f"/v1/memories/{ids['newest']}/", params={"delete_linked": "true"})
    assert response.status_code == 200
    assert response.json() == {"message": "Memory deleted successfully!", "cascade_count": 3}
    assert remaining(sandbox) == {ids["other"], ids["its_older"]}


def test_delete_linked_of_an_old_memory_leaves_the_newer_ones(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    ids = chain(sandbox)
    response = api.delete(f"/v1/memories/{ids['middle']}/", params={"delete_linked": "true"})
    assert response.json()["cascade_count"] == 1
    assert remaining(sandbox) == {ids[n] for n in ("newest", "sibling", "other", "its_older")}


def test_without_delete_linked_the_superseded_stay(sandbox: Sandbox, api: httpx.Client) -> None:
    ids = chain(sandbox)
    response = api.delete(f"/v1/memories/{ids['newest']}/")
    assert response.json() == {"message": "Memory deleted successfully!"}
    left = set(ids.values()) - {ids["newest"]}
    assert remaining(sandbox) == left
    # Too late: the memory that held the links is gone, so a linked delete finds nothing.
    again = api.delete(f"/v1/memories/{ids['newest']}/", params={"delete_linked": "true"})
    assert again.status_code == 404
    assert remaining(sandbox) == left


def test_delete_linked_survives_a_cycle(sandbox: Sandbox, api: httpx.Client) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    sandbox.add_memories(
        [
            {"id": first, "user_id": "u", "superseded_by": second},
            {"id": second, "user_id": "u", "superseded_by": first},
        ]
    )
    response = api.delete(f"/v1/memories/{first}/", params={"delete_linked": "true"})
    assert response.json()["cascade_count"] == 1
    assert remaining(sandbox) == set()


def test_a_poisoned_linked_memory_blocks_the_whole_delete(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    ids = chain(sandbox)
    sandbox.set_faults(poison_ids=[ids["oldest"]])
    response = api.delete(f"/v1/memories/{ids['newest']}/", params={"delete_linked": "true"})
    assert response.status_code == 400 and ids["oldest"] in response.json()["error"]
    assert remaining(sandbox) == set(ids.values())


# the official SDK


def test_sdk_include_merged_and_delete_linked(sandbox: Sandbox, memory_client_class: Any) -> None:
    ids = chain(sandbox)
    with httpx.Client() as transport:
        client = memory_client_class(api_key=API_KEY, host=sandbox.url, client=transport)
        filters = {"AND": [{"user_id": "u"}]}
        assert ids["middle"] not in {m["id"] for m in client.get_all(filters=filters)["results"]}
        every = client.get_all(filters=filters, include_merged=True)["results"]
        assert {m["id"] for m in every} == set(ids.values())
        answer = client.delete(ids["newest"], delete_linked=True)
        assert answer == {"message": "Memory deleted successfully!", "cascade_count": 3}
    assert remaining(sandbox) == {ids["other"], ids["its_older"]}
