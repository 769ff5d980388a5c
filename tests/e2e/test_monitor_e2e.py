"""The progress display against the real local server: a pseudo-terminal and a notebook."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runtime_job import JobStatus, RuntimeService, monitor
from runtime_job.server import LocalRuntimeServer

from .conftest import TOKEN


def read_until_newline(fd: int) -> str:
    received = b""
    while not received.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        received += chunk
    return received.decode()


def test_monitor_on_a_pseudo_terminal(service: RuntimeService) -> None:
    jobs = [service.run("sleep", inputs={"seconds": 0.3}) for _ in range(3)]
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w") as terminal:
            monitor(jobs, file=terminal, interval=0.05)
        text = read_until_newline(master)
    finally:
        os.close(master)
    frames = [frame.strip() for frame in text.strip().split("\r") if frame.strip()]
    assert len(frames) >= 2
    assert all(frame.startswith("3 jobs: ") for frame in frames)
    assert frames[-1].startswith("3 jobs: 3 DONE [")
    assert any("RUNNING" in frame for frame in frames)
    assert all(job.status() is JobStatus.DONE for job in jobs)


def test_monitor_plain_lines_for_a_failing_job(service: RuntimeService) -> None:
    job = service.run("fail", inputs={"message": "shown as ERROR"})
    out = io.StringIO()
    monitor(job, file=out, interval=0.05)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith(f"Job {job.job_id()} (fail): ERROR [")


def test_monitor_in_a_jupyter_notebook(server: LocalRuntimeServer, tmp_path: Path) -> None:
    nbformat: Any = pytest.importorskip("nbformat")
    nbclient: Any = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    setup = textwrap.dedent(
        f"""
        from IPython.display import HTML
        from runtime_job import RuntimeService, jobs_html, monitor
        service = RuntimeService(channel="local", url={server.url!r}, token={TOKEN!r})
        jobs = [service.run("sleep", inputs={{"seconds": 0.3}}) for _ in range(3)]
        """
    )
    cells = [
        setup,
        "monitor(jobs, interval=0.1)",
        'handle = monitor(service.run("sleep", inputs={"seconds": 0.5}), interval=0.1,\n'
        "                 background=True)\n"
        'print("returned at once:", not handle.done)',
        "handle.join(30)",
        "jobs[0]",
        "HTML(jobs_html(jobs))",
        "service.close()",
    ]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [cell.outputs for cell in notebook.cells]

    # The foreground monitor: one display, updated in place to its final state.
    (display,) = outputs[1]
    assert display.output_type == "display_data"
    assert display.data["text/plain"].startswith("3 jobs: 3 DONE [")
    assert '<progress value="3" max="3">' in display.data["text/html"]
    assert display.data["text/html"].count(">DONE<") == 3

    # The background monitor: the cell returned at once, and its display kept updating.
    background = [o for o in outputs[2] if o.output_type == "display_data"]
    printed = "".join(o.text for o in outputs[2] if o.output_type == "stream")
    assert printed.strip() == "returned at once: True"
    assert len(background) == 1 and "): DONE [" in background[0].data["text/plain"]
    assert outputs[3][0].data["text/plain"] == "True"

    # A job and a list of jobs render as HTML tables.
    job_html = outputs[4][0].data["text/html"]
    assert job_html.startswith('<table class="runtime-job">') and ">DONE<" in job_html
    table = outputs[5][0].data["text/html"]
    assert table.count("<tr>") == 4 and table.count(">DONE<") == 3
