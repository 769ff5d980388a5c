"""The suite's one TCP fault proxy: a raw relay, and an HTTP-aware one built on it.

:class:`TcpProxy` relays TCP on 127.0.0.1 to a target (or, in ``connect_mode``, to wherever
an HTTP ``CONNECT`` asks), can cut each connection after a chosen number of
server-to-client bytes and drop one idle for too long. It knows nothing of HTTP.

:class:`FaultProxy` is a :class:`TcpProxy` that reads HTTP. It sits between the client and a
server (or, as a forward/CONNECT proxy, between the client and whatever it asks for). For
each HTTP request it looks for the first matching :class:`Rule` (method and path) of the
test's script; without one it forwards. Actions:

- :class:`Respond`: answer without contacting the server (5xx, 429 with or without
  ``Retry-After``, an HTML page with 200, any body);
- :class:`Stall`: read the request and never answer; :class:`Drop`: close without an answer;
- :class:`Delay`: wait, then forward;
- :class:`Lose`: forward (the server acts), then answer something else (a lost response);
- :class:`Truncate`: forward, then send only the first bytes of the body, either as a
  complete shorter message or with the original ``Content-Length`` and a cut connection;
- :class:`Throttle`: forward, sending the body slowly;
- :class:`Rewrite`: forward, then replace the body with ``fn(status, body)``.

A websocket upgrade that the server accepts becomes a raw tunnel, which the proxy can cut
after a chosen number of server-to-client bytes (mid-frame) and drop when idle. ``CONNECT``
requests are tunnelled; absolute-form requests (``GET http://host:port/path``) are forwarded
to the host they name, so the proxy also serves as the client's configured proxy.

Every request is recorded (``requests``), with counters for websocket upgrades, tunnels, cuts
and idle drops. Everything runs on one asyncio loop owned by the test (anything with
``run(coroutine)``, such as ``tests.stream.streamkit.LoopThread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}


# -- actions -----------------------------------------------------------------------------------


@dataclass
class Respond:
    """Answer without contacting the server."""

    status: int
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Stall:
    """Read the request and never answer (until the client gives up or the proxy stops)."""


@dataclass
class Drop:
    """Close the connection without answering."""


@dataclass
class Delay:
    """Wait ``seconds``, then forward."""

    seconds: float


@dataclass
class Lose:
    """Forward (the server acts on the request), then answer ``status`` instead."""

    status: int = 502
    body: bytes | str = b"<html><body>502 Bad Gateway</body></html>"
    content_type: str = "text/html"


@dataclass
class Truncate:
    """Forward, then send only ``keep`` bytes of the body.

    Attributes:
        keep: Body bytes sent.
        cut: Keep the original ``Content-Length`` and cut the connection (an incomplete
            message); otherwise send a complete message with the shorter body.
    """

    keep: int
    cut: bool = False


@dataclass
class CutHead:
    """Forward, then send only the first ``keep`` bytes of the response's head, and close."""

    keep: int


@dataclass
class Throttle:
    """Forward, sending the body ``chunk`` bytes at a time, ``interval`` seconds apart."""

    chunk: int
    interval: float


@dataclass
class Rewrite:
    """Forward, then answer ``fn(status, body) -> (status, body)`` (same headers)."""

    fn: Callable[[int, bytes], tuple[int, bytes]]


Action = Respond | Stall | Drop | Delay | Lose | Truncate | CutHead | Throttle | Rewrite


@dataclass
class Rule:
    """Apply ``action`` to requests whose method and path match.

    Attributes:
        method: ``GET``, ``POST``, ... or ``*``.
        path: A regular expression that must match the whole path (query excluded).
        action: What to do.
        times: How many requests the rule applies to (``None``: every one).
        skip: How many matching requests to let through before the rule applies.
        hits: How many it applied to so far.
    """

    method: str
    path: str
    action: Action
    times: int | None = None
    skip: int = 0
    hits: int = 0
    passed: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if not (self.method in ("*", method) and re.fullmatch(self.path, path) is not None):
            return False
        if self.passed < self.skip:
            self.passed += 1
            return False
        return True


