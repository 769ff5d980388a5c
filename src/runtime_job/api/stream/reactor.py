"""The stream hub's reactor: one thread that reads every socket and runs every timer.

A :class:`Reactor` owns a selector (epoll on Linux), a wake-up socket pair, a heap of timers
and the open :class:`Connection` objects. Other threads talk to it only through
:meth:`Reactor.call_soon`; everything else runs on the thread that runs the loop, so the
state of a connection is never shared. That is the reactor thread, or a thread that waits
for a stream and borrows the loop meanwhile (:meth:`Reactor.lead`) while the reactor thread
parks. The thread starts on the first ``call_soon`` and exits once it
has had no connection, no timer and no call for ``idle_timeout`` seconds.

Sockets are non-blocking. TLS needs care: an ``SSLSocket`` may hold decrypted bytes that the
selector cannot see, so a connection keeps reading until the socket says "would block" and
no decrypted byte is pending, and a connection that stopped early (its fair share of one
turn is :data:`READ_BUDGET` bytes) is put on a "hot" list that is served before the next
wait instead of waiting for the selector.

Example::

    reactor = Reactor("runtime-job-stream-io", idle_timeout=1.0)
    reactor.call_soon(lambda: reactor.attach(sock, protocol))
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from . import lease as lease_settings
from .lease import ASKED, GRANTED, RETURNED, WITHDRAWN, InterruptGuard, Lease

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
"""Bytes asked of one ``recv`` call.

Below glibc's threshold for serving an allocation with ``mmap`` (128 KiB): ``recv(n)``
allocates ``n`` bytes before it knows how many came, and at 256 KiB each call cost an
``mmap``, an ``mremap`` and a ``munmap``: 15 µs against 1.7 µs for a small message."""
READ_BUDGET = 1024 * 1024
"""Bytes one connection may read in one turn of the loop before others get theirs."""

_WOULD_BLOCK_READ = (BlockingIOError, ssl.SSLWantReadError)
_WOULD_BLOCK_WRITE = (BlockingIOError, ssl.SSLWantWriteError)


class ConnectionProtocol(Protocol):
    """What a :class:`Connection` reports to its owner (always on the reactor thread)."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived."""
        ...

    def connection_lost(self, exc: BaseException | None) -> None:
        """The peer closed (``exc`` is ``None`` at end of file) or the socket failed.

        Not called when the owner closed the connection itself.
        """
        ...


class _Gone:
    """The protocol of a closed connection: it is never called, and holds nothing."""

    def data_received(self, data: bytes) -> None:
        """Never called."""

    def connection_lost(self, exc: BaseException | None) -> None:
        """Never called."""


_GONE: Final = _Gone()


class TimerHandle:
    """A call scheduled on the reactor; :meth:`cancel` it from the reactor thread."""

    __slots__ = ("_loop", "callback", "cancelled", "lazy", "seq", "when")

    def __init__(
        self, loop: _Loop, when: float, seq: int, callback: Callable[[], None], lazy: bool
    ):
        self._loop = loop
        self.when = when
        self.seq = seq
        self.callback: Callable[[], None] | None = callback
        self.cancelled = False
        self.lazy = lazy

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        """Do not run the call (no effect once it ran)."""
        if not self.cancelled:
            self.cancelled = True
            self.callback = None
            self._loop.live_timers -= 1
            if not self.lazy:
                self._loop.urgent_timers -= 1


