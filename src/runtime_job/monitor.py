"""Progress for jobs: a live status line in terminals, an updating table in notebooks.

:func:`monitor` shows where one job or many stand until they are all final:

- in a terminal (a TTY), one status line rewritten in place (carriage return);
- in a file, a pipe or a log (not a TTY), a plain line each time a status changes;
- in a Jupyter notebook (IPython importable and a kernel running, and no ``file`` given),
  an HTML display updated in place (``display_id``), with a plain-text fallback.

The statuses come from status callbacks (:meth:`RuntimeJob.add_status_callback`), so the
shared completion watcher polls the jobs with a back-off and learns completion from their
streams; the monitor itself never calls the server. ``monitor(..., background=True)``
returns at once with a :class:`Monitor` handle (``stop()``, ``join()``) and redraws from its
own thread, so a notebook kernel stays free.

:func:`job_html` (a job's ``_repr_html_``) and :func:`jobs_html` render jobs as HTML tables.

Example::

    from runtime_job import monitor

    jobs = [service.run("sleep", inputs={"seconds": 1}) for _ in range(5)]
    monitor(jobs)                      # blocks until all are final
    handle = monitor(jobs, background=True)
    ...
    handle.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import html
import importlib
import logging
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, overload

from ._job_stream import core_of
from .exceptions import IBMInputValueError
from .status import JOB_FINAL_STATES, JobStatus
from .timing import clock

if TYPE_CHECKING:
    from .job import RuntimeJob

logger = logging.getLogger(__name__)

MONITOR_THREAD_NAME = "runtime-job-monitor"
"""Name of the thread of a background monitor."""
DEFAULT_INTERVAL = 1.0
"""Seconds between two redraws of a live display."""

_TABLE_ROWS = 50
"""A notebook display lists the jobs one per row up to this many; beyond, a summary."""
_EXIT_JOIN = 0.2
_COLORS = {
    JobStatus.INITIALIZING: "#6f6f6f",
    JobStatus.QUEUED: "#6f6f6f",
    JobStatus.VALIDATING: "#6f6f6f",
    JobStatus.RUNNING: "#0f62fe",
    JobStatus.DONE: "#198038",
    JobStatus.CANCELLED: "#b28600",
    JobStatus.ERROR: "#da1e28",
}


# -- public API ------------------------------------------------------------------------------


@overload
def monitor(
    job_or_jobs: RuntimeJob | Iterable[RuntimeJob],
    *,
    interval: float = ...,
    file: TextIO | None = ...,
    background: Literal[False] = ...,
) -> None: ...


@overload
def monitor(
    job_or_jobs: RuntimeJob | Iterable[RuntimeJob],
    *,
    interval: float = ...,
    file: TextIO | None = ...,
    background: Literal[True],
) -> Monitor: ...


def monitor(
    job_or_jobs: RuntimeJob | Iterable[RuntimeJob],
    *,
    interval: float = DEFAULT_INTERVAL,
    file: TextIO | None = None,
    background: bool = False,
) -> Monitor | None:
    """Show the status of one job or many, live, until every one is final.

    Args:
        job_or_jobs: A :class:`~runtime_job.RuntimeJob` or an iterable of them.
        interval: Seconds between two redraws (a live display also redraws at once on
            every status change).
        file: Where to write the status line (default: a notebook display when running in
            a Jupyter kernel, else ``sys.stdout``). A TTY gets one line rewritten in place;
            anything else gets a plain line per change.
        background: Return at once with a :class:`Monitor` handle and redraw from a
            background thread (``runtime-job-monitor``) instead of blocking until the end.

    Returns:
        The :class:`Monitor` when ``background`` is true, else ``None`` (after the end).

    Raises:
        IBMInputValueError: ``interval`` is not a positive number, or an item is not a job.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise IBMInputValueError(f"interval must be a positive number of seconds, not {interval!r}")
    if _is_job(job_or_jobs):
        jobs: list[RuntimeJob] = [job_or_jobs]  # type: ignore[list-item]
    else:
        jobs = list(job_or_jobs)  # type: ignore[arg-type]
    for job in jobs:
        if not _is_job(job):
            raise IBMInputValueError(f"monitor() takes jobs, not {type(job).__name__}")
    view = _choose_view(file)
    handle = Monitor(jobs, view, float(interval))
    if background:
        handle._start()
        return handle
    handle._run()
    return None


