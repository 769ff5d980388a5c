"""Migration: a script written for qiskit-ibm-runtime 0.11 runs with one changed import line.

The script (``reference_style_script.py``) runs as a subprocess against a local runtime server
of the suite (the default session server, as its own user); it reaches the server through the
reference's ``ibm_quantum`` login API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runtime_job.server import LocalRuntimeServer
from tests.support.server import MIGRATION

SCRIPT = Path(__file__).resolve().parent / "reference_style_script.py"
TIMEOUT = 60


def test_reference_style_script_runs_unchanged(server: LocalRuntimeServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),  # no saved account of the machine's user can leak in
        "RUNTIME_JOB_TEST_URL": server.api_url,
        "RUNTIME_JOB_TEST_TOKEN": MIGRATION,
    }
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("Job ID: ")
    assert lines[1:] == [
        "Result: {'greeting': 'hello', 'numbers': [1, 2, 3]}",
        "Status: JobStatus.DONE",
        "Listed: True",
        "Logs: str",
    ], completed.stdout
