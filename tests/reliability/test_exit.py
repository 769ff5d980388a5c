"""Scenario 16: the interpreter exits in the middle of a stream or of a wait.

Each child runs with ``-X dev -W error`` (every warning an error, ``ResourceWarning`` shown),
starts streaming or waiting, and lets the interpreter end. It must end within 2 s of its last
line, exit 0, and print nothing on standard error: no traceback, no ``ResourceWarning``, no
"Exception ignored" message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from runtime_job.server import LocalRuntimeServer

from .conftest import ALICE

PRELUDE = textwrap.dedent(
    """
    import os, sys, threading, time
    from runtime_job import RuntimeService
    env = os.environ
    service = RuntimeService(channel="local", url=env["RJ_URL"], token=env["RJ_TOKEN"])
    long_job = {"count": 2000, "interval": 0.05}
    """
)
MODES = {
    # A callback stream is open when the main thread returns.
    "stream": """
job = service.run("stream", inputs=long_job, callback=lambda job_id, msg: None)
time.sleep(0.5)
""",
    # The main thread gave up waiting (a timeout) while the stream was open.
    "wait-timed-out": """
job = service.run("stream", inputs=long_job, callback=lambda job_id, msg: None)
try:
    job.result(timeout=0.5)
except TimeoutError:
    pass
""",
    # A daemon thread is inside result() (no timeout) when the interpreter exits.
    "wait-in-a-thread": """
job = service.run("stream", inputs=long_job)
threading.Thread(target=job.result, daemon=True).start()
time.sleep(0.5)
""",
    # A daemon thread is polling (no websocket for this job) when the interpreter exits.
    "polling-in-a-thread": """
from runtime_job.api import client as client_module
client_module.RuntimeClient.open_stream = None  # the job falls back to polling
job = service.run("stream", inputs=long_job)
threading.Thread(target=job.result, daemon=True).start()
time.sleep(0.5)
""",
    # Several streams, and the service is closed before exit (as a with-block does).
    "closed-service": """
jobs = [service.run("stream", inputs=long_job, callback=lambda j, m: None) for _ in range(5)]
time.sleep(0.5)
service.close()
""",
}


@pytest.mark.usefixtures("cancel_leftovers")
@pytest.mark.parametrize("mode", list(MODES))
def test_16_interpreter_exit_is_prompt_and_quiet(server: LocalRuntimeServer, mode: str) -> None:
    script = PRELUDE + MODES[mode] + "\nprint(time.time(), flush=True)\n"
    env = {**os.environ, "RJ_URL": server.url, "RJ_TOKEN": ALICE}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ended = time.time()
    assert proc.returncode == 0, err
    assert err == ""
    last_line = float(out.strip().splitlines()[-1])
    assert ended - last_line < 2.0
