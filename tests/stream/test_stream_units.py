"""Unit tests of the stream hub's parts: frame reader, worker pool, URL and option helpers."""

from __future__ import annotations

import json
import random
import threading

import pytest

from runtime_job._pool import WorkerPool
from runtime_job.api.params import ClientParameters
from runtime_job.api.stream import StreamHub
from runtime_job.api.stream import connection as connection_mod
from runtime_job.api.stream import delivery as delivery_mod
from runtime_job.api.stream import handshake as handshake_mod
from runtime_job.api.stream.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameReader,
    decode_text,
    encode_close,
    parse_close,
)
from runtime_job.exceptions import WebsocketError
from tests.support import wait_until

from .streamkit import close_frame, frame


def collect(reader: FrameReader, data: bytes, out: list[tuple[int, bytes]]) -> None:
    reader.feed(data, lambda op, buf, s, e: out.append((op, bytes(buf[s:e]))))


def sample_stream() -> tuple[bytes, list[tuple[int, bytes]]]:
    rng = random.Random(7)
    expected: list[tuple[int, bytes]] = []
    wire = b""
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 70000] + [rng.randint(0, 300) for _ in range(40)]
    for size in sizes:
        payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
        payload = payload[:size]
        wire += frame(OP_BINARY, payload)
        expected.append((OP_BINARY, payload))
    wire += frame(OP_PING, b"hi")
    expected.append((OP_PING, b"hi"))
    # A fragmented text message with a ping in the middle.
    wire += frame(OP_TEXT, b"hel", fin=False) + frame(OP_PING, b"") + frame(0x0, b"lo", fin=True)
    expected += [(OP_PING, b""), (OP_TEXT, b"hello")]
    return wire, expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000, 65537, 10**9])
def test_reader_delivers_each_message_once_however_cut(chunk: int) -> None:
    wire, expected = sample_stream()
    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    for i in range(0, len(wire), chunk):
        collect(reader, wire[i : i + chunk], out)
    assert out == expected
    assert reader.buffered == 0


def test_reader_random_cuts() -> None:
    wire, expected = sample_stream()
    rng = random.Random(11)
    for _ in range(20):
        reader = FrameReader()
        out: list[tuple[int, bytes]] = []
        pos = 0
        while pos < len(wire):
            step = rng.randint(1, 5000)
            collect(reader, wire[pos : pos + step], out)
            pos += step
        assert out == expected


def test_reader_unmasks_masked_server_frames() -> None:
    from runtime_job.api.stream.frames import encode_frame

    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    collect(reader, encode_frame(OP_TEXT, b"masked payload"), out)
    assert out == [(OP_TEXT, b"masked payload")]


def test_reader_stops_after_close() -> None:
    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    collect(reader, close_frame(1000, "bye") + frame(OP_TEXT, b"late"), out)
    assert len(out) == 1 and out[0][0] == OP_CLOSE
    assert parse_close(out[0][1], 0, len(out[0][1])) == (1000, "bye")
    collect(reader, frame(OP_TEXT, b"later"), out)
    assert len(out) == 1


@pytest.mark.parametrize(
    "bad",
    [
        bytes([0x80 | 0x40 | OP_TEXT, 0]),  # reserved bit
        bytes([0x80 | 0x3, 0]),  # unknown opcode
        bytes([0x80 | 0x0, 0]),  # continuation without a message
        bytes([OP_PING, 0]),  # fragmented control frame
        frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"),  # nested message
    ],
)
def test_reader_rejects_protocol_violations(bad: bytes) -> None:
    with pytest.raises(FrameError):
        FrameReader().feed(bad, lambda *a: None)


def test_close_helpers() -> None:
    assert parse_close(b"", 0, 0) == (1005, "")
    encoded = encode_close(1000)
    assert encoded[0] == 0x88 and encoded[1] & 0x80  # FIN+close, masked
    assert decode_text(bytearray(b"xx\xc3\xa9yy"), 2, 4) == "é"
    assert decode_text(b"\xff", 0, 1) == "\ufffd"


def test_pool_is_bounded_starts_on_demand_and_exits_when_idle() -> None:
    pool = WorkerPool("test-pool", max_workers=2, idle_timeout=0.1)
    release = threading.Event()
    started: list[int] = []
    done: list[int] = []
    for i in range(5):
        pool.submit(lambda i=i: (started.append(i), release.wait(5), done.append(i)))
    wait_until(lambda: len(started) == 2, what="two tasks to start")
    assert pool.thread_count == 2 and len(started) == 2  # the other three wait for a thread
    release.set()
    wait_until(lambda: len(done) == 5, what="every task to run")
    assert sorted(done) == [0, 1, 2, 3, 4]
    wait_until(lambda: pool.thread_count == 0, what="the idle pool threads to exit")
    assert not [t for t in threading.enumerate() if t.name.startswith("test-pool")]


