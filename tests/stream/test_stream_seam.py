"""The stream seam: ReconnectPolicy, subscription.wait(until, timeout), a hub passed in."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time

import pytest

from runtime_job.api import ReconnectPolicy
from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame, StreamSubscription
from runtime_job.api.stream import StreamHub, default_hub, waiting

from .streamkit import Recorder, WsServer
from .test_stream_inline import InlineRecorder

# -- ReconnectPolicy -------------------------------------------------------------------------


def test_reconnect_policy_defaults_are_the_documented_ones() -> None:
    policy = ReconnectPolicy()
    assert (policy.initial_delay, policy.max_delay, policy.budget, policy.healthy_after) == (
        0.1,
        5.0,
        60.0,
        5.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.budget = 1.0  # type: ignore[misc]
    hub = StreamHub()
    try:
        assert hub.reconnect == policy
    finally:
        hub.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": 0},
        {"max_delay": -1.0},
        {"budget": float("nan")},
        {"healthy_after": True},
        {"initial_delay": 2.0, "max_delay": 1.0},
    ],
)
def test_reconnect_policy_refuses_values_that_cannot_work(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ReconnectPolicy(**kwargs)


def test_reconnect_policy_delay_doubles_is_capped_jittered_and_yields_to_retry_after() -> None:
    policy = ReconnectPolicy(initial_delay=0.1, max_delay=1.0)
    for attempts, full in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (60, 1.0)]:
        delays = [policy.delay(attempts) for _ in range(50)]
        assert all(full * 0.5 <= d <= full for d in delays), (attempts, delays)
    assert policy.delay(0, retry_after=7.0) == 7.0
    assert policy.allows(failing_for=50.0, delay=10.0)
    assert not policy.allows(failing_for=50.0, delay=10.5)


def test_the_old_keyword_settings_still_build_the_policy() -> None:
    base = ReconnectPolicy(budget=9.0)
    hub = StreamHub(reconnect=base, backoff_max=2.0, healthy_after=0.5)
    try:
        assert hub.reconnect == ReconnectPolicy(max_delay=2.0, budget=9.0, healthy_after=0.5)
        assert (hub.backoff_initial, hub.backoff_max) == (0.1, 2.0)
        assert (hub.reconnect_budget, hub.healthy_after) == (9.0, 0.5)
    finally:
        hub.close()


def test_a_hub_spends_the_budget_of_its_policy(server: WsServer, params: ClientParameters) -> None:
    server.add_job("refused", always_status=503)
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.02, budget=0.3)
    with StreamHub(reconnect=policy, idle_shutdown=0.3) as hub:
        rec = Recorder()
        started = time.monotonic()
        hub.subscribe(job_id="refused", url=server.url("refused"), params=params, listener=rec)
        rec.wait(10)
        assert time.monotonic() - started < 3.0
    assert rec.ends[0][0] is StreamEnd.FAILED
    assert "within 0.3 s" in str(rec.ends[0][1])


# -- wait(until, timeout) --------------------------------------------------------------------


def test_wait_returns_once_until_holds_reading_the_sockets_on_the_waiting_thread(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("lead")
    rec = InlineRecorder()
    sub = hub.subscribe(job_id="lead", url=server.url("lead"), params=params, listener=rec)
    threading.Timer(0.05, server.finish, args=("lead",), kwargs={"result": "R"}).start()
    assert sub.wait(lambda: "R" in rec.payloads, 10.0)
    # The final frame was read, and the inline listener called, by the waiting thread.
    assert threading.current_thread().name in rec.threads


def test_wait_gives_up_after_its_timeout_and_returns_until(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("idle")
    sub = hub.subscribe(job_id="idle", url=server.url("idle"), params=params, listener=Recorder())
    started = time.monotonic()
    assert sub.wait(lambda: False, 0.2) is False
    assert 0.2 <= time.monotonic() - started < 2.0
    assert sub.wait(lambda: True, 0.0) is True


def test_a_parked_waiter_is_woken_by_wake(
    server: WsServer, params: ClientParameters, hub: StreamHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the reactor cannot be led, the waiter parks; ``wake()`` makes it check again."""
    monkeypatch.setattr(waiting, "lead", lambda stream, until, timeout: False)
    monkeypatch.setattr(waiting, "PARK_CHECK", 30.0)  # only a wake-up can end the wait early
    server.add_job("park")
    sub = hub.subscribe(job_id="park", url=server.url("park"), params=params, listener=Recorder())
    flag = threading.Event()
    parked = threading.Event()

    class ObservedEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            parked.set()  # the waiter is going to sleep now
            return super().wait(timeout)

    monkeypatch.setattr(waiting, "_new_event", ObservedEvent)

    def waker() -> None:
        assert parked.wait(10)
        flag.set()
        sub.wake()

    thread = threading.Thread(target=waker)
    thread.start()
    started = time.monotonic()
    assert sub.wait(flag.is_set, 20.0)
    assert time.monotonic() - started < 10.0
    thread.join(10)


