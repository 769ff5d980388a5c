"""The progress display: terminal line, plain lines, notebook display (shim), HTML."""

from __future__ import annotations

import io
import os
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_job import jobs_html, monitor
from runtime_job.exceptions import IBMInputValueError
from runtime_job.futures import default_watcher, hooks_for
from runtime_job.monitor import MONITOR_THREAD_NAME, Monitor, job_html
from runtime_job.status import JobStatus

from .fakes import FakeRuntimeClient
from .test_futures import QueueingClient, make_job, wait_until

WAIT = 10.0


class TtyBuffer(io.StringIO):
    """A captured terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _nothing_left_watched() -> Iterator[None]:
    yield
    wait_until(lambda: default_watcher().watched_count == 0)
    wait_until(lambda: not any(t.name == MONITOR_THREAD_NAME for t in threading.enumerate()))


# ---------------------------------------------------------------------------------- terminal


def test_terminal_line_is_rewritten_in_place_until_done() -> None:
    client = QueueingClient(positions=[2])
    job = make_job(client, statuses=["QUEUED", "QUEUED", "RUNNING", "RUNNING", "COMPLETED"])
    out = TtyBuffer()
    assert monitor(job, file=out, interval=0.02) is None
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    frames = [frame.rstrip() for frame in text.rstrip("\n").split("\r") if frame]
    prefix = f"Job {job.job_id()} (my-program): "
    assert all(frame.startswith(prefix) for frame in frames)
    states = [frame[len(prefix) :].rsplit(" [", 1)[0] for frame in frames]
    distinct = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert distinct == ["INITIALIZING", "QUEUED (position 2)", "RUNNING", "DONE"]
    assert frames[-1].endswith("]")
    assert job.status() is JobStatus.DONE
    assert hooks_for(job).status_callbacks == []


def test_a_shorter_line_blanks_out_the_rest_of_the_longer_one() -> None:
    client = QueueingClient(positions=[12345])
    job = make_job(client, statuses=["QUEUED", "COMPLETED"])
    out = TtyBuffer()
    monitor(job, file=out, interval=0.02)
    frames = [f for f in out.getvalue().rstrip("\n").split("\r") if f]
    longest = max(len(f) for f in frames)
    assert len(frames[-1]) >= longest - 1 or frames[-1].endswith(" ")


def test_plain_file_gets_one_line_per_change() -> None:
    client = FakeRuntimeClient()
    jobs = [make_job(client, statuses=["QUEUED", "RUNNING", "COMPLETED"]) for _ in range(3)]
    jobs.append(make_job(client, statuses=["RUNNING", "FAILED"], result="Traceback: x"))
    out = io.StringIO()
    monitor(jobs, file=out, interval=0.02)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("4 jobs: 4 INITIALIZING [")
    assert lines[-1].startswith("4 jobs: 3 DONE, 1 ERROR [")
    summaries = [line.rsplit(" [", 1)[0] for line in lines]
    assert len(summaries) == len(set(summaries))  # a line only when something changed


def test_monitor_on_a_real_pseudo_terminal() -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=True) as terminal:
            assert terminal.isatty()
            client = FakeRuntimeClient()
            job = make_job(client, statuses=["RUNNING", "COMPLETED"])
            monitor(job, file=terminal, interval=0.02)
        received = b""
        while not received.endswith(b"\n") and not received.endswith(b"\r\n"):
            received += os.read(master, 4096)
    finally:
        os.close(master)
    text = received.decode()
    assert "\r" in text
    assert f"Job {job.job_id()} (my-program): DONE [" in text


def test_monitor_writes_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    job.result()
    monitor(job)
    assert capsys.readouterr().out.startswith(f"Job {job.job_id()} (my-program): DONE [00:00]")


def test_monitor_of_final_jobs_returns_at_once() -> None:
    client = FakeRuntimeClient()
    jobs = [make_job(client, statuses=["COMPLETED"]) for _ in range(2)]
    for job in jobs:
        job.status()
    out = io.StringIO()
    monitor(jobs, file=out, interval=60)
    assert out.getvalue().startswith("2 jobs: 2 DONE [00:00]")


def test_monitor_checks_its_arguments() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    with pytest.raises(IBMInputValueError, match="interval"):
        monitor(job, interval=0)
    with pytest.raises(IBMInputValueError, match="jobs"):
        monitor([job, "not a job"])  # type: ignore[list-item]


# -------------------------------------------------------------------------------- background


def test_background_monitor_returns_at_once_and_joins() -> None:
    client = FakeRuntimeClient()
    fake = client.add_job("bg", statuses=["RUNNING"])
    job = make_job(client, "bg")
    out = io.StringIO()
    handle = monitor(job, file=out, interval=0.02, background=True)
    assert isinstance(handle, Monitor) and not handle.done
    assert any(t.name == MONITOR_THREAD_NAME for t in threading.enumerate())
    wait_until(lambda: "RUNNING" in out.getvalue())
    fake.statuses, fake.step = ["COMPLETED"], 0
    assert handle.join(WAIT) and handle.done
    assert out.getvalue().splitlines()[-1].startswith(f"Job {job.job_id()} (my-program): DONE")
    assert "done" in repr(handle)


def test_stopping_a_background_monitor_leaves_the_job_alone() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING"])
    out = io.StringIO()
    handle = monitor(job, file=out, interval=0.02, background=True)
    wait_until(lambda: "RUNNING" in out.getvalue())
    handle.stop()
    assert handle.join(WAIT)
    assert hooks_for(job).status_callbacks == []
    assert client.count("job_cancel") == 0
    # Nothing keeps polling the job once its only watcher is gone.
    wait_until(lambda: default_watcher().watched_count == 0)


def test_a_broken_file_stops_a_background_monitor_quietly() -> None:
    client = FakeRuntimeClient()
    fake = client.add_job("broken-file", statuses=["RUNNING"])
    job = make_job(client, "broken-file")
    out = io.StringIO()
    handle = monitor(job, file=out, interval=0.02, background=True)
    wait_until(lambda: "RUNNING" in out.getvalue())
    out.close()
    fake.statuses, fake.step = ["COMPLETED"], 0  # the next line would go to a closed file
    assert handle.join(WAIT)
    assert hooks_for(job).status_callbacks == []


# ------------------------------------------------------------------- notebook (IPython shim)


class FakeDisplayHandle:
    def __init__(self, outputs: list[tuple[str, dict[str, str]]]) -> None:
        self.outputs = outputs

    def update(self, obj: dict[str, str], raw: bool = False) -> None:
        assert raw
        self.outputs.append(("update", obj))


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """A stand-in for IPython in a running kernel: records displays and updates."""
    outputs: list[tuple[str, dict[str, str]]] = []

    def display(obj: dict[str, str], raw: bool = False, display_id: Any = None) -> Any:
        assert raw and display_id is True
        outputs.append(("display", obj))
        return FakeDisplayHandle(outputs)

    shell = types.SimpleNamespace(kernel=object())
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    return outputs


def test_notebook_display_is_updated_in_place(notebook: list[tuple[str, Any]]) -> None:
    client = FakeRuntimeClient()
    jobs = [make_job(client, statuses=["QUEUED", "RUNNING", "COMPLETED"]) for _ in range(2)]
    monitor(jobs, interval=0.02)
    kinds = [kind for kind, _ in notebook]
    assert kinds[0] == "display" and set(kinds[1:]) == {"update"}
    final = notebook[-1][1]
    assert set(final) == {"text/html", "text/plain"}
    assert final["text/plain"].startswith("2 jobs: 2 DONE [")
    html = final["text/html"]
    assert '<progress value="2" max="2">' in html
    for job in jobs:
        assert job.job_id() in html
    assert html.count(">DONE<") == 2


def test_background_notebook_display_is_created_in_the_calling_thread(
    notebook: list[tuple[str, Any]],
) -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["RUNNING", "COMPLETED"])
    handle = monitor(job, interval=0.02, background=True)
    assert notebook and notebook[0][0] == "display"  # before monitor() returned
    assert handle.join(WAIT)
    assert ">DONE<" in notebook[-1][1]["text/html"]


def test_a_file_wins_over_the_notebook(notebook: list[tuple[str, Any]]) -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    out = io.StringIO()
    monitor(job, file=out, interval=0.02)
    assert notebook == [] and "DONE" in out.getvalue()


def test_ipython_without_a_kernel_means_plain_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    monitor(job, interval=0.02)
    assert "DONE" in capsys.readouterr().out


# -------------------------------------------------------------------------------------- HTML


def test_job_repr_html_shows_the_fresh_status_escaped() -> None:
    client = FakeRuntimeClient()
    fake = client.add_job("<script>", program_id="a&b", statuses=["RUNNING"])
    job = make_job(client, fake.job_id)
    job._tags = ["x<y"]
    html = job._repr_html_()
    assert html.startswith('<table class="runtime-job">')
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "a&amp;b" in html and "x&lt;y" in html
    assert ">RUNNING<" in html


def test_job_html_shows_the_known_status_when_the_server_fails() -> None:
    class Broken(FakeRuntimeClient):
        def job_get(self, job_id: str, exclude_params: bool | None = None) -> dict[str, Any]:
            raise RuntimeError("down")

    job = make_job(Broken(), statuses=["RUNNING"])
    assert ">INITIALIZING<" in job_html(job)


def test_jobs_html_is_one_table_row_per_job() -> None:
    client = FakeRuntimeClient()
    jobs = [make_job(client, statuses=["COMPLETED"]) for _ in range(3)]
    html = jobs_html(jobs)
    assert html.count("<tr>") == 4  # header and three jobs
    assert html.count(">DONE<") == 3
    calls = len(client.calls)
    jobs_html(jobs, refresh=False)
    assert len(client.calls) == calls


def test_jobs_html_without_refresh_never_asks_the_server() -> None:
    client = FakeRuntimeClient()
    jobs = [make_job(client, statuses=["RUNNING"]) for _ in range(2)]
    html = jobs_html(jobs, refresh=False)
    assert client.calls == [] and html.count(">INITIALIZING<") == 2


def test_job_html_shows_the_creation_time_in_local_time() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, statuses=["COMPLETED"])
    job._creation_date = "2023-06-20T12:00:25.000000Z"
    expected = job.creation_date
    assert expected is not None
    assert expected.strftime("%Y-%m-%d %H:%M:%S") in job_html(job)


def test_tables_show_the_creation_time_only_when_known() -> None:
    client = FakeRuntimeClient()
    jobs = [make_job(client, statuses=["COMPLETED"]) for _ in range(2)]
    assert "Created" not in jobs_html(jobs, refresh=False)
    jobs[0]._creation_date = "2023-06-20T12:00:25Z"
    table = jobs_html(jobs, refresh=False)
    assert '<th style="text-align:left">Created</th>' in table
    assert table.count("<td") == 2 * 5  # every row has the column, empty when unknown


def test_the_queue_position_moves_without_a_transition() -> None:
    client = QueueingClient(positions=[3, 3, 3, 1, 1, 1])
    job = make_job(client, statuses=["QUEUED"] * 6 + ["RUNNING", "COMPLETED"])
    out = io.StringIO()
    monitor(job, file=out, interval=0.01)
    summaries = [line.rsplit(" [", 1)[0].split(": ", 1)[1] for line in out.getvalue().splitlines()]
    assert "QUEUED (position 3)" in summaries and "QUEUED (position 1)" in summaries
    assert summaries[-1] == "DONE"
