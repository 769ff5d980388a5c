"""Process-level behaviour: the default hub, and interpreter exit in the middle of a stream."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from runtime_job.api import stream as stream_mod
from runtime_job.api.stream import StreamHub, default_hub
from tests.support import wait_until

from .streamkit import WsServer

CHILD = textwrap.dedent(
    """
    import sys, threading
    from runtime_job.api.params import ClientParameters
    from runtime_job.api.stream import default_hub

    class Listener:
        def __init__(self):
            self.got = threading.Event()
        def on_frame(self, frame):
            self.got.set()
        def on_end(self, end, error):
            pass

    listener = Listener()
    params = ClientParameters(channel="local", token=sys.argv[2])
    default_hub().subscribe(job_id="live", url=sys.argv[1], params=params, listener=listener)
    assert listener.got.wait(10)
    print("streaming", flush=True)
    # Leave in the middle of the stream: the atexit hook closes the hub.
    """
)


def test_default_hub_is_one_per_process_and_thread_safe() -> None:
    hubs: list[StreamHub] = []
    barrier = threading.Barrier(8)

    def get() -> None:
        barrier.wait()
        hubs.append(default_hub())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len({id(h) for h in hubs}) == 1
        assert hubs[0].backoff_max == stream_mod.DEFAULT_BACKOFF_MAX
    finally:
        hubs[0].close()
    fresh = default_hub()
    try:
        assert fresh is not hubs[0] and not fresh.closed
    finally:
        fresh.close()


def test_process_exits_promptly_and_quietly_mid_stream(server: WsServer) -> None:
    job = server.add_job("live", messages=["first"])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "always",
            "-X",
            "dev",
            "-c",
            CHILD,
            server.url("live"),
            server.token,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        start = time.monotonic()
        assert line == b"streaming\n", proc.stderr.read() if proc.stderr else b""
        _stdout, stderr = proc.communicate(timeout=10)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert stderr == b""
    assert elapsed < 2.0
    # The hub said goodbye properly: a close frame with 1000.
    wait_until(lambda: job.client_close_codes, what="the hub's close frame")
    assert job.client_close_codes == [1000]
