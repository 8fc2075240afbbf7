"""The sandbox's self-hosted routes over HTTP: listings (`top_k`, `show_expired`), roles (admin
and user keys), and the 502s with a `code`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.sandbox import Faults, Sandbox
from tests.integration.sandbox.helpers import ADMIN_KEY as API_KEY
from tests.integration.sandbox.helpers import OSS as ADMIN
from tests.integration.sandbox.helpers import USER, USER_KEY, remaining

EXPIRED = "2020-01-01"


def listed(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/memories", params={"user_id": "u", **params})
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["results"]]


# listings: top_k and show_expired


def test_listing_answers_20_unless_top_k_says(sandbox: Sandbox, oss: httpx.Client) -> None:
    ids = sandbox.add_memories([{"user_id": "u"}] * 1001)
    assert listed(oss) == ids[:20]
    assert listed(oss, top_k=25) == ids[:25]
    assert listed(oss, top_k=1000) == ids[:1000]
    assert listed(oss, top_k=1) == ids[:1]


@pytest.mark.parametrize(
    ("given", "kind", "message", "ctx"),
    [
        ("1001", "less_than_equal", "Input should be less than or equal to 1000", {"le": 1000}),
        ("-1", "greater_than_equal", "Input should be greater than or equal to 0", {"ge": 0}),
        (
            "ten",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            None,
        ),
        (
            "2.5",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            None,
        ),
    ],
)
def test_a_bad_top_k_is_a_422(
    oss: httpx.Client, given: str, kind: str, message: str, ctx: dict[str, int] | None
) -> None:
    response = oss.get("/memories", params={"user_id": "u", "top_k": given})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    expected: dict[str, Any] = {"type": kind, "loc": ["query", "top_k"], "msg": message}
    expected["input"] = given
    if ctx is not None:
        expected["ctx"] = ctx
    assert error == expected


def test_top_k_zero_is_accepted_as_the_server_does(sandbox: Sandbox, oss: httpx.Client) -> None:
    # server/main.py takes 0 (ge=0); Memory.get_all then stops after its first kept memory,
    # or fetches nothing when expired ones are included.
    ids = sandbox.add_memories([{"user_id": "u"}] * 3)
    assert listed(oss, top_k=0) == ids[:1]
    assert listed(oss, top_k=0, show_expired="true") == []


def test_listing_hides_expired_memories_unless_asked(sandbox: Sandbox, oss: httpx.Client) -> None:
    live, expired, later = sandbox.add_memories(
        [{"user_id": "u"}, {"user_id": "u", "expiration_date": EXPIRED}, {"user_id": "u"}]
    )
    assert listed(oss) == [live, later]
    assert listed(oss, show_expired="false") == [live, later]
    assert listed(oss, show_expired="true") == [live, expired, later]
    assert listed(oss, show_expired="True") == [live, expired, later]
    assert listed(oss, show_expired="1") == [live, expired, later]


def test_a_bad_show_expired_is_a_422(oss: httpx.Client) -> None:
    response = oss.get("/memories", params={"user_id": "u", "show_expired": "maybe", "top_k": "x"})
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["type"], e["loc"]) for e in errors] == [
        ("int_parsing", ["query", "top_k"]),
        ("bool_parsing", ["query", "show_expired"]),
    ]
    assert errors[1]["input"] == "maybe"


def test_expired_memories_can_crowd_live_ones_out_of_the_window(
    sandbox: Sandbox, oss: httpx.Client
) -> None:
    # Memory.get_all fetches max(4 * top_k, 60) matches before dropping the expired ones.
    sandbox.add_memories([{"user_id": "u", "expiration_date": EXPIRED}] * 80)
    (live,) = sandbox.add_memories([{"user_id": "u"}])
    assert listed(oss) == []
    assert listed(oss, top_k=21) == [live]
    assert len(listed(oss, show_expired="true", top_k=1000)) == 81


def test_listing_with_no_identifier_is_for_the_admin(sandbox: Sandbox, oss: httpx.Client) -> None:
    ids = sandbox.add_memories(
        [{"user_id": "u"}, {"agent_id": "a", "expiration_date": EXPIRED}, {"run_id": "r"}]
    )
    every = oss.get("/memories")
    assert [m["id"] for m in every.json()["results"]] == ids  # raw: the expired one too
    assert [m["id"] for m in oss.get("/memories", params={"top_k": 2}).json()["results"]] == ids[:2]


def test_delete_all_limit_takes_the_first_matches_expired_ones_included(
    sandbox: Sandbox, oss: httpx.Client
) -> None:
    sandbox.set_faults(oss_delete_all_limit=3)
    ids = sandbox.add_memories(
        [
            {"user_id": "u", "expiration_date": EXPIRED},
            {"user_id": "v"},
            {"user_id": "u"},
            {"user_id": "u", "expiration_date": EXPIRED},
            {"user_id": "u"},
            {"user_id": "u"},
        ]
    )
    assert oss.delete("/memories", params={"user_id": "u"}).status_code == 200
    assert remaining(sandbox) == {ids[1], ids[4], ids[5]}
    # A verification that asks for expired ones and the largest page sees what is left.
    assert listed(oss, top_k=1000, show_expired="true") == [ids[4], ids[5]]


def test_delete_all_limit_of_100_like_servers_before_2_0_15(
    sandbox: Sandbox, oss: httpx.Client
) -> None:
    sandbox.set_faults(oss_delete_all_limit=100)
    ids = sandbox.add_memories([{"user_id": "u"}] * 150)
    assert oss.delete("/memories", params={"user_id": "u"}).status_code == 200
    assert remaining(sandbox) == set(ids[100:])
    assert oss.delete("/memories", params={"user_id": "u"}).status_code == 200
    assert remaining(sandbox) == set()


# roles


def test_a_user_key_may_not_delete_all(sandbox: Sandbox, user: httpx.Client) -> None:
    ids = sandbox.add_memories([{"user_id": "u"}] * 2)
    response = user.delete("/memories", params={"user_id": "u"})
    assert (response.status_code, response.json()) == (403, {"detail": "Admin role required."})
    assert user.delete("/memories").status_code == 403  # the role before the identifier
    assert remaining(sandbox) == set(ids)
    (call, _) = sandbox.calls()
    assert (call["operation"], call["status"], call["fault"]) == ("oss_delete_all", 403, None)


def test_a_user_key_may_list_get_and_delete_one(sandbox: Sandbox, user: httpx.Client) -> None:
    first, second = sandbox.add_memories([{"user_id": "u"}] * 2)
    assert listed(user, top_k=1000, show_expired="true") == [first, second]
    assert user.get(f"/memories/{first}").json()["id"] == first
    assert user.delete(f"/memories/{first}").json() == {"message": "Memory deleted successfully"}
    assert remaining(sandbox) == {second}
    everything = user.get("/memories")
    assert (everything.status_code, everything.json()) == (
        403,
        {"detail": "Admin role required to list all memories."},
    )


def test_wrong_or_missing_keys_are_401(sandbox: Sandbox) -> None:
    for headers in ({"X-API-Key": "wrong"}, {}):
        with httpx.Client(base_url=sandbox.url, headers=headers) as client:
            for response in (
                client.get("/memories", params={"user_id": "u"}),
                client.delete("/memories", params={"user_id": "u"}),
                client.delete(f"/memories/{uuid.uuid4()}"),
            ):
                assert response.status_code == 401 and "detail" in response.json()


def test_platform_routes_refuse_user_keys(sandbox: Sandbox) -> None:
    for headers in ({"Authorization": f"Token {USER_KEY}"}, USER):
        with httpx.Client(base_url=sandbox.url, headers=headers) as client:
            assert client.get("/v1/ping/").status_code == 401
            assert client.delete("/v1/memories/", params={"user_id": "u"}).status_code == 401


def test_keys_change_at_run_time(sandbox: Sandbox, oss: httpx.Client, user: httpx.Client) -> None:
    with httpx.Client(base_url=sandbox.url) as admin:
        assert admin.get("/_sandbox/keys").json() == {"user_api_keys": [USER_KEY]}
        changed = admin.put("/_sandbox/keys", json={"user_api_keys": ["k2", "k1"]})
        assert changed.json() == {"user_api_keys": ["k1", "k2"]}
        assert user.get("/memories", params={"user_id": "u"}).status_code == 401
        with httpx.Client(base_url=sandbox.url, headers={"X-API-Key": "k1"}) as k1:
            assert k1.get("/memories", params={"user_id": "u"}).status_code == 200
            assert k1.delete("/memories", params={"user_id": "u"}).status_code == 403
        for bad in ({"user_api_keys": [API_KEY]}, {"user_api_keys": [""]}, {"keys": []}, [1]):
            assert admin.put("/_sandbox/keys", json=bad).status_code == 400
        assert admin.put("/_sandbox/keys", json={"user_api_keys": [1]}).status_code == 400
        assert sandbox.user_api_keys == ["k1", "k2"]
        assert admin.put("/_sandbox/keys", json={"user_api_keys": []}).status_code == 200
        with httpx.Client(base_url=sandbox.url, headers={"X-API-Key": "k1"}) as k1:
            assert k1.get("/memories", params={"user_id": "u"}).status_code == 401
        sandbox.reset()  # back to the keys it started with
        assert admin.get("/_sandbox/keys").json() == {"user_api_keys": [USER_KEY]}
    assert oss.delete("/memories", params={"user_id": "u"}).status_code == 200


def test_an_admin_key_can_be_demoted(sandbox: Sandbox, oss: httpx.Client) -> None:
    sandbox.add_memories([{"user_id": "u"}])
    with httpx.Client(base_url=sandbox.url) as admin:
        for bad in ({"api_key": ""}, {"api_key": USER_KEY}, {"api_key": 7}, {}):
            assert admin.put("/_sandbox/keys", json=bad).status_code == 400
        demoted = admin.put("/_sandbox/keys", json={"api_key": "new", "user_api_keys": [API_KEY]})
        assert demoted.json() == {"user_api_keys": [API_KEY]}  # the admin key is not echoed
    assert sandbox.api_key == "new"
    denied = oss.delete("/memories", params={"user_id": "u"})
    assert (denied.status_code, denied.json()) == (403, {"detail": "Admin role required."})
    assert listed(oss) != []  # still a valid key
    with httpx.Client(base_url=sandbox.url, headers={"X-API-Key": "new"}) as new:
        assert new.delete("/memories", params={"user_id": "u"}).status_code == 200
    for key, status in ((API_KEY, 401), ("new", 200)):
        headers = {"Authorization": f"Token {key}"}
        with httpx.Client(base_url=sandbox.url, headers=headers) as api:
            assert api.get("/v1/ping/").status_code == status
    assert sandbox.set_keys(user_api_keys=["x"]) == ["x"]  # the admin key stays "new"
    assert sandbox.api_key == "new"
    sandbox.reset()
    assert (sandbox.api_key, sandbox.user_api_keys) == (API_KEY, [USER_KEY])


def test_the_admin_key_cannot_be_a_user_key() -> None:
    with pytest.raises(ValueError, match="admin key"):
        Sandbox(api_key=API_KEY, user_api_keys=[API_KEY])


def test_command_line_user_keys() -> None:
    root = Path(__file__).resolve().parents[3]
    command = [sys.executable, "-m", "consumer.sandbox", "--port", "0", "--api-key", API_KEY]
    command += ["--user-key", "k1", "--user-key", "k2"]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        for key in ("k1", "k2"):
            with httpx.Client(base_url=url, headers={"X-API-Key": key}) as client:
                assert client.get("/memories", params={"user_id": "u"}).status_code == 200
                assert client.delete("/memories", params={"user_id": "u"}).status_code == 403
        with httpx.Client(base_url=url, headers=ADMIN) as client:
            assert client.delete("/memories", params={"user_id": "u"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    refused = subprocess.run(
        [*command[:7], "--user-key", API_KEY], check=False, cwd=root, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "admin key" in refused.stderr


# 502s and their codes


def test_injected_502s_carry_the_code(sandbox: Sandbox, oss: httpx.Client) -> None:
    sandbox.set_faults(error_rate=1.0, error_codes=(502,))
    response = oss.get("/memories", params={"user_id": "u"})
    body = response.json()
    assert response.status_code == 502
    assert (body["code"], body["detail"]) == (
        "datastore_unavailable",
        "The memory database is unreachable.",
    )
    assert re.fullmatch(r"[0-9a-f]{8}", body["request_id"])
    assert response.headers["x-request-id"] == body["request_id"]
    for code in ("provider_auth_failed", "provider_bad_request", "unknown", "provider_timeout"):
        sandbox.set_faults(oss_error_code=code)
        assert oss.delete("/memories", params={"user_id": "u"}).json()["code"] == code
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Token {API_KEY}"}) as api:
        platform = api.delete(f"/v1/memories/{uuid.uuid4()}/")
        assert platform.status_code == 502 and "code" not in platform.json()


def test_oss_error_code_is_validated(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as admin:
        assert admin.put("/_sandbox/faults", json={"oss_error_code": "nope"}).status_code == 400
        assert admin.put("/_sandbox/faults", json={"oss_error_code": 502}).status_code == 400
        assert admin.get("/_sandbox/faults").json()["oss_error_code"] == "datastore_unavailable"
    with pytest.raises(ValueError, match="oss_error_code"):
        Faults(oss_error_code="provider_on_fire")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_memory_id_that_is_not_a_uuid_is_a_502_unknown(oss: httpx.Client, method: str) -> None:
    response = oss.request(method, "/memories/not-a-uuid")
    assert response.status_code == 502
    body = response.json()
    assert (body["code"], body["detail"]) == ("unknown", "Upstream provider error.")


def test_ids_are_read_case_blind(sandbox: Sandbox, oss: httpx.Client) -> None:
    (memory_id,) = sandbox.add_memories([{"user_id": "u"}])
    assert oss.get(f"/memories/{memory_id.upper()}").json()["id"] == memory_id
    assert oss.delete(f"/memories/{memory_id.upper()}").status_code == 200
    missing = oss.delete(f"/memories/{memory_id}")
    assert (missing.status_code, missing.json()) == (
        404,
        {"detail": f"Memory with id {memory_id} not found"},
    )


@pytest.mark.parametrize("value", ["a b", " ", "\t"])
def test_an_identifier_with_white_space_is_a_502_unknown(
    sandbox: Sandbox, oss: httpx.Client, value: str
) -> None:
    ids = sandbox.add_memories([{"user_id": "a"}, {"user_id": "b"}])
    for response in (
        oss.get("/memories", params={"user_id": value}),
        oss.delete("/memories", params={"user_id": value}),
        oss.delete("/memories", params={"user_id": "a", "run_id": value}),
    ):
        assert response.status_code == 502 and response.json()["code"] == "unknown"
    assert remaining(sandbox) == set(ids)
    # Surrounding white space is trimmed, as Memory does.
    assert oss.delete("/memories", params={"user_id": " a "}).status_code == 200
    assert remaining(sandbox) == {ids[1]}
