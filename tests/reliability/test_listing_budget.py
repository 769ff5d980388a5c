"""Listing: bounded pages and a stable ``jobs(limit=None)`` (issue 18, items 5 and 15).

- ``jobs()`` asks for its pages without params (``exclude_params=true``, as the hosted API
  takes it); a job fetches its inputs when asked;
- a page with params has a byte budget as well as a count, and its body is built a job at a
  time in a worker thread, not on the server's event loop;
- ``jobs(limit=None)`` lists every job that existed when it started and was not deleted,
  exactly once, while the user submits and deletes jobs: by the server's cursor
  (``next_cursor``) when it offers one, and without it no job is listed twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from runtime_job import RuntimeService
from runtime_job import service as service_module
from runtime_job.server import LocalRuntimeServer
from runtime_job.server import config as server_config
from runtime_job.server.auth import user_id_for
from runtime_job.server.paths import DataDir
from runtime_job.server.store import NewJob, Store
from tests.support.server import local_server

TOKEN = "listing-edge-token-91ab3c"
SEEDED = 45
PAGE = 10


def _seed(data_dir: Path, count: int) -> None:
    """``count`` completed jobs of the token's user, through the store's own API."""
    store = Store(DataDir.resolve(data_dir).db_path)
    try:
        user, now = user_id_for(TOKEN), time.time()
        for i in range(count):
            job = NewJob(
                id=f"seeded-{i:03d}",
                user_id=user,
                program_id="echo",
                backend="local_simulator",
                params=f'{{"i": {i}}}',
                hub="local",
                group="default",
                project="main",
            )
            store.create_job(job, now - 100 + i * 1e-3, None)
        with store.write() as tx:
            tx.conn.execute(
                "UPDATE jobs SET status = 'COMPLETED', result = '\"ok\"', running_ts = created_ts, "
                "finished_ts = created_ts, usage = 0 WHERE user_id = ?",
                (user,),
            )
    finally:
        store.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    data_dir = tmp_path_factory.mktemp("listing-edge")
    _seed(data_dir, SEEDED)
    with local_server(data_dir, tokens=[TOKEN], workers=1, programs={}) as server:
        yield server


@pytest.fixture
def service(srv: LocalRuntimeServer) -> Iterator[RuntimeService]:
    with RuntimeService(channel="local", url=srv.url, token=TOKEN) as svc:
        yield svc


def _get(srv: LocalRuntimeServer, path: str, **params: Any) -> requests.Response:
    return requests.get(
        srv.url + path, params=params, headers={"X-Access-Token": TOKEN}, timeout=30
    )


def _all_ids(srv: LocalRuntimeServer) -> list[str]:
    body = _get(srv, "/jobs", limit=1000, exclude_params="true").json()
    assert body["count"] == len(body["jobs"])
    return [job["id"] for job in body["jobs"]]


def _submit(srv: LocalRuntimeServer, params: Any, tags: list[str] | None = None) -> str:
    body: dict[str, Any] = {"program_id": "echo", "params": params}
    if tags:
        body["tags"] = tags
    response = requests.post(
        srv.url + "/jobs", json=body, headers={"X-Access-Token": TOKEN}, timeout=30
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _delete(srv: LocalRuntimeServer, job_id: str) -> None:
    response = requests.delete(
        srv.url + f"/jobs/{job_id}", headers={"X-Access-Token": TOKEN}, timeout=30
    )
    assert response.status_code == 204, response.text


def _between_pages(
    service: RuntimeService,
    monkeypatch: pytest.MonkeyPatch,
    after_page: Callable[[dict[str, Any], dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Run ``after_page(query, page)`` after each page ``jobs()`` gets; the queries sent."""
    client = service._api_client
    jobs_get = client.jobs_get
    queries: list[dict[str, Any]] = []

    def paged(**query: Any) -> Any:
        queries.append(query)
        page: dict[str, Any] = jobs_get(**query)
        after_page(query, page)
        return page

    monkeypatch.setattr(client, "jobs_get", paged)
    monkeypatch.setattr(service_module, "_PAGE_SIZE", PAGE)
    return queries


