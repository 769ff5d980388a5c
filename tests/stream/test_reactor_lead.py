"""``Reactor.lead``: a waiting thread borrows the reactor's loop, then gives it back.

Every test runs on real sockets (``socket.socketpair``). ``lease.LEASE_CHECK`` is raised to two
minutes, so a parked reactor thread resumes only when something wakes it (never by its
periodic check), and ``lease.GRANT_TIMEOUT`` to 30 s, so a loaded machine never withdraws a
lease the test needs. pytest-timeout's ``signal`` method puts a Python handler on
``SIGALRM``, which forbids leading on the main thread: the tests that lead on the main thread
use the ``thread`` method instead.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd
from runtime_job.api.stream import StreamHub, lease
from runtime_job.api.stream.reactor import Connection, Reactor
from tests.support import wait_until

from .streamkit import WsServer
from .test_stream_inline import InlineRecorder

REACTOR_NAME = "test-reactor"
LEADER_NAME = "test-leader"
T = TypeVar("T")


class RecordingProtocol:
    """A ``ConnectionProtocol`` that records what it gets and on which thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.chunks: list[bytes] = []
        self.threads: list[str] = []
        self.lost: list[BaseException | None] = []
        self.received = threading.Event()

    def data_received(self, data: bytes) -> None:
        with self._lock:
            self.chunks.append(data)
            self.threads.append(threading.current_thread().name)
        self.received.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)

    @property
    def data(self) -> bytes:
        with self._lock:
            return b"".join(self.chunks)


