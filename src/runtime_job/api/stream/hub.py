"""The stream hub: every job stream of the process, over a handful of threads.

One :class:`StreamHub` per process (:func:`default_hub`) owns every websocket the library
opens for ``/stream/jobs/{id}``; a client may be given another (``RuntimeClient(params,
hub=...)``). However many jobs stream at once, a hub runs at most six threads, all named
``runtime-job-stream-*``, daemon, started on demand and gone after a short idle period: the
reactor (``-io``, :mod:`.reactor`), handshakes (``-connect-N``, :mod:`.handshake`) and
listener callbacks (``-dispatch-N``, :mod:`.delivery`).

This module holds the hub's decisions: when to connect, what a lost connection means
(resume, complete, fail: :class:`~.reconnect.ReconnectPolicy`), and the lifecycle of each
subscription. ``docs/streaming.md`` describes the design and the guarantees.

Example::

    from runtime_job.api.stream import default_hub

    subscription = default_hub().subscribe(
        job_id=job_id,
        url=f"{params.get_websocket_base_url()}/stream/jobs/{job_id}",
        params=params,
        listener=listener,  # on_frame(frame), then on_end(end, error) exactly once
    )
    ...
    subscription.cancel()
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
import weakref
from functools import partial
from typing import Any, Final

from ..._pool import WorkerPool
from ..._process import ProcessSingleton
from ...exceptions import WebsocketError, WebsocketRetryableError
from ..params import ClientParameters
from ..protocol import StreamEnd, StreamListener
from .connection import SEQ, SEQ_PROTOCOL, StreamConnection
from .delivery import Delivery
from .frames import CLOSE_NORMAL
from .handshake import (
    HandshakeFailure,
    TlsContexts,
    check_url,
    close_quietly,
    connect_options,
    handshake,
    safe_url,
)
from .reactor import Reactor, TimerHandle
from .reconnect import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_HEALTHY_AFTER,
    DEFAULT_RECONNECT_BUDGET,
    ReconnectPolicy,
)
from .subscription import StreamHandle

logger = logging.getLogger("runtime_job.api.stream")

THREAD_PREFIX: Final = "runtime-job-stream"
"""Every hub thread's name starts with ``runtime-job-stream-``."""

DEFAULT_PING_INTERVAL: Final = 5.0
DEFAULT_PING_TIMEOUT: Final = 3.0
DEFAULT_IDLE_SHUTDOWN: Final = 1.5
DEFAULT_CONNECT_THREADS: Final = 2
DEFAULT_DISPATCH_THREADS: Final = 3
DEFAULT_CLOSE_TIMEOUT: Final = 1.0

_EXIT_CLOSE_TIMEOUT = 0.5
"""Bound on the ``atexit`` close: interpreter exit is never held up longer."""


def _nothing() -> None:
    """A reactor call that only makes sure the reactor thread is running."""


