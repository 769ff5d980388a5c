"""The later job calls on the 2023 routes: ``PUT /jobs/{id}/tags``, ``GET /instances/usage``."""

from __future__ import annotations

from tests.integration.helpers import Api


def test_tags_replace_as_a_set(alice: Api, bob: Api) -> None:
    job_id = alice.submit("hello-world", {"iterations": 1}, tags=["old"])
    response = alice.request("PUT", f"/jobs/{job_id}/tags", json={"tags": ["a", "b", "a"]})
    assert response.status_code == 204, response.text
    assert alice.job(job_id)["tags"] == ["a", "b"]
    # another user's job is not found; bad bodies are refused
    assert bob.request("PUT", f"/jobs/{job_id}/tags", json={"tags": []}).status_code == 404
    assert alice.request("PUT", f"/jobs/{job_id}/tags", json={"tags": "x"}).status_code == 400
    assert alice.request("PUT", f"/jobs/{job_id}/tags", data="{").status_code == 400


def test_usage_of_the_default_instance(alice: Api) -> None:
    job_id = alice.submit("hello-world", {"iterations": 1})
    alice.wait_final(job_id)
    response = alice.get("/instances/usage")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage_limit_reached"] is False
    assert body["usage_consumed_seconds"] >= 0
    assert body["instance_id"].startswith("crn:v1:")


def test_unauthenticated(anon: Api) -> None:
    assert anon.get("/instances/usage").status_code == 401
    assert anon.request("PUT", "/jobs/x/tags", json={"tags": []}).status_code == 401
