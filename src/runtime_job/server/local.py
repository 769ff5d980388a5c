""":class:`LocalRuntimeServer`: the whole local server, embedded in the current process.

uvicorn serves the application in a named background thread
(``runtime-job-server``); programs run in a pool of worker processes driven by the
``runtime-job-runner`` thread. :meth:`LocalRuntimeServer.stop` stops both, kills the
workers and joins the threads, in bounded time.

Example::

    with LocalRuntimeServer(data_dir=tmp_path, tokens=["secret"]) as server:
        requests.post(server.url + "/jobs", json={"program_id": "hello-world"},
                      headers={"X-Access-Token": server.token})
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import importlib.util
import ipaddress
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .._redact import RedactingFilter
from .._version import __version__
from . import config as limits
from .app import AppContext, Notifier, StreamHub, create_app
from .auth import Authenticator
from .legacy_extras import legacy_extras_router
from .paths import DataDir
from .platform import platform_router
from .programs import ProgramLike, ProgramRegistry
from .runner import Runner
from .store import Store

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0
_REDACTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets", __package__)
"""Loggers whose records are scrubbed of credentials while a server runs. The websocket
library logs every handshake header at DEBUG on ``uvicorn.error`` (``X-Access-Token``
included); a logger's filters only see records logged on that very logger, hence the list."""


class DataDirInUse(RuntimeError):
    """Another server already serves this data directory.

    Attributes:
        url: That server's URL, when known.
        pid: That server's process id, when known.
    """

    def __init__(self, message: str, url: str | None = None, pid: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.pid = pid


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _websocket_implementation() -> str:
    """The uvicorn websocket protocol to use: ``websockets`` (sans-I/O), else ``wsproto``."""
    for module, name in (("websockets", "websockets-sansio"), ("wsproto", "wsproto")):
        if importlib.util.find_spec(module) is not None:
            return name
    logger.warning(
        "Neither 'websockets' nor 'wsproto' is installed: /stream/jobs/{id} will not work. "
        "Install runtime-job[server] (or the websockets package)."
    )
    return "none"


class _ServerLoop(asyncio.SelectorEventLoop):
    """The server thread's loop: a TLS handshake is held to the limits of a request head.

    asyncio gives a handshake 60 s, and uvicorn's protocol (with the head timer and the
    connection cap) hears of a TLS connection only once its handshake is done: before it, a
    connection that sends nothing would be neither bounded nor counted. Here the handshake
    gets the head's timeout (uvicorn takes none; it creates its server on this loop), and
    each connection in its handshake is known (:attr:`handshaking`) so the cap counts it.
    """

    def __init__(self, handshake_timeout: float) -> None:
        super().__init__()
        self._handshake_timeout = handshake_timeout
        self.handshaking: dict[_GuardedH11, asyncio.Transport] = {}
        """Connections in their TLS handshake, oldest first, with their TLS transport."""
        self.tls: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()
        """The TLS transports not yet forgotten (one still closing holds its socket)."""

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self._handshake_timeout)
        return await super().create_server(*args, **kwargs)

    def _make_ssl_transport(self, rawsock: Any, protocol: Any, *args: Any, **kwargs: Any) -> Any:
        # asyncio's step for an accepted TLS connection: the one place its transport is seen
        # before the handshake ends (the waiter is done when the handshake ends either way).
        transport = super()._make_ssl_transport(  # type: ignore[misc]
            rawsock, protocol, *args, **kwargs
        )
        self.tls.add(transport)
        waiter = kwargs.get("waiter")
        if isinstance(protocol, _GuardedH11) and kwargs.get("server_side") and waiter is not None:
            self.handshaking[protocol] = transport
            waiter.add_done_callback(lambda _: self.handshaking.pop(protocol, None))
            protocol.handshake_started()
        return transport


_NO_HANDSHAKES: dict[Any, asyncio.Transport] = {}


def _handshaking(loop: asyncio.AbstractEventLoop) -> dict[Any, asyncio.Transport]:
    """The connections of ``loop`` in their TLS handshake (none on another loop)."""
    return loop.handshaking if isinstance(loop, _ServerLoop) else _NO_HANDSHAKES