@dataclass
class Seen:
    """One request the proxy received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    outcome: str


class _Head:
    def __init__(self, first: str, headers: list[tuple[str, str]]) -> None:
        self.first = first
        self.headers = headers

    def get(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def encode(
        self,
        body_length: int | None,
        extra: dict[str, str] | None = None,
        *,
        keep_all: bool = False,
    ) -> bytes:
        lines = [self.first]
        for key, value in self.headers:
            if keep_all or key.lower() not in _HOP_HEADERS:
                lines.append(f"{key}: {value}")
        for key, value in (extra or {}).items():
            lines.append(f"{key}: {value}")
        if body_length is not None:
            lines.append(f"Content-Length: {body_length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers.append((key.strip(), value.strip()))
    return _Head(lines[0], headers)


def _status_line(status: int) -> str:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}"


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


class LoopRunner(Protocol):
    """What the proxies run on: a loop in a thread that runs a coroutine to its end."""

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = ...) -> Any: ...


class TcpProxy:
    """Relays TCP from 127.0.0.1 to ``target`` (or, in ``connect_mode``, where CONNECT asks).

    Args:
        loop: The loop thread everything runs on.
        target: ``(host, port)`` to relay to.
        cut_after: Called once per relayed connection; returns how many server-to-client
            bytes to relay before cutting both sides (``None``: never cut).
        connect_mode: Read an HTTP ``CONNECT`` request first and relay to the host it names.
        idle_timeout: Drop a relayed connection that carried no byte for this many seconds.

    Attributes:
        connections: Connections accepted.
        cuts: Connections cut after ``cut_after`` bytes.
        idle_drops: Connections dropped for idleness.
        connect_requests: The head of every ``CONNECT`` request (``connect_mode``).
    """

    def __init__(
        self,
        loop: LoopRunner,
        target: tuple[str, int] | None = None,
        cut_after: Callable[[], int | None] | None = None,
        connect_mode: bool = False,
        idle_timeout: float | None = None,
    ) -> None:
        self._lt = loop
        self.target = target
        self.cut_after = cut_after
        self.connect_mode = connect_mode
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.cuts = 0
        self.idle_drops = 0
        self.connect_requests: list[str] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control (any thread) -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Listen on 127.0.0.1 and a free port; return the proxy."""

        async def _start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            self.port = self._server.sockets[0].getsockname()[1]

        self._lt.run(_start())
        return self

    def stop(self) -> None:
        """Stop listening and abort every connection."""

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            if self._server is not None:
                await self._server.wait_closed()
            await asyncio.sleep(0)

        self._lt.run(_stop())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving (loop thread) ----------------------------------------------------------------

    def _track(self, writer: asyncio.StreamWriter | None) -> None:
        if writer is not None:
            self._writers.add(writer)

    def _untrack(self, *writers: asyncio.StreamWriter | None) -> None:
        for writer in writers:
            if writer is not None:
                self._writers.discard(writer)
                writer.transport.abort()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        """Relay one raw connection."""
        self.connections += 1
        self._track(c_writer)
        s_writer: asyncio.StreamWriter | None = None
        try:
            target = self.target
            if self.connect_mode:
                head = (await c_reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                self.connect_requests.append(head)
                host, port = head.split(" ", 2)[1].rsplit(":", 1)
                target = (host, int(port))
            assert target is not None, "a TcpProxy needs a target or connect_mode"
            s_reader, s_writer = await asyncio.open_connection(*target)
            self._track(s_writer)
            if self.connect_mode:
                c_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await c_writer.drain()
            limit = self.cut_after() if self.cut_after else None
            await self._relay(c_reader, c_writer, s_reader, s_writer, limit)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._untrack(c_writer, s_writer)

    async def _relay(
        self,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        s_reader: asyncio.StreamReader,
        s_writer: asyncio.StreamWriter,
        limit: int | None,
    ) -> None:
        """Pipe both ways until one side ends, ``limit`` bytes reached the client, or idle."""
        activity = [asyncio.get_running_loop().time()]
        tasks = [
            asyncio.ensure_future(self._pipe(c_reader, s_writer, None, activity)),
            asyncio.ensure_future(self._pipe(s_reader, c_writer, limit, activity)),
        ]
        if self.idle_timeout is not None:
            tasks.append(asyncio.ensure_future(self._watch_idle(activity)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limit: int | None,
        activity: list[float],
    ) -> None:
        """Copy ``reader`` to ``writer``; after ``limit`` bytes, stop (a cut).

        ``activity[0]`` is the loop time of the last byte, for the idle watch (a subclass may
        append marks of its own).
        """
        count = 0
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                activity[0] = loop.time()
                if limit is not None and count + len(data) >= limit:
                    writer.write(data[: limit - count])
                    await writer.drain()
                    self.cuts += 1
                    return
                count += len(data)
                writer.write(data)
                await writer.drain()

    async def _watch_idle(self, activity: list[float]) -> None:
        assert self.idle_timeout is not None
        loop = asyncio.get_running_loop()
        while True:
            left = activity[0] + self.idle_timeout - loop.time()
            if left <= 0:
                self.idle_drops += 1
                return
            await asyncio.sleep(left)


class FaultProxy(TcpProxy):
    """A scripted HTTP/websocket proxy on 127.0.0.1 (see the module docstring).

    Args:
        loop: The loop thread everything runs on.
        target: ``(host, port)`` of the server for origin-form requests; ``None`` for a pure
            forward/CONNECT proxy.
        ws_cut_after: Called once per accepted websocket; returns how many server-to-client
            bytes to relay before cutting both sides (``None``: never cut).
        idle_timeout: Drop a websocket or tunnel that carried no byte for this many seconds.
    """

    def __init__(
        self,
        loop: LoopRunner,
        target: tuple[str, int] | None = None,
        *,
        ws_cut_after: Callable[[], int | None] | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__(loop, target, idle_timeout=idle_timeout)
        self.ws_cut_after = ws_cut_after
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self.ws_upgrades = 0
        self.ws_open = 0
        self.tunnels = 0
        self._lock = threading.Lock()

    # -- control (any thread) -----------------------------------------------------------------

    def add(
        self, method: str, path: str, action: Action, times: int | None = None, skip: int = 0
    ) -> Rule:
        """Script a fault: the first matching rule wins; rules added first come first."""
        rule = Rule(method, path, action, times, skip)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def count(self, method: str = "*", path: str = ".*") -> int:
        """Requests seen whose method and path match."""
        with self._lock:
            seen = list(self.requests)
        return sum(
            1 for r in seen if method in ("*", r.method) and re.fullmatch(path, r.path) is not None
        )

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self.requests)

    # -- serving (loop thread) ----------------------------------------------------------------

    def _match(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _record(self, head: _Head, method: str, path: str, query: str, outcome: str) -> None:
        headers = {key.lower(): value for key, value in head.headers}
        with self._lock:
            self.requests.append(Seen(method, path, query, headers, outcome))

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        """Serve the HTTP requests of one connection, one after the other."""
        self.connections += 1
        self._track(c_writer)
        upstream: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while True:
                head = await _read_head(c_reader)
                if head is None:
                    return
                keep = await self._serve_one(head, c_reader, c_writer, upstream)
                if not keep:
                    return
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            self._untrack(c_writer, *(w for _, w in upstream.values()))

    async def _upstream(
        self,
        target: tuple[str, int],
        pool: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = pool.get(target)
        if conn is None or conn[1].is_closing():
            conn = await asyncio.open_connection(*target, limit=2**20)
            self._track(conn[1])
            pool[target] = conn
        return conn

    async def _serve_one(
        self,
        head: _Head,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        pool: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> bool:
        method, target_text, version = head.first.split(" ", 2)
        if method == "CONNECT":
            host, port = target_text.rsplit(":", 1)
            self._record(head, method, target_text, "", "tunnel")
            await self._tunnel(c_reader, c_writer, (host, int(port)))
            return False
        target = self.target
        if target_text.startswith("http://"):
            rest = target_text[len("http://") :]
            hostport, slash, path_query = rest.partition("/")
            host, _, port = hostport.partition(":")
            target = (host, int(port or 80))
            target_text = slash + path_query
        path, _, query = target_text.partition("?")
        length = int(head.get("content-length") or 0)
        body = await c_reader.readexactly(length) if length else b""
        upgrade = (head.get("upgrade") or "").lower() == "websocket"
        rule = self._match(method, path)
        action = rule.action if rule is not None else None
        outcome = type(action).__name__ if action is not None else "forward"
        self._record(head, method, path, query, outcome)
        head.first = f"{method} {target_text} {version}"

        if isinstance(action, Respond):
            payload = _as_bytes(action.body)
            extra = {"Content-Type": action.content_type, **action.headers}
            c_writer.write(_Head(_status_line(action.status), []).encode(len(payload), extra))
            c_writer.write(payload)
            await c_writer.drain()
            return not upgrade
        if isinstance(action, Stall):
            while await c_reader.read(65536):
                pass  # until the client gives up
            return False
        if isinstance(action, Drop):
            return False
        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
        assert target is not None, "no target for an origin-form request"

        s_reader, s_writer = await self._upstream(target, pool)
        if upgrade:
            s_writer.write(head.encode(None, keep_all=True))
        else:
            s_writer.write(head.encode(len(body) if (body or method in ("POST", "PUT")) else None))
        s_writer.write(body)
        await s_writer.drain()
        r_head = await _read_head(s_reader)
        if r_head is None:
            return False
        status = int(r_head.first.split(" ", 2)[1])
        if upgrade and status == 101:
            c_writer.write(r_head.encode(None, keep_all=True))
            await c_writer.drain()
            self.ws_upgrades += 1
            pool.pop(target, None)
            limit = self.ws_cut_after() if self.ws_cut_after else None
            self.ws_open += 1
            try:
                await self._relay(c_reader, c_writer, s_reader, s_writer, limit)
            finally:
                self.ws_open -= 1
                self._untrack(s_writer)
            return False
        r_body = await self._read_body(s_reader, r_head, method, status)
        if r_body is None:
            return False
        if isinstance(action, Lose):
            payload = _as_bytes(action.body)
            head_out = _Head(_status_line(action.status), [])
            c_writer.write(head_out.encode(len(payload), {"Content-Type": action.content_type}))
            c_writer.write(payload)
        elif isinstance(action, Truncate):
            if action.cut:
                c_writer.write(r_head.encode(len(r_body)))
                c_writer.write(r_body[: action.keep])
                await c_writer.drain()
                return False
            c_writer.write(r_head.encode(min(len(r_body), action.keep)))
            c_writer.write(r_body[: action.keep])
        elif isinstance(action, CutHead):
            c_writer.write(r_head.encode(len(r_body))[: action.keep])
            await c_writer.drain()
            return False
        elif isinstance(action, Throttle):
            c_writer.write(r_head.encode(len(r_body)))
            for start in range(0, len(r_body), action.chunk):
                c_writer.write(r_body[start : start + action.chunk])
                await c_writer.drain()
                await asyncio.sleep(action.interval)
        elif isinstance(action, Rewrite):
            new_status, new_body = action.fn(status, r_body)
            r_head.first = _status_line(new_status)
            c_writer.write(r_head.encode(len(new_body)))
            c_writer.write(new_body)
        else:
            c_writer.write(r_head.encode(len(r_body) if r_body or status >= 200 else None))
            c_writer.write(r_body)
        await c_writer.drain()
        return (head.get("connection") or "").lower() != "close"

    async def _read_body(
        self, reader: asyncio.StreamReader, head: _Head, method: str, status: int
    ) -> bytes | None:
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        length = head.get("content-length")
        if length is not None:
            return await reader.readexactly(int(length))
        if (head.get("transfer-encoding") or "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        return await reader.read()

    async def _tunnel(
        self,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        target: tuple[str, int],
    ) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await c_writer.drain()
            return
        self._track(s_writer)
        self.tunnels += 1
        c_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await c_writer.drain()
        try:
            await self._relay(c_reader, c_writer, s_reader, s_writer, None)
        finally:
            self._untrack(s_writer)


def ws_count(proxy: FaultProxy, job_id: str) -> int:
    """Websocket handshakes the proxy saw for ``job_id``."""
    return proxy.count("GET", rf"/stream/jobs/{re.escape(job_id)}")


__all__ = [
    "Action",
    "CutHead",
    "Delay",
    "Drop",
    "FaultProxy",
    "Lose",
    "Respond",
    "Rewrite",
    "Rule",
    "Seen",
    "Stall",
    "TcpProxy",
    "Throttle",
    "Truncate",
    "ws_count",
]
