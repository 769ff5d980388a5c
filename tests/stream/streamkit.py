"""Test kit for the stream hub: a scripted websocket server, a cutting proxy, a listener.

Everything runs on one asyncio loop in a background thread (``LoopThread``), bound to
127.0.0.1 on a free port, and is closed at the end of the test session (no ResourceWarning).

- ``WsServer`` speaks both protocols of ``/stream/jobs/{id}``: the sequenced one when the
  client sends ``seq=1`` (unless the job is ``plain_only``), else the plain one. Each job is
  scripted: stored and published messages, a final state, handshake answers, misbehaviour.
- ``TcpProxy`` forwards TCP (optionally as an HTTP CONNECT proxy), can cut a connection after
  a chosen number of server-to-client bytes (mid-frame) and can drop idle connections.
- ``Recorder`` is a ``StreamListener`` that records what it gets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from runtime_job.api.protocol import StreamEnd, StreamFrame
from tests.support import wait_until

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class LoopThread:
    """An asyncio loop running in a daemon thread named ``test-loop``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="test-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        self.run(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


# -- websocket server ------------------------------------------------------------------------


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(0x8, code.to_bytes(2, "big") + reason.encode())


@dataclass
class Attempt:
    """One handshake the server received."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int


@dataclass
class Job:
    """A scripted job on the test server.

    Attributes:
        messages: Interim payloads published so far (sequence numbers 1, 2, ...).
        final: Whether the job is final (the stream ends after the messages).
        status: The final status.
        result: The final payload (plain protocol: sent only when COMPLETED).
        plain_only: Ignore ``seq=1`` (a server without the extension).
        handshake: Statuses answered to successive handshakes before accepting (e.g. [503]).
        always_status: Answer every handshake with this status.
        behaviour: "normal", "drop_after_ack", "close_1011_after_ack", "silent" (never
            acknowledges), "no_pong" (acknowledges, then ignores pings and sends nothing),
            "bad_header" (acknowledges, then sends a sequenced frame without a header).
        behaviours: Behaviours for successive connections, before ``behaviour`` applies.
        handshake_delay: Seconds to wait before answering the handshake.
        retry_after: ``Retry-After`` seconds sent with a refused handshake.
        binary: Send data frames as binary frames.
        ignore_after: Replay from the first message whatever ``after`` says.
        drop_when_idle: Drop the TCP connection when there is nothing more to send.
        frames_per_connection: After this many data frames, drop the TCP connection.
        cut_mid_frame: With ``frames_per_connection``, send half of the next frame first.
        stall_mid_frame: With ``frames_per_connection``, send half of the next frame, then
            go silent: no more bytes, no pong, no FIN or RST (a dead NAT entry), until the
            client gives up the connection. Later connections are served normally.
        pace: Seconds between frames.
        ack_text: The plain acknowledgement.
        close_with_final: Send the final frame and the close frame in one write (one read).
        no_replay: A connection gets only what is published after it was accepted (the
            hosted service's behaviour): nothing published before, whatever ``after`` says.
    """

    job_id: str
    messages: list[str] = field(default_factory=list)
    final: bool = False
    status: str = "COMPLETED"
    result: str = ""
    plain_only: bool = False
    handshake: list[int] = field(default_factory=list)
    always_status: int | None = None
    behaviour: str = "normal"
    behaviours: list[str] = field(default_factory=list)
    handshake_delay: float = 0.0
    retry_after: float = 0.0
    binary: bool = False
    ignore_after: bool = False
    drop_when_idle: bool = False
    frames_per_connection: int | None = None
    cut_mid_frame: bool = False
    stall_mid_frame: bool = False
    stalls: int = 0
    pace: float = 0.0
    ack_text: str = "ACK"
    close_with_final: bool = False
    no_replay: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    client_close_codes: list[int | None] = field(default_factory=list)
    plain_cursor: int = 0
    ignore_pings: bool = False
    pings: int = 0
    connections_open: int = 0
    _changed: asyncio.Event | None = None

    def plain_stream(self) -> list[str]:
        items = list(self.messages)
        if self.final and self.status == "COMPLETED":
            items.append(self.result)
        return items


class WsServer:
    """A scripted websocket server for ``/stream/jobs/{id}`` (both protocols)."""

    def __init__(self, loop: LoopThread, ssl_context: ssl.SSLContext | None = None) -> None:
        self._lt = loop
        self._ssl = ssl_context
        self.jobs: dict[str, Job] = {}
        self.token = "secret-token"
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        scheme = "wss" if self._ssl else "ws"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, job_id: str) -> str:
        return f"{self.base_url}/stream/jobs/{job_id}"

    def start(self) -> WsServer:
        async def _start() -> None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", 0, ssl=self._ssl, backlog=2048
            )
            self.port = self._server.sockets[0].getsockname()[1]

        self._lt.run(_start())
        return self

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            if self._server is not None:
                await self._server.wait_closed()

        self._lt.run(_stop())

    def add_job(self, job_id: str, **kwargs: Any) -> Job:
        job = Job(job_id, **kwargs)
        self.jobs[job_id] = job
        return job

    def publish(self, job_id: str, *payloads: str) -> None:
        def _do() -> None:
            job = self.jobs[job_id]
            job.messages.extend(payloads)
            self._notify(job)

        self._lt.call(_do)

    def finish(self, job_id: str, status: str = "COMPLETED", result: str = "") -> None:
        def _do() -> None:
            job = self.jobs[job_id]
            job.final = True
            job.status = status
            job.result = result
            self._notify(job)

        self._lt.call(_do)

    def drop_all(self) -> None:
        """Cut every open connection at the TCP level."""

        def _do() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._lt.call(_do)

    @staticmethod
    def _notify(job: Job) -> None:
        if job._changed is not None:
            job._changed.set()
            job._changed = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _method, target, _version = lines[0].split(" ", 2)
        path, _, qs = target.partition("?")
        query = dict(parse_qsl(qs))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        job_id = path.rsplit("/", 1)[-1]
        job = self.jobs.get(job_id)
        status = 101
        if headers.get("x-access-token") != self.token:
            status = 401
        elif job is None or not path.startswith("/stream/jobs/"):
            status = 404
        elif job.always_status is not None:
            status = job.always_status
        elif job.handshake:
            status = job.handshake.pop(0)
        if job is not None:
            job.attempts.append(Attempt(path, query, headers, status))
            if job.handshake_delay:
                await asyncio.sleep(job.handshake_delay)
        if status != 101:
            body = b"refused"
            extra = f"Retry-After: {job.retry_after:g}\r\n" if job and job.retry_after else ""
            writer.write(
                f"HTTP/1.1 {status} Scripted\r\nContent-Length: {len(body)}\r\n{extra}"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return
        assert job is not None
        key = headers["sec-websocket-key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        # Counted before the answer: the client may read the 101 and look at the count
        # before this thread runs again (write() releases the GIL in send()).
        job.connections_open += 1
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        client_gone = asyncio.Event()
        reader_task = asyncio.create_task(self._read_client(reader, writer, job, client_gone))
        try:
            await self._send_stream(writer, job, query, client_gone)
        finally:
            job.connections_open -= 1
            reader_task.cancel()
            await asyncio.gather(reader_task, return_exceptions=True)

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        job: Job,
        query: dict[str, str],
        client_gone: asyncio.Event,
    ) -> None:
        seq_mode = query.get("seq") == "1" and not job.plain_only
        behaviour = job.behaviours.pop(0) if job.behaviours else job.behaviour
        published = len(job.messages) if job.no_replay else 0  # before the first await
        if published and not seq_mode:
            job.plain_cursor = max(job.plain_cursor, published)
        opcode = 0x2 if job.binary else 0x1
        if behaviour == "silent":
            await client_gone.wait()
            return
        if seq_mode:
            ack = {"ack": True, "protocol": "seq.v1", "last_seq": len(job.messages)}
            writer.write(frame(0x1, json.dumps(ack).encode()))
        else:
            writer.write(frame(0x1, job.ack_text.encode()))
        await writer.drain()
        if behaviour == "bad_header":
            writer.write(frame(0x1, b"no header line"))
            await client_gone.wait()
            return
        if behaviour == "drop_after_ack":
            await asyncio.sleep(0.01)
            writer.transport.abort()
            return
        if behaviour == "close_1011_after_ack":
            writer.write(close_frame(1011, "scripted"))
            await writer.drain()
            await asyncio.sleep(0.05)
            return
        if behaviour == "no_pong":
            job.ignore_pings = True
            await client_gone.wait()
            job.ignore_pings = False
            return
        sent = int(query.get("after", "0")) if seq_mode and not job.ignore_after else 0
        sent = max(sent, published)
        frames_here = 0
        while not client_gone.is_set():
            if seq_mode:
                batch = [(i + 1, m) for i, m in enumerate(job.messages) if i + 1 > sent]
                out = [
                    (
                        s,
                        frame(
                            opcode,
                            json.dumps({"seq": s, "final": False}).encode() + b"\n" + m.encode(),
                        ),
                    )
                    for s, m in batch
                ]
            else:
                items = job.plain_stream()
                out = [
                    (i + 1, frame(opcode, m.encode()))
                    for i, m in enumerate(items)
                    if i >= job.plain_cursor
                ]
            for s, data in out:
                if job.frames_per_connection is not None and (
                    frames_here >= job.frames_per_connection
                ):
                    if job.cut_mid_frame or job.stall_mid_frame:
                        writer.write(data[: max(1, len(data) // 2)])
                        await writer.drain()
                    if job.stall_mid_frame:
                        job.stall_mid_frame = False  # the next connection is served
                        job.frames_per_connection = None
                        job.stalls += 1
                        job.ignore_pings = True
                        await client_gone.wait()
                        job.ignore_pings = False
                        return
                    await asyncio.sleep(0.005)
                    writer.transport.abort()
                    return
                writer.write(data)
                frames_here += 1
                if seq_mode:
                    sent = s
                else:
                    job.plain_cursor = s
                if job.pace:
                    await writer.drain()
                    await asyncio.sleep(job.pace)
            await writer.drain()
            if job.final:
                last = b""
                if seq_mode:
                    final_seq = len(job.messages) + 1
                    if final_seq > sent:
                        payload = job.result if job.status == "COMPLETED" else ""
                        header = {
                            "seq": final_seq,
                            "final": True,
                            "status": job.status,
                            "reason": None,
                        }
                        last = frame(0x1, json.dumps(header).encode() + b"\n" + payload.encode())
                if job.close_with_final:
                    writer.write(last + close_frame(1000))
                else:
                    if last:
                        writer.write(last)
                    writer.write(close_frame(1000))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client_gone.wait(), 1.0)
                return
            if job.drop_when_idle:
                await asyncio.sleep(0.01)
                writer.transport.abort()
                return
            if job._changed is None:
                job._changed = asyncio.Event()
            changed = job._changed
            waiter = asyncio.create_task(changed.wait())
            gone = asyncio.create_task(client_gone.wait())
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            for task in (waiter, gone):
                task.cancel()
            await asyncio.gather(waiter, gone, return_exceptions=True)

    async def _read_client(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        job: Job,
        client_gone: asyncio.Event,
    ) -> None:
        try:
            while True:
                b0, b1 = await reader.readexactly(2)
                opcode = b0 & 0x0F
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await reader.readexactly(2), "big")
                elif n == 127:
                    n = int.from_bytes(await reader.readexactly(8), "big")
                mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
                data = await reader.readexactly(n)
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
                if opcode == 0x9:
                    job.pings += 1
                    if not job.ignore_pings:
                        writer.write(frame(0xA, payload))
                elif opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    job.client_close_codes.append(code)
                    return
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            job.client_close_codes.append(None)
        finally:
            client_gone.set()


# -- TCP proxy -------------------------------------------------------------------------------


from tests.support.faultproxy import TcpProxy as TcpProxy  # noqa: E402  (moved there)

# -- listener --------------------------------------------------------------------------------


class Recorder:
    """A ``StreamListener`` that records frames and the end (thread-safe)."""

    def __init__(self, on_frame: Callable[[StreamFrame], None] | None = None) -> None:
        self.frames: list[StreamFrame] = []
        self.ends: list[tuple[StreamEnd, BaseException | None]] = []
        self.threads: set[str] = set()
        self.ended = threading.Event()
        self._hook = on_frame
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def on_frame(self, frame: StreamFrame) -> None:
        with self._lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            self.threads.add(threading.current_thread().name)
        try:
            if self._hook is not None:
                self._hook(frame)
            self.frames.append(frame)
        finally:
            with self._lock:
                self.concurrent -= 1

    def on_end(self, end: StreamEnd, error: BaseException | None) -> None:
        self.ends.append((end, error))
        self.ended.set()

    @property
    def payloads(self) -> list[str]:
        return [f.payload for f in self.frames]

    def wait(self, timeout: float = 10.0) -> None:
        assert self.ended.wait(timeout), f"stream did not end within {timeout} s"


def hub_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("runtime-job-stream-"))


def hub_quiet(timeout: float = 10.0) -> None:
    """Wait until every thread of the stream hubs has exited (after their idle period).

    A barrier for "nothing more happens": a hub thread stays while it has work (a frame to
    deliver, a reconnect to make), so once none is left no listener can be called again and
    no further connection attempt can be made. Fails if a thread is still there at
    ``timeout``.
    """
    wait_until(lambda: not hub_threads(), timeout, what="every stream hub thread to exit")
