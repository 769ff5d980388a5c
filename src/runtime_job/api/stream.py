"""The stream hub: every job stream of the process, over a handful of threads.

One :class:`StreamHub` per process (:func:`default_hub`) owns every websocket the library
opens for ``/stream/jobs/{id}``. However many jobs stream at once, it runs at most six
threads, all named ``runtime-job-stream-*``, daemon, started on demand and gone after a
short idle period:

- ``runtime-job-stream-io``: the reactor. It reads every socket (non-blocking, one
  selector), parses frames, answers pings, sends keepalive pings and runs every timer
  (backoff, keepalive, acknowledgement timeout).
- ``runtime-job-stream-connect-N`` (at most ``connect_threads``): blocking websocket
  handshakes through websocket-client (TCP connect, proxy tunnel, TLS, HTTP upgrade), each
  bounded by the connect timeout.
- ``runtime-job-stream-dispatch-N`` (at most ``dispatch_threads``): listener callbacks. Each
  subscription has its own queue, served by one dispatcher at a time, so its callbacks run
  in order and one at a time, and a slow listener holds up neither the reactor nor other
  jobs. A listener that runs no user code and never blocks (``inline = True``, such as the
  job's own completion watcher) is called directly on the reactor instead: one thread
  hand-off less between the final frame and the thread waiting in ``result()``.

Our server's sequenced protocol (``?seq=1&after=N``, see ``docs/wire-extensions.md``) gives
exactly-once, in-order delivery across reconnects; against a plain server the hub falls
back to the reference's protocol. ``docs/streaming.md`` describes the design and the
guarantees.

This module is the one place where websocket-client and socket exceptions become
:class:`~runtime_job.exceptions.WebsocketError` and its subclasses.

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
import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import websocket

from .._process import ProcessSingleton
from ..exceptions import (
    WebsocketAuthenticationError,
    WebsocketError,
    WebsocketIBMProtocolError,
    WebsocketRetryableError,
    WebsocketTimeoutError,
)
from .params import ClientParameters
from .protocol import StreamEnd, StreamFrame, StreamListener
from .stream_frames import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameError,
    FrameReader,
    decode_text,
    encode_close,
    encode_frame,
    parse_close,
)
from .stream_io import Connection, Reactor, TimerHandle
from .stream_pool import WorkerPool

logger = logging.getLogger(__name__)

THREAD_PREFIX: Final = "runtime-job-stream"
"""Every hub thread's name starts with ``runtime-job-stream-``."""
SEQ_PROTOCOL: Final = "seq.v1"
"""The ``protocol`` value of our server's acknowledgement."""

DEFAULT_BACKOFF_INITIAL: Final = 0.1
DEFAULT_BACKOFF_MAX: Final = 5.0
DEFAULT_RECONNECT_BUDGET: Final = 60.0
DEFAULT_HEALTHY_AFTER: Final = 5.0
DEFAULT_PING_INTERVAL: Final = 20.0
DEFAULT_PING_TIMEOUT: Final = 10.0
DEFAULT_IDLE_SHUTDOWN: Final = 1.5
DEFAULT_CONNECT_THREADS: Final = 2
DEFAULT_DISPATCH_THREADS: Final = 3
DEFAULT_CLOSE_TIMEOUT: Final = 1.0

_EXIT_CLOSE_TIMEOUT = 0.5
"""Bound on the ``atexit`` close: interpreter exit is never held up longer."""
_FINAL_CLOSE_GRACE = 1.0
"""After the final frame, seconds to wait for the server's close before closing ourselves."""
_DISPATCH_BATCH = 64
"""Callbacks one subscription runs per turn before letting other subscriptions go first."""
_MAX_ACK_SIZE = 64 * 1024
_INTERIM_HEADER = re.compile(rb'\{ ?"seq": ?(0|[1-9][0-9]{0,17}), ?"final": ?false ?\}')
"""``{"seq": N, "final": false}`` exactly (any other header goes through ``json.loads``)."""
_FINAL_HEADER = re.compile(
    rb'\{ ?"seq": ?(0|[1-9][0-9]{0,17}), ?"final": ?true, ?"status": ?"([A-Z_]{1,32})"'
    rb'(?:, ?"reason": ?null)? ?\}'
)
"""Our server's final header without a reason, read without the JSON parser: it is on the
path from the job's end to ``result()`` returning."""
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PROXY_SCHEMES = ("http", "socks4", "socks4a", "socks5", "socks5h")

