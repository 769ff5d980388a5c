"""Many streams on few threads; slow listeners isolated; threads gone when idle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import StreamHub
from tests.support import wait_for_event

from .streamkit import Recorder, WsServer, hub_quiet, hub_threads


class ThreadSampler:
    """Samples the hub's threads while a test runs."""

    def __init__(self) -> None:
        self.peak: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            names = hub_threads()
            if len(names) > len(self.peak):
                self.peak = names

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture()
def scale_hub() -> Iterator[StreamHub]:
    h = StreamHub(idle_shutdown=0.3, reconnect_budget=20.0)
    yield h
    h.close()


def check_threads(names: list[str]) -> None:
    assert 1 <= len(names) <= 6, names
    assert sum(n == "runtime-job-stream-io" for n in names) <= 1
    assert sum(n.startswith("runtime-job-stream-connect-") for n in names) <= 2
    assert sum(n.startswith("runtime-job-stream-dispatch-") for n in names) <= 3


def test_50_live_streams(server: WsServer, params: ClientParameters, scale_hub: StreamHub) -> None:
    n, m = 50, 20
    recs = {}
    with ThreadSampler() as sampler:
        for i in range(n):
            server.add_job(f"s{i}")
            recs[i] = Recorder()
            scale_hub.subscribe(
                job_id=f"s{i}", url=server.url(f"s{i}"), params=params, listener=recs[i]
            )
        for k in range(m):
            for i in range(n):
                server.publish(f"s{i}", f"{i}:{k}")
        for i in range(n):
            server.finish(f"s{i}", result=f"{i}:done")
        for rec in recs.values():
            rec.wait(20)
    for i, rec in recs.items():
        assert rec.payloads == [f"{i}:{k}" for k in range(m)] + [f"{i}:done"]
        assert rec.ends == [(StreamEnd.COMPLETED, None)]
        assert rec.max_concurrent == 1
    check_threads(sampler.peak)


def test_500_concurrent_streams(
    server: WsServer, params: ClientParameters, scale_hub: StreamHub
) -> None:
    n, m = 500, 10
    recs = []
    start = time.monotonic()
    with ThreadSampler() as sampler:
        for i in range(n):
            server.add_job(f"t{i}", messages=[f"{i}:{k}" for k in range(m)], final=True)
            rec = Recorder()
            scale_hub.subscribe(
                job_id=f"t{i}", url=server.url(f"t{i}"), params=params, listener=rec
            )
            recs.append(rec)
        for rec in recs:
            rec.wait(60)
    elapsed = time.monotonic() - start
    for i, rec in enumerate(recs):
        assert rec.payloads == [f"{i}:{k}" for k in range(m)] + [""]
        assert rec.ends == [(StreamEnd.COMPLETED, None)]
    check_threads(sampler.peak)
    assert elapsed < 30


def test_slow_listener_delays_no_other_job(
    server: WsServer, params: ClientParameters, scale_hub: StreamHub
) -> None:
    release = threading.Event()
    holding = threading.Event()

    def stuck(frame: StreamFrame) -> None:
        holding.set()
        release.wait(10)

    server.add_job("slow", messages=["a", "b", "c"], final=True)
    slow = Recorder(on_frame=stuck)
    scale_hub.subscribe(job_id="slow", url=server.url("slow"), params=params, listener=slow)
    wait_for_event(holding, what="the slow listener to hold a dispatcher")
    fast = []
    start = time.monotonic()
    for i in range(20):
        server.add_job(f"f{i}", messages=[str(k) for k in range(50)], final=True)
        rec = Recorder()
        scale_hub.subscribe(job_id=f"f{i}", url=server.url(f"f{i}"), params=params, listener=rec)
        fast.append(rec)
    for rec in fast:
        rec.wait(5)
    assert time.monotonic() - start < 2.0
    assert slow.frames == [] and not slow.ended.is_set()
    release.set()
    slow.wait(5)
    assert slow.payloads == ["a", "b", "c", ""]


def test_threads_exit_after_the_idle_period(
    server: WsServer, params: ClientParameters, scale_hub: StreamHub
) -> None:
    server.add_job("idle", messages=["a"], final=True)
    rec = Recorder()
    scale_hub.subscribe(job_id="idle", url=server.url("idle"), params=params, listener=rec)
    rec.wait()
    assert hub_threads()
    hub_quiet(2.0)
    # And they come back on demand.
    server.add_job("again", messages=["b"], final=True)
    rec2 = Recorder()
    scale_hub.subscribe(job_id="again", url=server.url("again"), params=params, listener=rec2)
    rec2.wait()
    assert rec2.payloads == ["b", ""]
