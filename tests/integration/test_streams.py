"""``/stream/jobs/{id}``: the plain protocol of the reference and the sequenced extension."""

from __future__ import annotations

import json

from runtime_job.server import LocalRuntimeServer
from tests.integration.helpers import (
    ALICE,
    BOB,
    Api,
    seq_frame,
    ws_close,
    ws_open,
    ws_read,
    ws_read_all,
    ws_refused,
    ws_stream,
)

A = {"X-Access-Token": ALICE}


def test_plain_stream_of_a_finished_job(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("hello-world", {"iterations": 2})
    alice.wait_final(job_id)
    frames, code = ws_stream(server.url, job_id, A)
    assert frames == ["ACK", '{"iteration": 1}', '{"iteration": 2}', '"Hello, World!"']
    assert code == 1000
    # Everything was delivered: a reconnect gets the ACK and the close, nothing else.
    assert ws_stream(server.url, job_id, A) == (["ACK"], 1000)


def test_plain_stream_of_a_live_job(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("stream", {"count": 5, "interval": 0.05})
    frames, code = ws_stream(server.url, job_id, A)
    assert code == 1000
    assert frames[0] == "ACK"
    assert [json.loads(f) for f in frames[1:]] == [
        *({"index": i, "data": []} for i in range(5)),
        {"count": 5},
    ]


def test_plain_reconnect_does_not_replay(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("slow-stream", {"count": 4, "interval": 0.15})
    ws = ws_open(server.url, job_id, A)
    try:
        first = ws_read(ws, 3)
    finally:
        ws_close(ws)
    assert first == ["ACK", '{"n": 0}', '{"n": 1}']
    frames, code = ws_stream(server.url, job_id, A)
    assert code == 1000
    assert frames == ["ACK", '{"n": 2}', '{"n": 3}', "4"]


def test_plain_stream_of_a_failed_job_ends_without_a_result(
    alice: Api, server: LocalRuntimeServer
) -> None:
    job_id = alice.submit("fail", {})
    alice.wait_final(job_id)
    assert ws_stream(server.url, job_id, A) == (["ACK"], 1000)


def test_seq_stream_and_resume(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("hello-world", {"iterations": 3})
    alice.wait_final(job_id)
    frames, code = ws_stream(server.url, job_id, A, "seq=1")
    assert code == 1000
    assert json.loads(frames[0]) == {"ack": True, "protocol": "seq.v1", "last_seq": 4}
    parsed = [seq_frame(f) for f in frames[1:]]
    assert parsed == [
        ({"seq": 1, "final": False}, '{"iteration": 1}'),
        ({"seq": 2, "final": False}, '{"iteration": 2}'),
        ({"seq": 3, "final": False}, '{"iteration": 3}'),
        ({"seq": 4, "final": True, "status": "COMPLETED", "reason": None}, '"Hello, World!"'),
    ]
    # Sequenced streams are independent of the plain cursor and can be read again.
    resumed, code = ws_stream(server.url, job_id, A, "seq=1&after=2")
    assert code == 1000
    assert [seq_frame(f)[0]["seq"] for f in resumed[1:]] == [3, 4]
    done, code = ws_stream(server.url, job_id, A, "seq=1&after=4")
    assert len(done) == 1 and code == 1000


def test_seq_stream_of_a_live_job_resumes(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("slow-stream", {"count": 4, "interval": 0.1})
    ws = ws_open(server.url, job_id, A, "seq=1")
    try:
        ack, first, second = ws_read(ws, 3)
    finally:
        ws_close(ws)
    assert json.loads(ack)["ack"] is True
    assert seq_frame(first) == ({"seq": 1, "final": False}, '{"n": 0}')
    assert seq_frame(second)[0]["seq"] == 2
    frames, code = ws_stream(server.url, job_id, A, "seq=1&after=2")
    assert code == 1000
    parsed = [seq_frame(f) for f in frames[1:]]
    assert [p[0]["seq"] for p in parsed] == [3, 4, 5]
    assert parsed[-1] == ({"seq": 5, "final": True, "status": "COMPLETED", "reason": None}, "4")


def test_seq_final_frame_of_failed_and_cancelled_jobs(
    alice: Api, server: LocalRuntimeServer
) -> None:
    failed = alice.submit("fail", {})
    alice.wait_final(failed)
    frames, _ = ws_stream(server.url, failed, A, "seq=1")
    assert seq_frame(frames[-1]) == (
        {"seq": 1, "final": True, "status": "FAILED", "reason": None},
        "",
    )
    running = alice.submit("slow-stream", {"count": 50, "interval": 0.05})
    ws = ws_open(server.url, running, A, "seq=1")
    try:
        ws_read(ws, 2)
        assert alice.post(f"/jobs/{running}/cancel").status_code == 204
        frames, code = ws_read_all(ws)
    finally:
        ws_close(ws)
    assert code == 1000
    header, payload = seq_frame(frames[-1])
    assert header["final"] is True and header["status"] == "CANCELLED" and payload == ""


def test_stream_isolation_and_errors(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("echo", {})
    alice.wait_final(job_id)
    assert ws_refused(server.url, job_id, {"X-Access-Token": BOB}) == 404
    assert ws_refused(server.url, "nosuchjob", A) == 404
    assert ws_refused(server.url, "bad.id", A) == 404
    assert ws_refused(server.url, job_id, A, "seq=2") == 422
    assert ws_refused(server.url, job_id, A, "seq=1&after=-1") == 422
    assert ws_refused(server.url, job_id, A, "seq=1&after=x") == 422
    frames, code = ws_stream(server.url, job_id, A, f"seq=1&after={2**64}")
    assert len(frames) == 1 and code == 1000


def test_stream_ends_when_the_job_is_deleted(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("sleep", {"seconds": 30})
    alice.wait_status(job_id, ("RUNNING",))
    ws = ws_open(server.url, job_id, A)
    try:
        assert ws_read(ws, 1) == ["ACK"]
        assert alice.delete(f"/jobs/{job_id}").status_code == 204
        frames, code = ws_read_all(ws)
    finally:
        ws_close(ws)
    assert (frames, code) == ([], 1000)


def test_many_streams_at_once(alice: Api, server: LocalRuntimeServer) -> None:
    job_id = alice.submit("slow-stream", {"count": 3, "interval": 0.05})
    sockets = [ws_open(server.url, job_id, A, "seq=1") for _ in range(10)]
    results = [ws_read_all(ws) for ws in sockets]
    for frames, code in results:
        assert code == 1000
        assert [seq_frame(f)[0]["seq"] for f in frames[1:]] == [1, 2, 3, 4]