class Connection:
    """A non-blocking socket attached to a :class:`Reactor` (reactor thread only).

    Writes are queued and flushed as the socket accepts them; a frame the socket would not
    take is retried, unchanged, when the selector says it can (TLS requires the same bytes).
    """

    def __init__(self, loop: _Loop, sock: socket.socket, protocol: ConnectionProtocol):
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._ssl_pending = sock.pending if isinstance(sock, ssl.SSLSocket) else None
        """Decrypted bytes the TLS layer holds, which the selector cannot see."""
        self._out: deque[bytes] = deque()
        self._closed = False
        self.lingering = False
        """Set by the protocol once the connection only waits for the peer to close it:
        reading it may then wait while a borrowed loop is handed back (``Reactor.lead``)."""
        self._events = selectors.EVENT_READ
        self._read_wants_write = False
        self._write_wants_read = False

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""
        return self._closed

    def write(self, data: bytes) -> None:
        """Queue ``data`` and send what the socket takes now."""
        if self._closed or not data:
            return
        self._out.append(data)
        if len(self._out) == 1:
            self._flush()

    def close(self) -> None:
        """Send what the socket takes at once (best effort), then close it. No callback."""
        if self._closed:
            return
        if self._out:
            self._flush(final=True)
        self._teardown()

    # -- reactor internals -------------------------------------------------------------

    def _ready(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            if self._read_wants_write:
                self._read()
            if not self._closed and self._out and not self._write_wants_read:
                self._flush()
        if mask & selectors.EVENT_READ and not self._closed:
            if self._write_wants_read:
                self._flush()
            if not self._closed:
                self._read()

    def _read(self) -> None:
        self._read_wants_write = False
        budget = READ_BUDGET
        sock = self._sock
        pending = self._ssl_pending
        while True:
            try:
                data = sock.recv(READ_SIZE)
            except _WOULD_BLOCK_READ:
                break
            except ssl.SSLWantWriteError:
                self._read_wants_write = True
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries recv itself
                continue
            except OSError as exc:
                self._lost(exc)
                return
            if not data:
                self._lost(None)
                return
            self._protocol.data_received(data)
            if self._closed:
                return
            budget -= len(data)
            if budget <= 0:
                self._loop.hot.add(self)
                break
            if len(data) < READ_SIZE and not (pending is not None and pending()):
                # The kernel had no more; the selector will say when it has.
                break
        self._update_events()

    def _flush(self, final: bool = False) -> None:
        self._write_wants_read = False
        sock = self._sock
        while self._out:
            head = self._out[0]
            try:
                sent = sock.send(head)
            except _WOULD_BLOCK_WRITE:
                break
            except ssl.SSLWantReadError:
                self._write_wants_read = True
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries send itself
                continue
            except OSError as exc:
                if final:
                    self._out.clear()
                    return
                self._lost(exc)
                return
            if sent >= len(head):
                self._out.popleft()
            else:
                self._out[0] = head[sent:]
        if not final:
            self._update_events()

    def _update_events(self) -> None:
        if self._closed:
            return
        events = selectors.EVENT_READ
        if self._read_wants_write or (self._out and not self._write_wants_read):
            events |= selectors.EVENT_WRITE
        if events != self._events:
            self._loop.selector.modify(self._sock, events, self)
            self._events = events

    def _lost(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        protocol = self._protocol
        self._teardown()
        protocol.connection_lost(exc)

    def _teardown(self) -> None:
        self._closed = True
        # The protocol refers back to this connection: let go of it, so that a closed
        # connection and its owner are freed at once, not left to the cycle collector.
        self._protocol = _GONE
        self._out.clear()
        self._loop.detach(self)
        with contextlib.suppress(OSError):  # close() does not fail in practice
            self._sock.close()


class _Loop:
    """The state of one reactor thread's run (a new run gets a new one)."""

    def __init__(self, thread_name: str) -> None:
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.timers: list[TimerHandle] = []
        self.live_timers = 0
        self.urgent_timers = 0  # live timers that are not lazy
        self.seq = itertools.count()
        self.conns: set[Connection] = set()
        self.hot: set[Connection] = set()
        self.soon: deque[Callable[[], None]] = deque()  # Reactor.defer
        self.urgent_soon = 0  # deferred calls that are not lazy
        self.thread_name = thread_name
        self.thread: threading.Thread | None = None
        self.thread_id: int | None = None  # ``thread``'s ident: Reactor._current compares it

    def run_on(self, thread: threading.Thread, thread_id: int | None) -> None:
        """Hand the loop to ``thread`` (whose ident is ``thread_id``): a lease begins or ends."""
        self.thread = thread
        self.thread_id = thread_id

    def detach(self, conn: Connection) -> None:
        self.conns.discard(conn)
        self.hot.discard(conn)
        with contextlib.suppress(KeyError, ValueError):  # registered exactly once
            self.selector.unregister(conn._sock)

    def next_timeout(self, now: float) -> float | None:
        if self.hot or self.soon:
            return 0.0
        timers = self.timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        if timers:
            return max(0.0, timers[0].when - now)
        return None

    def run_timers(self) -> None:
        timers = self.timers
        now = time.monotonic()
        while timers and timers[0].when <= now:
            handle = heapq.heappop(timers)
            if handle.cancelled:
                continue
            callback = handle.callback
            handle.cancel()
            if callback is not None:
                _safe(callback)

    def drain_wakeup(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except OSError:
            pass

    def run_soon(self) -> None:
        soon = self.soon
        while soon:
            _safe(soon.popleft())
        self.urgent_soon = 0

    def close(self) -> None:
        for conn in list(self.conns):
            conn.close()
        self.timers.clear()
        self.live_timers = self.urgent_timers = 0
        self.hot.clear()
        self.selector.close()
        self.wake_r.close()


class Reactor:
    """One daemon thread serving every connection and timer of a stream hub.

    A thread waiting for a stream may run the loop in its place for a while (:meth:`lead`);
    "the reactor thread" in the method docs means whichever thread runs the loop.

    Args:
        name: The thread's name.
        idle_timeout: Seconds without connections, timers or calls before the thread exits.
    """

    def __init__(self, name: str, idle_timeout: float) -> None:
        self._name = name
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._calls: deque[Callable[[], None]] = deque()
        self._loop: _Loop | None = None
        self._last_thread: threading.Thread | None = None
        self._wake_pending = False
        self._closed = False
        self._lease: Lease | None = None  # asked for or granted
        self._parked: Lease | None = None  # the lease the reactor thread rests on

    # -- any thread ---------------------------------------------------------------------

    def call_soon(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` on the reactor thread, starting the thread if needed.

        Args:
            callback: Runs on the reactor thread; anything it raises is logged as a bug.

        Returns:
            ``False`` when the reactor is closed (the callback will never run).
        """
        with self._lock:
            if self._closed:
                return False
            self._calls.append(callback)
            if self._loop is None:
                self._start_locked()
            else:
                self._wake_locked()
        return True

    def close(self) -> None:
        """Stop: the thread closes every connection, drops every timer and exits."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._loop is not None:
                self._wake_locked()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to exit; whether it has."""
        with self._lock:
            thread = self._last_thread
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        """Whether a reactor thread is serving (it may still be finishing when ``False``)."""
        with self._lock:
            return self._loop is not None

    def in_reactor_thread(self) -> bool:
        """Whether the caller is the reactor thread."""
        loop = self._loop
        return loop is not None and threading.get_ident() == loop.thread_id

    # -- reactor thread only ------------------------------------------------------------

    def call_later(
        self, delay: float, callback: Callable[[], None], *, lazy: bool = False
    ) -> TimerHandle:
        """Run ``callback`` on the reactor thread after ``delay`` seconds.

        Args:
            delay: Seconds from now (never negative).
            callback: What to run.
            lazy: The call may run up to a second late (a clean-up): it does not keep the
                reactor thread from resting when a thread gives a borrowed loop back.

        Returns:
            A handle to cancel the call.
        """
        loop = self._current()
        when = time.monotonic() + max(0.0, delay)
        handle = TimerHandle(loop, when, next(loop.seq), callback, lazy)
        heapq.heappush(loop.timers, handle)
        loop.live_timers += 1
        if not lazy:
            loop.urgent_timers += 1
        return handle

    def defer(self, callback: Callable[[], None], *, lazy: bool = False) -> None:
        """Run ``callback`` at the end of this turn (reactor thread only).

        For work that must follow what was just read but that nobody waits for: a thread
        that leads the loop (:meth:`lead`) and finds what it waited for stops in the middle
        of the turn, and the rest of the turn, deferred calls included, is left to the
        reactor thread once the loop is back. A ``lazy`` call does not make the leader wake
        the reactor thread when it gives the loop back: it runs at the reactor thread's next
        turn, within :data:`~.lease.LEASE_CHECK` or at once if anything else wakes it.
        """
        loop = self._current()
        loop.soon.append(callback)
        if not lazy:
            loop.urgent_soon += 1

    def attach(self, sock: socket.socket, protocol: ConnectionProtocol) -> Connection:
        """Serve ``sock`` from now on: make it non-blocking and report to ``protocol``.

        Bytes already buffered (by TLS, after the handshake) are read on the next turn.

        Args:
            sock: A connected socket (plain or TLS).
            protocol: Receives the data and the end of the connection.

        Returns:
            The connection, for writing and closing.
        """
        loop = self._current()
        sock.setblocking(False)
        conn = Connection(loop, sock, protocol)
        loop.selector.register(sock, selectors.EVENT_READ, conn)
        loop.conns.add(conn)
        loop.hot.add(conn)
        return conn

    @property
    def connection_count(self) -> int:
        """Open connections (reactor thread only)."""
        loop = self._loop
        return 0 if loop is None else len(loop.conns)

    def _current(self) -> _Loop:
        loop = self._loop
        if loop is None or threading.get_ident() != loop.thread_id:
            raise RuntimeError("Reactor method called outside the reactor thread.")
        return loop

    # -- the loop -----------------------------------------------------------------------

    def _start_locked(self) -> None:
        loop = _Loop(self._name)
        thread = threading.Thread(target=self._run, args=(loop,), name=self._name, daemon=True)
        loop.thread = thread
        self._loop = loop
        self._last_thread = thread
        self._wake_pending = False
        thread.start()
        # start() returns once the thread has an ident; a lease, made under this lock too,
        # records it as the owner's.
        loop.thread_id = thread.ident

    def _run(self, loop: _Loop) -> None:
        try:
            self._serve(loop)
        finally:
            loop.run_soon()  # still the reactor thread: deferred calls may use the loop
            with self._lock:
                if self._loop is loop:
                    self._loop = None
                loop.wake_w.close()
            loop.close()

    def _serve(self, loop: _Loop) -> None:
        idle_since: float | None = None
        while True:
            if self._run_calls():
                return
            if self._lease is not None and self._lend(loop):
                continue  # the borrower may have left calls, timers or hot connections
            now = time.monotonic()
            timeout = loop.next_timeout(now)
            if not loop.conns and not loop.live_timers and not loop.soon:
                if idle_since is None:
                    idle_since = now
                left = idle_since + self._idle_timeout - now
                if left <= 0:
                    with self._lock:
                        if not self._calls and self._lease is None:
                            # Leave under the lock: the next call_soon starts a new thread.
                            self._loop = None
                            return
                    continue
                timeout = left
            else:
                idle_since = None
            self._turn(loop, timeout)

    def _run_calls(self) -> bool:
        """Run the queued calls; whether the reactor is closed."""
        with self._lock:
            calls = list(self._calls)
            self._calls.clear()
            self._wake_pending = False
            closed = self._closed
        for call in calls:
            _safe(call)
        return closed

    def _turn(
        self, loop: _Loop, timeout: float | None, until: Callable[[], bool] | None = None
    ) -> bool:
        """Wait up to ``timeout`` for the sockets, serve the ready ones, run due timers.

        With ``until``, the turn stops as soon as it holds after a connection is served
        (and returns ``True``); what is left (ready sockets, hot connections, timers,
        deferred calls) waits for the next turn, which finds it again: the selector is
        level-triggered.
        """
        if loop.soon:
            loop.run_soon()
            timeout = 0.0
        for key, mask in loop.selector.select(timeout):
            if key.data is None:
                loop.drain_wakeup()
                continue
            conn: Connection = key.data
            if not conn._closed:
                try:
                    conn._ready(mask)
                except Exception:
                    logger.error("Unexpected error in the stream reactor", exc_info=True)
                if until is not None and until():
                    return True
        if loop.hot:
            hot = loop.hot
            loop.hot = set()
            for conn in hot:
                if not conn.closed:
                    _safe(conn._read)
        loop.run_timers()
        loop.run_soon()
        return False

    # -- lending the loop to a waiting thread (leader/follower) ---------------------------

    def lead(self, until: Callable[[], bool], timeout: float) -> bool:
        """Run the loop on the calling thread while it waits for ``until()`` (at most ``timeout``).

        A thread that waits for something a stream will deliver can read the sockets itself
        instead of being woken by the reactor thread: the reactor thread parks, the caller
        runs turns of the loop until ``until()`` holds or the time is up, then gives the loop
        back. The caller never runs more than the hub's own code (listeners that are called
        inline, timers, handshake results); callbacks still go to their dispatchers.

        On the main thread this needs the default ``SIGINT`` handler (or ``SIGINT``
        ignored) and no other Python signal handler: ``Ctrl-C`` is then held until the end
        of the current turn (so a frame is never cut in half) and raised as
        ``KeyboardInterrupt`` once the loop is given back.

        Args:
            until: Checked before each turn and after each socket served; cheap, no locks.
            timeout: Seconds to lead at most.

        Returns:
            ``False`` at once, having done nothing, when the loop cannot be lent now (no
            reactor running, another thread leads, the reactor is busy or closed, the
            caller is the reactor thread, or signal handlers forbid it); ``True`` after
            leading (``until()`` may still be false when the time ran out).

        Raises:
            KeyboardInterrupt: ``Ctrl-C`` arrived while the main thread was leading.
        """
        me = threading.current_thread()
        guard = InterruptGuard.install(self) if me is threading.main_thread() else None
        if guard is False:
            return False
        try:
            lease = self._borrow(me, timeout)
            if lease is None:
                return False
            loop = lease.loop
            if guard is not None:
                guard.watch(loop)
            try:
                end = time.monotonic() + timeout
                while not until():
                    if self._run_calls() or (guard is not None and guard.pending):
                        break
                    now = time.monotonic()
                    if now >= end or until():
                        break
                    wait = loop.next_timeout(now)
                    wait = end - now if wait is None else min(wait, end - now)
                    if self._turn(loop, wait, until):
                        break
            finally:
                if guard is not None:
                    guard.unwatch()
                self._give_back(lease)
            return True
        finally:
            if guard is not None:
                guard.restore()

    def _give_back(self, lease: Lease) -> None:
        """End a lease; wake the parked reactor thread only if there is work for it now.

        Waking it costs the caller (whose thread the scheduler may preempt for it) on its
        way back to the user, so when every connection left only waits for its close and
        every timer left is lazy, the reactor thread is left to notice within
        :data:`~.lease.LEASE_CHECK`; a ``call_soon`` or a new lease wakes it at once.
        """
        loop = lease.loop
        with self._lock:
            loop.run_on(lease.owner, lease.owner_id)
            lease.state = RETURNED
            self._lease = None
            quiet = (
                not self._closed
                and not self._calls
                and not loop.hot
                and not loop.urgent_timers
                and not loop.urgent_soon
                and all(conn.lingering for conn in loop.conns)
            )
        if not quiet:
            lease.returned.set()

    def poke(self) -> None:
        """Wake the thread leading the loop, so it checks its ``until`` again (any thread)."""
        with self._lock:
            if self._lease is not None:
                self._wake_locked()

    def _wake_locked(self) -> None:
        loop = self._loop
        if loop is None:
            return
        parked = self._parked
        if parked is not None and parked.state == RETURNED:
            parked.returned.set()  # the reactor thread rests on the lease it gave
        if self._wake_pending:
            return
        self._wake_pending = True
        with contextlib.suppress(OSError):  # the pipe is full: the reactor is awake anyway
            loop.wake_w.send(b"\0")

    def _borrow(self, me: threading.Thread, timeout: float) -> Lease | None:
        with self._lock:
            loop = self._loop
            if loop is None or self._closed or self._lease is not None or me is loop.thread:
                return None
            owner = loop.thread
            assert owner is not None
            lease = Lease(loop, owner, loop.thread_id, me, threading.get_ident())
            self._lease = lease
            self._wake_locked()
        if lease.granted.wait(min(timeout, lease_settings.GRANT_TIMEOUT)):
            return lease
        with self._lock:
            if lease.state == ASKED:
                lease.state = WITHDRAWN
                self._lease = None
                return None
        return lease  # granted just now

    def _lend(self, loop: _Loop) -> bool:
        """Reactor thread: hand the loop to the thread that asked, wait until it is back."""
        with self._lock:
            lease = self._lease
            if lease is None or lease.state != ASKED:
                return False
            lease.state = GRANTED
            loop.run_on(lease.borrower, lease.borrower_id)
            self._parked = lease
        lease.granted.set()
        while not lease.returned.wait(lease_settings.LEASE_CHECK):
            with self._lock:
                if lease.state == RETURNED:
                    break  # given back quietly
                if not lease.borrower.is_alive():  # pragma: no cover - killed mid-lease
                    loop.run_on(lease.owner, lease.owner_id)
                    self._lease = None
                    break
        with self._lock:
            self._parked = None
        return True


def _safe(call: Callable[[], None]) -> None:
    try:
        call()
    except Exception:  # a bug in the hub: log it, keep serving the other streams
        logger.error("Unexpected error in the stream reactor", exc_info=True)


__all__ = [
    "READ_BUDGET",
    "READ_SIZE",
    "Connection",
    "ConnectionProtocol",
    "Reactor",
    "TimerHandle",
]