class Leader(threading.Thread):
    """A thread that calls ``reactor.lead(until, timeout)`` once and keeps the outcome."""

    def __init__(
        self, reactor: Reactor, until: Callable[[], bool], timeout: float, name: str = LEADER_NAME
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._reactor = reactor
        self._until = until
        self._timeout = timeout
        self.result: bool | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._reactor.lead(self._until, self._timeout)
        except BaseException as err:  # pragma: no cover - reported by finish()
            self.error = err

    def start_leading(self) -> None:
        """Start, and wait (bounded) until the lease is granted (``until`` is first asked)."""
        self.start()
        until = self._until
        assert isinstance(until, Until)
        assert until.asked.wait(10), "the lease was not granted"

    def finish(self, timeout: float = 10.0) -> bool | None:
        """Join (bounded); the lead's result."""
        self.join(timeout)
        assert not self.is_alive(), "the leading thread did not return"
        assert self.error is None, repr(self.error)
        return self.result


class Until:
    """An ``until`` that says when it is first asked (the lease is granted) and counts calls."""

    def __init__(self, holds: Callable[[], bool] = lambda: False) -> None:
        self.holds = holds
        self.asked = threading.Event()
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        self.asked.set()
        return self.holds()


@pytest.fixture()
def socket_pairs() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    """``make()`` -> ``(ours, peer)``; both ends are closed after the test."""
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        ours, peer = socket.socketpair()
        made.extend((ours, peer))
        return ours, peer

    yield make
    for sock in made:
        sock.close()


@pytest.fixture()
def reactor(
    monkeypatch: pytest.MonkeyPatch,
    socket_pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> Iterator[Reactor]:
    """A reactor (not started yet), closed and joined after the test (before its sockets)."""
    monkeypatch.setattr(lease, "LEASE_CHECK", 120.0)
    monkeypatch.setattr(lease, "GRANT_TIMEOUT", 30.0)
    r = Reactor(REACTOR_NAME, idle_timeout=60.0)
    yield r
    r.close()
    assert join_or_unpark(r), "the reactor thread did not exit after close()"


def join_or_unpark(reactor: Reactor) -> bool:
    """``reactor.join(5)``; when that fails, wake a parked thread anyway so that it exits."""
    if reactor.join(5):
        return True
    parked = reactor._parked
    if parked is not None:
        parked.returned.set()  # a failed test does not leave a thread parked for two minutes
    reactor.join(5)
    return False


def on_loop(reactor: Reactor, fn: Callable[[], T]) -> T:
    """Run ``fn`` through ``call_soon`` (on whichever thread runs the loop) and return its value."""
    box: list[T] = []
    done = threading.Event()

    def call() -> None:
        try:
            box.append(fn())
        finally:
            done.set()

    assert reactor.call_soon(call)
    assert done.wait(10), "call_soon did not run"
    assert box, "the call raised (see the log)"
    return box[0]


def thread_name() -> str:
    return threading.current_thread().name


class Marks:
    """A callable that records the name of each thread calling it; ``called`` is set at once."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.called = threading.Event()

    def __call__(self) -> None:
        self.threads.append(thread_name())
        self.called.set()


def attach(
    reactor: Reactor, make: Callable[[], tuple[socket.socket, socket.socket]]
) -> tuple[Connection, RecordingProtocol, socket.socket]:
    ours, peer = make()
    protocol = RecordingProtocol()
    conn = on_loop(reactor, lambda: reactor.attach(ours, protocol))
    return conn, protocol, peer


class Gate:
    """Holds the reactor thread inside a ``call_soon`` callback until ``open()``."""

    def __init__(self, reactor: Reactor) -> None:
        self.entered = threading.Event()
        self._release = threading.Event()
        assert reactor.call_soon(self._hold)
        assert self.entered.wait(10), "the reactor thread did not reach the gate"

    def _hold(self) -> None:
        self.entered.set()
        self._release.wait(30)

    def open(self) -> None:
        self._release.set()


def lead_in_thread(reactor: Reactor, until: Callable[[], bool], timeout: float) -> bool | None:
    """``reactor.lead(until, timeout)`` on a new thread (not the main one); its result."""
    leader = Leader(reactor, until, timeout)
    leader.start()
    return leader.finish()


# -- when the loop cannot be lent ------------------------------------------------------------


def lead_after_hold(reactor: Reactor, until: Until, meanwhile: Callable[[], None]) -> Leader:
    """Hold the reactor thread, run ``meanwhile`` and ask for the loop, then let go.

    The lease then starts with whatever ``meanwhile`` made ready already waiting.
    """
    gate = Gate(reactor)
    try:
        meanwhile()
        leader = Leader(reactor, until, 60.0)
        leader.start()
        wait_until(lambda: reactor._lease is not None, what="a lease to be asked")
    finally:
        gate.open()
    return leader


def lead_until_set(reactor: Reactor) -> tuple[Leader, threading.Event]:
    """A thread leading (lease granted) until the returned event is set and it is poked."""
    stop = threading.Event()
    leader = Leader(reactor, Until(stop.is_set), 60.0)
    leader.start_leading()
    return leader, stop


def lead_through_one_call(reactor: Reactor, name: str = LEADER_NAME) -> None:
    """Lead from a thread called ``name`` until one ``call_soon`` has run there, then give back."""
    ran: list[str] = []
    until = Until(lambda: bool(ran))
    leader = Leader(reactor, until, 60.0, name=name)
    leader.start_leading()
    reactor.call_soon(lambda: ran.append(thread_name()))
    assert leader.finish() is True
    assert ran == [name]


def test_lead_returns_false_when_no_reactor_thread_runs(reactor: Reactor) -> None:
    """Never started, or exited after ``close``: ``lead`` refuses without calling ``until``."""
    until = Until()
    assert lead_in_thread(reactor, until, 10.0) is False
    assert not reactor.running  # lead did not start a thread either
    on_loop(reactor, lambda: None)
    reactor.close()
    assert reactor.join(5)
    assert lead_in_thread(reactor, until, 10.0) is False
    assert until.calls == 0


def test_lead_returns_false_once_closed_even_while_the_thread_still_runs(
    reactor: Reactor,
) -> None:
    """``close()`` before the reactor thread has exited: no lease is asked for any more."""
    gate = Gate(reactor)
    reactor.close()
    assert reactor.running  # the thread is held in the gate: only ``_closed`` tells
    until = Until()
    try:
        assert lead_in_thread(reactor, until, 10.0) is False
    finally:
        gate.open()
    assert until.calls == 0


def test_lead_from_the_reactor_thread_returns_false(
    reactor: Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``call_soon`` callback that leads is refused at once (it would wait for itself)."""
    # Were the reactor thread to ask for a lease, it would wait this long for itself.
    monkeypatch.setattr(lease, "GRANT_TIMEOUT", 60.0)
    until = Until()

    def nested() -> tuple[bool, bool]:
        return reactor.in_reactor_thread(), reactor.lead(until, 60.0)

    assert on_loop(reactor, nested) == (True, False)
    assert until.calls == 0
    assert on_loop(reactor, thread_name) == REACTOR_NAME  # and it still serves


def test_lead_returns_false_while_another_thread_leads(reactor: Reactor) -> None:
    """One leader at a time: a second thread is refused and the first keeps the loop."""
    on_loop(reactor, lambda: None)
    first, stop = lead_until_set(reactor)
    try:
        second_until = Until()
        second = Leader(reactor, second_until, 60.0, name="second-leader")
        second.start()
        assert second.finish() is False
        assert second_until.calls == 0
        assert on_loop(reactor, thread_name) == LEADER_NAME  # the first still leads
    finally:
        stop.set()
        reactor.poke()
    assert first.finish() is True
    assert on_loop(reactor, thread_name) == REACTOR_NAME


def test_lead_returns_false_when_the_reactor_is_busy_and_leaves_no_lease_behind(
    reactor: Reactor,
) -> None:
    """A lease not granted in time is withdrawn: ``False``, and later leases still work."""
    gate = Gate(reactor)
    until = Until()
    try:
        assert lead_in_thread(reactor, until, 0.2) is False  # the reactor never got to it
    finally:
        gate.open()
    assert until.calls == 0
    assert on_loop(reactor, thread_name) == REACTOR_NAME  # not parked on the withdrawn lease
    lead_through_one_call(reactor)


def lead_until_a_call_runs(reactor: Reactor) -> tuple[bool, list[str], Until]:
    """Lead on this thread until a call queued once leading has run; what ran where."""
    ran: list[str] = []

    def holds() -> bool:
        if until.calls == 1:  # leading now: this call runs on the leader
            reactor.call_soon(lambda: ran.append(thread_name()))
        return bool(ran)

    until = Until(holds)
    return reactor.lead(until, 10.0), ran, until


@pytest.mark.parametrize("custom", [None, signal.SIGINT, signal.SIGUSR1], ids=str)
def test_main_thread_leads_only_with_default_signal_handlers(
    reactor: Reactor, custom: signal.Signals | None
) -> None:
    """On the main thread: a custom SIGINT handler or any other Python handler forbids leading."""
    assert threading.current_thread() is threading.main_thread()
    on_loop(reactor, lambda: None)

    def handler(signum: int, frame: Any) -> None:  # pragma: no cover - never delivered
        pass

    previous = signal.signal(custom, handler) if custom is not None else None
    try:
        led, ran, until = lead_until_a_call_runs(reactor)
        if custom is not None:
            assert signal.getsignal(custom) is handler  # left alone
    finally:
        if custom is not None:
            signal.signal(custom, previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if custom is None:
        assert led is True
        assert ran == ["MainThread"]
    else:
        assert led is False
        assert until.calls == 0
        assert on_loop(reactor, thread_name) == REACTOR_NAME


def test_main_thread_leads_when_sigint_is_ignored(reactor: Reactor) -> None:
    """A shell starts background processes with SIGINT ignored: no Ctrl-C to hold, so the
    main thread leads, and leaves SIGINT ignored."""
    assert threading.current_thread() is threading.main_thread()
    on_loop(reactor, lambda: None)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        led, ran, _until = lead_until_a_call_runs(reactor)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert led is True
    assert ran == ["MainThread"]


# -- what runs where while leading -----------------------------------------------------------


def test_calls_and_socket_data_run_on_the_leading_thread(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """While a thread leads, ``call_soon`` callbacks and ``data_received`` run on it."""
    _conn, protocol, peer = attach(reactor, socket_pairs)
    calls: list[tuple[str, bool]] = []
    until = Until(lambda: bool(calls) and protocol.data == b"ping")
    leader = Leader(reactor, until, 60.0)
    leader.start_leading()
    assert not reactor.in_reactor_thread()  # the test's thread
    peer.sendall(b"ping")
    reactor.call_soon(lambda: calls.append((thread_name(), reactor.in_reactor_thread())))
    assert leader.finish() is True
    assert calls == [(LEADER_NAME, True)]
    assert protocol.threads == [LEADER_NAME]


def test_a_lease_asked_before_the_reactor_thread_runs_gives_the_loop_back_to_it(
    reactor: Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop knows its thread from the start: a lease made at once returns it whole."""
    run = reactor._run

    def run_once_a_lease_is_asked(loop: Any) -> None:
        wait_until(lambda: reactor._lease is not None, what="a lease to be asked")
        run(loop)

    monkeypatch.setattr(reactor, "_run", run_once_a_lease_is_asked)
    assert reactor.call_soon(lambda: None)  # starts the thread, which waits for the lease
    leader = Leader(reactor, Until(lambda: True), 60.0)
    leader.start_leading()
    assert leader.finish() is True
    assert on_loop(reactor, reactor.in_reactor_thread) is True
    fire = Marks()
    on_loop(reactor, lambda: reactor.call_later(0.0, fire))
    assert fire.called.wait(10), "the reactor thread could not schedule a call"
    assert fire.threads == [REACTOR_NAME]


def test_give_back_wakes_the_reactor_when_a_connection_is_live(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """A connection not marked ``lingering`` is work: the reactor thread serves it at once."""
    _conn, protocol, peer = attach(reactor, socket_pairs)
    lead_through_one_call(reactor)
    peer.sendall(b"after")  # nothing else wakes the reactor thread (no call_soon, no poke)
    assert protocol.received.wait(10), "the reactor thread stayed parked"
    assert protocol.data == b"after"
    assert protocol.threads == [REACTOR_NAME]


def test_give_back_wakes_the_reactor_for_a_timer_that_is_not_lazy(reactor: Reactor) -> None:
    """A timer set while leading (not lazy) runs on the reactor thread after the lease."""
    fire = Marks()
    scheduled: list[str] = []

    def schedule() -> None:
        reactor.call_later(0.05, fire)
        scheduled.append(thread_name())

    until = Until(lambda: bool(scheduled))
    on_loop(reactor, lambda: None)
    leader = Leader(reactor, until, 60.0)
    leader.start_leading()
    reactor.call_soon(schedule)
    assert leader.finish() is True
    assert scheduled == [LEADER_NAME]
    assert fire.called.wait(10), "the reactor thread stayed parked with a timer due"
    assert fire.threads == [REACTOR_NAME]


def test_give_back_wakes_the_reactor_for_calls_left_queued(reactor: Reactor) -> None:
    """A ``call_soon`` queued by the leader's last turn is run by the reactor thread."""
    on_loop(reactor, lambda: None)
    record = Marks()
    stop = threading.Event()

    def last_call() -> None:
        stop.set()  # the leader stops before it runs the next call
        reactor.call_soon(record)

    until = Until(stop.is_set)
    leader = Leader(reactor, until, 60.0)
    leader.start_leading()
    reactor.call_soon(last_call)
    assert leader.finish() is True
    assert record.called.wait(10), "the reactor thread stayed parked with a call queued"
    assert record.threads == [REACTOR_NAME]


def test_quiet_give_back_leaves_the_reactor_parked_until_the_next_call(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """Only lingering connections and lazy timers: the reactor rests until ``call_soon``."""
    conn, protocol, peer = attach(reactor, socket_pairs)
    fire = Marks()
    scheduled: list[str] = []

    def linger() -> None:
        conn.lingering = True
        reactor.call_later(0.05, fire, lazy=True)
        scheduled.append(thread_name())

    until = Until(lambda: bool(scheduled))
    leader = Leader(reactor, until, 60.0)
    leader.start_leading()
    reactor.call_soon(linger)
    assert leader.finish() is True
    assert scheduled == [LEADER_NAME]
    parked = reactor._parked
    assert parked is not None and not parked.returned.is_set()  # not woken by the give-back
    peer.sendall(b"late")
    assert not fire.called.wait(0.3)  # parked: neither the lazy timer nor the socket is served
    assert not protocol.received.is_set()
    assert on_loop(reactor, thread_name) == REACTOR_NAME  # call_soon wakes it
    assert fire.called.wait(10) and protocol.received.wait(10)
    assert fire.threads == [REACTOR_NAME]
    assert protocol.threads == [REACTOR_NAME]


def test_a_new_lease_wakes_a_quietly_parked_reactor(reactor: Reactor) -> None:
    """After a quiet give-back the reactor thread rests; the next lease is still granted."""
    on_loop(reactor, lambda: None)
    assert lead_in_thread(reactor, Until(lambda: True), 60.0) is True
    parked = reactor._parked
    assert parked is not None and not parked.returned.is_set()  # resting on the old lease
    lead_through_one_call(reactor, name="second-leader")


def test_poke_makes_the_leader_check_until_again(reactor: Reactor) -> None:
    """``poke()`` from another thread ends a lead whose ``until`` now holds."""
    on_loop(reactor, lambda: None)
    leader, flag = lead_until_set(reactor)
    flag.set()
    reactor.poke()  # nothing else would end the leader's 60 s wait
    assert leader.finish() is True


def test_until_is_checked_before_the_first_turn(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """``until()`` already true: the leader runs no turn, pending data is left to the reactor."""
    _conn, protocol, peer = attach(reactor, socket_pairs)
    until = Until(lambda: True)
    leader = lead_after_hold(reactor, until, lambda: peer.sendall(b"pending"))
    assert leader.finish() is True
    assert until.calls == 1
    assert protocol.received.wait(10)
    assert protocol.threads == [REACTOR_NAME]


def test_until_is_checked_after_each_socket_served(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """Two sockets ready in one turn: the leader stops after the first, the reactor reads the
    other."""
    _a, first, peer_a = attach(reactor, socket_pairs)
    _b, second, peer_b = attach(reactor, socket_pairs)

    def send_both() -> None:  # both sockets are ready when the lease starts
        peer_a.sendall(b"a")
        peer_b.sendall(b"b")

    until = Until(lambda: first.received.is_set() or second.received.is_set())
    leader = lead_after_hold(reactor, until, send_both)
    assert leader.finish() is True
    assert first.received.wait(10) and second.received.wait(10)
    assert sorted(first.threads + second.threads) == sorted([LEADER_NAME, REACTOR_NAME])


class DeferringProtocol(RecordingProtocol):
    """Records data, then defers ``then`` (``Reactor.defer``), as a final frame does."""

    def __init__(self, reactor: Reactor, then: Callable[[], None], lazy: bool = False) -> None:
        super().__init__()
        self._reactor = reactor
        self._then = then
        self._lazy = lazy

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._reactor.defer(self._then, lazy=self._lazy)


def attach_deferring(
    reactor: Reactor, make: Callable[[], tuple[socket.socket, socket.socket]], lazy: bool = False
) -> tuple[Connection, DeferringProtocol, socket.socket, Marks]:
    """A connection whose every read defers a ``Marks`` call: (conn, protocol, peer, marks)."""
    ours, peer = make()
    deferred = Marks()
    protocol = DeferringProtocol(reactor, deferred, lazy)
    conn = on_loop(reactor, lambda: reactor.attach(ours, protocol))
    return conn, protocol, peer, deferred


def lead_while_the_last_frame_comes(
    reactor: Reactor, make: Callable[[], tuple[socket.socket, socket.socket]], *, lazy: bool
) -> Marks:
    """A lingering connection whose read defers a call; a leader leads until the read.

    Returns the deferred call's marks, once the leader has read the data and given back.
    """
    conn, protocol, peer, deferred = attach_deferring(reactor, make, lazy)
    on_loop(reactor, lambda: setattr(conn, "lingering", True))
    leader = Leader(reactor, Until(protocol.received.is_set), 60.0)
    leader.start_leading()
    peer.sendall(b"final")
    assert leader.finish() is True
    assert protocol.threads == [LEADER_NAME]
    return deferred


def test_a_deferred_call_runs_on_the_reactor_thread_after_the_data(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """No lead: the reactor thread runs what was deferred, after the handler that deferred it."""
    _conn, protocol, peer, deferred = attach_deferring(reactor, socket_pairs)
    peer.sendall(b"x")
    assert deferred.called.wait(10), "the deferred call did not run"
    assert deferred.threads == [REACTOR_NAME]
    assert protocol.threads == [REACTOR_NAME]


def test_give_back_wakes_the_reactor_for_a_call_deferred_in_the_last_turn(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """The leader stops right after the socket that defers: the reactor thread runs the rest.

    The connection is ``lingering``, so without the deferred call the give-back would be
    quiet and the reactor thread would stay parked (for two minutes, in these tests).
    """
    deferred = lead_while_the_last_frame_comes(reactor, socket_pairs, lazy=False)
    assert deferred.called.wait(10), "the reactor thread stayed parked with a deferred call"
    assert deferred.threads == [REACTOR_NAME]


def test_a_lazy_deferred_call_leaves_the_reactor_parked_until_the_next_call(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """A lazy deferred call (a stream's end after its final frame) does not make the give-back
    wake the reactor thread; it runs on the reactor thread once something else wakes it."""
    deferred = lead_while_the_last_frame_comes(reactor, socket_pairs, lazy=True)
    parked = reactor._parked
    assert parked is not None and not parked.returned.is_set()  # not woken by the give-back
    assert not deferred.called.is_set()
    assert on_loop(reactor, thread_name) == REACTOR_NAME  # call_soon wakes it
    assert deferred.called.wait(10), "the lazy deferred call never ran"
    assert deferred.threads == [REACTOR_NAME]


def test_calls_deferred_when_the_reactor_closes_still_run(
    reactor: Reactor, socket_pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    """A leader that stops mid-turn just as the reactor is closed: its deferred calls run."""
    _conn, protocol, peer, deferred = attach_deferring(reactor, socket_pairs)
    leader = Leader(reactor, Until(protocol.received.is_set), 60.0)
    leader.start_leading()
    gate_open = threading.Event()
    original = reactor._give_back

    def close_first(lease: Any) -> None:
        reactor.close()  # the reactor thread will exit at once, with the call still deferred
        gate_open.set()
        original(lease)

    reactor._give_back = close_first  # type: ignore[method-assign]
    peer.sendall(b"last")
    assert leader.finish() is True
    assert gate_open.is_set()
    assert deferred.called.wait(10), "a deferred call was dropped when the reactor closed"
    assert deferred.threads == [REACTOR_NAME]


def test_wakeup_flag_wakes_its_waiter_and_may_be_set_twice() -> None:
    """``Wakeup``: the parked reactor thread's flag (a lock released once, not an Event)."""
    flag = lease.Wakeup()
    assert not flag.is_set()
    assert flag.wait(0.01) is False  # times out while unset
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(flag.wait(30)), name="wakeup-waiter")
    waiter.start()
    flag.set()
    waiter.join(10)
    assert not waiter.is_alive() and woke == [True]
    flag.set()  # again: no error, still set
    assert flag.is_set() and flag.wait(0) is True


# -- close and Ctrl-C --------------------------------------------------------------------------


@pytest.mark.parametrize("open_connection", [True, False], ids=["live-connection", "nothing-open"])
def test_close_while_leading_stops_the_leader_and_the_reactor_exits(
    reactor: Reactor,
    socket_pairs: Callable[[], tuple[socket.socket, socket.socket]],
    open_connection: bool,
) -> None:
    """``close()`` during a lease: the leader returns, gives back, and the reactor thread exits."""
    protocol: RecordingProtocol | None = None
    if open_connection:
        _conn, protocol, _peer = attach(reactor, socket_pairs)
    else:
        on_loop(reactor, lambda: None)
    until = Until()  # never holds: only the close ends the lead
    leader = Leader(reactor, until, 60.0)
    leader.start_leading()
    reactor.close()
    assert leader.finish() is True
    assert join_or_unpark(reactor), "the reactor thread did not exit after the leader gave back"
    assert not reactor.running
    if protocol is not None:
        assert protocol.lost == []  # closed by the reactor, not lost


_CHILD_PRELUDE = """
import signal
import socket
import sys
import threading

from runtime_job.api.stream import lease
from runtime_job.api.stream.reactor import Reactor

lease.LEASE_CHECK = 120.0
lease.GRANT_TIMEOUT = 30.0
reactor = Reactor("child-reactor", idle_timeout=60.0)
started = threading.Event()
reactor.call_soon(started.set)
assert started.wait(10)
main_id = threading.main_thread().ident
assert main_id is not None


def still_serves():
    names = []
    ran = threading.Event()
    reactor.call_soon(lambda: (names.append(threading.current_thread().name), ran.set()))
    assert ran.wait(10), "the reactor does not serve after the interrupt"
    assert names == ["child-reactor"], names
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def interrupted(lead):
    try:
        lead()
    except KeyboardInterrupt:
        return True
    return False
"""


_CHILD_EPILOGUE = """
reactor.close()
assert reactor.join(5)
print("CHILD-OK")
"""


def _run_child(body: str) -> None:
    """Run ``body`` after the prelude in a child interpreter; it must close the reactor and pass."""
    script = _CHILD_PRELUDE + textwrap.dedent(body) + _CHILD_EPILOGUE
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CHILD-OK" in done.stdout, done.stdout + done.stderr


def test_sigint_while_leading_is_raised_after_the_loop_is_given_back() -> None:
    """Ctrl-C during ``lead`` on the main thread: ``KeyboardInterrupt`` once the loop is back."""
    _run_child(
        """
        leading = threading.Event()

        def until():
            leading.set()
            return False  # never: only the interrupt ends the lead

        def kick():
            if leading.wait(10):
                signal.pthread_kill(main_id, signal.SIGINT)

        helper = threading.Thread(target=kick)
        helper.start()
        assert interrupted(lambda: reactor.lead(until, 30.0)), "no KeyboardInterrupt"
        helper.join(10)
        assert leading.is_set()
        still_serves()
        """
    )


def test_a_signal_wakes_the_selector_of_the_leading_main_thread() -> None:
    """While the main thread leads, the signal wake-up fd is the loop's, and is put back after.

    A Python handler runs only between bytecodes, so without the wake-up fd a ``SIGINT``
    that lands just before ``epoll_wait`` would wait for the whole lead.
    """
    _run_child(
        """
        before_r, before_w = socket.socketpair()
        before_w.setblocking(False)
        signal.set_wakeup_fd(before_w.fileno())
        seen = []

        def until():
            fd = signal.set_wakeup_fd(-1)
            signal.set_wakeup_fd(fd)
            seen.append(fd == reactor._loop.wake_w.fileno())
            return True

        assert reactor.lead(until, 5.0)
        assert seen == [True], seen
        assert signal.set_wakeup_fd(-1) == before_w.fileno()
        """
    )


def test_sigint_during_a_callback_waits_for_the_end_of_the_turn() -> None:
    """A Ctrl-C that lands inside ``data_received`` does not cut it: it is held, then raised."""
    _run_child(
        """
        ours, peer = socket.socketpair()
        steps = []

        class Interrupting:
            def data_received(self, data):
                steps.append("before")
                signal.pthread_kill(main_id, signal.SIGINT)  # handled at the next bytecode
                steps.append("after")

            def connection_lost(self, exc):
                pass

        attached = threading.Event()
        reactor.call_soon(lambda: (reactor.attach(ours, Interrupting()), attached.set()))
        assert attached.wait(10)
        leading = threading.Event()

        def until():
            if not leading.is_set():
                leading.set()
                peer.sendall(b"x")
            return False

        assert interrupted(lambda: reactor.lead(until, 30.0)), "no KeyboardInterrupt"
        assert steps == ["before", "after"], steps
        still_serves()
        peer.close()
        """
    )


# -- the stream hub ------------------------------------------------------------------------------


def test_wait_delivers_the_final_frame_on_the_waiting_thread(
    server: WsServer,
    params: ClientParameters,
    hub: StreamHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread in ``wait`` leads and reads the final frame: an inline listener gets it there."""
    monkeypatch.setattr(lease, "GRANT_TIMEOUT", 30.0)
    server.add_job("lead")  # the final frame comes only once the test thread leads
    rec = InlineRecorder()
    handle = hub.subscribe(job_id="lead", url=server.url("lead"), params=params, listener=rec)
    finished: list[bool] = []

    def until() -> bool:
        if not finished:
            finished.append(True)
            server.finish("lead", result="R")
        return any(frame.final for frame in rec.frames)

    assert handle.wait(until, 30.0) is True
    assert rec.payloads == ["R"]
    assert rec.threads == {threading.current_thread().name}
    assert rec.threads != {"runtime-job-stream-io"}
    rec.wait()
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
