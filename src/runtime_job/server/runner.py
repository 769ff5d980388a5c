"""The runner: a bounded pool of warm worker processes and the thread that drives it.

One thread (``runtime-job-runner``) owns every worker. It waits on the workers'
connections, their process sentinels and a wake-up socket, and in each round:

1. takes the commands of other threads (submit, cancel);
2. writes what workers reported (interim results, logs, results) to the store, several
   messages per transaction, and only then notifies stream subscribers;
3. replaces workers that died, failing the job a dead worker was running;
4. cancels jobs that ran past their ``cost`` (reason ``RAN TOO LONG``) by killing their
   worker;
5. hands queued jobs (first in, first out) to idle workers.

No exception ends the thread. A write that fails for want of storage (disk full, I/O
error: :class:`~runtime_job.server.store.StorageUnavailable`) is held, in order, and
retried (0.1 s doubling to 2 s, and at once when a job is submitted): meanwhile the runner
reads nothing more from the workers (their programs wait on the pipe), starts no job, and
once a write works again, the held output is stored and everything goes on, running jobs
included. Any other failure to store a job's output, or to start a job, ends that job
``FAILED`` (reason ``server error``) and the runner goes on; an unexpected error of a whole
round is logged and the next round follows after a short pause.

Programs never run in the server process. Workers are fresh interpreters
(``python -m runtime_job.server.worker``, never a ``fork`` of the threaded server), each in
its own process group, talking to the runner over a socket pair.

Example::

    runner = Runner(store, ProgramRegistry(), workers=2, notify=print)
    runner.start()
    runner.submit(job_id)
    runner.stop()
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .programs import ProgramRegistry
from .store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    REASON_RAN_TOO_LONG,
    REASON_SERVER_ERROR,
    REASON_STOPPED,
    RUNNING,
    StorageUnavailable,
    Store,
)

logger = logging.getLogger(__name__)

_BATCH = 512
"""Most worker messages written in one transaction."""
_POLL_WITHOUT_SENTINEL = 0.5
"""Seconds between exit checks of a worker when the platform has no process descriptor."""
_READY_TIMEOUT = 60.0
"""Seconds :meth:`Runner.start` waits for the workers to be warm."""
_RETRY_MIN = 0.1
_RETRY_MAX = 2.0
"""Seconds between attempts to write while storage fails (doubling from min to max)."""
_ROUND_PAUSE_MAX = 1.0
"""Longest pause after a runner round failed, before the next round."""

_Op = tuple[Any, ...]
"""A write the runner makes, held while storage fails:
``("interim" | "log", job_id, text)`` or
``("finish" | "fail", job_id, status, reason, text, epoch seconds, from_states)``."""


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    sentinel: int | None
    ready: bool = False
    job_id: str | None = None
    deadline: float | None = None
    killed: bool = False
    started: float = field(default_factory=time.monotonic)
    qiskit_version: str | None = None


def _worker_output() -> int:
    """Where workers write at the file-descriptor level: the server's stderr, if it has one."""
    try:
        os.fstat(2)
    except OSError:
        return subprocess.DEVNULL
    return 2


