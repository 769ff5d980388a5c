"""Delivery: every frame once, in order, in both protocols, across cut connections."""

from __future__ import annotations

import random
import threading

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd, StreamFrame
from runtime_job.api.stream import StreamHub
from tests.support import wait_until

from .streamkit import LoopThread, Recorder, TcpProxy, WsServer


def test_sequenced_stream_delivers_stored_then_final(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("j1", messages=["a", "b", "c"], final=True, result="R")
    rec = Recorder()
    sub = hub.subscribe(job_id="j1", url=server.url("j1"), params=params, listener=rec)
    rec.wait()
    assert sub.wait(1)
    assert rec.frames == [
        StreamFrame("a", 1),
        StreamFrame("b", 2),
        StreamFrame("c", 3),
        StreamFrame("R", 4, final=True, status="COMPLETED"),
    ]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert not sub.active and sub.end is StreamEnd.COMPLETED
    attempt = server.jobs["j1"].attempts[0]
    assert attempt.query == {"seq": "1", "after": "0"}
    assert attempt.headers["x-access-token"] == server.token
    # The client answered the server's close with 1000.
    wait_until(lambda: server.jobs["j1"].client_close_codes, what="the client's close frame")
    assert server.jobs["j1"].client_close_codes == [1000]


def test_live_messages_and_failed_final_frame(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("live")
    rec = Recorder()
    hub.subscribe(job_id="live", url=server.url("live"), params=params, listener=rec)
    for i in range(20):
        server.publish("live", f"m{i}")
    server.finish("live", status="FAILED")
    rec.wait()
    assert rec.payloads == [f"m{i}" for i in range(20)] + [""]
    assert rec.frames[-1].final and rec.frames[-1].status == "FAILED"
    assert [f.seq for f in rec.frames] == list(range(1, 22))
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert rec.max_concurrent == 1


def test_resume_point_given_by_the_caller(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("r", messages=["a", "b", "c"], final=True, result="R")
    rec = Recorder()
    hub.subscribe(job_id="r", url=server.url("r"), params=params, listener=rec, after=2)
    rec.wait()
    assert [(f.seq, f.payload) for f in rec.frames] == [(3, "c"), (4, "R")]


def test_plain_server_frames_after_the_ack(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("p", messages=["a", "b"], final=True, result="R", plain_only=True)
    rec = Recorder()
    hub.subscribe(job_id="p", url=server.url("p"), params=params, listener=rec)
    rec.wait()
    assert rec.frames == [StreamFrame("a"), StreamFrame("b"), StreamFrame("R")]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]


def test_plain_server_json_ack_is_not_mistaken_for_seq(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("pj", messages=["x"], final=True, plain_only=True, ack_text='{"ack": true}')
    rec = Recorder()
    hub.subscribe(job_id="pj", url=server.url("pj"), params=params, listener=rec)
    rec.wait()
    assert rec.frames == [StreamFrame("x"), StreamFrame("")]


def test_plain_server_reconnect_gets_later_messages(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("pd", plain_only=True, behaviours=["drop_after_ack"])
    rec = Recorder()
    hub.subscribe(job_id="pd", url=server.url("pd"), params=params, listener=rec)
    wait_until(lambda: len(server.jobs["pd"].attempts) >= 2, what="the reconnect")
    server.publish("pd", "after-reconnect")
    server.finish("pd", result="R")
    rec.wait()
    assert rec.payloads == ["after-reconnect", "R"]
    assert all(f.seq is None and not f.final for f in rec.frames)


def test_binary_frames_are_decoded_as_utf8(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    server.add_job("b", messages=["héllo", "wörld"], final=True, result="∑", binary=True)
    rec = Recorder()
    hub.subscribe(job_id="b", url=server.url("b"), params=params, listener=rec)
    rec.wait()
    assert rec.payloads == ["héllo", "wörld", "∑"]


def test_server_cuts_mid_frame_every_few_frames(
    server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    messages = [f"message-{i}-" + "x" * (i * 37 % 500) for i in range(60)]
    job = server.add_job(
        "cut",
        messages=messages,
        final=True,
        result="done",
        frames_per_connection=7,
        cut_mid_frame=True,
    )
    rec = Recorder()
    hub.subscribe(job_id="cut", url=server.url("cut"), params=params, listener=rec)
    rec.wait(20)
    assert rec.payloads == [*messages, "done"]
    assert [f.seq for f in rec.frames] == list(range(1, 62))
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    afters = [int(a.query["after"]) for a in job.attempts]
    assert afters == sorted(afters) and afters[0] == 0 and len(afters) >= 9


def test_exactly_once_across_random_mid_frame_tcp_cuts(
    loop_thread: LoopThread, server: WsServer, params: ClientParameters, hub: StreamHub
) -> None:
    rng = random.Random(20240611)
    messages = [
        "".join(rng.choice("abcdefgh") for _ in range(rng.choice([1, 50, 125, 126, 400, 3000])))
        for _ in range(300)
    ]
    messages[150] = "L" * 70_000  # a 64-bit length frame
    server.add_job("rc", messages=messages, final=True, result="the-end")
    lock = threading.Lock()
    cuts = [rng.randint(10, 6000) for _ in range(40)]

    def cut_after() -> int | None:
        with lock:
            return cuts.pop(0) if cuts else None

    proxy = TcpProxy(loop_thread, target=("127.0.0.1", server.port), cut_after=cut_after).start()
    try:
        rec = Recorder()
        url = f"ws://127.0.0.1:{proxy.port}/stream/jobs/rc"
        hub.subscribe(job_id="rc", url=url, params=params, listener=rec)
        rec.wait(30)
    finally:
        proxy.stop()
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    assert rec.payloads == [*messages, "the-end"]
    assert [f.seq for f in rec.frames] == list(range(1, 302))
    assert proxy.cuts >= 20
    assert rec.max_concurrent == 1
