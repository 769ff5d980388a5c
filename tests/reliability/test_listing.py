"""Scenario 17: ``jobs()`` over 10,000 jobs, some on retired or missing backends.

The jobs are written straight into a fresh server's store before it starts (final already, so
nothing runs). The client lists them through the fault proxy, which counts requests and
refuses any beyond a budget, so a listing that costs a request per job fails fast.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime_job import RuntimeService
from runtime_job.backend import IBMRetiredBackend
from runtime_job.server import LocalRuntimeServer
from runtime_job.server.auth import user_id_for
from runtime_job.server.paths import DataDir
from runtime_job.server.store import NewJob, Store
from tests.stream.streamkit import LoopThread
from tests.support.server import local_server

from .faultproxy import FaultProxy, Respond

TOKEN = "listing-token-5e6f7a8b"
N_JOBS = 10_000
BACKENDS = ["local_simulator", "ibm_retired_falcon", ""]  # live, retired, missing
PAGE = 1000  # the page size jobs() asks for when listing everything


def seed(data_dir: Path, count: int) -> None:
    """Insert ``count`` completed jobs of the token's user, through the store's own API."""
    store = Store(DataDir.resolve(data_dir).db_path)
    try:
        user = user_id_for(TOKEN)
        now = time.time()
        for i in range(count):
            job = NewJob(
                id=f"seeded-{i:05d}",
                user_id=user,
                program_id="echo",
                backend=BACKENDS[i % len(BACKENDS)],
                params=f'{{"i": {i}}}',
                tags=[f"mod7-{i % 7}"],
                hub="local",
                group="default",
                project="main",
            )
            store.create_job(job, now + i * 1e-3, None)
        with store.write() as tx:
            tx.conn.execute(
                "UPDATE jobs SET status = 'COMPLETED', result = '\"ok\"', running_ts = created_ts, "
                "finished_ts = created_ts, usage = 0 WHERE user_id = ?",
                (user,),
            )
    finally:
        store.close()


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    data_dir = tmp_path_factory.mktemp("listing")
    seed(data_dir, N_JOBS)
    with local_server(data_dir, tokens=[TOKEN], workers=1, programs={}) as srv:
        yield srv


@pytest.fixture
def budget_proxy(big_server: LocalRuntimeServer, loop_thread: LoopThread) -> Iterator[FaultProxy]:
    port = int(big_server.url.rsplit(":", 1)[1])
    fp = FaultProxy(loop_thread, ("127.0.0.1", port)).start()
    yield fp
    fp.stop()


def limit_requests(proxy: FaultProxy, budget: int) -> None:
    """Answer 400 to every request after the first ``budget`` ones."""
    body = '{"errors": [{"code": "BUDGET", "message": "request budget of the test exceeded"}]}'
    proxy.add("*", ".*", Respond(400, body), skip=budget)


def test_17_listing_ten_thousand_jobs_completes_with_bounded_requests(
    budget_proxy: FaultProxy, connect: Callable[..., RuntimeService]
) -> None:
    pages = math.ceil(N_JOBS / PAGE)
    limit_requests(budget_proxy, pages + 10)
    service = connect(budget_proxy.url, token=TOKEN)
    started = time.monotonic()
    jobs = service.jobs(limit=None)
    elapsed = time.monotonic() - started

    assert len(jobs) == N_JOBS
    assert len({job.job_id() for job in jobs}) == N_JOBS
    assert jobs[0].job_id() == f"seeded-{N_JOBS - 1:05d}"  # newest first
    names = Counter(
        (type(job._backend).__name__, job._backend.name if job._backend else None) for job in jobs
    )
    third = N_JOBS // 3
    assert names[("Backend", "local_simulator")] in (third, third + 1)
    assert names[("IBMRetiredBackend", "ibm_retired_falcon")] in (third, third + 1)
    assert names[("NoneType", None)] in (third, third + 1)
    listing = budget_proxy.count("GET", "/jobs")
    assert listing <= pages + 1
    assert budget_proxy.count() <= pages + 5, Counter(r.path for r in budget_proxy.seen())
    assert elapsed < 30


def test_17_partial_listings_and_filters_stay_bounded(
    budget_proxy: FaultProxy, connect: Callable[..., RuntimeService]
) -> None:
    limit_requests(budget_proxy, 60)
    service = connect(budget_proxy.url, token=TOKEN)
    tail = service.jobs(limit=100, skip=N_JOBS - 50)
    assert [job.job_id() for job in tail] == [f"seeded-{i:05d}" for i in range(49, -1, -1)]
    oldest = service.jobs(limit=5, descending=False)
    assert [job.job_id() for job in oldest] == [f"seeded-{i:05d}" for i in range(5)]
    tagged = service.jobs(limit=None, job_tags=["mod7-3"], backend_name="ibm_retired_falcon")
    expected = {i for i in range(N_JOBS) if i % 7 == 3 and i % 3 == 1}
    assert {int(job.job_id().split("-")[1]) for job in tagged} == expected
    assert all(isinstance(job.backend(), IBMRetiredBackend) for job in tagged[:5])
    assert service.jobs(limit=10, skip=N_JOBS + 5) == []