def _worker_env() -> dict[str, str]:
    """The workers' environment: ours, with this package importable."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    current = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root + (os.pathsep + current if current else "")
    return env


class Runner:
    """A pool of worker processes running the queued jobs.

    Args:
        store: Where jobs live.
        programs: The program registry.
        workers: Number of worker processes (at least 1).
        notify: Called (from the runner thread) with a job id after its stored state or
            stream changed.
        hold: Seconds a queued job waits for a client on its stream before it runs anyway
            (0: jobs never wait). Emulates a service that starts a job when its client
            listens, for benchmarks and tests of many concurrent streams.
    """

    def __init__(
        self,
        store: Store,
        programs: ProgramRegistry,
        workers: int,
        notify: Callable[[str], None],
        hold: float = 0.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not hold >= 0:
            raise ValueError("hold must be a number of seconds, 0 or more")
        self._hold = float(hold)
        self._hold_until: dict[str, float] = {}  # held jobs: when they run anyway
        self._watched: set[str] = set()  # held jobs whose stream has a client
        self._store = store
        self._programs = programs
        self._size = workers
        self._notify = notify
        self._lock = threading.Lock()
        self._commands: list[tuple[str, str]] = []
        self._pending: collections.deque[str] = collections.deque()
        self._workers: list[_Worker] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._spawn_failures = 0
        self._spawn_after = 0.0
        self._all_ready = threading.Event()
        self._backlog: collections.deque[_Op] = collections.deque()  # writes held
        self._storage_down = False
        self._retry_at = 0.0
        self._retry_delay = _RETRY_MIN

    # -- API for other threads -----------------------------------------------------------------

    def start(self) -> None:
        """Start the workers and the runner thread (see :meth:`wait_ready`)."""
        for _ in range(self._size):
            self._spawn()
        self._thread = threading.Thread(target=self._loop, name="runtime-job-runner", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> bool:
        """Wait until every first worker is warm; false (and a warning) on time-out."""
        if self._all_ready.wait(timeout):
            return True
        logger.warning("Worker processes not ready after %.1f s; continuing.", timeout)
        return False

    def submit(self, job_id: str) -> None:
        """Queue a job (already stored as ``QUEUED``)."""
        self._command("submit", job_id)

    def cancel(self, job_id: str) -> None:
        """Stop a job already marked final in the store: drop it or kill its worker."""
        self._command("cancel", job_id)

    def stream_opened(self, job_id: str) -> None:
        """A client opened the job's stream: a job held for it may run (see ``hold``)."""
        if self._hold:
            self._command("watched", job_id)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers."""
        with self._lock:
            return [w.process.pid for w in self._workers]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and every worker (killing busy ones); bounded by ``timeout``."""
        with self._lock:
            self._stopping = True
        self._wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("Runner thread did not stop within %.1f s.", timeout)
        else:
            self._shutdown_workers(timeout)
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    # -- internals -----------------------------------------------------------------------------

    def _command(self, name: str, job_id: str) -> None:
        with self._lock:
            self._commands.append((name, job_id))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _spawn(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        try:
            fd = child_sock.fileno()
            process = subprocess.Popen(
                [sys.executable, "-m", "runtime_job.server.worker", str(fd), str(os.getpid())],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=_worker_output(),
                stderr=_worker_output(),
                process_group=0,
                env=_worker_env(),
            )
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        with contextlib.suppress(OSError, ValueError):
            conn.send(("path", list(sys.path)))
        sentinel: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            sentinel = os.pidfd_open(process.pid)
        with self._lock:
            self._workers.append(_Worker(process=process, conn=conn, sentinel=sentinel))

    def _loop(self) -> None:
        failures = 0
        try:
            while True:
                with self._lock:
                    commands, self._commands = self._commands, []
                    stopping = self._stopping
                if stopping:
                    break
                try:
                    self._take(commands)
                    self._round()
                    failures = 0
                except Exception:
                    # Last resort: a bug of the runner's own must not stop every user's jobs.
                    failures += 1
                    pause = min(_ROUND_PAUSE_MAX, 0.01 * 2**failures)
                    if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... in a row
                        logger.exception(
                            "Runner round failed (%d in a row); the runner goes on in %.2f s.",
                            failures,
                            pause,
                        )
                    self._pause(pause)
        finally:
            self._shutdown_workers(5.0)

    def _take(self, commands: list[tuple[str, str]]) -> None:
        """Apply other threads' commands to the runner's state."""
        for name, job_id in commands:
            if name == "submit":
                self._pending.append(job_id)
                if self._hold:
                    self._hold_until[job_id] = time.monotonic() + self._hold
                # The API just stored this job, so storage may be back: retry now.
                self._retry_at = 0.0
            elif name == "cancel":
                self._cancel(job_id)
            elif name == "watched" and job_id in self._hold_until:
                self._watched.add(job_id)

    def _round(self) -> None:
        """One round: write held output, start workers and jobs, wait, read what came."""
        if self._storage_down and time.monotonic() >= self._retry_at:
            self._flush_backlog()
        self._replenish()
        self._dispatch()
        waitables: list[Any] = [self._wake_r]
        for w in self._workers:
            if not self._backlog:  # else leave output in the pipe: the worker waits
                waitables.append(w.conn)
            if w.sentinel is not None:
                waitables.append(w.sentinel)
        ready = wait(waitables, self._timeout())
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        for w in list(self._workers):
            exited = w.sentinel is not None and w.sentinel in ready
            eof = self._drain(w) if (w.conn in ready or exited) else False
            if eof or exited or (w.sentinel is None and w.process.poll() is not None):
                if not eof:
                    self._drain(w)
                self._reap(w)
        self._enforce_deadlines()

    def _pause(self, seconds: float) -> None:
        """Wait up to ``seconds``, or less if another thread wakes the runner meanwhile."""
        with contextlib.suppress(OSError, ValueError):
            while self._wake_r.recv(4096):  # old wake-ups: commands wait for the next round
                pass
        with contextlib.suppress(OSError, ValueError):
            wait([self._wake_r], seconds)

    def _timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = [w.deadline for w in self._workers if w.deadline is not None and w.job_id]
        if self._spawn_after > now and len(self._workers) < self._size:
            deadlines.append(self._spawn_after)
        if any(w.sentinel is None for w in self._workers):
            deadlines.append(now + _POLL_WITHOUT_SENTINEL)
        held = [t for job_id, t in self._hold_until.items() if job_id not in self._watched]
        if held:
            deadlines.append(min(held))
        if self._storage_down and self._retry_at > now and (self._backlog or self._pending):
            deadlines.append(self._retry_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _replenish(self) -> None:
        if self._stopping or time.monotonic() < self._spawn_after:
            return
        while len(self._workers) < self._size:
            try:
                self._spawn()
            except OSError as err:  # no processes or descriptors left: try again later
                self._spawn_failures += 1
                delay = min(30.0, 0.5 * 2 ** (self._spawn_failures - 1))
                self._spawn_after = time.monotonic() + delay
                logger.error("Cannot start a worker process (%s); retrying in %.1f s.", err, delay)
                return

    def _dispatch(self) -> None:
        held: list[str] = []
        try:
            self._dispatch_some(held)
        finally:
            self._pending.extendleft(reversed(held))  # still first in line, in order

    def _held(self, job_id: str) -> bool:
        until = self._hold_until.get(job_id)
        if until is None:
            return False
        if job_id not in self._watched and time.monotonic() < until:
            return True
        del self._hold_until[job_id]
        self._watched.discard(job_id)
        return False

    def _dispatch_some(self, held: list[str]) -> None:
        while self._pending:
            if self._storage_down and time.monotonic() < self._retry_at:
                return  # jobs wait in order until the store takes writes again
            idle = next((w for w in self._workers if w.ready and w.job_id is None), None)
            if idle is None:
                return
            job_id = self._pending.popleft()
            if self._held(job_id):
                held.append(job_id)
                continue
            try:
                self._start(idle, job_id)
            except StorageUnavailable as err:
                self._pending.appendleft(job_id)
                self._storage_failed(err)
                return
            except Exception as err:
                logger.exception("Could not start job %s; it fails.", job_id)
                self._finish(
                    job_id,
                    FAILED,
                    REASON_SERVER_ERROR,
                    f"The server could not start this job ({type(err).__name__}).\n",
                    from_states=(QUEUED, RUNNING),
                )

    def _start(self, idle: _Worker, job_id: str) -> None:
        """Mark a job running and hand it to an idle worker (or fail it)."""
        job = self._store.get_job(job_id)
        if job is None:
            return
        started = self._store.mark_running(job_id, time.time(), idle.qiskit_version)
        self._storage_ok()
        if not started:
            return
        program = self._programs.get(job.program_id)
        if program is None:
            self._finish(
                job_id,
                FAILED,
                "program not available",
                f"Program {job.program_id!r} is not available on this server.\n",
            )
            return
        params = self._store.get_params(job_id) or "{}"
        spec: str | bytes = program if isinstance(program, str) else pickle.dumps(program)
        try:
            idle.conn.send(("run", job_id, spec, params, job.backend, job.log_level))
        except (OSError, ValueError):
            self._finish(job_id, FAILED, "worker unavailable", "The worker process died.\n")
            return
        idle.job_id = job_id
        idle.deadline = time.monotonic() + job.cost if job.cost else None
        self._safe_notify(job_id)

    # -- storing what happened: store, then notify ---------------------------------------------

    def _finish(
        self,
        job_id: str,
        status: str,
        reason: str | None,
        text: str | None,
        from_states: tuple[str, ...] = (RUNNING,),
    ) -> None:
        self._record([("finish", job_id, status, reason, text, time.time(), from_states)])

    def _record(self, ops: list[_Op]) -> None:
        """Store ``ops`` and notify their jobs; hold them (in order) while storage fails."""
        if not ops:
            return
        if self._backlog:  # behind what is already held, in order
            self._backlog.extend(ops)
            return
        self._write(ops)

    def _write(self, ops: list[_Op]) -> bool:
        """Store ``ops`` in one transaction, then notify; false (ops held) if storage fails.

        When the batch fails for another reason (a bug, text SQLite refuses), the ops are
        stored one by one, and the job of one that still fails ends ``FAILED`` with reason
        ``server error``: one job's bad output never stops the others.
        """
        try:
            touched = self._store_ops(ops)
        except StorageUnavailable as err:
            self._backlog.extendleft(reversed(ops))
            self._storage_failed(err)
            return False
        except Exception:
            touched, stored = self._store_each(ops)
            if not stored:
                self._notify_all(touched)
                return False
        self._storage_ok()
        self._notify_all(touched)
        return True

    def _store_each(self, ops: list[_Op]) -> tuple[set[str], bool]:
        touched: set[str] = set()
        queue = collections.deque(ops)
        while queue:
            op = queue.popleft()
            try:
                touched |= self._store_ops([op])
            except StorageUnavailable as err:
                queue.appendleft(op)
                self._backlog.extendleft(reversed(queue))
                self._storage_failed(err)
                return touched, False
            except Exception as err:
                job_id = op[1]
                if op[0] == "fail":
                    logger.exception("Could not fail job %s; its state is left as it was.", job_id)
                    continue
                logger.exception("Could not store the %s of job %s; the job fails.", op[0], job_id)
                queue.appendleft(
                    (
                        "fail",
                        job_id,
                        FAILED,
                        REASON_SERVER_ERROR,
                        f"The server could not store this job's output ({type(err).__name__}); "
                        "the job was stopped.\n",
                        time.time(),
                        (QUEUED, RUNNING),
                    )
                )
                self._abandon(job_id)
        return touched, True

    def _store_ops(self, ops: list[_Op]) -> set[str]:
        """Write ``ops`` in one transaction; the ids of the jobs whose stream changed."""
        touched: set[str] = set()
        with self._store.write() as tx:
            for op in ops:
                kind, job_id = op[0], op[1]
                if kind == "interim":
                    if tx.add_interim(job_id, op[2]) is not None:
                        touched.add(job_id)
                elif kind == "log":
                    tx.append_log(job_id, op[2])
                elif tx.finish(job_id, op[2], op[3], op[4], op[5], op[6]):
                    touched.add(job_id)
        return touched

    def _flush_backlog(self) -> bool:
        """Write the held ops, oldest first; true once none is left."""
        while self._backlog:
            count = min(_BATCH, len(self._backlog))
            ops = [self._backlog.popleft() for _ in range(count)]
            if not self._write(ops):
                return False
        return True

    def _storage_failed(self, err: StorageUnavailable) -> None:
        now = time.monotonic()
        if self._storage_down:
            self._retry_delay = min(_RETRY_MAX, self._retry_delay * 2)
        else:
            self._storage_down = True
            self._retry_delay = _RETRY_MIN
            logger.error(
                "%s Job output is held and queued jobs wait; retrying until it works.", err
            )
        self._retry_at = now + self._retry_delay

    def _storage_ok(self) -> None:
        if self._storage_down:
            self._storage_down = False
            logger.warning("The server's storage works again; jobs go on.")

    def _notify_all(self, job_ids: set[str]) -> None:
        for job_id in job_ids:
            self._safe_notify(job_id)

    def _safe_notify(self, job_id: str) -> None:
        try:
            self._notify(job_id)
        except Exception:
            logger.exception("Could not notify the streams of job %s", job_id)

    def _abandon(self, job_id: str) -> None:
        """Stop the worker running a job the server has just failed (it is replaced)."""
        for w in self._workers:
            if w.job_id == job_id and not w.killed:
                self._kill(w)

    def _drain(self, w: _Worker) -> bool:
        """Store every message waiting on a worker's connection; true at end of stream."""
        while True:
            messages: list[tuple[Any, ...]] = []
            eof = False
            try:
                while len(messages) < _BATCH and w.conn.poll():
                    messages.append(w.conn.recv())
            except (EOFError, OSError):
                eof = True
            if messages:
                self._apply(w, messages)
            if eof:
                return True
            if len(messages) < _BATCH:
                return False

    def _apply(self, w: _Worker, messages: list[tuple[Any, ...]]) -> None:
        ops: list[_Op] = []
        now = time.time()
        for message in messages:
            kind = message[0]
            if kind == "ready":
                w.ready = True
                info = message[2] if len(message) > 2 and isinstance(message[2], dict) else {}
                version = info.get("qiskit_version")
                w.qiskit_version = version if isinstance(version, str) else None
                self._spawn_failures = 0
            elif kind in ("interim", "log"):
                ops.append((kind, message[1], message[2]))
            elif kind in ("done", "failed"):
                job_id = message[1]
                status = COMPLETED if kind == "done" else FAILED
                ops.append(("finish", job_id, status, None, message[2], now, (RUNNING,)))
                if w.job_id == job_id:
                    w.job_id = None
                    w.deadline = None
        self._record(ops)
        if not self._all_ready.is_set() and all(x.ready for x in self._workers):
            self._all_ready.set()

    def _reap(self, w: _Worker) -> None:
        """Forget a worker that exited; fail its job unless it was killed on purpose."""
        try:
            code: int | None = w.process.wait(1.0)
        except subprocess.TimeoutExpired:
            self._kill(w)
            code = w.process.wait()
        self._close(w)
        with self._lock:
            if w in self._workers:
                self._workers.remove(w)
        if not w.ready and not w.killed and not self._stopping:
            self._spawn_failures += 1
            delay = min(30.0, 0.5 * 2 ** (self._spawn_failures - 1))
            self._spawn_after = time.monotonic() + delay
            logger.error(
                "A worker process exited during start-up (exit code %s); retrying in %.1f s.",
                code,
                delay,
            )
        if w.job_id is not None and not w.killed:
            self._finish(
                w.job_id,
                FAILED,
                "worker process died",
                f"The worker process running this job exited unexpectedly (exit code {code}).\n",
            )

    @staticmethod
    def _close(w: _Worker) -> None:
        with contextlib.suppress(OSError):
            w.conn.close()
        if w.sentinel is not None:
            with contextlib.suppress(OSError):
                os.close(w.sentinel)
            w.sentinel = None

    @staticmethod
    def _kill(w: _Worker) -> None:
        w.killed = True
        with contextlib.suppress(OSError):
            os.killpg(w.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            w.process.kill()

    def _cancel(self, job_id: str) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(job_id)
        self._hold_until.pop(job_id, None)
        self._watched.discard(job_id)
        for w in self._workers:
            if w.job_id == job_id and not w.killed:
                self._kill(w)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if w.job_id is None or w.deadline is None or w.killed or now < w.deadline:
                continue
            job_id = w.job_id
            self._drain(w)
            if w.job_id != job_id:
                continue
            job = self._store.get_job(job_id)
            cost = job.cost if job is not None else None
            self._finish(
                job_id,
                CANCELLED,
                REASON_RAN_TOO_LONG,
                f"Job {job_id} ran longer than its maximum execution time ({cost} s) "
                "and was cancelled (RAN TOO LONG).\n",
            )
            self._kill(w)

    def _shutdown_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            # Idle workers hold nothing: killing them is as safe as asking, and immediate.
            self._kill(w)
            if w.job_id is not None:
                with contextlib.suppress(Exception):
                    self._finish(
                        w.job_id,
                        FAILED,
                        REASON_STOPPED,
                        "The server stopped while this job was running.\n",
                    )
        if self._backlog:
            with contextlib.suppress(Exception):
                self._flush_backlog()
            if self._backlog:
                logger.error(
                    "Storage still fails: %d held write(s) of running jobs are lost; those "
                    "jobs end FAILED (server restarted) when a server next opens this data.",
                    len(self._backlog),
                )
        for w in workers:
            try:
                w.process.wait(max(0.0, min(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                self._kill(w)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.process.wait(max(0.05, deadline - time.monotonic()))
            self._close(w)
        with self._lock:
            self._workers = [w for w in self._workers if w not in workers]


__all__ = ["RUNNING", "Runner"]
