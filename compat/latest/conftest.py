"""Fixtures of the "latest" compat leg: one ``runtime-job serve`` over TLS, and the latest
official client (qiskit-ibm-runtime 0.51) pointed at it as ``docs/local-server.md`` says.

The server (from the main ``.venv``, ``RUNTIME_JOB_BIN``) serves 127.0.0.1 on an ephemeral
port with a throwaway certificate (``COMPAT_TLS_CERT``/``COMPAT_TLS_KEY``, made by
``compat/tls.py`` when absent) and two users. The client trusts that certificate through
``REQUESTS_CA_BUNDLE`` and finds IAM, Global Search and Global Catalog on the server through
``IAM_URL``, ``GLOBAL_SEARCH_URL`` and ``GLOBAL_CATALOG_URL`` (set here once the port is
known), and the quantum API through a ``url_resolver`` (``shared/spec/platform.md`` section 0).
At the end the server gets SIGTERM and must exit by itself within 15 s.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
EXPECTED_CLIENT = "0.51."


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run anywhere but in the latest client's environment."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("qiskit-ibm-runtime")
    except PackageNotFoundError:
        raise pytest.UsageError(
            "the latest compat leg needs qiskit-ibm-runtime 0.51 (run it with `make compat`, "
            "which builds .venv-latest from compat/latest/requirements.txt)"
        ) from None
    if not found.startswith(EXPECTED_CLIENT):
        raise pytest.UsageError(f"expected qiskit-ibm-runtime {EXPECTED_CLIENT}x, found {found}")


def _tls_pair(directory: Path) -> tuple[str, str]:
    cert, key = os.environ.get("COMPAT_TLS_CERT"), os.environ.get("COMPAT_TLS_KEY")
    if cert and key:
        return cert, key
    spec = importlib.util.spec_from_file_location("compat_tls", HERE.parent / "tls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = module.make_self_signed(directory)
    return str(made[0]), str(made[1])


def _first_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    raise RuntimeError(f"runtime-job serve printed no URL (exit code {proc.poll()})")


@dataclass
class Platform:
    """The running server and how the official client reaches it.

    Attributes:
        url: The server's URL (``https://127.0.0.1:PORT``).
        cert: The certificate the client trusts.
        keys: The users' API keys (the server's API tokens).
        process: The server process.
    """

    url: str
    cert: str
    keys: tuple[str, str]
    process: subprocess.Popen[str]

    @property
    def api_url(self) -> str:
        """The quantum API base the ``url_resolver`` returns."""
        return self.url + "/api/v1"

    def url_resolver(self) -> Callable[..., str]:
        """The ``url_resolver`` argument of ``QiskitRuntimeService``."""
        api = self.api_url

        def resolve(
            url: str, instance: Any, private_endpoint: Any = False, channel: Any = None
        ) -> str:
            return api

        return resolve

    def service(self, key: int = 0, instance: str | None = None) -> Any:
        """A ``QiskitRuntimeService`` of user ``key`` (instance given, or ``"auto"``)."""
        from qiskit_ibm_runtime import QiskitRuntimeService

        return QiskitRuntimeService(
            channel="ibm_quantum_platform",
            token=self.keys[key],
            instance=instance or "auto",
            url_resolver=self.url_resolver(),
        )


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    directory = Path(tempfile.mkdtemp(prefix="runtime-job-latest-"))
    try:
        cert, key = _tls_pair(directory / "tls")
        binary = os.environ.get("RUNTIME_JOB_BIN") or str(REPO_ROOT / ".venv/bin/runtime-job")
        if not os.access(binary, os.X_OK):
            pytest.fail(f"no runtime-job executable at {binary}", pytrace=False)
        keys = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        stderr = (directory / "server.log").open("w")
        proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(directory / "data"),
                "--token",
                keys[0],
                "--token",
                keys[1],
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--workers",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        try:
            line = _first_line(proc, time.monotonic() + STARTUP_TIMEOUT)
            url = line.split(" at ", 1)[1].split()[0]
            # What docs/local-server.md tells users to set, now that the port is known.
            os.environ["REQUESTS_CA_BUNDLE"] = cert
            os.environ["IAM_URL"] = url
            os.environ["GLOBAL_SEARCH_URL"] = url
            os.environ["GLOBAL_CATALOG_URL"] = url + "/catalog"
            yield Platform(url, cert, keys, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                pytest.fail(f"the server did not stop within {STOP_TIMEOUT} s of SIGTERM")
            stderr.close()
            if proc.returncode not in (0, -signal.SIGTERM):
                log = (directory / "server.log").read_text(errors="replace")[-4000:]
                pytest.fail(f"the server exited with {proc.returncode}:\n{log}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def service(platform: Platform) -> Any:
    """Alice's service on her default (free-plan) instance, given by CRN."""
    crn = platform.service().instances()[0]["crn"]
    return platform.service(0, crn)


@pytest.fixture(scope="session")
def backend(service: Any) -> Any:
    """``local_device``: the local simulator presented as a device (sessions, ISA checks)."""
    return service.backend("local_device")