class _GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with what it lacks against idle connections (slowloris).

    - A connection must send a complete request head within :attr:`head_timeout` seconds of
      opening, or of the first byte of its next request, or it is closed. uvicorn bounds
      only the idle time between requests (``timeout_keep_alive``), not a head that never
      ends, nor a connection that never sends anything.
    - Beyond :attr:`max_connections`, a new connection makes room by closing the oldest
      connection that is waiting for its first request head (else the oldest idle
      kept-alive one); when every connection is busy, the newcomer is closed. (uvicorn's
      ``limit_concurrency`` answers 503 per request, counting connections already closing
      and the idle ones that would make room: it refuses users while a slowloris holds
      the slots.)

    A websocket is authenticated in its handshake (a request head), so a websocket that has
    not authenticated is covered by the same bound.
    """

    head_timeout: float = limits.REQUEST_HEAD_TIMEOUT
    max_connections: int = limits.MAX_CONNECTIONS

    _head_timer: asyncio.TimerHandle | None = None
    _opened: float = 0.0
    _served = 0

    def handshake_started(self) -> None:
        """A TLS connection was accepted: it counts against the cap from now on."""
        self._opened = self.loop.time()
        self._make_room()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _handshaking(self.loop).pop(self, None)
        super().connection_made(transport)
        self._opened = self._opened or self.loop.time()
        self._start_head_timer()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing() or not self._awaiting_head():
            self._stop_head_timer()
        elif self._head_timer is None:
            self._start_head_timer()

    def on_response_complete(self) -> None:
        self._served += 1
        super().on_response_complete()

    def _awaiting_head(self) -> bool:
        """Whether no request is in progress: the next bytes are a request head."""
        return self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        )

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head() and not self.transport.is_closing():
            self.transport.close()

    def _make_room(self) -> None:
        """Beyond the cap, close the oldest other connection waiting for a request head (or
        in its TLS handshake), or else this one.

        Connections already closing (their loss is reported on the loop's next turn) are
        neither counted nor chosen.
        """
        handshaking = _handshaking(self.loop)
        if len(self.connections) + len(handshaking) <= self.max_connections:
            return
        live = [conn for conn in self.connections if not _is_closing(conn)]
        if len(live) + len(handshaking) <= self.max_connections:
            return
        waiting = [
            conn
            for conn in live
            if isinstance(conn, _GuardedH11) and conn is not self and conn._awaiting_head()
        ]
        waiting += [conn for conn in handshaking if conn is not self]
        # Connections that never completed a request go first (that is what a slowloris
        # opens); a client's kept-alive connection only when none is left. When every
        # connection is busy with a request or a stream, the newcomer is refused.
        victim = min(waiting, key=lambda conn: (conn._served > 0, conn._opened), default=self)
        victim._close_now()

    def _close_now(self) -> None:
        self._stop_head_timer()
        tls = _handshaking(self.loop).pop(self, None)
        if tls is not None:
            # In its handshake: nothing to say goodbye to. On the next turn, as the socket
            # joins its TLS protocol only then; aborted before, the handshake would go on.
            self.loop.call_soon(tls.abort)
        else:
            self.transport.close()


def _is_closing(conn: Any) -> bool:
    """Whether a connection of uvicorn's (HTTP or websocket protocol) is closing."""
    transport = getattr(conn, "transport", None)
    return transport is None or bool(transport.is_closing())


class _AcceptErrorLog:
    """The event loop's exception handler: ``accept()`` out of descriptors logs one line,
    at most once per :attr:`interval` seconds, instead of a traceback each time.

    asyncio retries ``accept()`` every second while descriptors are exhausted (``EMFILE``),
    logging a full traceback each time; under a flood of connections that buries the log.
    Everything else goes to the loop's default handler.
    """

    interval = 60.0

    def __init__(self) -> None:
        self._last: float | None = None
        self._suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and "accept" in str(context.get("message", ""))):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        logger.error(
            "Cannot accept connections: %s; new connections wait until descriptors are free%s.",
            exc.strerror or exc,
            more,
        )
        self._last, self._suppressed = now, 0


