"""Benchmark the stream hub against a raw websocket-client loop on the same server.

Usage::

    .venv/bin/python bench/bench_stream.py            # full run
    .venv/bin/python bench/bench_stream.py --quick    # smaller, for a smoke check

A loopback websocket server (asyncio, this file with ``--serve``) runs in a child process,
so the client's CPU and memory are measured alone. It serves ``/stream/jobs/n{N}s{S}-{tag}``:
N stored messages of S bytes, then the final frame and close 1000, in either protocol.

1. One stream's throughput, in messages per second delivered to a listener: the hub
   (sequenced protocol, and plain) against a raw websocket-client ``recv()`` loop on the same
   server and the same frames, alternating, median of several runs.
2. Many streams at once (1000 x 10 messages): wall time, every message delivered exactly once
   and in order, peak hub threads, peak process threads, resident memory and descriptors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qsl

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import StreamHub, default_hub

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN = "bench-token"


# -- server (child process) --------------------------------------------------------------------


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


_CACHE: dict[tuple[int, int, bool], list[bytes]] = {}
_HOLDS: dict[int, asyncio.Event] = {}
_OPEN: dict[int, int] = {}


def _frames(count: int, size: int, seq: bool) -> list[bytes]:
    key = (count, size, seq)
    if key not in _CACHE:
        body = b"x" * size
        frames = []
        for i in range(1, count + 1):
            if seq:
                frames.append(_frame(b'{"seq": %d, "final": false}\n' % i + body))
            else:
                frames.append(_frame(body))
        if seq:
            final = {"seq": count + 1, "final": True, "status": "COMPLETED", "reason": None}
            frames.append(_frame(json.dumps(final).encode() + b"\nresult"))
        else:
            frames.append(_frame(b"result"))
        _CACHE[key] = frames
    return _CACHE[key]


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        target = lines[0].split(" ")[1]
        path, _, qs = target.partition("?")
        query = dict(parse_qsl(qs))
        pairs = (line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {k.strip().lower(): v.strip() for k, v in pairs}
        if headers.get("x-access-token") != TOKEN:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        name = path.rsplit("/", 1)[-1].split("-")  # n{N}s{S}-[hold{K}-]tag
        count, size = (int(x) for x in name[0][1:].split("s"))
        hold = int(name[1][4:]) if name[1].startswith("hold") else 0
        # Paths under /plain/ play a server without the sequence extension.
        seq = query.get("seq") == "1" and not path.startswith("/plain/")
        after = int(query.get("after", "0")) if seq else 0
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()
        ).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        if seq:
            ack = {"ack": True, "protocol": "seq.v1", "last_seq": count}
            writer.write(_frame(json.dumps(ack).encode()))
        else:
            writer.write(_frame(b"ACK"))
        frames = _frames(count, size, seq)[after:]
        if hold:
            # Send the messages, then hold the final frame until `hold` streams are open.
            writer.write(b"".join(frames[:-1]))
            await writer.drain()
            event = _HOLDS.setdefault(hold, asyncio.Event())
            _OPEN[hold] = _OPEN.get(hold, 0) + 1
            if _OPEN[hold] >= hold:
                event.set()
            await event.wait()
            frames = frames[-1:]
        for i in range(0, len(frames), 256):
            writer.write(b"".join(frames[i : i + 256]))
            await writer.drain()
        writer.write(_frame((1000).to_bytes(2, "big"), 0x8))
        await writer.drain()
        # Wait for the client's close (or its end of file), answering nothing else.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(), 5.0)
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        pass
    finally:
        writer.transport.abort()


def serve() -> None:
    _raise_fd_limit()

    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())


# -- client ------------------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return 0


def _hub_threads() -> int:
    return sum(t.name.startswith("runtime-job-stream-") for t in threading.enumerate())


class _Counter:
    """A listener that counts frames (and optionally keeps their sequence numbers)."""

    def __init__(self) -> None:
        self.count = 0
        self.seqs: list[int | None] = []
        self.keep_seqs = False
        self.done = threading.Event()
        self.end: object = None

    def on_frame(self, frame: StreamFrame) -> None:
        self.count += 1
        if self.keep_seqs:
            self.seqs.append(frame.seq)

    def on_end(self, end: object, error: BaseException | None) -> None:
        self.end = end
        self.done.set()


def _url(base: str, count: int, size: int, seq: bool, tag: str) -> str:
    prefix = "" if seq else "/plain"
    return f"{base}{prefix}/stream/jobs/n{count}s{size}-{tag}"


def _raw_loop(base: str, count: int, size: int, seq: bool, tag: str, fast: bool) -> float:
    """The limit: websocket-client's own receive loop, one ``recv()`` per message.

    ``fast`` skips websocket-client's UTF-8 validation (pure Python without wsaccel) and
    its locks, the quickest way to use the library.
    """
    import websocket

    url = _url(base, count, size, seq, tag) + ("?seq=1&after=0" if seq else "")
    options = {"skip_utf8_validation": True, "enable_multithread": False} if fast else {}
    start = time.perf_counter()
    ws = websocket.create_connection(url, header=[f"X-Access-Token: {TOKEN}"], **options)
    ws.recv()  # the acknowledgement
    got = 0
    while got < count + 1:
        ws.recv()
        got += 1
    elapsed = time.perf_counter() - start
    ws.close()
    return got / elapsed


def _hub_one(
    hub: StreamHub, params: ClientParameters, base: str, count: int, size: int, seq: bool, tag: str
) -> float:
    """The hub, connect to end, messages delivered to a listener per second."""
    listener = _Counter()
    start = time.perf_counter()
    hub.subscribe(
        job_id=tag, url=_url(base, count, size, seq, tag), params=params, listener=listener
    )
    listener.done.wait(120)
    elapsed = time.perf_counter() - start
    assert listener.count == count + 1, (listener.count, listener.end)
    return listener.count / elapsed


def throughput(base: str, quick: bool) -> list[tuple[str, float, float, float]]:
    params = ClientParameters(channel="local", token=TOKEN)
    rows = []
    runs = 3 if quick else 7
    sizes = [(20_000, 100)] if quick else [(100_000, 100), (20_000, 4096)]
    for count, size in sizes:
        for seq in (True, False):
            raw: list[float] = []
            fast: list[float] = []
            hub_rates: list[float] = []
            with StreamHub() as hub:
                for r in range(runs):
                    raw.append(_raw_loop(base, count, size, seq, f"raw{r}", False))
                    fast.append(_raw_loop(base, count, size, seq, f"fast{r}", True))
                    hub_rates.append(_hub_one(hub, params, base, count, size, seq, f"hub{r}"))
            protocol = "seq" if seq else "plain"
            label = f"1 stream, {count:,} msgs x {size} B, {protocol} protocol"
            med = statistics.median
            rows.append((label, med(raw), med(fast), med(hub_rates)))
    return rows


def many_streams(base: str, n: int, m: int) -> dict[str, float | int]:
    """``n`` streams of ``m`` messages at once, through the process's default hub."""
    params = ClientParameters(channel="local", token=TOKEN)
    hub = default_hub()
    rss_before = _status("VmRSS")
    fds_before = len(os.listdir("/proc/self/fd"))
    peak = {"hub_threads": 0, "threads": 0, "fds": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak["hub_threads"] = max(peak["hub_threads"], _hub_threads())
            peak["threads"] = max(peak["threads"], threading.active_count() - 1)
            peak["fds"] = max(peak["fds"], len(os.listdir("/proc/self/fd")))

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    listeners = []
    start = time.perf_counter()
    for i in range(n):
        listener = _Counter()
        listener.keep_seqs = True
        hub.subscribe(
            job_id=f"j{i}",
            url=f"{base}/stream/jobs/n{m}s64-hold{n}-many{i}",
            params=params,
            listener=listener,
        )
        listeners.append(listener)
    for listener in listeners:
        listener.done.wait(120)
    elapsed = time.perf_counter() - start
    rss_peak_during = _status("VmRSS")
    stop.set()
    sampler.join()
    exact = all(
        li.seqs == list(range(1, m + 2)) and li.end is StreamEnd.COMPLETED for li in listeners
    )
    time.sleep(hub.idle_shutdown + 0.5)
    result: dict[str, float | int] = {
        "streams": n,
        "messages": m,
        "wall_s": elapsed,
        "exactly_once_in_order": int(exact),
        "hub_threads_peak": peak["hub_threads"],
        "process_threads_peak": peak["threads"],
        "hub_threads_after_idle": _hub_threads(),
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_peak_during / 1024,
        "rss_hwm_mib": _status("VmHWM") / 1024,
        "fds_before": fds_before,
        "fds_peak": peak["fds"],
    }
    hub.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few runs")
    parser.add_argument("--streams", type=int, help="concurrent streams (default 1000, quick 200)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the many-streams part")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    _raise_fd_limit()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        base = f"ws://127.0.0.1:{port}"
        limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, RLIMIT_NOFILE {limits}")
        print()
        print(
            "| scenario | raw `recv()` loop, defaults (msg/s) | raw `recv()` loop, no UTF-8 "
            "check, no locks (msg/s) | hub to a listener (msg/s) | hub / fastest raw |"
        )
        print("|---|---|---|---|---|")
        if not args.skip_throughput:
            for label, raw, fast, hub in throughput(base, args.quick):
                best = max(raw, fast)
                print(f"| {label} | {raw:,.0f} | {fast:,.0f} | {hub:,.0f} | {hub / best:.2f} |")
        print()
        n = args.streams or (200 if args.quick else 1000)
        result = many_streams(base, n, 10)
        print(f"| {n} streams x 10 messages | value |")
        print("|---|---|")
        for key, value in result.items():
            text = f"{value:,.2f}" if isinstance(value, float) else str(value)
            print(f"| {key} | {text} |")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
