"""Scenario 10: a 100 MB result is fetched and decoded with bounded peak memory.

The server runs as ``runtime-job serve`` in its own process; the client runs in a fresh
interpreter that reports its peak resident set (``ru_maxrss``) before and after
``job.result()``. The growth must stay within three times the payload: a generous bound that
catches an extra copy too many (the precise figure belongs to the benchmarks).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import wait_until

from .serverproc import ServeProcess

TOKEN = "memory-token-0c1d2e3f"
CHILD = r"""
import gc, json, resource, sys
from runtime_job import RuntimeService

url, token, job_id = sys.argv[1:4]
with RuntimeService(channel="local", url=url, token=token) as service:
    job = service.job(job_id)
    job.status()  # imports, connections and the first request are not the result's
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    value = job.result()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak": peak, "type": type(value).__name__,
                      "size": int(getattr(value, "nbytes", len(value)))}))
"""


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = ServeProcess(Path(tmp_path_factory.mktemp("memory")), [TOKEN], workers=1).start()
    yield proc
    proc.stop()


def run_to_completion(serve: ServeProcess, program: str) -> tuple[str, int]:
    headers = {"X-Access-Token": TOKEN}
    with requests.Session() as http:
        response = http.post(
            serve.url + "/jobs",
            json={"program_id": program, "params": {"mib": 100}},
            headers=headers,
            timeout=30,
        )
        job_id = str(response.json()["id"])

        def completed() -> bool:
            state = http.get(f"{serve.url}/jobs/{job_id}", headers=headers, timeout=30).json()
            assert state["state"]["status"] in ("QUEUED", "RUNNING", "COMPLETED"), state
            return bool(state["state"]["status"] == "COMPLETED")

        wait_until(completed, 60, what=f"job {job_id} to complete")
        with http.get(
            f"{serve.url}/jobs/{job_id}/results", headers=headers, stream=True, timeout=30
        ) as result:
            size = int(result.headers["content-length"])
    return job_id, size


@pytest.mark.slow
@pytest.mark.parametrize("program", ["big-text", "big-array"])
def test_10_a_100_mb_result_has_a_bounded_peak_memory(serve: ServeProcess, program: str) -> None:
    job_id, payload = run_to_completion(serve, program)
    assert payload >= 90 * 1024 * 1024
    child = subprocess.run(
        [sys.executable, "-c", CHILD, serve.url, TOKEN, job_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    growth = report["peak"] - report["before"]
    assert report["size"] > 0
    assert growth <= 3 * payload, (
        f"peak RSS grew by {growth / 2**20:.0f} MiB for a {payload / 2**20:.0f} MiB result "
        f"({growth / payload:.2f}x)"
    )