class Monitor:
    """A live progress display, as returned by ``monitor(..., background=True)``.

    Attributes:
        jobs: The jobs shown.
    """

    def __init__(self, jobs: Sequence[RuntimeJob], view: _View, interval: float) -> None:
        self.jobs = list(jobs)
        self._view = view
        self._interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = clock.monotonic()
        self._states = [_known(job) for job in self.jobs]
        self._callbacks: list[tuple[RuntimeJob, Callable[[str, JobStatus, int | None], None]]]
        self._callbacks = []

    def stop(self) -> None:
        """Stop redrawing (the jobs go on); the display shows its last state."""
        with self._lock:
            self._stopping = True
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the display ended (every job final, or :meth:`stop`).

        Args:
            timeout: Seconds to wait, or ``None`` for no limit.

        Returns:
            Whether the display ended.
        """
        return self._finished.wait(timeout)

    @property
    def done(self) -> bool:
        """Whether the display ended."""
        return self._finished.is_set()

    def __repr__(self) -> str:
        state = "done" if self.done else "running"
        return f"<Monitor {len(self.jobs)} jobs, {state}>"

    # -- internals ------------------------------------------------------------------------

    def _start(self) -> None:
        self._attach()
        self._view.start(self._snapshot())
        thread = threading.Thread(
            target=self._loop, args=(False,), name=MONITOR_THREAD_NAME, daemon=True
        )
        self._thread = thread
        _live.add(self)
        thread.start()

    def _run(self) -> None:
        self._attach()
        self._view.start(self._snapshot())
        self._loop(True)

    def _attach(self) -> None:
        for index, job in enumerate(self.jobs):
            callback = self._callback_for(index)
            self._callbacks.append((job, callback))
            job.add_status_callback(callback)

    def _callback_for(self, index: int) -> Callable[[str, JobStatus, int | None], None]:
        def on_status(job_id: str, status: JobStatus, queue_position: int | None) -> None:
            with self._lock:
                self._states[index] = (status, queue_position)
            self._wake.set()

        return on_status

    def _loop(self, foreground: bool) -> None:
        first = True
        try:
            while True:
                snapshot = self._snapshot()
                with self._lock:
                    stopping = self._stopping
                if stopping or snapshot.all_final:
                    self._view.finish(snapshot)
                    return
                if not first:
                    self._view.update(snapshot)
                first = False
                self._wake.wait(self._interval)
                self._wake.clear()
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                self._view.finish(self._snapshot())
            raise
        except Exception:
            if foreground:
                raise
            # The display broke (e.g. its file was closed): stop quietly.
            logger.debug("The job monitor stopped: its display failed.", exc_info=True)
        finally:
            for job, callback in self._callbacks:
                job.remove_status_callback(callback)
            self._callbacks.clear()
            self._finished.set()

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            states = list(self._states)
        # A queued job's place moves without a transition: show the latest one polled.
        for index, (status, _) in enumerate(states):
            state = core_of(self.jobs[index]).state
            if status is JobStatus.QUEUED and state.status is JobStatus.QUEUED:
                states[index] = (status, state.queue_position)
        return _Snapshot(self.jobs, states, clock.monotonic() - self._started_at)


def job_html(job: RuntimeJob) -> str:
    """One job as an HTML table: id, program, status, backend, creation time, tags.

    The status is asked from the server when not final, and the creation time when not
    known (each once; on an error, what is known is shown).

    Args:
        job: The job.

    Returns:
        An HTML fragment.
    """
    status, position = _fresh_status(job)
    try:
        job.creation_date  # noqa: B018 - fetched once, then cached by the job
    except Exception as err:
        logger.debug("Could not get the creation date of job %s: %r", job.job_id(), err)
    backend = _backend_name(job)
    rows = [
        ("Job", html.escape(job.job_id())),
        ("Program", html.escape(job.program_id)),
        ("Status", _status_html(status, position)),
        ("Backend", html.escape(backend)),
        ("Created", html.escape(_created_text(job))),
        ("Tags", html.escape(", ".join(job.tags or []))),
    ]
    rows = [(name, value) for name, value in rows if value]
    cells = "".join(
        f'<tr><th style="text-align:left">{name}</th><td style="text-align:left">{value}</td></tr>'
        for name, value in rows
    )
    return f'<table class="runtime-job">{cells}</table>'


def jobs_html(jobs: Iterable[RuntimeJob], *, refresh: bool = True) -> str:
    """Jobs as an HTML table, one row each (e.g. ``HTML(jobs_html(service.jobs()))``).

    Args:
        jobs: The jobs.
        refresh: Ask the server for the status of each job that is not final (else show
            the last known status).

    Returns:
        An HTML fragment.
    """
    listed = list(jobs)
    states = [_fresh_status(job) if refresh else _known(job) for job in listed]
    return _table(listed, states)


# -- rendering ---------------------------------------------------------------------------


class _Snapshot:
    """The statuses of the monitored jobs at one moment, and how to show them."""

    def __init__(
        self,
        jobs: Sequence[RuntimeJob],
        states: Sequence[tuple[JobStatus, int | None]],
        elapsed: float,
    ) -> None:
        self.jobs = jobs
        self.states = states
        self.elapsed = elapsed
        self.all_final = all(status in JOB_FINAL_STATES for status, _ in states)

    def summary(self) -> str:
        """The status line without the elapsed time (what a plain log line shows)."""
        if len(self.jobs) == 1:
            job, (status, position) = self.jobs[0], self.states[0]
            return f"Job {job.job_id()} ({job.program_id}): {_status_text(status, position)}"
        counts = Counter(status for status, _ in self.states)
        parts = [f"{counts[status]} {status.name}" for status in JobStatus if counts[status]]
        noun = "job" if len(self.jobs) == 1 else "jobs"
        return f"{len(self.jobs)} {noun}: " + ", ".join(parts)

    def line(self) -> str:
        """The status line with the elapsed time."""
        return f"{self.summary()} [{_elapsed_text(self.elapsed)}]"

    def html(self) -> str:
        """The notebook display: a summary, a progress bar, and a table of the jobs."""
        finished = sum(1 for status, _ in self.states if status in JOB_FINAL_STATES)
        head = (
            f"<p><b>{html.escape(self.summary())}</b> "
            f"<span>[{_elapsed_text(self.elapsed)}]</span></p>"
        )
        if len(self.jobs) > 1:
            head += f'<progress value="{finished}" max="{len(self.jobs)}"></progress>'
        body = ""
        if len(self.jobs) <= _TABLE_ROWS:
            body = _table(self.jobs, self.states)
        return f'<div class="runtime-job-monitor">{head}{body}</div>'


def _table(jobs: Sequence[RuntimeJob], states: Sequence[tuple[JobStatus, int | None]]) -> str:
    """A table of jobs; the creation time only when some job knows it (no request)."""
    created = [_created_text(job) for job in jobs]
    names = ["Job", "Program", "Status", "Backend"] + (["Created"] if any(created) else [])
    header = "".join(f'<th style="text-align:left">{name}</th>' for name in names)
    rows = []
    for job, (status, position), when in zip(jobs, states, created, strict=True):
        backend = _backend_name(job)
        cells = [
            html.escape(job.job_id()),
            html.escape(job.program_id),
            _status_html(status, position),
            html.escape(backend),
        ] + ([html.escape(when)] if any(created) else [])
        rows.append("<tr>" + "".join(f'<td style="text-align:left">{c}</td>' for c in cells))
        rows[-1] += "</tr>"
    return f'<table class="runtime-job-list"><tr>{header}</tr>{"".join(rows)}</table>'


def _created_text(job: RuntimeJob) -> str:
    """The job's creation time in local time, when known (never asks the server)."""
    known = core_of(job).known
    if not known.get("created"):
        return ""
    try:
        created = job.creation_date
    except ValueError:
        return str(known["created"])
    return created.strftime("%Y-%m-%d %H:%M:%S") if created else ""


