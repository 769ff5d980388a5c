"""What the runner and storage tests share: a REST caller, a server factory, a log watch.

They talk to the server over plain HTTP (``requests``), as any client would, so what they
check is the server's behaviour, whatever the client library does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from runtime_job.server import LocalRuntimeServer
from tests.support import wait_until

from .conftest import ALICE, BOB
from .runner_programs import PROGRAMS

FINAL = ("COMPLETED", "FAILED", "CANCELLED")


def start_server(data_dir: Path, workers: int = 2) -> LocalRuntimeServer:
    """An embedded server on port 0 for alice and bob, with the runner test programs."""
    server = LocalRuntimeServer(
        data_dir=data_dir, tokens=[ALICE, BOB], workers=workers, programs=PROGRAMS
    )
    return server.start()


class Rest:
    """One user's plain HTTP calls to a server."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.headers["X-Access-Token"] = token

    def close(self) -> None:
        self.http.close()

    def submit(
        self, program: str, params: dict[str, Any] | None = None, log_level: str | None = None
    ) -> requests.Response:
        """``POST /jobs``; the response, whatever its status."""
        body: dict[str, Any] = {"program_id": program, "params": params or {}}
        if log_level is not None:
            body["log_level"] = log_level
        return self.http.post(self.url + "/jobs", json=body, timeout=10)

    def run(self, program: str, params: dict[str, Any] | None = None, **kw: Any) -> str:
        """Submit a job; its id (the submission must succeed)."""
        response = self.submit(program, params, **kw)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.url}/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def status(self, job_id: str) -> str:
        return str(self.job(job_id)["state"]["status"])

    def wait_status(self, job_id: str, wanted: tuple[str, ...], timeout: float = 20.0) -> str:
        """Wait until the job is in one of ``wanted``; the status it reached."""
        return str(
            wait_until(
                lambda: (s := self.status(job_id)) in wanted and s,
                timeout,
                what=f"job {job_id} in {wanted}",
            )
        )

    def wait_final(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the job is final; the job."""
        self.wait_status(job_id, FINAL, timeout)
        return self.job(job_id)

    def text(self, job_id: str, what: str) -> str:
        """``GET /jobs/{id}/{what}`` (``results``, ``logs``, ``metrics``) as text."""
        response = self.http.get(f"{self.url}/jobs/{job_id}/{what}", timeout=10)
        assert response.status_code == 200, response.text
        return response.text


def users(server: LocalRuntimeServer) -> tuple[Rest, Rest]:
    """``(alice, bob)`` callers of ``server``."""
    return Rest(server.url, ALICE), Rest(server.url, BOB)


class LogWatch(logging.Handler):
    """Records of ``runtime_job.server`` (any thread); an event per awaited message part.

    Use as a context manager; :meth:`seen` waits (bounded) for a record containing a text.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()
        self._logger = logging.getLogger("runtime_job.server")
        self._saved_level = self._logger.level

    def __enter__(self) -> LogWatch:
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved_level)

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        with self._cond:
            return [r.getMessage() for r in self.records if r.levelno >= level]

    def seen(self, part: str, timeout: float = 10.0) -> logging.LogRecord:
        """Wait for a record whose message contains ``part``; that record."""
        found: list[logging.LogRecord] = []

        def match() -> bool:
            found[:] = [r for r in self.records if part in r.getMessage()]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(match, timeout):
                raise AssertionError(f"no log record containing {part!r} within {timeout} s")
        return found[0]


def count(predicate: Callable[[str], bool], messages: list[str]) -> int:
    return sum(1 for m in messages if predicate(m))