def test_a_parked_waiter_is_woken_by_each_delivery(
    server: WsServer, params: ClientParameters, hub: StreamHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "lead", lambda stream, until, timeout: False)
    monkeypatch.setattr(waiting, "PARK_CHECK", 30.0)
    server.add_job("deliver")
    rec = Recorder()
    sub = hub.subscribe(job_id="deliver", url=server.url("deliver"), params=params, listener=rec)
    threading.Timer(0.05, server.publish, args=("deliver", "one")).start()
    started = time.monotonic()
    assert sub.wait(lambda: rec.payloads == ["one"], 20.0)
    assert time.monotonic() - started < 10.0


def test_wait_without_a_condition_still_waits_for_the_end(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("end", messages=["a"], final=True, result="R")
    rec = Recorder()
    sub = hub.subscribe(job_id="end", url=server.url("end"), params=params, listener=rec)
    assert sub.wait(10)
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    with pytest.raises(TypeError, match="timeout"):
        sub.wait(lambda: True, None)  # type: ignore[call-overload]


def test_the_handle_implements_the_subscription_protocol(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("proto")
    sub: StreamSubscription = hub.subscribe(
        job_id="proto", url=server.url("proto"), params=params, listener=Recorder()
    )
    assert sub.active and not sub.reconnecting
    assert sub.wait(lambda: sub.active, 0.0)
    sub.cancel()
    assert not sub.active


# -- a hub passed in ------------------------------------------------------------------------


def _client_params(server: WsServer) -> ClientParameters:
    http = server.base_url.replace("ws://", "http://", 1)
    return ClientParameters(channel="local", token=server.token, url=http)


def test_a_client_uses_the_hub_it_was_given_and_close_cancels_its_streams(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("mine")
    client_params = _client_params(server)
    client = RuntimeClient(client_params, hub=hub)
    before = default_hub().active_count
    rec = Recorder()
    sub = client.open_stream("mine", rec)
    assert hub.active_count == 1
    assert default_hub().active_count == before
    client.close()
    assert not sub.active
    rec.wait(5)
    assert rec.ends == [(StreamEnd.CANCELLED, None)]
    assert hub.active_count == 0


def test_a_client_forgets_streams_that_ended(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    client_params = _client_params(server)
    client = RuntimeClient(client_params, hub=hub)
    for i in range(40):
        server.add_job(f"done{i}", final=True, result="R")
        rec = Recorder()
        client.open_stream(f"done{i}", rec)
        rec.wait(5)
    assert len(client._streams) <= 17  # pruned as it grows, not one entry per stream ever
    client.close()


def test_frames_seen_by_a_client_hub_are_delivered(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("via", messages=["a", "b"], final=True, result="R")
    client_params = _client_params(server)
    with RuntimeClient(client_params, hub=hub) as client:
        rec = Recorder()
        client.open_stream("via", rec)
        rec.wait(5)
    assert rec.payloads == ["a", "b", "R"]
    assert all(isinstance(frame, StreamFrame) for frame in rec.frames)


# -- the package --------------------------------------------------------------------------


def test_importing_the_worker_pool_and_the_policy_does_not_load_the_hub() -> None:
    code = (
        "import sys, runtime_job.futures, runtime_job.api;"
        "from runtime_job._pool import WorkerPool;"
        "from runtime_job.api import ReconnectPolicy;"
        "loaded = [m for m in ('websocket', 'runtime_job.api.stream.hub') if m in sys.modules];"
        "print(loaded)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