def _backend_name(job: RuntimeJob) -> str:
    """The name of the job's backend when known (never asks the server)."""
    backend = core_of(job).known.get("backend")
    return str(getattr(backend, "name", "")) if backend is not None else ""


def _known(job: RuntimeJob) -> tuple[JobStatus, int | None]:
    """The job's last known status and queue position (no request)."""
    state = core_of(job).state
    return state.status, state.queue_position


def _is_job(value: object) -> bool:
    try:
        core_of(value)
    except TypeError:
        return False
    return True


def _status_text(status: JobStatus, position: int | None) -> str:
    if status is JobStatus.QUEUED and position is not None:
        return f"QUEUED (position {position})"
    return status.name


def _status_html(status: JobStatus, position: int | None) -> str:
    text = html.escape(_status_text(status, position))
    return f'<span style="color:{_COLORS[status]};font-weight:bold">{text}</span>'


def _elapsed_text(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _fresh_status(job: RuntimeJob) -> tuple[JobStatus, int | None]:
    try:
        job.status()
    except Exception as err:  # show what we know
        logger.debug("Could not refresh the status of job %s: %r", job.job_id(), err)
    return _known(job)


# -- views -----------------------------------------------------------------------------------


class _View(Protocol):
    def start(self, snapshot: _Snapshot) -> None: ...

    def update(self, snapshot: _Snapshot) -> None: ...

    def finish(self, snapshot: _Snapshot) -> None: ...


class _TerminalView:
    """A status line in a file: rewritten in place on a TTY, else a line per change."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        try:
            self._tty = bool(file.isatty())
        except (AttributeError, ValueError):
            self._tty = False
        self._width = 0
        self._last = ""

    def start(self, snapshot: _Snapshot) -> None:
        self.update(snapshot)

    def update(self, snapshot: _Snapshot) -> None:
        if self._tty:
            line = snapshot.line()
            pad = " " * max(0, self._width - len(line))
            self._width = len(line)
            self._write(f"\r{line}{pad}")
        elif snapshot.summary() != self._last:
            self._last = snapshot.summary()
            self._write(snapshot.line() + "\n")

    def finish(self, snapshot: _Snapshot) -> None:
        self.update(snapshot)
        if self._tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()


class _NotebookView:
    """An HTML display in a Jupyter notebook, updated in place through its display id."""

    def __init__(self, display: Callable[..., Any]) -> None:
        self._display = display
        self._handle: Any = None
        self._last = ""

    def start(self, snapshot: _Snapshot) -> None:
        self._handle = self._display(self._bundle(snapshot), raw=True, display_id=True)

    def update(self, snapshot: _Snapshot) -> None:
        bundle = self._bundle(snapshot)
        if bundle["text/html"] != self._last:
            self._last = bundle["text/html"]
            self._handle.update(bundle, raw=True)

    def finish(self, snapshot: _Snapshot) -> None:
        self.update(snapshot)

    @staticmethod
    def _bundle(snapshot: _Snapshot) -> dict[str, str]:
        return {"text/html": snapshot.html(), "text/plain": snapshot.line()}


def _choose_view(file: TextIO | None) -> _View:
    if file is not None:
        return _TerminalView(file)
    display = _kernel_display()
    if display is not None:
        return _NotebookView(display)
    return _TerminalView(sys.stdout)


def _kernel_display() -> Callable[..., Any] | None:
    """IPython's ``display`` when running in a Jupyter kernel, else ``None``.

    A kernel has always imported IPython already, so IPython is never imported here.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        shell = ipython.get_ipython()
        if shell is None or getattr(shell, "kernel", None) is None:
            return None
        display: Callable[..., Any] = importlib.import_module("IPython.display").display
    except Exception:  # an IPython we do not understand: plain text
        return None
    return display


# -- interpreter exit ------------------------------------------------------------------------

_live: weakref.WeakSet[Monitor] = weakref.WeakSet()


def _stop_at_exit() -> None:
    monitors = list(_live)
    for handle in monitors:
        handle.stop()
    for handle in monitors:
        with contextlib.suppress(Exception):
            handle.join(_EXIT_JOIN)


atexit.register(_stop_at_exit)


__all__ = ["DEFAULT_INTERVAL", "MONITOR_THREAD_NAME", "Monitor", "job_html", "jobs_html", "monitor"]
