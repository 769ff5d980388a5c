"""The local server keeps its data when it is killed: SIGKILL at random points of a run.

A ``runtime-job serve`` process runs 200 jobs that each publish interim results and print
logs. It is killed with ``SIGKILL`` at random points (while jobs are submitted, queued and
running) and restarted on the same data directory and port. Everything a client saw before a
kill must be there after it: no completed job, result, interim result or log lost, no job
created twice by a resent submission, and the database passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import wait_until

from .serverproc import ServeProcess

TOKEN = "crash-token-4a5b6c7d"
N_JOBS = 200
KILLS = 4
FINAL = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class Seen:
    """What the client observed of one job at some point."""

    status: str
    reason: str | None
    interim: list[Any]
    logs: str
    result: str | None = None


@dataclass
class Client:
    """A plain HTTP client that rides out a dead server (bounded retries)."""

    url: str
    http: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"X-Access-Token": TOKEN, **kwargs.pop("headers", {})}

        def answered() -> requests.Response | None:
            try:
                response = self.http.request(
                    method, self.url + path, headers=headers, timeout=10, **kwargs
                )
            except requests.ConnectionError:
                return None
            return response if response.status_code < 500 else None

        return wait_until(answered, 30, what=f"{method} {path}: the server to come back")

    def submit(self, i: int) -> str:
        body = json.dumps({"program_id": "chatty", "params": {"n": 3, "pause": (i % 4) * 0.004}})
        key = str(uuid.uuid4())  # the same key on every resend of this submission
        response = self.call("POST", "/jobs", data=body, headers={"Idempotency-Key": key})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def snapshot(self, job_id: str) -> Seen:
        job = self.call("GET", f"/jobs/{job_id}").json()
        if job["state"]["status"] == "QUEUED":
            return Seen("QUEUED", None, [], "")
        interim = self.call("GET", f"/jobs/{job_id}/interim_results").json()
        logs = self.call("GET", f"/jobs/{job_id}/logs").text
        status, reason = job["state"]["status"], job["state"]["reason"]
        result = None
        if status in FINAL:
            result = self.call("GET", f"/jobs/{job_id}/results").text
        return Seen(status, reason, interim, logs, result)


def observe(
    client: Client, ids: list[str], final: dict[str, Seen], partial: dict[str, list[Seen]]
) -> None:
    for job_id in ids:
        if job_id in final:
            continue
        seen = client.snapshot(job_id)
        if seen.status in FINAL:
            final[job_id] = seen
        elif seen.status == "RUNNING":
            partial.setdefault(job_id, []).append(seen)


def check_against(
    client: Client, final: dict[str, Seen], partial: dict[str, list[Seen]], checked: set[str]
) -> None:
    """What the client saw is still served (final jobs not checked after an earlier kill)."""
    for job_id, before in final.items():
        if job_id in checked:
            continue
        after = client.snapshot(job_id)
        assert after == before, f"job {job_id} changed after a kill: {before} -> {after}"
        checked.add(job_id)
    for job_id, seens in partial.items():
        after = client.snapshot(job_id)
        for before in seens:
            assert after.interim[: len(before.interim)] == before.interim, job_id
            assert after.logs.startswith(before.logs), job_id


def check_database(path: Path, final: dict[str, Seen]) -> None:
    """After the last kill, cold: the file is sound and holds everything the client saw."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone() == (N_JOBS,)
        for job_id, seen in final.items():
            status, reason, result = db.execute(
                "SELECT status, reason, result FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            interim = [
                json.loads(row[0])
                for row in db.execute(
                    "SELECT payload FROM interim WHERE job_id = ? ORDER BY seq", (job_id,)
                )
            ]
            logs = "".join(
                row[0]
                for row in db.execute(
                    "SELECT text FROM logs WHERE job_id = ? ORDER BY seq", (job_id,)
                )
            )
            assert (status, reason, interim, logs) == (
                seen.status,
                seen.reason,
                seen.interim,
                seen.logs,
            ), job_id
            assert (result or "") == (seen.result or ""), job_id
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    data_dir = tmp_path / "data"
    serve = ServeProcess(data_dir, [TOKEN], workers=2).start()
    client = Client(serve.url)
    ids: list[str] = []
    final: dict[str, Seen] = {}
    partial: dict[str, list[Seen]] = {}
    checked: set[str] = set()
    kill_after = set(rng.sample(range(5, N_JOBS - 5), KILLS))
    try:
        for i in range(N_JOBS):
            ids.append(client.submit(i))
            if i % 25 == 0:
                observe(client, ids, final, partial)
            if i in kill_after:
                observe(client, ids, final, partial)
                time.sleep(rng.uniform(0.0, 0.03))  # somewhere in the middle of the work
                serve.kill()
                serve.start()
                check_against(client, final, partial, checked)

        def all_final() -> bool:
            observe(client, ids, final, partial)
            return len(final) == N_JOBS

        wait_until(all_final, 60, what="every job to finish")
        listing = client.call("GET", "/jobs", params={"limit": 1000}).json()
        # A last kill once everything is final, then the database is checked cold.
        serve.kill()
        check_database(data_dir / "runtime.sqlite3", final)
    finally:
        serve.stop()
        client.http.close()

    assert listing["count"] == N_JOBS  # no submission was created twice
    assert sorted(j["id"] for j in listing["jobs"]) == sorted(ids)
    statuses = {seen.status for seen in final.values()}
    assert statuses <= {"COMPLETED", "FAILED"}
    for job_id, seen in final.items():
        if seen.status == "COMPLETED":
            assert seen.interim == [{"i": 0}, {"i": 1}, {"i": 2}], job_id
            assert seen.logs == "".join(f"chatty line {k}\n" for k in range(3)), job_id
            assert json.loads(seen.result or "") == {"n": 3}, job_id
        else:
            assert seen.reason == "server restarted", (job_id, seen)
    failed = sum(seen.status == "FAILED" for seen in final.values())
    assert failed <= KILLS * 2  # at most the jobs running on the two workers at each kill
    assert sum(seen.status == "COMPLETED" for seen in final.values()) >= N_JOBS - KILLS * 2
