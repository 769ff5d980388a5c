"""The platform dialect's routes on a real local server: IAM, discovery, backends, usage,
jobs (scoping, reason codes, results, metrics, tags, listing) and sessions.

Each test talks HTTP to an embedded server, as the latest official client does
(``shared/spec/platform.md``); the client itself runs in ``make compat`` (compat/latest).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from runtime_job.server import LocalRuntimeServer, config, iam
from runtime_job.server.iam import TOKEN_TTL

from .conftest import APIKEY_GRANT, TOKENS, Platform, claims


def _cloud_error(response: requests.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status
    assert body["errors"][0]["code"] and body["errors"][0]["message"]
    assert "trace" in body
    return body  # type: ignore[no-any-return]


# -- IAM --------------------------------------------------------------------------------------


def test_iam_grants_a_jwt_with_exp_and_iat_that_holds_no_api_key(platform: Platform) -> None:
    token = platform.token
    assert token.count(".") == 2
    found = claims(token)
    assert found["exp"] - found["iat"] == TOKEN_TTL
    assert abs(found["iat"] - time.time()) < 60
    assert TOKENS[0] not in token and TOKENS[0] not in str(found)


def test_iam_refuses_an_unknown_key_and_other_grants(platform: Platform) -> None:
    url = platform.url + "/identity/token"
    bad = requests.post(url, data={"grant_type": APIKEY_GRANT, "apikey": "nope"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["errorCode"] == "BXNIM0415E"
    grant = requests.post(url, data={"grant_type": "password", "apikey": TOKENS[0]}, timeout=10)
    assert grant.status_code == 400
    # An access token is not an API key.
    again = requests.post(
        url, data={"grant_type": APIKEY_GRANT, "apikey": platform.token}, timeout=10
    )
    assert again.status_code == 400


def test_a_token_expires_after_its_ttl(
    platform: Platform, platform_server: LocalRuntimeServer
) -> None:
    auth = platform_server.authenticator
    real_now = auth.now
    assert platform.get("/backends").status_code == 200
    try:
        auth.now = lambda: real_now() + TOKEN_TTL + 1
        _cloud_error(platform.get("/backends"), 401)
    finally:
        auth.now = real_now
    assert platform.get("/backends").status_code == 200


def test_a_forged_or_tampered_token_is_refused(platform: Platform) -> None:
    header, payload, signature = platform.token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for token in (f"{header}.{payload}.{flipped}", "a.b.c"):
        forged = platform.on(platform.crn)
        forged.token = token
        _cloud_error(forged.get("/backends"), 401)


# -- discovery --------------------------------------------------------------------------------


def test_search_pages_with_a_cursor_and_the_catalog_names_the_plans(platform: Platform) -> None:
    headers = {"Authorization": f"Bearer {platform.token}"}
    body = {"query": "service_name:quantum-computing", "fields": ["crn", "doc"]}
    first = requests.post(
        platform.url + "/v3/resources/search?limit=1", json=body, headers=headers, timeout=10
    ).json()
    assert len(first["items"]) == 1 and first["search_cursor"]
    second = requests.post(
        platform.url + "/v3/resources/search?limit=1",
        json={**body, "search_cursor": first["search_cursor"]},
        headers=headers,
        timeout=10,
    ).json()
    assert len(second["items"]) == 1 and "search_cursor" not in second
    items = first["items"] + second["items"]
    assert len({item["crn"] for item in items}) == 2
    plans = {}
    for item in items:
        assert item["crn"].startswith("crn:v1:bluemix:public:quantum-computing:us-east:a/")
        assert item["doc"]["extensions"]
        entry = requests.get(
            platform.url + "/catalog/" + item["service_plan_unique_id"],
            headers=headers,
            timeout=10,
        ).json()
        plans[entry["overview_ui"]["en"]["display_name"]] = entry["metadata"]["pricing"]["type"]
    assert plans == {"Open": "free", "Premium": "paid"}
    _cloud_error(requests.get(platform.url + "/catalog/nope", headers=headers, timeout=10), 404)
    _cloud_error(requests.post(platform.url + "/v3/resources/search", json=body, timeout=10), 401)


def test_each_user_has_own_instances(platform: Platform, bob: Platform) -> None:
    mine = {item["crn"] for item in platform.instances()}
    theirs = {item["crn"] for item in bob.instances()}
    assert len(mine) == len(theirs) == 2 and not mine & theirs
    # Bob's token on Alice's instance: refused.
    intruder = bob.on(platform.crn)
    _cloud_error(intruder.get("/backends"), 403)


# -- the quantum API's headers, backends and usage -------------------------------------------


def test_headers_are_checked(platform: Platform) -> None:
    _cloud_error(platform.get("/backends", headers={"Service-CRN": ""}), 400)
    _cloud_error(platform.get("/backends", headers={"IBM-API-Version": "latest"}), 400)
    _cloud_error(platform.get("/backends", headers={"Authorization": ""}), 401)
    # The API token itself is accepted as a bearer credential too (the 2023 auth).
    direct = platform.get("/backends", headers={"Authorization": f"Bearer {TOKENS[0]}"})
    assert direct.status_code == 200


def test_backends_configuration_properties_status(platform: Platform) -> None:
    devices = platform.get("/backends?include_mocks=True").json()["devices"]
    names = {device["name"]: device for device in devices}
    assert set(names) == {"local_simulator", "local_device"}
    assert all(d["status"]["name"] == "online" and d["class"] != "mock" for d in devices)
    for name, simulator in (("local_simulator", True), ("local_device", False)):
        configuration = platform.get(f"/backends/{name}/configuration").json()
        assert configuration["backend_name"] == name
        assert configuration["simulator"] is simulator
        assert configuration["n_qubits"] == names[name]["qubits"]
        status = platform.get(f"/backends/{name}/status").json()
        assert status["state"] is True and status["backend_name"] == name
        assert platform.get(f"/backends/{name}/properties").json() == {}
    _cloud_error(platform.get("/backends/ibm_nowhere/status"), 404)


def test_instance_usage_counts_the_instances_jobs(platform: Platform) -> None:
    before = platform.get("/instances/usage").json()
    assert before["instance_id"] == platform.crn and before["usage_limit_reached"] is False
    job_id = platform.submit("sleep", {"seconds": 0.3})
    platform.wait_final(job_id)
    after = platform.get("/instances/usage").json()
    assert after["usage_consumed_seconds"] >= before["usage_consumed_seconds"] + 0.29


# -- jobs ---------------------------------------------------------------------------------------


def test_job_lifecycle_results_and_scoping(platform: Platform, bob: Platform) -> None:
    job_id = platform.submit("echo", {"x": 1}, tags=["a"], log_level="WARNING")
    job = platform.wait_final(job_id)
    assert job["state"] == {"status": "Completed", "reason": None}
    assert job["program"]["id"] == "echo" and job["backend"] == "local_device"
    assert job["estimated_running_time_seconds"] > 0
    assert "params" not in job
    assert platform.get(f"/jobs/{job_id}").json()["params"] == {"x": 1}
    assert platform.get(f"/jobs/{job_id}/results").json() == {"x": 1}
    metrics = platform.get(f"/jobs/{job_id}/metrics").json()
    assert metrics["usage"]["status"] == "final"
    assert metrics["usage"]["qpu_charge_time_seconds"] >= 0
    # Scoping: the other instance of the same user, and another user, see a 404.
    other = next(i["crn"] for i in platform.instances() if i["crn"] != platform.crn)
    _cloud_error(platform.on(other).get(f"/jobs/{job_id}"), 404)
    _cloud_error(bob.get(f"/jobs/{job_id}"), 404)
    assert job_id not in {j["id"] for j in platform.on(other).get("/jobs").json()["jobs"]}
    # The same job on the 2023 routes (one core): its owner sees it there too.
    legacy = requests.get(
        platform.url + f"/jobs/{job_id}", headers={"X-Access-Token": TOKENS[0]}, timeout=10
    )
    assert legacy.json()["state"]["status"] == "COMPLETED"


def test_a_job_of_the_2023_routes_belongs_to_the_default_instance(platform: Platform) -> None:
    response = requests.post(
        platform.url + "/jobs",
        json={"program_id": "echo", "params": {"y": 2}},
        headers={"X-Access-Token": TOKENS[0]},
        timeout=10,
    )
    job_id = response.json()["id"]
    assert platform.wait_final(job_id)["state"]["status"] == "Completed"
    other = next(i["crn"] for i in platform.instances() if i["crn"] != platform.crn)
    _cloud_error(platform.on(other).get(f"/jobs/{job_id}"), 404)


def test_a_job_over_its_time_limit_is_cancelled_with_code_1305(platform: Platform) -> None:
    job_id = platform.submit("sleep", {"seconds": 30}, cost=1)
    job = platform.wait_final(job_id)
    assert job["state"]["status"] == "Cancelled"
    assert job["state"]["reason_code"] == job["state"]["reasonCode"] == 1305
    results = platform.get(f"/jobs/{job_id}/results")
    assert results.status_code == 200 and "maximum execution time" in results.text


def test_a_failed_job_has_its_traceback_as_results(platform: Platform) -> None:
    job_id = platform.submit("fail", {"message": "kaput"})
    job = platform.wait_final(job_id)
    assert job["state"]["status"] == "Failed"
    results = platform.get(f"/jobs/{job_id}/results")
    assert results.status_code == 200
    assert "Traceback" in results.text and "RuntimeError: kaput" in results.text
    assert "kaput" in platform.get(f"/jobs/{job_id}/logs").text


def test_cancel_delete_and_unknown_programs(platform: Platform) -> None:
    job_id = platform.submit("sleep", {"seconds": 30})
    platform.wait_status(job_id, "Running")
    assert platform.request("POST", f"/jobs/{job_id}/cancel").status_code == 204
    assert platform.job(job_id)["state"]["status"] == "Cancelled"
    _cloud_error(platform.request("POST", f"/jobs/{job_id}/cancel"), 409)
    assert platform.request("DELETE", f"/jobs/{job_id}").status_code == 204
    _cloud_error(platform.get(f"/jobs/{job_id}"), 404)
    missing = platform.request(
        "POST", "/jobs", json={"program_id": "nope", "backend": "local_device"}
    )
    _cloud_error(missing, 404)
    bad_backend = platform.request(
        "POST", "/jobs", json={"program_id": "echo", "backend": "ibm_nowhere"}
    )
    _cloud_error(bad_backend, 400)
    _cloud_error(platform.request("POST", "/jobs", data=b"{not json"), 400)


def test_tags_are_replaced_with_204_and_filter_the_listing(platform: Platform) -> None:
    job_id = platform.submit("echo", {}, tags=["first"])
    platform.wait_final(job_id)
    response = platform.request("PUT", f"/jobs/{job_id}/tags", json={"tags": ["x", "y", "x"]})
    assert response.status_code == 204 and response.content == b""
    assert sorted(platform.job(job_id)["tags"]) == ["x", "y"]
    listed = platform.get("/jobs", params={"tags": ["x", "y"], "exclude_params": "true"}).json()
    assert [job["id"] for job in listed["jobs"]] == [job_id] and listed["count"] == 1
    assert platform.get("/jobs", params={"tags": "first"}).json()["count"] == 0
    _cloud_error(platform.request("PUT", f"/jobs/{job_id}/tags", json={"tags": "x"}), 400)


def test_listing_filters_paging_and_order(platform: Platform) -> None:
    ids = [platform.submit("echo", {"n": n}, tags=["listing"]) for n in range(3)]
    for job_id in ids:
        platform.wait_final(job_id)
    query = {"exclude_params": "true", "tags": "listing"}
    page = platform.get("/jobs", params={**query, "limit": 2}).json()
    assert page["count"] == 3 and [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    rest = platform.get("/jobs", params={**query, "limit": 2, "offset": 2}).json()
    assert [j["id"] for j in rest["jobs"]] == [ids[0]]
    ascending = platform.get("/jobs", params={**query, "sort": "ASC"}).json()
    assert [j["id"] for j in ascending["jobs"]] == ids
    with_params = platform.get("/jobs", params={"tags": "listing", "limit": 1}).json()
    assert with_params["jobs"][0]["params"] == {"n": 2}
    assert platform.get("/jobs", params={**query, "program": "sleep"}).json()["count"] == 0
    assert platform.get("/jobs", params={**query, "pending": "false"}).json()["count"] == 3
    later = platform.get("/jobs", params={**query, "created_after": "2999-01-01T00:00:00+00:00"})
    assert later.json()["count"] == 0
    _cloud_error(platform.get("/jobs", params={"limit": "x"}), 400)


# -- sessions -----------------------------------------------------------------------------------


def test_a_session_runs_jobs_closes_and_refuses_more(platform: Platform) -> None:
    created = platform.request(
        "POST",
        "/sessions",
        json={
            "mode": "dedicated",
            "backend": "local_device",
            "instance": platform.crn,
            "max_ttl": 600,
        },
    )
    assert created.status_code == 200, created.text
    session_id = created.json()["id"]
    details = platform.get(f"/sessions/{session_id}").json()
    assert details["state"] == "open" and details["accepting_jobs"] is True
    assert details["mode"] == "dedicated" and details["max_ttl"] == 600
    job_id = platform.submit("echo", {}, session_id=session_id)
    assert platform.wait_final(job_id)["session_id"] == session_id
    elsewhere = platform.request(
        "POST",
        "/jobs",
        json={"program_id": "echo", "backend": "local_simulator", "session_id": session_id},
    )
    _cloud_error(elsewhere, 400)
    listed = platform.get("/jobs", params={"session_id": session_id}).json()
    assert [job["id"] for job in listed["jobs"]] == [job_id]
    details = platform.get(f"/sessions/{session_id}").json()
    assert details["state"] == "inactive" and details["last_job_completed"]
    closed = platform.request("PATCH", f"/sessions/{session_id}", json={"accepting_jobs": False})
    assert closed.status_code == 204
    details = platform.get(f"/sessions/{session_id}").json()
    assert details["state"] == "closed" and details["accepting_jobs"] is False
    refused = platform.request(
        "POST",
        "/jobs",
        json={"program_id": "echo", "backend": "local_device", "session_id": session_id},
    )
    _cloud_error(refused, 409)
    other = next(i["crn"] for i in platform.instances() if i["crn"] != platform.crn)
    _cloud_error(platform.on(other).get(f"/sessions/{session_id}"), 404)


def test_cancelling_a_batch_cancels_its_jobs(platform: Platform) -> None:
    created = platform.request(
        "POST", "/sessions", json={"mode": "batch", "backend": "local_device"}
    )
    session_id = created.json()["id"]
    running = platform.submit("sleep", {"seconds": 30}, session_id=session_id)
    platform.wait_status(running, "Running")
    assert platform.get(f"/sessions/{session_id}").json()["state"] == "active"
    assert platform.request("DELETE", f"/sessions/{session_id}/close").status_code == 204
    assert platform.job(running)["state"]["status"] == "Cancelled"
    assert platform.get(f"/sessions/{session_id}").json()["state"] == "closed"
    _cloud_error(
        platform.request("POST", "/sessions", json={"mode": "x", "backend": "local_device"}), 400
    )


def test_the_token_lifetime_is_read_when_a_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iam, "TOKEN_TTL", 15)
    with LocalRuntimeServer(data_dir=tmp_path, tokens=["k"], workers=1) as server:
        response = requests.post(
            server.url + "/identity/token",
            data={"grant_type": APIKEY_GRANT, "apikey": "k"},
            timeout=10,
        ).json()
    assert response["expires_in"] == 15
    found = claims(response["access_token"])
    assert found["exp"] - found["iat"] == 15


def test_a_token_outlives_a_restart_on_the_same_database(tmp_path: Path) -> None:
    def backends(server: LocalRuntimeServer, token: str, crn: str) -> int:
        return requests.get(
            server.url + "/api/v1/backends",
            headers={"Authorization": f"Bearer {token}", "Service-CRN": crn},
            timeout=10,
        ).status_code

    with LocalRuntimeServer(data_dir=tmp_path, tokens=["k"], workers=1) as server:
        first = Platform(server.url, "k").login()
        assert backends(server, first.token, first.crn) == 200
    with LocalRuntimeServer(data_dir=tmp_path / "other", tokens=["k"], workers=1) as server:
        # Another database signs with another key: the token means nothing there.
        assert backends(server, first.token, first.crn) == 401
    with LocalRuntimeServer(data_dir=tmp_path, tokens=["k"], workers=1) as server:
        assert backends(server, first.token, first.crn) == 200


def test_a_listing_with_params_stays_within_the_params_budget(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [platform.submit("echo", {"pad": "p" * 100, "n": n}, tags=["budget"]) for n in range(3)]
    for job_id in ids:
        platform.wait_final(job_id)
    monkeypatch.setattr(config, "LIST_PARAMS_BUDGET", 150)
    first = platform.get("/jobs", params={"tags": "budget"}).json()
    assert first["count"] == 3 and [j["id"] for j in first["jobs"]] == [ids[2]]
    assert first["jobs"][0]["params"]["n"] == 2
    second = platform.get("/jobs", params={"tags": "budget", "offset": 1}).json()
    assert [j["id"] for j in second["jobs"]] == [ids[1]]
    without = platform.get("/jobs", params={"tags": "budget", "exclude_params": "true"}).json()
    assert [j["id"] for j in without["jobs"]] == ids[::-1]