_SEQ = "seq"
_PLAIN = "plain"


class _End:
    """The marker queued after a subscription's last frame."""


def _nothing() -> None:
    """A reactor call that only makes sure the reactor thread is running."""


_END = _End()


class StreamHub:
    """Owns every job stream of the process: sockets, reconnects, keepalive, callbacks.

    Use :func:`default_hub` in the library; build your own hub only for tests or tools
    that need other settings, and :meth:`close` it when done.

    Args:
        backoff_initial: First reconnect delay, in seconds. Each failed attempt doubles it.
        backoff_max: Cap on the reconnect delay. Each delay is jittered to 50-100%.
        reconnect_budget: Seconds a stream may go without a healthy connection before it
            ends with ``FAILED``. A healthy connection (acknowledged and then either
            delivering new data or staying up for ``healthy_after`` seconds) resets it.
        healthy_after: Seconds an acknowledged connection must stay up to count as healthy.
        ping_interval: Seconds between keepalive pings on each connection (also keeps idle
            streams alive through proxies with an idle timeout).
        ping_timeout: A connection that receives nothing (no pong, no data) within this many
            seconds of a ping is dead and is replaced.
        idle_shutdown: Seconds without work after which each hub thread exits.
        connect_threads: Bound on the handshake threads.
        dispatch_threads: Bound on the callback threads.
        close_timeout: Default bound, in seconds, on joining the threads in :meth:`close`.

    Raises:
        ValueError: A setting is not positive.
    """

    def __init__(
        self,
        *,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        reconnect_budget: float = DEFAULT_RECONNECT_BUDGET,
        healthy_after: float = DEFAULT_HEALTHY_AFTER,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        idle_shutdown: float = DEFAULT_IDLE_SHUTDOWN,
        connect_threads: int = DEFAULT_CONNECT_THREADS,
        dispatch_threads: int = DEFAULT_DISPATCH_THREADS,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        settings = {
            "backoff_initial": backoff_initial,
            "backoff_max": backoff_max,
            "reconnect_budget": reconnect_budget,
            "healthy_after": healthy_after,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "idle_shutdown": idle_shutdown,
            "connect_threads": connect_threads,
            "dispatch_threads": dispatch_threads,
            "close_timeout": close_timeout,
        }
        for name, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.reconnect_budget = float(reconnect_budget)
        self.healthy_after = float(healthy_after)
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.idle_shutdown = float(idle_shutdown)
        self.close_timeout = float(close_timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._streams: set[_Stream] = set()
        self._dispatched_streams = 0  # open streams whose listener is not inline
        self._ssl_contexts: dict[tuple[bool | str, str], ssl.SSLContext] = {}
        self._reactor = Reactor(f"{THREAD_PREFIX}-io", self.idle_shutdown)
        self._connect_pool = WorkerPool(
            f"{THREAD_PREFIX}-connect", int(connect_threads), self.idle_shutdown
        )
        self._dispatch_pool = WorkerPool(
            f"{THREAD_PREFIX}-dispatch", int(dispatch_threads), self.idle_shutdown
        )
        _live_hubs.add(self)

    # -- public API ---------------------------------------------------------------------

    def subscribe(
        self,
        *,
        job_id: str,
        url: str,
        params: ClientParameters,
        listener: StreamListener,
        after: int = 0,
    ) -> StreamHandle:
        """Start streaming one job into ``listener``; returns at once.

        The hub asks for the sequenced protocol (``?seq=1&after=N``) and falls back to the
        plain one when the server does not acknowledge it. ``listener.on_frame`` gets each
        message once, in order; ``listener.on_end`` follows exactly once.

        Args:
            job_id: The job, for logs and error messages.
            url: The websocket URL (``ws://`` or ``wss://``) of the job's stream.
            params: TLS (``verify``), proxies, connect timeout and auth headers. The read
                timeout bounds the wait for the server's acknowledgement.
            listener: Receives the frames and the end.
            after: Deliver only messages with a larger sequence number (resume point).

        Returns:
            A handle to cancel the stream and watch its end.

        Raises:
            WebsocketError: The URL is not a websocket URL, the proxy or CA bundle setting
                cannot be used, or the hub is closed. Connection problems never raise here:
                they end the stream through ``on_end``.
        """
        _check_url(url)
        sslopt = self._sslopt(url, params)
        options = _connect_options(url, params)
        stream = _Stream(self, job_id, url, params, listener, int(after), options, sslopt)
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
                streams: list[_Stream] = []
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

    def _cancel(self, stream: _Stream) -> None:
        if stream.finish(StreamEnd.CANCELLED, None, drop_pending=True):
            logger.debug("Stream for job %s: cancelled", stream.job_id)
            self._reactor.call_soon(partial(self._abort, stream))

    def _forget(self, stream: _Stream) -> None:
        with self._lock:
            if stream not in self._streams:
                return
            self._streams.discard(stream)
            if not stream.inline:
                self._dispatched_streams -= 1
                if not self._dispatched_streams:
                    self._dispatch_pool.keep(0)
            if not self._streams:
                self._connect_pool.keep(0)

    def _dispatch(self, stream: _Stream) -> None:
        self._dispatch_pool.submit(stream.drain)

    def _launch(self, stream: _Stream) -> None:
        stream.attempt_started_at = time.monotonic()
        self._connect_pool.submit(partial(self._handshake, stream, stream.last_seq))

    # -- handshakes (connect threads) ---------------------------------------------------

    def _handshake(self, stream: _Stream, after: int) -> None:
        if stream.end is not None:
            return
        url = _with_resume_query(stream.url, after)
        ws = websocket.WebSocket(
            sslopt=stream.sslopt, enable_multithread=False, skip_utf8_validation=True
        )
        ws.settimeout(stream.params.connect_timeout)
        try:
            ws.connect(url, **stream.options)  # type: ignore[no-untyped-call]
        except Exception as err:
            error, retryable, wait = _translate_handshake_error(err, ws, stream)
            del err
            failed = partial(self._handshake_failed, stream, error, retryable, wait)
            self._reactor.call_soon(failed)
            return
        sock = ws.sock
        assert sock is not None  # connect() succeeded
        ws.sock = None  # the reactor owns the socket now
        if not self._reactor.call_soon(partial(self._handshake_done, stream, sock)):
            sock.close()

    # -- reactor thread -----------------------------------------------------------------

    def _handshake_done(self, stream: _Stream, sock: socket.socket) -> None:
        if stream.end is not None or self._closed:
            _close_quietly(sock)
            return
        connection = _StreamConnection(self, stream)
        conn = self._reactor.attach(sock, connection)
        stream.conn = connection
        connection.start(conn)
        logger.debug("Stream for job %s: connected to %s", stream.job_id, stream.safe_url)

    def _handshake_failed(
        self, stream: _Stream, error: WebsocketError, retryable: bool, retry_after: float
    ) -> None:
        if stream.end is not None:
            return
        if retryable:
            self._retry(stream, error, retry_after)
        else:
            self._fail(stream, error)

    def _disconnected(
        self,
        stream: _Stream,
        connection: _StreamConnection,
        code: int,
        error: WebsocketError | None,
    ) -> None:
        if stream.conn is connection:
            stream.conn = None
        if stream.end is not None:
            return
        if code == CLOSE_NORMAL and connection.mode != _SEQ:
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

    def _retry(self, stream: _Stream, error: WebsocketError, retry_after: float = 0.0) -> None:
        """Schedule the next attempt, or end with FAILED when the budget would run out.

        The delay is the capped exponential backoff, jittered to 50-100%, or the server's
        ``Retry-After`` when that is longer (the budget still bounds the total).
        """
        now = time.monotonic()
        if stream.failing_since is None:
            stream.failing_since = min(now, stream.attempt_started_at or now)
        elapsed = now - stream.failing_since
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(stream.attempts, 32))
        delay = max(delay * random.uniform(0.5, 1.0), retry_after)
        if elapsed + delay > self.reconnect_budget:
            failure = WebsocketError(
                f"Max retries exceeded: no healthy websocket connection for job "
                f"{stream.job_id} at {stream.safe_url} within {self.reconnect_budget:g} s "
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

    def _relaunch(self, stream: _Stream) -> None:
        stream.retry_timer = None
        if stream.end is None:
            self._launch(stream)

    def _complete(self, stream: _Stream) -> None:
        if stream.finish(StreamEnd.COMPLETED, None, drop_pending=False):
            logger.debug("Stream for job %s: completed", stream.job_id)

    def _fail(self, stream: _Stream, error: WebsocketError) -> None:
        stream.finish(
            StreamEnd.FAILED,
            error,
            drop_pending=False,
            announce=partial(
                logger.warning, "Streaming results for job %s failed: %s", stream.job_id, error
            ),
        )
        self._abort(stream)

    def _abort(self, stream: _Stream) -> None:
        if stream.retry_timer is not None:
            stream.retry_timer.cancel()
            stream.retry_timer = None
        connection = stream.conn
        if connection is not None:
            stream.conn = None
            connection.close(CLOSE_NORMAL)

    # -- settings -----------------------------------------------------------------------

    def _sslopt(self, url: str, params: ClientParameters) -> dict[str, Any]:
        if not url.lower().startswith("wss:"):
            return {}
        verify = params.verify
        bundle = ""
        if verify is True:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or ""
        key = (verify, bundle)
        with self._lock:
            context = self._ssl_contexts.get(key)
        if context is None:
            context = _make_ssl_context(verify, bundle)
            with self._lock:
                context = self._ssl_contexts.setdefault(key, context)
        return {"context": context}


class StreamHandle:
    """A handle on one subscription (implements ``StreamSubscription``).

    Attributes:
        job_id: The job being streamed.
    """

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream
        self.job_id = stream.job_id

    def cancel(self) -> None:
        """Stop the stream now; ``on_end(CANCELLED, None)`` follows unless it already ended.

        Returns at once: the socket is closed by the reactor (close 1000, best effort).
        Frames queued but not yet delivered are dropped; a callback already running
        finishes. Safe to call at any time, twice, or from a listener callback; a cancel
        before the connection is even open is never lost.
        """
        self._stream.hub._cancel(self._stream)

    @property
    def active(self) -> bool:
        """Whether the stream has not ended yet (``False`` as soon as ``cancel`` returns)."""
        return self._stream.end is None

    @property
    def reconnecting(self) -> bool:
        """Whether the stream lost its connection, or could not open one, and tries again.

        ``True`` from the first failed attempt until a new connection delivers data or stays
        up (see ``healthy_after``); a waiting job then polls instead of trusting the stream.
        """
        stream = self._stream
        return stream.end is None and stream.failing_since is not None

    @property
    def end(self) -> StreamEnd | None:
        """How the stream ended, once it has."""
        return self._stream.end

    @property
    def error(self) -> BaseException | None:
        """The error the stream ended with (``FAILED`` only)."""
        return self._stream.error

    def serve_until(self, until: Callable[[], bool], timeout: float) -> bool:
        """Lend the calling thread to the hub while it waits for ``until()`` (see ``Reactor.lead``).

        The thread reads the process's sockets itself, so what this stream delivers to an
        inline listener reaches the waiter with no thread hand-off. A final frame of a stream
        with callbacks that arrives while its waiter serves is delivered by the waiter
        itself, after it has given the loop back: the last callbacks then run on the thread
        that waits for them, with no hand-off either.

        Args:
            until: Checked after each socket the thread serves; cheap and lock-free.
            timeout: Seconds to serve at most.

        Returns:
            ``False`` at once when the hub cannot lend its loop now (the caller waits its
            own way), ``True`` after serving.
        """
        stream = self._stream
        me = threading.get_ident()
        stream.waiters.add(me)
        try:
            served = stream.hub._reactor.lead(lambda: stream.host == me or until(), timeout)
        except BaseException:
            stream.unhost(me, run=False)  # no callbacks on an interrupted thread
            raise
        finally:
            stream.waiters.discard(me)
        stream.unhost(me, run=True)
        return served

    def wake(self) -> None:
        """Make a thread in :meth:`serve_until` check its ``until`` again now (any thread)."""
        self._stream.hub._reactor.poke()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until ``on_end`` has returned.

        Args:
            timeout: Seconds to wait, or ``None`` for no limit.

        Returns:
            Whether the listener has been told the end.
        """
        return self._stream.done.wait(timeout)

    def __repr__(self) -> str:
        state = "active" if self.active else f"ended={self._stream.end}"
        return f"<StreamHandle job={self.job_id} {state}>"


class _Stream:
    """One subscription: its settings, its delivery queue and its reconnect state.

    ``end``, ``error`` and the queue are guarded by ``_lock``; every other mutable field
    belongs to the reactor thread.
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
        self.hub = hub
        self.job_id = job_id
        self.url = url
        self.safe_url = _safe_url(url)
        self.params = params
        self.listener = listener
        self.options = options
        self.sslopt = sslopt
        self._lock = threading.Lock()
        self.end: StreamEnd | None = None
        self.error: BaseException | None = None
        self._items: deque[StreamFrame | _End] = deque()
        self._scheduled = False
        self.waiters: set[int] = set()  # threads serving the hub while they wait for this
        self.host: int | None = None  # the waiter that took the final frame to deliver
        self.done = threading.Event()
        # An inline listener is called on the reactor (or on the thread that cancels), one
        # call at a time under ``_serial``: no hand-off to a dispatcher.
        self.inline = getattr(listener, "inline", False) is True
        self._serial = threading.RLock()  # re-entrant: the listener may cancel its stream
        self._end_called = False
        # Reactor thread (the connect thread reads last_seq through _launch's argument).
        self.last_seq = after
        self.conn: _StreamConnection | None = None
        self.attempts = 0
        self.failing_since: float | None = None
        self.attempt_started_at: float | None = None
        self.retry_timer: TimerHandle | None = None

    def push(self, frame: StreamFrame) -> None:
        """Queue a frame for the listener, or hand it over now if inline (reactor thread)."""
        if self.inline:
            with self._serial:
                if self.end is None and not self._end_called:
                    self._call_frame(frame)
            return
        with self._lock:
            if self.end is not None:
                return
            self._items.append(frame)
            if self._scheduled:
                return
            self._scheduled = True
            if frame.final and threading.get_ident() in self.waiters:
                # Read by a thread that waits for this stream: it delivers the rest itself.
                self.host = threading.get_ident()
                return
        self.hub._dispatch(self)

    def unhost(self, thread: int, *, run: bool) -> None:
        """A waiter that took the delivery (``host``) runs it now, or hands it to a dispatcher."""
        if self.host != thread:
            return  # only ``thread`` itself, while it waited, could have made it the host
        with self._lock:
            if self.host != thread:
                return
            self.host = None
        if run:
            self.drain()
        else:
            self.hub._dispatch(self)

    def finish(
        self,
        end: StreamEnd,
        error: BaseException | None,
        *,
        drop_pending: bool,
        announce: Callable[[], None] | None = None,
    ) -> bool:
        """Record the end once and queue ``on_end`` (inline: call it); whether this was the first.

        ``announce`` (a log line) runs only for the first call, before ``on_end`` is queued,
        so whoever waits for ``on_end`` also sees the log record.
        """
        schedule = False
        with self._lock:
            if self.end is not None:
                return False
            self.end = end
            self.error = error
            if announce is not None:
                announce()
            if not self.inline:
                if drop_pending:
                    self._items.clear()
                self._items.append(_END)
                schedule = not self._scheduled
                self._scheduled = True
        self.hub._forget(self)
        if self.inline:
            with self._serial:
                if not self._end_called:
                    self._call_end()
        elif schedule:
            self.hub._dispatch(self)
        return True

    def drain(self) -> None:
        """Run this subscription's queued callbacks, in order (a dispatcher thread).

        Only one dispatcher runs a subscription at a time (``_scheduled``). It takes a batch,
        runs it, and goes to the back of the line if more came meanwhile, so a busy stream
        never keeps the others waiting for long.
        """
        items = self._items
        with self._lock:
            batch = [items.popleft() for _ in range(min(len(items), _DISPATCH_BATCH))]
        for item in batch:
            if isinstance(item, _End):
                self._call_end()
            else:
                self._call_frame(item)  # skipped if cancelled since the batch was taken
        del batch
        with self._lock:
            if not items:
                self._scheduled = False
                return
        self.hub._dispatch(self)

    def _call_frame(self, frame: StreamFrame) -> None:
        if self.end is StreamEnd.CANCELLED:
            return
        try:
            self.listener.on_frame(frame)
        except Exception:
            logger.warning(
                "The stream listener of job %s raised on a frame; streaming continues.",
                self.job_id,
                exc_info=True,
            )

    def _call_end(self) -> None:
        assert self.end is not None
        self._end_called = True
        try:
            self.listener.on_end(self.end, self.error)
        except Exception:
            logger.warning(
                "The stream listener of job %s raised at the end of the stream.",
                self.job_id,
                exc_info=True,
            )
        finally:
            self.done.set()


class _ProtocolViolation(Exception):
    """The server broke the sequenced stream protocol."""


class _StreamConnection:
    """One websocket connection of a stream, driven by the reactor thread."""

    def __init__(self, hub: StreamHub, stream: _Stream) -> None:
        self.hub = hub
        self.stream = stream
        self.reader = FrameReader()
        self.conn: Connection | None = None
        self.mode: str | None = None
        self.final_seen = False
        self.done = False
        self.last_rx = time.monotonic()
        self.ping_sent_at = 0.0
        self._ack_timer: TimerHandle | None = None
        self._ping_timer: TimerHandle | None = None
        self._healthy_timer: TimerHandle | None = None
        self._grace_timer: TimerHandle | None = None

    def start(self, conn: Connection) -> None:
        self.conn = conn
        reactor = self.hub._reactor
        self._ack_timer = reactor.call_later(self.stream.params.read_timeout, self._ack_timeout)
        self._ping_timer = reactor.call_later(self.hub.ping_interval, self._ping)

    # -- ConnectionProtocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        try:
            self.reader.feed(data, self._on_message)
        except (FrameError, _ProtocolViolation) as err:
            self._protocol_error(str(err))

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.done:
            return
        self._stop()
        if self.final_seen:
            return
        if exc is None:
            text = "the server dropped the connection without a close frame (1006)"
        else:
            text = f"the connection failed: {type(exc).__name__}: {exc}"
        error = WebsocketRetryableError(
            f"Stream for job {self.stream.job_id} at {self.stream.safe_url}: {text}."
        )
        if exc is not None:
            error.__cause__ = exc
        self.hub._disconnected(self.stream, self, CLOSE_ABNORMAL, error)

    # -- closing -----------------------------------------------------------------------

    def close(self, code: int) -> None:
        """Send a close frame (best effort) and close the socket now."""
        if self.done:
            return
        self._stop()
        conn = self.conn
        if conn is not None:
            conn.write(encode_close(code))
            conn.close()

    def _stop(self) -> None:
        self.done = True
        self.reader.stop()
        for timer in (self._ack_timer, self._ping_timer, self._healthy_timer, self._grace_timer):
            if timer is not None:
                timer.cancel()
        self._ack_timer = self._ping_timer = self._healthy_timer = self._grace_timer = None

    def _protocol_error(self, text: str) -> None:
        if self.done:
            return
        self.close(1002)
        error = WebsocketIBMProtocolError(
            f"The stream of job {self.stream.job_id} at {self.stream.safe_url} broke the "
            f"protocol: {text}"
        )
        self.hub._fail(self.stream, error)

    # -- timers ------------------------------------------------------------------------

    def _ack_timeout(self) -> None:
        self._ack_timer = None
        if self.done or self.mode is not None:
            return
        self._lost(
            WebsocketTimeoutError(
                f"Stream for job {self.stream.job_id} at {self.stream.safe_url}: no "
                f"acknowledgement within {self.stream.params.read_timeout:g} s."
            )
        )

    def _ping(self) -> None:
        self._ping_timer = None
        if self.done or self.conn is None:
            return
        self.ping_sent_at = time.monotonic()
        self.conn.write(encode_frame(OP_PING))
        self._ping_timer = self.hub._reactor.call_later(self.hub.ping_timeout, self._check_alive)

    def _check_alive(self) -> None:
        self._ping_timer = None
        if self.done:
            return
        if self.last_rx >= self.ping_sent_at:
            wait = self.ping_sent_at + self.hub.ping_interval - time.monotonic()
            self._ping_timer = self.hub._reactor.call_later(wait, self._ping)
            return
        self._lost(
            WebsocketTimeoutError(
                f"Stream for job {self.stream.job_id} at {self.stream.safe_url}: nothing "
                f"received within {self.hub.ping_timeout:g} s of a keepalive ping."
            )
        )

    def _healthy(self) -> None:
        self._healthy_timer = None
        if not self.done:
            self.stream.attempts = 0
            self.stream.failing_since = None

    def _lost(self, error: WebsocketError) -> None:
        self.close(CLOSE_GOING_AWAY)
        self.hub._disconnected(self.stream, self, CLOSE_ABNORMAL, error)

    # -- messages ----------------------------------------------------------------------

    def _on_message(self, opcode: int, buf: bytes | bytearray, start: int, end: int) -> None:
        if self.done:
            return
        if opcode == OP_PING:
            assert self.conn is not None
            self.conn.write(encode_frame(OP_PONG, bytes(buf[start:end])))
        elif opcode == OP_PONG:
            pass
        elif opcode == OP_CLOSE:
            code, _reason = parse_close(buf, start, end)
            if self.final_seen:
                # The expected end. Answering it (a frame, a socket to close: 100-200 µs)
                # waits for the end of the turn, so a thread leading the loop for this
                # stream's final frame, often read together with it, goes first.
                self.hub._reactor.defer(partial(self.close, CLOSE_NORMAL))
                return
            self.close(CLOSE_NORMAL)
            self.hub._disconnected(self.stream, self, code, None)
        elif self.final_seen:
            pass  # nothing counts after the final frame
        elif self.mode is None:
            self._on_ack(buf, start, end)
        elif self.mode == _SEQ:
            self._on_sequenced(buf, start, end)
        else:
            self._on_plain(buf, start, end)

    def _on_ack(self, buf: bytes | bytearray, start: int, end: int) -> None:
        mode = _PLAIN
        if end - start <= _MAX_ACK_SIZE:
            try:
                ack = json.loads(buf[start:end])
            except ValueError:
                ack = None
            if isinstance(ack, dict) and ack.get("protocol") == SEQ_PROTOCOL:
                mode = _SEQ
        self.mode = mode
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._healthy_timer = self.hub._reactor.call_later(self.hub.healthy_after, self._healthy)
        logger.debug(
            "Stream for job %s: acknowledged (%s protocol, after %d)",
            self.stream.job_id,
            mode,
            self.stream.last_seq,
        )

    def _on_sequenced(self, buf: bytes | bytearray, start: int, end: int) -> None:
        newline = buf.find(b"\n", start, end)
        if newline < 0:
            raise _ProtocolViolation("a frame without a header line")
        stream = self.stream
        plain_header = _INTERIM_HEADER.fullmatch(buf, start, newline)
        if plain_header is not None:
            # The common interim header, read without the JSON parser (a third of the cost).
            seq = int(plain_header.group(1))
            if seq <= stream.last_seq:
                return  # already delivered (a replay after a reconnect)
            frame = StreamFrame(decode_text(buf, newline + 1, end), seq=seq)
        elif (final_header := _FINAL_HEADER.fullmatch(buf, start, newline)) is not None:
            seq = int(final_header.group(1))
            if seq <= stream.last_seq:
                return  # already delivered (a replay after a reconnect)
            frame = StreamFrame(
                decode_text(buf, newline + 1, end),
                seq=seq,
                final=True,
                status=final_header.group(2).decode("ascii"),
            )
        else:
            try:
                header = json.loads(buf[start:newline])
            except ValueError:
                raise _ProtocolViolation("a frame header that is not JSON") from None
            value = header.get("seq") if isinstance(header, dict) else None
            if not isinstance(value, int) or isinstance(value, bool):
                raise _ProtocolViolation("a frame header without an integer 'seq'")
            seq = value
            if seq <= stream.last_seq:
                return  # already delivered (a replay after a reconnect)
            status = header.get("status")
            reason = header.get("reason")
            frame = StreamFrame(
                decode_text(buf, newline + 1, end),
                seq=seq,
                final=header.get("final") is True,
                status=status if isinstance(status, str) else None,
                reason=reason if isinstance(reason, str) else None,
            )
        final = frame.final
        stream.last_seq = seq
        stream.attempts = 0
        stream.failing_since = None
        stream.push(frame)
        if final:
            self.final_seen = True
            # The listener has the final frame (or its queue has, for a waiting thread to
            # deliver): the stream's end follows at the end of the turn (Reactor.defer), so
            # a thread leading the loop for this frame goes first.
            self.hub._reactor.defer(self._after_final)

    def _after_final(self) -> None:
        """End the stream, then give the server a grace period to close the connection."""
        self.hub._complete(self.stream)
        if self.done:
            return  # closed meanwhile (cancelled, or the hub is closing)
        for timer in (self._ping_timer, self._healthy_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._healthy_timer = None
        self._grace_timer = self.hub._reactor.call_later(_FINAL_CLOSE_GRACE, self._grace, lazy=True)
        if self.conn is not None:
            self.conn.lingering = True

    def _grace(self) -> None:
        self._grace_timer = None
        self.close(CLOSE_NORMAL)

    def _on_plain(self, buf: bytes | bytearray, start: int, end: int) -> None:
        stream = self.stream
        stream.attempts = 0
        stream.failing_since = None
        stream.push(StreamFrame(decode_text(buf, start, end)))


# -- helpers -------------------------------------------------------------------------------


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        raise WebsocketError(f"Not a websocket URL: {_safe_url(url)!r} (use ws:// or wss://).")


def _safe_url(url: str) -> str:
    """``url`` without credentials or query: safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _with_resume_query(url: str, after: int) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k not in ("seq", "after")]
    query += [("seq", "1"), ("after", str(after))]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _connect_options(url: str, params: ClientParameters) -> dict[str, Any]:
    options: dict[str, Any] = {
        "header": [f"{name}: {value}" for name, value in params.auth_headers().items()],
        # Never follow redirects: the auth headers would go to wherever they point.
        "redirect_limit": 0,
    }
    proxy = params.proxy_config.for_url(url)
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        scheme = parts.scheme.lower()
        if scheme not in _PROXY_SCHEMES or not parts.hostname:
            raise WebsocketError(
                f"Proxy {_safe_url(proxy)!r} cannot carry websockets: use an http:// "
                "(HTTP CONNECT) or socks5:// proxy URL."
            )
        options["http_proxy_host"] = parts.hostname
        options["http_proxy_port"] = parts.port or (80 if scheme == "http" else 1080)
        options["proxy_type"] = scheme
        options["http_proxy_timeout"] = params.connect_timeout
        if parts.username:
            options["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
    return options


def _make_ssl_context(verify: bool | str, bundle: str) -> ssl.SSLContext:
    """The TLS context for ``verify``: the same trust as the REST session (requests)."""
    try:
        if verify is False:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        path = verify if isinstance(verify, str) else bundle
        if not path:
            try:
                import certifi  # requests' default trust store

                path = certifi.where()
            except ImportError:  # pragma: no cover - requests depends on certifi
                return ssl.create_default_context()
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as err:
        raise WebsocketError(f"Cannot use the CA bundle {verify!r}: {err}") from err


def _translate_handshake_error(
    err: Exception, ws: websocket.WebSocket, stream: _Stream
) -> tuple[WebsocketError, bool, float]:
    """Our error for a failed handshake, whether a retry may help, and the server's wait."""
    where = f"for job {stream.job_id} at {stream.safe_url}"
    error: WebsocketError
    retryable = True
    retry_after = 0.0
    if isinstance(err, websocket.WebSocketBadStatusException):
        retry_after = _retry_after(err.resp_headers)
        status = err.status_code
        text = f"HTTP {status}" + (f" {err.status_message}" if err.status_message else "")
        if status in (401, 403):
            error = WebsocketAuthenticationError(
                f"The server refused the websocket handshake {where}: {text}."
            )
            retryable = False
        elif status == 404:
            error = WebsocketError(
                f"The server refused the websocket handshake {where}: {text} "
                "(no such job, or not yours)."
            )
            retryable = False
        else:
            error = WebsocketRetryableError(f"The websocket handshake {where} got {text}.")
    elif (
        isinstance(err, websocket.WebSocketException)
        and ws.handshake_response is not None
        and ws.handshake_response.status in _REDIRECT_STATUSES
    ):
        error = WebsocketError(
            f"The websocket handshake {where} was redirected "
            f"(HTTP {ws.handshake_response.status}); redirects are not followed."
        )
        retryable = False
    elif isinstance(err, TimeoutError | websocket.WebSocketTimeoutException):
        error = WebsocketTimeoutError(
            f"The websocket handshake {where} timed out ({stream.params.connect_timeout:g} s)."
        )
    elif isinstance(err, ssl.SSLError):
        error = WebsocketRetryableError(f"The TLS handshake {where} failed: {err}")
    elif isinstance(err, websocket.WebSocketProxyException):
        error = WebsocketRetryableError(f"The proxy refused the websocket {where}: {err}")
    elif isinstance(err, OSError | websocket.WebSocketException):
        error = WebsocketRetryableError(
            f"Could not open the websocket {where}: {type(err).__name__}: {err}"
        )
    else:
        error = WebsocketError(
            f"Unexpected error opening the websocket {where}: {type(err).__name__}: {err}"
        )
        retryable = False
    error.__cause__ = err
    return error, retryable, retry_after


def _retry_after(headers: dict[str, str] | None) -> float:
    """Seconds asked by a ``Retry-After`` header (numeric form only), else 0."""
    value = (headers or {}).get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return 0.0
    return seconds if 0 < seconds < float("inf") else 0.0


def _close_quietly(sock: socket.socket) -> None:
    """Best-effort close 1000 on a socket nobody wants any more, then close it."""
    try:
        sock.setblocking(False)
        sock.send(encode_close(CLOSE_NORMAL))
    except OSError:
        pass
    finally:
        sock.close()


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
    "StreamHandle",
    "StreamHub",
    "default_hub",
]