class StreamHub:
    """Owns every job stream of the process: sockets, reconnects, keepalive, callbacks.

    Use :func:`default_hub` in the library; build your own hub for tests, tools, or a
    client that must not share the process's (``RuntimeClient(params, hub=...)``), and
    :meth:`close` it when done.

    Args:
        reconnect: When to retry a lost connection and when to give up (default:
            ``ReconnectPolicy()``).
        ping_interval: Seconds between keepalive pings on each connection (also keeps idle
            streams alive through proxies with an idle timeout).
        ping_timeout: A connection that receives nothing (no pong, no data) within this many
            seconds of a ping is dead and is replaced.
        idle_shutdown: Seconds without work after which each hub thread exits.
        connect_threads: Bound on the handshake threads.
        dispatch_threads: Bound on the callback threads.
        close_timeout: Default bound, in seconds, on joining the threads in :meth:`close`.
        backoff_initial: Same as ``reconnect.initial_delay`` (kept for compatibility).
        backoff_max: Same as ``reconnect.max_delay`` (kept for compatibility).
        reconnect_budget: Same as ``reconnect.budget`` (kept for compatibility).
        healthy_after: Same as ``reconnect.healthy_after`` (kept for compatibility).

    Raises:
        ValueError: A setting is not positive.
    """

    def __init__(
        self,
        *,
        reconnect: ReconnectPolicy | None = None,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        idle_shutdown: float = DEFAULT_IDLE_SHUTDOWN,
        connect_threads: int = DEFAULT_CONNECT_THREADS,
        dispatch_threads: int = DEFAULT_DISPATCH_THREADS,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        backoff_initial: float | None = None,
        backoff_max: float | None = None,
        reconnect_budget: float | None = None,
        healthy_after: float | None = None,
    ) -> None:
        settings = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "idle_shutdown": idle_shutdown,
            "connect_threads": connect_threads,
            "dispatch_threads": dispatch_threads,
            "close_timeout": close_timeout,
            "backoff_initial": 1.0 if backoff_initial is None else backoff_initial,
            "backoff_max": 1.0 if backoff_max is None else backoff_max,
            "reconnect_budget": 1.0 if reconnect_budget is None else reconnect_budget,
            "healthy_after": 1.0 if healthy_after is None else healthy_after,
        }
        for name, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        policy = reconnect if reconnect is not None else ReconnectPolicy()
        loose = {
            "initial_delay": backoff_initial,
            "max_delay": backoff_max,
            "budget": reconnect_budget,
            "healthy_after": healthy_after,
        }
        overrides: dict[str, Any] = {k: v for k, v in loose.items() if v is not None}
        if overrides:
            policy = dataclasses.replace(policy, **overrides)
        self.reconnect: ReconnectPolicy = policy
        """When to retry a lost connection, and when to give up."""
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.idle_shutdown = float(idle_shutdown)
        self.close_timeout = float(close_timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._streams: set[Stream] = set()
        self._dispatched_streams = 0  # open streams whose listener is not inline
        self._tls = TlsContexts()
        self._reactor = Reactor(f"{THREAD_PREFIX}-io", self.idle_shutdown)
        self._connect_pool = WorkerPool(
            f"{THREAD_PREFIX}-connect", int(connect_threads), self.idle_shutdown
        )
        self._dispatch_pool = WorkerPool(
            f"{THREAD_PREFIX}-dispatch", int(dispatch_threads), self.idle_shutdown
        )
        _live_hubs.add(self)

    # -- the reconnect policy, under the names of the old settings ---------------------

    @property
    def backoff_initial(self) -> float:
        """``reconnect.initial_delay``."""
        return self.reconnect.initial_delay

    @property
    def backoff_max(self) -> float:
        """``reconnect.max_delay``."""
        return self.reconnect.max_delay

    @property
    def reconnect_budget(self) -> float:
        """``reconnect.budget``."""
        return self.reconnect.budget

    @property
    def healthy_after(self) -> float:
        """``reconnect.healthy_after``."""
        return self.reconnect.healthy_after

    # -- public API ---------------------------------------------------------------------

    def subscribe(
        self,
        *,
        job_id: str,
        url: str,
        params: ClientParameters,
        listener: StreamListener,
        after: int = 0,
        sequenced: bool = True,
        connect_now: bool = False,
    ) -> StreamHandle:
        """Start streaming one job into ``listener``; returns at once.

        With ``sequenced``, the hub asks for our sequenced protocol (``?seq=1&after=N``)
        and falls back to the plain one when the server does not acknowledge it; without
        it, ``url`` is used exactly as given (the reference's protocol). ``listener.on_frame``
        gets each message once, in order; ``listener.on_end`` follows exactly once.

        Args:
            job_id: The job, for logs and error messages.
            url: The websocket URL (``ws://`` or ``wss://``) of the job's stream.
            params: TLS (``verify``), proxies, connect timeout and auth headers. The read
                timeout bounds the wait for the server's acknowledgement.
            listener: Receives the frames and the end.
            after: Deliver only messages with a larger sequence number (resume point).
            sequenced: Ask for the sequenced protocol (only for a server that offers it).
            connect_now: Run the first handshake on the calling thread, so the server has
                accepted the connection when this returns (bounded by the connect
                timeout; a failed handshake is retried in the background as usual). For a
                job that publishes as soon as it runs, on a server that does not replay.

        Returns:
            A handle to cancel the stream, wait on it and watch its end.

        Raises:
            WebsocketError: The URL is not a websocket URL, the proxy or CA bundle setting
                cannot be used, or the hub is closed. Connection problems never raise here:
                they end the stream through ``on_end``.
        """
        check_url(url)
        sslopt = self._tls.sslopt(url, params)
        options = connect_options(url, params)
        stream = Stream(self, job_id, url, params, listener, int(after), options, sslopt)
        stream.sequenced = bool(sequenced)
        with self._lock:
            if self._closed:
                raise WebsocketError("The stream hub is closed.")
            self._streams.add(stream)
            # Warm the threads while the handshake runs: one connect thread and (for a
            # listener that needs one) one dispatcher stay parked while streams are open.
            self._connect_pool.keep(1)
            if not stream.inline:
                self._dispatched_streams += 1
                self._dispatch_pool.keep(1)
                self._dispatch_pool.prestart()
        logger.debug("Stream for job %s: subscribing to %s", job_id, stream.safe_url)
        if not self._reactor.running:
            self._reactor.call_soon(_nothing)  # it starts now, not when the socket is ready
        if connect_now:
            stream.attempt_started_at = time.monotonic()
            self._handshake(stream, stream.last_seq)
        else:
            self._launch(stream)
        return StreamHandle(stream)

    def warm(self) -> None:
        """Start the reactor and one connect thread now, for a stream about to be opened.

        Threads started this way exit after ``idle_shutdown`` if no stream follows.
        """
        if self.closed:
            return
        self._connect_pool.prestart()
        if not self._reactor.running:
            self._reactor.call_soon(_nothing)

    def close(self, timeout: float | None = None) -> None:
        """Cancel every stream, close every socket and stop every thread.

        Each open subscription ends with ``on_end(CANCELLED, None)`` (as far as the
        dispatchers get to run it within the timeout). Safe to call twice, and from a
        listener callback.

        Args:
            timeout: Bound, in seconds, on waiting for the threads (default
                ``close_timeout``). Threads still busy then (a listener that does not
                return, a handshake still connecting) are left to finish on their own:
                they are daemons and touch nothing of the closed hub.
        """
        bound = self.close_timeout if timeout is None else max(0.0, timeout)
        with self._lock:
            if self._closed:
                streams: list[Stream] = []
            else:
                self._closed = True
                streams = list(self._streams)
        for stream in streams:
            self._cancel(stream)
        self._connect_pool.shutdown(cancel_pending=True)
        self._reactor.close()
        self._dispatch_pool.shutdown(cancel_pending=False)
        deadline = time.monotonic() + bound
        joined = self._reactor.join(bound)
        joined = self._dispatch_pool.join(max(0.0, deadline - time.monotonic())) and joined
        joined = self._connect_pool.join(max(0.0, deadline - time.monotonic())) and joined
        if not joined:
            logger.debug("Stream hub closed with threads still finishing their work.")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def active_count(self) -> int:
        """Subscriptions that have not ended yet."""
        with self._lock:
            return len(self._streams)

    def __enter__(self) -> StreamHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StreamHub {state}, {self.active_count} active streams>"

    # -- subscription lifecycle (any thread) --------------------------------------------

    def _cancel(self, stream: Stream) -> None:
        if stream.finish(StreamEnd.CANCELLED, None, drop_pending=True):
            logger.debug("Stream for job %s: cancelled", stream.job_id)
            self._reactor.call_soon(partial(self._abort, stream))

    def _forget(self, delivery: Delivery) -> None:
        with self._lock:
            if delivery not in self._streams:
                return
            self._streams.discard(delivery)
            if not delivery.inline:
                self._dispatched_streams -= 1
                if not self._dispatched_streams:
                    self._dispatch_pool.keep(0)
            if not self._streams:
                self._connect_pool.keep(0)

    def _dispatch(self, delivery: Delivery) -> None:
        self._dispatch_pool.submit(delivery.drain)

    def _launch(self, stream: Stream) -> None:
        stream.attempt_started_at = time.monotonic()
        self._connect_pool.submit(partial(self._handshake, stream, stream.last_seq))

    # -- handshakes (connect threads) ---------------------------------------------------

    def _handshake(self, stream: Stream, after: int) -> None:
        if stream.end is not None:
            return
        result = handshake(stream, after, sequenced=stream.sequenced)
        if isinstance(result, HandshakeFailure):
            self._reactor.call_soon(partial(self._handshake_failed, stream, result))
        elif not self._reactor.call_soon(partial(self._handshake_done, stream, result)):
            result.close()

    # -- reactor thread -----------------------------------------------------------------

    def _handshake_done(self, stream: Stream, sock: socket.socket) -> None:
        if stream.end is not None or self._closed:
            close_quietly(sock)
            return
        connection = StreamConnection(self, stream)
        conn = self._reactor.attach(sock, connection)
        stream.conn = connection
        connection.start(conn)
        logger.debug("Stream for job %s: connected to %s", stream.job_id, stream.safe_url)

    def _handshake_failed(self, stream: Stream, failure: HandshakeFailure) -> None:
        if stream.end is not None:
            return
        if failure.retryable:
            self._retry(stream, failure.error, failure.retry_after)
        else:
            self._fail(stream, failure.error)

    def _disconnected(
        self,
        stream: Stream,
        connection: StreamConnection,
        code: int,
        error: WebsocketError | None,
    ) -> None:
        if stream.conn is connection:
            stream.conn = None
        if stream.end is not None:
            return
        if code == CLOSE_NORMAL and connection.mode != SEQ:
            # The plain protocol's normal end (and a server that closed before any ack).
            self._complete(stream)
            return
        if error is None:
            if code == CLOSE_NORMAL:
                text = "the server closed normally before the final frame"
            else:
                text = f"the connection closed with code {code}"
            error = WebsocketRetryableError(
                f"Stream for job {stream.job_id} at {stream.safe_url}: {text}."
            )
        self._retry(stream, error)

    def _retry(self, stream: Stream, error: WebsocketError, retry_after: float = 0.0) -> None:
        """Schedule the next attempt, or end with FAILED when the budget would run out."""
        now = time.monotonic()
        if stream.failing_since is None:
            stream.failing_since = min(now, stream.attempt_started_at or now)
        policy = self.reconnect
        delay = policy.delay(stream.attempts, retry_after)
        if not policy.allows(now - stream.failing_since, delay):
            failure = WebsocketError(
                f"Max retries exceeded: no healthy websocket connection for job "
                f"{stream.job_id} at {stream.safe_url} within {policy.budget:g} s "
                f"({stream.attempts + 1} attempts). Last error: {error}"
            )
            failure.__cause__ = error
            self._fail(stream, failure)
            return
        stream.attempts += 1
        logger.debug(
            "Stream for job %s: %s Reconnecting in %.2f s (attempt %d).",
            stream.job_id,
            error,
            delay,
            stream.attempts + 1,
        )
        stream.retry_timer = self._reactor.call_later(delay, partial(self._relaunch, stream))

    def _relaunch(self, stream: Stream) -> None:
        stream.retry_timer = None
        if stream.end is None:
            self._launch(stream)

    def _complete(self, stream: Stream) -> None:
        if stream.finish(StreamEnd.COMPLETED, None, drop_pending=False):
            logger.debug("Stream for job %s: completed", stream.job_id)

    def _fail(self, stream: Stream, error: WebsocketError) -> None:
        stream.finish(
            StreamEnd.FAILED,
            error,
            drop_pending=False,
            announce=partial(
                logger.warning, "Streaming results for job %s failed: %s", stream.job_id, error
            ),
        )
        self._abort(stream)

    def _abort(self, stream: Stream) -> None:
        if stream.retry_timer is not None:
            stream.retry_timer.cancel()
            stream.retry_timer = None
        connection = stream.conn
        if connection is not None:
            stream.conn = None
            connection.close(CLOSE_NORMAL)


class Stream(Delivery):
    """One subscription: its delivery (:class:`~.delivery.Delivery`), its settings and its
    reconnect state.

    The delivery's fields are guarded by its lock; every field added here belongs to the
    thread that runs the reactor's loop (the connect thread reads ``last_seq`` only through
    :meth:`StreamHub._launch`'s argument).
    """

    def __init__(
        self,
        hub: StreamHub,
        job_id: str,
        url: str,
        params: ClientParameters,
        listener: StreamListener,
        after: int,
        options: dict[str, Any],
        sslopt: dict[str, Any],
    ) -> None:
        super().__init__(job_id, listener, hub._dispatch, hub._forget)
        self.hub = hub
        self.url = url
        self.safe_url = safe_url(url)
        self.params = params
        self.options = options
        self.sslopt = sslopt
        self.sequenced = True
        self.parked: list[threading.Event] = []  # threads parked in wait() (see .waiting)
        self.last_seq = after
        self.conn: StreamConnection | None = None
        self.acknowledged = False  # a connection of this stream was acknowledged once
        self.attempts = 0
        self.failing_since: float | None = None
        self.attempt_started_at: float | None = None
        self.retry_timer: TimerHandle | None = None


# -- the process-wide hub -------------------------------------------------------------------

_live_hubs: weakref.WeakSet[StreamHub] = weakref.WeakSet()


def _close_every_hub(_default: StreamHub | None) -> None:
    for hub in list(_live_hubs):
        with contextlib.suppress(Exception):  # close does not raise; exit must stay quiet
            hub.close(timeout=_EXIT_CLOSE_TIMEOUT)


def _forget_hubs_after_fork() -> None:
    global _live_hubs
    _live_hubs = weakref.WeakSet()


_default_hub: ProcessSingleton[StreamHub] = ProcessSingleton(
    StreamHub,
    is_closed=lambda hub: hub.closed,
    at_exit=_close_every_hub,
    after_fork=_forget_hubs_after_fork,
)


def default_hub() -> StreamHub:
    """The process's stream hub, created on first use with the default settings.

    Thread-safe. If the hub was closed, the next call creates a fresh one (except during
    interpreter exit, when the closed hub is returned and ``subscribe`` raises). At exit
    every hub of the process is closed, with a short bound.

    Returns:
        The shared :class:`StreamHub`.
    """
    return _default_hub.get()


__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_CONNECT_THREADS",
    "DEFAULT_DISPATCH_THREADS",
    "DEFAULT_HEALTHY_AFTER",
    "DEFAULT_IDLE_SHUTDOWN",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_RECONNECT_BUDGET",
    "SEQ_PROTOCOL",
    "THREAD_PREFIX",
    "Stream",
    "StreamHub",
    "default_hub",
]
