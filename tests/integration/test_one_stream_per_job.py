"""One websocket per job, whatever mix of callback, future, async iteration and ``result()``.

Every consumer of a job (its result callback, the futures watcher, an async iterator, a
thread waiting in ``result()``) shares the job's one stream subscription
(:class:`runtime_job._job_stream.JobStream`). The test counts the subscriptions the process's
stream hub opens for each job (each is one websocket) against the real local server.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_job import RuntimeService
from runtime_job.api.stream import hub as stream_hub
from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import ALICE
from tests.support import wait_until

INPUTS = {"count": 20, "interval": 0.05}
"""The ``stream`` program: 20 interim results over about a second, then its result."""
EXPECTED_INTERIM = [{"index": i, "data": []} for i in range(20)]
CONSUMERS = ("callback", "future", "aiter", "result")
MIXES = [mix for n in range(1, len(CONSUMERS) + 1) for mix in itertools.combinations(CONSUMERS, n)]


class Opened:
    """The subscriptions the hub opened, per job (each is one websocket)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handles: dict[str, list[Any]] = defaultdict(list)
        self.peak: dict[str, int] = defaultdict(int)

    def record(self, job_id: str, handle: Any) -> None:
        with self.lock:
            self.handles[job_id].append(handle)
            active = sum(1 for h in self.handles[job_id] if h.active)
            self.peak[job_id] = max(self.peak[job_id], active)


@pytest.fixture()
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    record = Opened()
    original = stream_hub.StreamHub.subscribe

    def subscribe(self: stream_hub.StreamHub, **kwargs: Any) -> Any:
        handle = original(self, **kwargs)
        record.record(kwargs["job_id"], handle)
        return handle

    monkeypatch.setattr(stream_hub.StreamHub, "subscribe", subscribe)
    return record


@pytest.fixture()
def service(server: LocalRuntimeServer) -> Iterator[RuntimeService]:
    with RuntimeService(channel="local", url=server.url, token=ALICE) as svc:
        yield svc


def _iterate(job: Any, started: threading.Event, out: list[Any]) -> None:
    async def collect() -> None:
        async for value in job.interim_results_async():
            out.append(value)
            started.set()

    asyncio.run(collect())


@pytest.mark.parametrize("mix", MIXES, ids=["+".join(mix) for mix in MIXES])
def test_every_mix_of_consumers_shares_one_websocket(
    service: RuntimeService, opened: Opened, mix: tuple[str, ...]
) -> None:
    received: list[Any] = []
    callback = (lambda job_id, value: received.append(value)) if "callback" in mix else None
    job = service.run("stream", inputs=INPUTS, callback=callback)
    future = job.to_future() if "future" in mix else None
    iterated: list[Any] = []
    iterator: threading.Thread | None = None
    if "aiter" in mix:
        started = threading.Event()
        iterator = threading.Thread(target=_iterate, args=(job, started, iterated))
        iterator.start()
        assert started.wait(30), "the async iteration got nothing"
    if "result" in mix:
        assert job.result(timeout=60) == {"count": 20}
    if future is not None:
        assert future.result(timeout=60) == {"count": 20}
    if iterator is not None:
        iterator.join(60)
        assert not iterator.is_alive()
        assert iterated == EXPECTED_INTERIM
    if callback is not None:
        job.wait_for_final_state(timeout=60)
        assert received == [*EXPECTED_INTERIM, {"count": 20}]
    job_id = job.job_id()
    count = len(opened.handles[job_id])
    # A callback or an iteration always streams; a future or result() alone may find the
    # job final before it needs a stream (a loaded machine): then none is opened.
    streams = "callback" in mix or "aiter" in mix
    assert count == 1 if streams else count <= 1, f"{mix}: {count} websockets"
    assert opened.peak[job_id] == count


def _watch_one_job(service: RuntimeService) -> list[weakref.ref[Any]]:
    """Run a streamed job to its end; weak references to its parts, the stream's included."""
    received: list[Any] = []
    job = service.run("stream", inputs=INPUTS, callback=lambda _, v: received.append(v))
    handle = wait_until(lambda: job._core.stream._sub, 30, what="the job's subscription")
    sub = handle._stream
    connection = wait_until(lambda: sub.conn, 30, what="the subscription's connection")
    parts = [job, job._core, job._core.state, job._core.stream, handle, sub, sub.listener]
    parts += [connection, connection.conn, connection.reader]
    job.wait_for_final_state(timeout=60)
    assert received[-1] == {"count": 20}
    wait_until(lambda: connection.conn.closed and not handle.active, 10, what="the end")
    service.close()  # the client keeps its ended subscriptions until it prunes them
    return [weakref.ref(part) for part in parts]


def test_a_finished_job_and_its_stream_need_no_cycle_collector(
    service: RuntimeService,
) -> None:
    """No part of a job (its core, its stream, the hub's subscription, connection and frame
    reader) is left in a reference cycle once it has ended: a long run would otherwise pile
    them up for the oldest generation, whose collection pauses every stream in the process.
    """
    gc.collect()
    gc.disable()
    try:
        refs = _watch_one_job(service)
        left = {id(ref()) for ref in refs if ref() is not None}
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cyclic = [type(obj).__name__ for obj in gc.garbage if id(obj) in left]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cyclic == []