class LocalRuntimeServer:
    """A local runtime server running in this process (HTTP thread + worker processes).

    Args:
        data_dir: Data directory (default: the per-user one, see
            :func:`~runtime_job.server.paths.default_data_dir`).
        tokens: API tokens, one per user. Default: the data directory's token file, created
            with a random token when missing. The first token is written to the token file.
        host: Address to bind; a non-loopback address needs TLS or ``insecure_bind``.
        port: Port to bind (``0``: a free port).
        tls_cert: Certificate file (PEM) to serve HTTPS and WSS.
        tls_key: Private key file (PEM) of the certificate.
        workers: Number of worker processes.
        programs: Extra programs, ``{id: callable or "package.module:function"}``, or a
            whole :class:`ProgramRegistry`.
        insecure_bind: Allow a non-loopback address without TLS.
        max_body: Largest accepted request body in bytes.
        streams: Serve the websocket ``/stream/jobs/{id}``. ``False`` plays a server
            that does not stream: each stream is accepted and at once closed normally
            (1000), with nothing sent, so clients poll ``GET /jobs/{id}``.
        hold_for_streams: Seconds a queued job waits for a client on its stream before it
            runs anyway (0, the default: it runs as soon as a worker is free). Plays a
            service that starts each job when its client listens.
        stream_replay: ``False`` plays the hosted service, which never replays: a stream
            gets only the interim results published after it connected (and the job's end).
        max_connections: Most connections served at once (default
            :data:`~runtime_job.server.config.MAX_CONNECTIONS`); beyond it the oldest one
            still waiting for a request is closed, or, when all are busy, the newcomer.
        request_head_timeout: Seconds a connection may take to send a request head
            (default :data:`~runtime_job.server.config.REQUEST_HEAD_TIMEOUT`).
        gc_freeze: Once started, move every object of the process out of the cycle
            collector's reach (``gc.freeze``; undone at :meth:`stop`). For a process that is
            only this server (``runtime-job serve``): its imports and app are most of its
            objects, and each full collection would scan them all while every stream waits
            (40-50 ms at a thousand streamed jobs). Not for a server embedded in a program
            that has other objects to collect.

    Raises:
        ValueError: Inconsistent arguments (TLS half given, non-loopback without TLS, ...).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        tokens: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        workers: int = 2,
        programs: Mapping[str, ProgramLike] | ProgramRegistry | None = None,
        *,
        insecure_bind: bool = False,
        max_body: int | None = None,
        streams: bool = True,
        hold_for_streams: float = 0.0,
        stream_replay: bool = True,
        max_connections: int = limits.MAX_CONNECTIONS,
        request_head_timeout: float = limits.REQUEST_HEAD_TIMEOUT,
        gc_freeze: bool = False,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together.")
        if not is_loopback(host) and tls_cert is None and not insecure_bind:
            raise ValueError(
                f"Refusing to bind {host!r} without TLS: it is reachable from other machines. "
                "Give a certificate and key, or allow it explicitly (insecure_bind)."
            )
        if workers < 1:
            raise ValueError("workers must be at least 1.")
        if tokens is not None and (
            isinstance(tokens, str)
            or not tokens
            or not all(isinstance(t, str) and t for t in tokens)
        ):
            raise ValueError("tokens must be a non-empty list of non-empty strings.")
        self.data = DataDir.resolve(data_dir)
        self.host = host
        self.port = port
        self.tls_cert = os.fspath(tls_cert) if tls_cert is not None else None
        self.tls_key = os.fspath(tls_key) if tls_key is not None else None
        self.workers = workers
        self._given_tokens = list(tokens) if tokens is not None else None
        self._tokens: list[str] = []
        self.programs = (
            programs if isinstance(programs, ProgramRegistry) else ProgramRegistry(programs)
        )
        self.max_body = max_body
        self.streams = streams
        if not hold_for_streams >= 0:
            raise ValueError("hold_for_streams must be a number of seconds, 0 or more.")
        self.hold_for_streams = float(hold_for_streams)
        self.stream_replay = stream_replay
        if max_connections < 1 or not request_head_timeout > 0:
            raise ValueError("max_connections and request_head_timeout must be positive.")
        self.max_connections = max_connections
        self.request_head_timeout = float(request_head_timeout)
        self.gc_freeze = gc_freeze
        self._frozen = False
        self._url: str | None = None
        self._lock_fd: int | None = None
        self._store: Store | None = None
        self._runner: Runner | None = None
        self._hub: StreamHub | None = None
        self._notifier: Notifier | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._serve_error: BaseException | None = None
        self._state_lock = threading.Lock()
        self._log_filter: RedactingFilter | None = None
        self._auth: Authenticator | None = None

    # -- properties ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the runtime API (e.g. ``http://127.0.0.1:54321``)."""
        if self._url is None:
            raise RuntimeError("The server is not started.")
        return self._url

    @property
    def api_url(self) -> str:
        """URL of the ``ibm_quantum`` login API (``url + "/api"``)."""
        return self.url + "/api"

    @property
    def token(self) -> str:
        """The first (primary) API token."""
        if not self._tokens:
            raise RuntimeError("The server is not started.")
        return self._tokens[0]

    @property
    def tokens(self) -> list[str]:
        """Every API token (one per user)."""
        return list(self._tokens)

    @property
    def token_file(self) -> str:
        """Path of the file holding the primary token."""
        return str(self.data.token_path)

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def authenticator(self) -> Authenticator:
        """Who is calling: the server's tokens, and the expiry of access tokens (its ``now``
        is the wall-clock seam tests replace)."""
        if self._auth is None:
            raise RuntimeError("The server is not started.")
        return self._auth

    def worker_pids(self) -> list[int]:
        """Process ids of the current worker processes."""
        return self._runner.worker_pids() if self._runner is not None else []

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalRuntimeServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = _START_TIMEOUT) -> LocalRuntimeServer:
        """Start serving; return once the workers are warm and the port answers.

        Args:
            timeout: Seconds to wait for start-up.

        Raises:
            DataDirInUse: Another server serves the data directory.
            OSError: The address cannot be bound.
            RuntimeError: Start-up failed.
        """
        with self._state_lock:
            if self._thread is not None:
                raise RuntimeError("The server is already started.")
            try:
                self._start(timeout)
            except BaseException:
                self._teardown(timeout=5.0)
                raise
        return self

    def _start(self, timeout: float) -> None:
        self.data.create()
        self._acquire_lock()
        if self._given_tokens is not None:
            self._tokens = list(self._given_tokens)
            if self.data.read_token() != self._tokens[0]:
                self.data.write_token(self._tokens[0])
        else:
            self._tokens = [self.data.read_or_create_token()]
        tokens = list(self._tokens)
        self._log_filter = RedactingFilter(lambda: tokens)
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        self._store = store = Store(self.data.db_path)
        failed, queued = store.recover(time.time())
        if failed:
            logger.warning("%d job(s) were running when the server stopped: failed.", len(failed))
        self._hub = hub = StreamHub()
        self._notifier = notifier = Notifier(hub)
        self._runner = runner = Runner(
            store, self.programs, self.workers, notifier, hold=self.hold_for_streams
        )
        self._auth = auth = Authenticator(self._tokens, store)
        ctx = AppContext(store=store, auth=auth, programs=self.programs, runner=runner, hub=hub)
        ctx.stream_replay = self.stream_replay
        if self.max_body is not None:
            ctx.max_body = self.max_body
        routers = [platform_router(ctx), legacy_extras_router(ctx)]
        app = create_app(ctx, streams=self.streams, routers=routers)
        self._socket = sock = self._bind()
        port = sock.getsockname()[1]
        scheme = "https" if self.tls_cert else "http"
        self._url = f"{scheme}://{_url_host(self.host)}:{port}"
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws=_websocket_implementation(),
            http=type(
                "GuardedH11",
                (_GuardedH11,),
                {
                    "head_timeout": self.request_head_timeout,
                    "max_connections": self.max_connections,
                },
            ),
            ssl_certfile=self.tls_cert,
            ssl_keyfile=self.tls_key,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
            h11_max_incomplete_event_size=limits.MAX_REQUEST_HEAD_BYTES,
            backlog=2048,
            server_header=False,
        )
        self._uvicorn = uvicorn.Server(config)
        runner.start()
        for job_id in queued:
            runner.submit(job_id)
        self._thread = threading.Thread(target=self._serve, name="runtime-job-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"The server failed to start: {self._serve_error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("The server did not start in time.")
            time.sleep(0.005)
        runner.wait_ready(max(1.0, deadline - time.monotonic()))
        self.data.write_server_info(
            {
                "url": self._url,
                "pid": os.getpid(),
                "token_file": self.token_file,
                "version": __version__,
                "started": time.time(),
            }
        )
        logger.info("runtime-job server at %s", self._url)
        if self.gc_freeze:
            gc.collect()
            gc.freeze()
            self._frozen = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, kill the workers and join every thread (bounded by ``timeout``)."""
        with self._state_lock:
            self._teardown(timeout)

    # -- internals -----------------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        fd = os.open(self.data.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            info = self.data.read_server_info() or {}
            url, pid = info.get("url"), info.get("pid")
            raise DataDirInUse(
                f"The data directory {self.data.root} is already served (pid {pid}, {url}).",
                url=url if isinstance(url, str) else None,
                pid=pid if isinstance(pid, int) else None,
            ) from None
        self._lock_fd = fd

    def _bind(self) -> socket.socket:
        host = self.host.strip("[]")
        infos = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM)
        family, socktype, proto, _, address = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _serve(self) -> None:
        assert self._uvicorn is not None and self._socket is not None
        loop = _ServerLoop(self.request_head_timeout)
        loop.set_exception_handler(_AcceptErrorLog())
        if self._notifier is not None:
            self._notifier.loop = loop
        try:
            loop.run_until_complete(self._uvicorn.serve(sockets=[self._socket]))
        except BaseException as err:
            self._serve_error = err
            logger.error("The server thread stopped: %r", err)
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                # TLS connections in their handshake, or waiting for the peer's close_notify
                # (up to 30 s), are nobody's now: abort them, and give the loop one more turn,
                # as an aborted socket is closed by a callback.
                for tls in list(loop.tls):
                    tls.abort()
                loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                if self._notifier is not None:
                    self._notifier.loop = None
                loop.close()

    def _teardown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        server, thread, notifier = self._uvicorn, self._thread, self._notifier
        if server is not None:
            loop = notifier.loop if notifier is not None else None
            if loop is not None and self._hub is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._hub.close_all)
            server.should_exit = True
        if thread is not None:
            thread.join(max(0.1, deadline - time.monotonic() - 1.0))
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(1.0)
            if thread.is_alive():
                logger.warning("The server thread did not stop in time.")
        if self._socket is not None:
            self._socket.close()
        if self._runner is not None:
            self._runner.stop(max(1.0, deadline - time.monotonic()))
        if self._store is not None:
            self._store.close()
        if self._lock_fd is not None:
            self.data.remove_server_info(os.getpid())
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
        if self._log_filter is not None:
            for name in _REDACTED_LOGGERS:
                logging.getLogger(name).removeFilter(self._log_filter)
        self._uvicorn = self._thread = self._socket = None
        self._runner = self._store = self._hub = self._notifier = None
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        self._auth = None
        self._lock_fd = None
        self._log_filter = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalRuntimeServer {self._url or '-'} data_dir={self.data.root} {state}>"


def server_summary(server: LocalRuntimeServer) -> dict[str, Any]:
    """A JSON-friendly summary of a server (URL, token file, worker pids)."""
    return {
        "url": server.url,
        "token_file": server.token_file,
        "pid": os.getpid(),
        "workers": server.worker_pids(),
    }


__all__ = ["DataDirInUse", "LocalRuntimeServer", "is_loopback", "server_summary"]
