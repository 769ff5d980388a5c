"""Fixtures of the CLI tests: the session's local server, and a way to run the CLI.

Every command runs as a real ``runtime-job`` subprocess, with ``HOME`` in a temporary
directory and no ``QISKIT_IBM_*`` or log-level variable, so the developer's own accounts and
environment never leak in. Users: ``MAIN`` for most tests, ``LISTER`` for listings (so the
counts are exact).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime_job import RuntimeService
from runtime_job.server import LocalRuntimeServer
from tests.support import wait_until
from tests.support.server import CLI_LISTER, CLI_MAIN, CLI_STRANGER, leftovers_cancelled

MAIN = CLI_MAIN
LISTER = CLI_LISTER
STRANGER = CLI_STRANGER
CLEARED = (
    "QISKIT_IBM_TOKEN",
    "QISKIT_IBM_URL",
    "QISKIT_IBM_CHANNEL",
    "QISKIT_IBM_INSTANCE",
    "RUNTIME_JOB_LOG_LEVEL",
    "QISKIT_IBM_RUNTIME_LOG_LEVEL",
)


def command() -> list[str]:
    """How to start the CLI: the installed script, else the module."""
    script = Path(sys.executable).parent / "runtime-job"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runtime_job.cli"]


@dataclass
class Cli:
    """Runs ``runtime-job`` against the CLI tests' server."""

    url: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The child's environment: cleaned, with ``HOME`` in a temporary directory."""
        env = {key: value for key, value in os.environ.items() if key not in CLEARED}
        env["HOME"] = str(self.home)
        env.update(extra)
        return env

    def argv(self, args: Sequence[str], token: str | None = MAIN) -> list[str]:
        """The command line: connection options first (``token=None``: none at all)."""
        connection = [] if token is None else ["--channel", "local", "--url", self.url]
        connection += [] if token is None else ["--token", token]
        return [*command(), *connection, *args]

    def __call__(
        self,
        *args: str,
        token: str | None = MAIN,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end."""
        return subprocess.run(
            self.argv(args, token),
            capture_output=True,
            text=True,
            env=env or self.env(),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def many(
        self, commands: Sequence[Sequence[str]], token: str | None = MAIN
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run several commands at once (they are independent); results in order."""
        processes = [
            subprocess.Popen(
                self.argv(args, token),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=self.env(),
            )
            for args in commands
        ]
        results = []
        for args, process in zip(commands, processes, strict=True):
            out, err = process.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(list(args), process.returncode, out, err))
        return results

    def start(self, *args: str, token: str | None = MAIN) -> subprocess.Popen[str]:
        """Start a command and return at once."""
        return subprocess.Popen(
            self.argv(args, token),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env(),
        )


@pytest.fixture(scope="package")
def cli(server: LocalRuntimeServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """Runs the CLI as ``MAIN`` against the server."""
    return Cli(server.url, tmp_path_factory.mktemp("cli-home"))


@pytest.fixture(scope="package")
def service(server: LocalRuntimeServer) -> Iterator[RuntimeService]:
    """The library, as ``MAIN``, to prepare jobs."""
    with RuntimeService(channel="local", url=server.url, token=MAIN) as svc:
        yield svc


@pytest.fixture(scope="package")
def lister(server: LocalRuntimeServer) -> Iterator[RuntimeService]:
    """The library, as ``LISTER``, whose jobs only the listing test creates."""
    with RuntimeService(channel="local", url=server.url, token=LISTER) as svc:
        yield svc


@pytest.fixture(scope="package")
def done_job(service: RuntimeService) -> str:
    """A finished ``hello-world`` job (3 iterations)."""
    job = service.run("hello-world", inputs={"iterations": 3})
    job.wait_for_final_state(timeout=30)
    return job.job_id()


@pytest.fixture(scope="package")
def failed_job(service: RuntimeService) -> str:
    """A job of the ``fail`` program, failed with ``boom``."""
    job = service.run("fail", inputs={"message": "boom"})
    job.wait_for_final_state(timeout=30)
    return job.job_id()


def wait_running(service: RuntimeService, job_id: str, timeout: float = 20) -> None:
    """Wait until the job runs."""
    wait_until(
        lambda: service.job(job_id).status().name == "RUNNING", timeout, what=f"job {job_id} to run"
    )


_cancel_leftovers = leftovers_cancelled(MAIN, LISTER, STRANGER)
"""This package's unfinished jobs are cancelled at its end (the server is shared)."""
