"""The server depends only on what it needs (issue 17, step 4).

Importing the server's application or its worker module must not load the client: the job,
the service or ``requests``. A subpackage import runs the package root's ``__init__`` first,
so this also checks that the root imports the client lazily.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .serverproc import python_path

CLIENT_MODULES = ("runtime_job.job", "runtime_job.service", "runtime_job.api.client", "requests")
"""Modules of the client side that the server must not import."""

_PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(name for name in {client!r} if name in sys.modules)))
"""


def _loaded_client_modules(module: str) -> list[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RUNTIME_JOB_LOG_LEVEL", "QISKIT_IBM_RUNTIME_LOG_LEVEL")
    }
    env["PYTHONPATH"] = python_path()
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, client=CLIENT_MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "module",
    [
        "runtime_job.server.app",
        "runtime_job.server.worker",
        "runtime_job.server.local",
        "runtime_job.server",
    ],
)
def test_server_modules_do_not_import_the_client(module: str) -> None:
    assert _loaded_client_modules(module) == []


def test_the_package_root_still_offers_every_name_lazily() -> None:
    code = (
        "import sys\n"
        "from runtime_job import RuntimeJob, RuntimeService, monitor, __all__\n"
        "import runtime_job\n"
        "assert callable(monitor) and RuntimeJob.__name__ == 'RuntimeJob'\n"
        "assert all(hasattr(runtime_job, name) for name in __all__)\n"
        "assert set(__all__) <= set(dir(runtime_job))\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=python_path())
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