@pytest.mark.internal_errors
def test_pool_survives_a_raising_task(caplog: pytest.LogCaptureFixture) -> None:
    pool = WorkerPool("test-pool", max_workers=1, idle_timeout=0.05)
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    pool.submit(boom)
    pool.submit(ran.set)
    assert ran.wait(5)
    pool.shutdown(cancel_pending=False)
    assert pool.join(5)
    assert any("Unexpected error" in r.message for r in caplog.records)


def test_pool_shutdown_cancel_pending_rejects() -> None:
    pool = WorkerPool("test-pool", max_workers=1, idle_timeout=5)
    pool.shutdown(cancel_pending=True)
    assert pool.submit(lambda: None) is False
    assert pool.join(1)


def test_resume_query_and_safe_url() -> None:
    assert (
        handshake_mod.with_resume_query("ws://h:1/stream/jobs/j", 7)
        == "ws://h:1/stream/jobs/j?seq=1&after=7"
    )
    assert (
        handshake_mod.with_resume_query("wss://h/p?x=1&after=3", 9) == "wss://h/p?x=1&seq=1&after=9"
    )
    assert handshake_mod.safe_url("wss://user:pw@h:8/p?token=t") == "wss://h:8/p"


def test_connect_options_auth_headers_and_proxy() -> None:
    params = ClientParameters(
        channel="ibm_cloud",
        token="tok",
        instance="crn:x",
        proxies={"urls": {"https": "http://u%40x:p%3Aw@proxy.local:3128"}},
    )
    opts = handshake_mod.connect_options("wss://h/stream/jobs/j", params)
    assert "Authorization: apikey tok" in opts["header"]
    assert "Service-CRN: crn:x" in opts["header"]
    assert opts["redirect_limit"] == 0
    assert opts["http_proxy_host"] == "proxy.local"
    assert opts["http_proxy_port"] == 3128
    assert opts["http_proxy_auth"] == ("u@x", "p:w")
    assert opts["proxy_type"] == "http"


def test_unusable_settings_raise_at_subscribe() -> None:
    hub = StreamHub(idle_shutdown=0.1)
    listener = delivery_mod.END  # never called: subscribe raises first
    try:
        params = ClientParameters(channel="local", token="t")
        with pytest.raises(WebsocketError, match="Not a websocket URL"):
            hub.subscribe(job_id="j", url="http://h/x", params=params, listener=listener)  # type: ignore[arg-type]
        bad_proxy = ClientParameters(
            channel="local",
            token="t",
            proxies={"urls": {"http": "https://proxy:1", "https": "https://proxy:1"}},
        )
        with pytest.raises(WebsocketError, match="cannot carry websockets"):
            hub.subscribe(job_id="j", url="ws://h/x", params=bad_proxy, listener=listener)  # type: ignore[arg-type]
        bad_ca = ClientParameters(channel="local", token="t", verify="/no/such/ca.pem")
        with pytest.raises(WebsocketError, match="CA bundle"):
            hub.subscribe(job_id="j", url="wss://h/x", params=bad_ca, listener=listener)  # type: ignore[arg-type]
    finally:
        hub.close()
    with pytest.raises(WebsocketError, match="closed"):
        hub.subscribe(
            job_id="j",
            url="ws://h/x",
            params=ClientParameters(channel="local", token="t"),
            listener=listener,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("knob", ["backoff_initial", "reconnect_budget", "dispatch_threads"])
def test_knobs_must_be_positive(knob: str) -> None:
    with pytest.raises(ValueError, match=knob):
        StreamHub(**{knob: 0})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b'{"seq": 12, "final": true, "status": "COMPLETED", "reason": null}', (12, "COMPLETED")),
        (b'{"seq":3,"final":true,"status":"FAILED"}', (3, "FAILED")),
        (b'{"seq": 3, "final": true, "status": "CANCELLED", "reason": "RAN TOO LONG"}', None),
        (b'{"seq": 3, "final": false}', None),
        (b'{"seq": 01, "final": true, "status": "COMPLETED"}', None),
        (b'{"final": true, "seq": 3, "status": "COMPLETED"}', None),
    ],
)
def test_final_header_shortcut_matches_only_what_json_would_read_the_same(
    header: bytes, expected: tuple[int, str] | None
) -> None:
    match = connection_mod.FINAL_HEADER.fullmatch(header)
    got = None if match is None else (int(match.group(1)), match.group(2).decode())
    assert got == expected
    if got is not None:  # the JSON parser reads the same header the same way
        parsed = json.loads(header)
        assert (parsed["seq"], parsed["status"], parsed.get("reason")) == (*got, None)
        assert parsed["final"] is True
