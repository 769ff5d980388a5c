"""A small bounded pool of named daemon threads that start on demand and exit when idle.

The stream hub runs two of these (blocking websocket handshakes; listener calls), the job
core one (result callbacks) and the completion watcher two (status requests; done and status
callbacks). Unlike :class:`concurrent.futures.ThreadPoolExecutor`, a worker that finds no work
for ``idle_timeout`` seconds exits, so nothing lingers after the last stream ends, and a new
worker is started whenever queued tasks outnumber the idle workers (up to the bound), so one
task that blocks (a slow listener) does not hold up the others.

Example::

    pool = WorkerPool("runtime-job-stream-dispatch", max_workers=3, idle_timeout=1.0)
    pool.submit(lambda: print("hello"))
    pool.shutdown(cancel_pending=False)
    pool.join(1.0)
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

Task = Callable[[], None]


class WorkerPool:
    """A bounded set of daemon threads running submitted callables, first in, first out.

    Args:
        name: Thread name prefix; workers are called ``{name}-1``, ``{name}-2``, ...
        max_workers: At most this many threads at once.
        idle_timeout: A worker with nothing to do for this many seconds exits.
    """

    def __init__(self, name: str, max_workers: int, idle_timeout: float) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._name = name
        self._max = max_workers
        self._idle_timeout = idle_timeout
        self._cond = threading.Condition(threading.Lock())
        self._tasks: deque[Task] = deque()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._floor = 0
        self._rejecting = False
        self._stopping = False
        self._numbers = itertools.count(1)

    @property
    def thread_count(self) -> int:
        """Workers currently alive."""
        with self._cond:
            return len(self._threads)

    def submit(self, task: Task) -> bool:
        """Queue ``task``; start a worker if every live worker is busy and the bound allows.

        Args:
            task: A callable taking no arguments. It should not raise: anything it raises is
                logged as an error (a bug) and the worker carries on.

        Returns:
            ``False`` when the pool was shut down with ``cancel_pending`` (the task is
            dropped), else ``True``.
        """
        with self._cond:
            if self._rejecting:
                return False
            self._tasks.append(task)
            if len(self._tasks) > self._idle and len(self._threads) < self._max:
                self._start_worker()
            else:
                self._cond.notify()
        return True

    def _start_worker(self) -> None:
        # Lock held.
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{next(self._numbers)}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def keep(self, floor: int) -> None:
        """Keep up to ``floor`` idle workers alive past the idle timeout (0: none).

        The stream hub keeps one worker parked while streams are open, so a delivery never
        waits for a thread to start.
        """
        with self._cond:
            # No wake-up: an idle worker checks the floor when its idle period ends.
            self._floor = max(0, min(floor, self._max))

    def prestart(self) -> None:
        """Start one worker now if none is alive, so the first task does not wait for it."""
        with self._cond:
            if self._threads or self._rejecting or self._stopping:
                return
            self._start_worker()

    def shutdown(self, cancel_pending: bool) -> None:
        """Let the workers exit as soon as they run out of work.

        Args:
            cancel_pending: Drop queued tasks and refuse new ones (``submit`` returns
                ``False``). Without it, queued and later tasks still run, and workers exit
                when the queue is empty instead of lingering.
        """
        with self._cond:
            self._stopping = True
            if cancel_pending:
                self._rejecting = True
                self._tasks.clear()
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the workers to exit (never for the calling thread itself).

        Args:
            timeout: Seconds to wait in total.

        Returns:
            Whether every other worker has exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            # Again after each round: a worker may start one more (a re-queued task) as it ends.
            with self._cond:
                threads = [t for t in self._threads if t is not threading.current_thread()]
            alive = [t for t in threads if t.is_alive()]
            if not alive or time.monotonic() >= deadline:
                return not alive
            for thread in alive:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                task = self._next_task()
                if task is None:
                    return
                try:
                    task()
                except Exception:  # a bug in the hub: never let it kill the worker
                    logger.error("Unexpected error in %s", me.name, exc_info=True)
                del task
        finally:
            with self._cond:
                self._threads.discard(me)

    def _next_task(self) -> Task | None:
        # Deciding to exit and leaving the set of workers happen under one lock, so a
        # concurrent submit() never counts on a worker that is about to vanish.
        deadline: float | None = None
        with self._cond:
            while not self._tasks:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._idle_timeout
                remaining = deadline - now
                if self._stopping or (remaining <= 0 and len(self._threads) > self._floor):
                    self._threads.discard(threading.current_thread())
                    return None
                if remaining <= 0:  # a kept worker: wait another period
                    deadline = now + self._idle_timeout
                    remaining = self._idle_timeout
                self._idle += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._idle -= 1
            return self._tasks.popleft()


__all__ = ["Task", "WorkerPool"]
