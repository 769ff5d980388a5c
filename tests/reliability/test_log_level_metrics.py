"""The local server honours a job's ``log_level`` and reports ``qiskit_version`` (issue 19 D).

The reference's own tests run a program with ``log_level="INFO"`` and expect its INFO
records in ``job.logs()``, and expect ``qiskit_version`` in ``job.metrics()``. The local
server used to drop every record below WARNING and left the version out. Now a program's
log records at the job's level (``WARNING`` when it names none, as on the hosted service)
go to the job's logs, and the metrics carry ``qiskit_version`` (``qiskit.__version__`` in the
worker) when qiskit is importable there, and leave it out otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_job import RuntimeService
from runtime_job.server import LocalRuntimeServer
from runtime_job.server import worker as worker_module
from runtime_job.server.store import JobRecord, NewJob, Store

from .conftest import ALICE
from .runnerkit import start_server

NAME = "tests.reliability.runner_programs"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    server = start_server(tmp_path_factory.mktemp("log-level"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service(srv: LocalRuntimeServer) -> Iterator[RuntimeService]:
    svc = RuntimeService(channel="local", url=srv.url, token=ALICE)
    yield svc
    svc.close()


def _logs(service: RuntimeService, log_level: str | None) -> str:
    options = {"log_level": log_level} if log_level else None
    job = service.run("logs-levels", {}, options=options)
    assert job.result(timeout=30) == "logged"
    return str(job.logs())


def test_info_records_reach_the_logs_at_log_level_info(service: RuntimeService) -> None:
    logs = _logs(service, "INFO")
    assert f" INFO {NAME}: info record\n" in logs
    assert f" WARNING {NAME}: warning record\n" in logs
    assert f" ERROR {NAME}: error record\n" in logs
    assert " INFO qiskit.transpiler: qiskit info record\n" in logs
    assert "debug record" not in logs


def test_debug_level_keeps_everything(service: RuntimeService) -> None:
    logs = _logs(service, "DEBUG")
    assert f" DEBUG {NAME}: debug record\n" in logs
    assert f" INFO {NAME}: info record\n" in logs


def test_without_a_log_level_warnings_and_above_only(service: RuntimeService) -> None:
    logs = _logs(service, None)
    assert f" WARNING {NAME}: warning record\n" in logs
    assert f" ERROR {NAME}: error record\n" in logs
    assert "info record" not in logs
    assert "debug record" not in logs


def test_the_level_of_one_job_does_not_leak_into_the_next(service: RuntimeService) -> None:
    assert "debug record" in _logs(service, "DEBUG")
    assert "info record" not in _logs(service, "WARNING")


def _worker_qiskit_version() -> str | None:
    """``qiskit.__version__`` as a fresh interpreter sees it, or ``None`` without qiskit."""
    if importlib.util.find_spec("qiskit") is None:
        return None
    done = subprocess.run(
        [sys.executable, "-c", "import qiskit; print(qiskit.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_metrics_carry_the_workers_qiskit_version(service: RuntimeService) -> None:
    job = service.run("ok", {})
    job.result(timeout=30)
    metrics = job.metrics()
    expected = _worker_qiskit_version()
    if expected is None:
        assert "qiskit_version" not in metrics
    else:
        assert metrics["qiskit_version"] == expected
    assert set(metrics) >= {"timestamps", "bss", "usage", "executions", "status"}


def test_qiskit_version_is_none_where_qiskit_is_not_importable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "qiskit", raising=False)
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == "qiskit" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert worker_module.qiskit_version() is None


def test_qiskit_version_is_read_without_importing_qiskit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "qiskit"
    package.mkdir()
    (package / "__init__.py").write_text('raise ImportError("must not be imported")\n')
    (package / "VERSION.txt").write_text("0.24.1\n")
    monkeypatch.delitem(sys.modules, "qiskit", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert worker_module.qiskit_version() == "0.24.1"
    assert "qiskit" not in sys.modules


def test_metrics_leave_qiskit_version_out_when_unknown() -> None:
    values: list[object] = [1, "j", "u", "p", "b", "COMPLETED", None, "2026-01-01T00:00:00Z"]
    values += [1.0, 2.0, 3.0, 1.0, None, "[]", None, None, None, None, None, None, 0]
    assert "qiskit_version" not in JobRecord.from_row(values).metrics()
    assert JobRecord.from_row([*values, "9.9.9"]).metrics()["qiskit_version"] == "9.9.9"


@pytest.mark.parametrize(
    ("name", "level"),
    [
        (None, logging.WARNING),
        ("", logging.WARNING),
        ("info", logging.INFO),
        ("DEBUG", logging.DEBUG),
        ("CRITICAL", logging.CRITICAL),
        ("nonsense", logging.WARNING),
    ],
)
def test_log_level_names(name: str | None, level: int) -> None:
    assert worker_module.log_level_number(name) == level


def test_a_database_of_the_previous_schema_gains_the_column(tmp_path: Path) -> None:
    """A data directory written before ``qiskit_version`` existed opens and keeps its jobs."""
    path = tmp_path / "runtime.sqlite3"
    store = Store(path)
    store.create_job(
        NewJob(id="old", user_id="u", program_id="p", backend="b", params="{}"), 1.0, None
    )
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE jobs DROP COLUMN qiskit_version")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        assert store.mark_running("old", 2.0, "1.2.3")
        job = store.get_job("old")
        assert job is not None and job.metrics()["qiskit_version"] == "1.2.3"
        version = store._conn().execute("SELECT value FROM meta WHERE key = 'schema_version'")
        assert version.fetchone() == ("2",)
    finally:
        store.close()