def test_jobs_asks_without_params_and_follows_the_cursor(
    srv: LocalRuntimeServer, service: RuntimeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = _between_pages(service, monkeypatch, lambda query, page: None)
    expected = _all_ids(srv)
    listed = service.jobs(limit=None)
    assert [job.job_id() for job in listed] == expected
    assert all(query["exclude_params"] is True for query in queries)
    assert queries[0]["cursor"] is None and all(query["cursor"] for query in queries[1:])
    assert len(queries) == -(-len(expected) // PAGE)
    # The server leaves the params out, and a job fetches its inputs when asked.
    page = _get(srv, "/jobs", limit=PAGE, exclude_params="true").json()
    assert all("params" not in job for job in page["jobs"]) and page["next_cursor"]
    oldest = listed[-1]
    assert oldest.inputs == {"i": 0}


def test_submissions_and_deletions_during_a_listing_repeat_and_skip_nothing(
    srv: LocalRuntimeServer, service: RuntimeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _all_ids(srv)
    deleted: set[str] = set()

    def churn(query: dict[str, Any], page: dict[str, Any]) -> None:
        for i in range(3):
            _submit(srv, {"churn": i})
        # Delete jobs this listing has already shown: offset paging would then skip jobs.
        for entry in page["jobs"][:2]:
            _delete(srv, entry["id"])
            deleted.add(entry["id"])

    _between_pages(service, monkeypatch, churn)
    listed = [job.job_id() for job in service.jobs(limit=None)]
    assert len(listed) == len(set(listed)), "a job was listed twice"
    missing = set(before) - deleted - set(listed)
    assert not missing, f"{len(missing)} jobs were skipped"


def test_without_the_extension_no_job_is_listed_twice(
    srv: LocalRuntimeServer, service: RuntimeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def churn_without_cursor(query: dict[str, Any], page: dict[str, Any]) -> None:
        page.pop("next_cursor", None)  # a server without the extension
        for i in range(3):
            _submit(srv, {"new": i})  # newest first: the offset pages shift down

    queries = _between_pages(service, monkeypatch, churn_without_cursor)
    before = _all_ids(srv)
    listed = [job.job_id() for job in service.jobs(limit=None)]
    assert all(query["cursor"] is None for query in queries)
    assert [query["skip"] for query in queries][:3] == [0, PAGE, 2 * PAGE]
    assert len(listed) == len(set(listed)), "a job was listed twice"
    assert set(before) <= set(listed)


def test_a_page_with_params_keeps_a_byte_budget_and_is_built_off_the_loop(
    srv: LocalRuntimeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mib = 1024 * 1024
    monkeypatch.setattr(server_config, "LIST_PARAMS_BUDGET", 2 * mib + mib // 2)
    blob = "b" * mib
    ids = [_submit(srv, {"blob": blob, "n": n}, tags=["big-params"]) for n in range(4)]
    threads: list[str] = []
    get_params = Store.get_params

    def recorded(store: Store, job_id: str) -> str | None:
        threads.append(threading.current_thread().name)
        return get_params(store, job_id)

    monkeypatch.setattr(Store, "get_params", recorded)
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 10, "tags": "big-params", "sort": "ASC"}
        if cursor is not None:
            query["cursor"] = cursor
        body = _get(srv, "/jobs", **query).json()
        pages.append(body["jobs"])
        assert body["count"] == 4
        cursor = body.get("next_cursor")
        if cursor is None:
            break
    assert [len(page) for page in pages] == [2, 2]
    listed = [job for page in pages for job in page]
    assert [job["id"] for job in listed] == ids
    assert all(job["params"] == {"blob": blob, "n": n} for n, job in enumerate(listed))
    # The runner reads params to start a job; the listing read them in worker threads.
    listing = [name for name in threads if name != "runtime-job-runner"]
    assert len(listing) == 4 and "runtime-job-server" not in listing
