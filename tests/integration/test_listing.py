"""``GET /jobs``: filters, paging, sorting (user ``carol`` owns exactly these jobs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime_job import RuntimeService
from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import CAROL, Api
from tests.support import wait_until


@pytest.fixture(scope="module")
def jobs(carol: Api) -> dict[str, Any]:
    """Seven finished jobs and one running one, created in a known order."""
    ids = [
        carol.submit("echo", {"i": 0}, tags=["a"]),
        carol.submit("echo", {"i": 1}, tags=["a", "b"]),
        carol.submit("hello-world", {"iterations": 1}, tags=["b"]),
        carol.submit("echo", {"i": 3}, session_id="sess1"),
        carol.submit("echo", {"i": 4}, session_id="sess1", tags=["a", "b", "c"]),
    ]
    for job_id in ids:
        carol.wait_final(job_id)
    middle = carol.job(ids[-1])["created"]
    stamp = datetime.strptime(middle, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    # The next jobs must be created strictly later (the server's clock is this machine's).
    wait_until(lambda: datetime.now(UTC) > stamp, what=f"the clock to pass {middle}")
    ids.append(carol.submit("fail", {}))
    ids.append(carol.submit("echo", {"i": 6}))
    for job_id in ids[5:]:
        carol.wait_final(job_id)
    ids.append(carol.submit("sleep", {"seconds": 30}))
    carol.wait_status(ids[-1], ("RUNNING",))
    yield {"ids": ids, "middle": middle}
    carol.post(f"/jobs/{ids[-1]}/cancel")


def listed(carol: Api, **query: Any) -> tuple[list[str], int]:
    response = carol.get("/jobs", params=query)
    assert response.status_code == 200, response.text
    body = response.json()
    return [job["id"] for job in body["jobs"]], body["count"]


def test_default_is_newest_first(carol: Api, jobs: dict[str, Any]) -> None:
    ids, count = listed(carol)
    assert count == 8
    assert ids == list(reversed(jobs["ids"]))


def test_sort_ascending(carol: Api, jobs: dict[str, Any]) -> None:
    assert listed(carol, sort="ASC")[0] == jobs["ids"]
    assert listed(carol, sort="desc")[0] == list(reversed(jobs["ids"]))


def test_limit_and_offset(carol: Api, jobs: dict[str, Any]) -> None:
    newest = list(reversed(jobs["ids"]))
    assert listed(carol, limit=3) == (newest[:3], 8)
    assert listed(carol, limit=3, offset=3) == (newest[3:6], 8)
    assert listed(carol, limit=3, offset=6) == (newest[6:], 8)
    assert listed(carol, limit=3, offset=9) == ([], 8)
    assert listed(carol, limit=2, offset=1, sort="ASC") == (jobs["ids"][1:3], 8)
    assert listed(carol, limit=5000) == (newest, 8)
    assert listed(carol, limit=0) == ([], 8)
    assert listed(carol, offset=2**63 + 5) == ([], 8)
    assert listed(carol, limit=2**70) == (newest, 8)


def test_filters(carol: Api, jobs: dict[str, Any]) -> None:
    ids = jobs["ids"]
    assert set(listed(carol, program="hello-world")[0]) == {ids[2]}
    assert listed(carol, backend="local_simulator")[1] == 8
    assert listed(carol, backend="other")[1] == 0
    assert listed(carol, pending="true")[0] == [ids[7]]
    assert listed(carol, pending="false")[1] == 7
    assert set(listed(carol, tags="a")[0]) == {ids[0], ids[1], ids[4]}
    assert set(listed(carol, tags=["a", "b"])[0]) == {ids[1], ids[4]}
    assert set(listed(carol, tags=["a", "b", "c"])[0]) == {ids[4]}
    assert listed(carol, tags=["c", "zzz"])[1] == 0
    assert set(listed(carol, session_id="sess1")[0]) == {ids[3], ids[4]}
    assert listed(carol, provider="local/default/main")[1] == 8
    assert listed(carol, provider="ibm-q/open/main")[1] == 0
    assert listed(carol, program="echo", tags="a", pending="false")[1] == 3


def test_created_filters(carol: Api, jobs: dict[str, Any]) -> None:
    ids = jobs["ids"]
    middle = datetime.strptime(jobs["middle"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    after = (middle + timedelta(microseconds=1)).isoformat()
    assert set(listed(carol, created_after=after)[0]) == set(ids[5:])
    assert set(listed(carol, created_before=middle.isoformat())[0]) == set(ids[:5])
    local = middle.astimezone(timezone_plus_two()).isoformat()
    assert set(listed(carol, created_before=local)[0]) == set(ids[:5])
    naive = middle.replace(tzinfo=None).isoformat()
    assert set(listed(carol, created_before=naive)[0]) == set(ids[:5])
    zulu = jobs["middle"]
    assert set(listed(carol, created_before=zulu)[0]) == set(ids[:5])
    # A '+' sent unencoded arrives as a space.
    raw = carol.get("/jobs?created_before=" + middle.isoformat().replace("+", " "))
    assert {job["id"] for job in raw.json()["jobs"]} == set(ids[:5])
    assert listed(carol, created_after="2000-01-01", created_before="2000-01-02")[1] == 0


def timezone_plus_two():  # type: ignore[no-untyped-def]
    from datetime import timezone

    return timezone(timedelta(hours=2))


def test_listed_jobs_are_complete(carol: Api, jobs: dict[str, Any]) -> None:
    body = carol.get("/jobs", params={"limit": 1, "sort": "ASC"}).json()
    job = body["jobs"][0]
    assert job["id"] == jobs["ids"][0]
    assert job["params"] == {"i": 0}
    assert job["state"]["status"] == "COMPLETED"
    assert job["program"] == {"id": "echo"}
    assert job["tags"] == ["a"]
    trimmed = carol.get("/jobs", params={"limit": 1, "exclude_params": "true"}).json()
    assert "params" not in trimmed["jobs"][0]


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": "9" * 400},
        {"offset": "-5"},
        {"pending": "maybe"},
        {"sort": "UP"},
        {"created_after": "yesterday"},
        {"created_before": "2023-13-45T00:00:00"},
        {"provider": "only/two"},
        {"exclude_params": "perhaps"},
    ],
)
def test_invalid_query_values_are_422(carol: Api, query: dict[str, str]) -> None:
    response = carol.get("/jobs", params=query)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["message"]


def test_the_service_lists_what_the_server_lists(
    server: LocalRuntimeServer, carol: Api, jobs: dict[str, Any]
) -> None:
    with RuntimeService(channel="local", url=server.url, token=CAROL) as service:
        listed = service.jobs(limit=None)
        oldest_first = service.jobs(limit=None, descending=False)
        two = service.jobs(limit=2, skip=1, program_id="echo")
        # Listed without params: a job fetches its inputs when asked (while the service is open).
        assert listed[-1].inputs == {"i": 0}
    entries = carol.get("/jobs", params={"limit": 100}).json()["jobs"]
    assert [job.job_id() for job in listed] == [entry["id"] for entry in entries]
    assert [job.job_id() for job in oldest_first] == jobs["ids"]
    echo = [entry["id"] for entry in entries if entry["program"]["id"] == "echo"]
    assert [job.job_id() for job in two] == echo[1:3]
    for job, entry in zip(listed, entries, strict=True):
        assert job.program_id == entry["program"]["id"]
        assert job.tags == entry["tags"]
        assert job._session_id == entry["session_id"]
        created = datetime.fromisoformat(entry["created"].replace("Z", "+00:00"))
        assert job.creation_date == created
        backend = job.backend()
        assert backend is not None and backend.name == entry["backend"]
    assert len({id(job.backend()) for job in listed}) == 1
