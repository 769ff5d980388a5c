"""Scenarios 6-9 and 11: the REST transport under server and network failures.

6. 5xx on ``GET`` (retried) and on ``POST /jobs`` (never two jobs);
7. 429 with and without ``Retry-After``: honoured, bounded, then a typed error;
8. a stalled server: every request times out; ``result(timeout=T)`` returns within T plus a
   small margin, also through a configured forward/CONNECT proxy;
9. a timeout shorter than one poll interval, and one that runs out during a large download;
11. malformed bodies: typed errors carrying the HTTP status and an excerpt, never a raw
    ``JSONDecodeError``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from runtime_job import RuntimeService
from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.exceptions import (
    ApiConnectionError,
    ApiIBMProtocolError,
    IBMError,
    IBMInputValueError,
    IBMRuntimeError,
    RequestsApiError,
    ResultDecodingError,
    RuntimeJobTimeoutError,
)
from runtime_job.timing import PollPolicy
from tests.reliability.conftest import ALICE
from tests.stream.streamkit import LoopThread
from tests.support import wait_until

from .faultproxy import (
    CutHead,
    Drop,
    FaultProxy,
    Lose,
    Respond,
    Rewrite,
    Stall,
    Throttle,
    Truncate,
)

HTML = "<html><head><title>Maintenance</title></head><body>Back soon</body></html>"


def finished_job(direct: RuntimeClient, program: str = "echo", **inputs: Any) -> str:
    """Run a job straight on the server and wait until it is final; its id."""
    job_id = str(direct.program_run(program, None, inputs, None, None, None, None)["id"])
    wait_until(
        lambda: direct.job_get(job_id)["state"]["status"] in ("COMPLETED", "FAILED", "CANCELLED"),
        timeout=30,
        what=f"job {job_id} to finish",
    )
    return job_id


@pytest.fixture
def done_id(direct: RuntimeClient) -> str:
    """A job run straight on the server, already final."""
    return finished_job(direct)


@pytest.fixture
def via_proxy(proxy: FaultProxy, connect: Callable[..., RuntimeService]) -> RuntimeService:
    """A service that talks to the server through the fault proxy."""
    return connect(proxy.url)


def jobs_tagged(direct: RuntimeClient, tag: str) -> int:
    return int(direct.jobs_get(job_tags=[tag])["count"])


# -- 6. 5xx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_6_gateway_errors_on_get_are_retried(
    status: int,
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    proxy.add("GET", f"/jobs/{done_id}", Respond(status, HTML, content_type="text/html"), times=2)
    job = via_proxy.job(done_id)  # two failures, then the job
    assert proxy.count("GET", f"/jobs/{done_id}") == 3
    assert len(sleeps) == 2
    assert job.done()


def test_6_gateway_errors_on_get_end_in_a_typed_error_after_bounded_attempts(
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    job = via_proxy.job(done_id)
    proxy.add("GET", f"/jobs/{done_id}", Respond(503, HTML, content_type="text/html"))
    with pytest.raises(RequestsApiError) as caught:
        job.status()
    err = caught.value
    assert err.status_code == 503
    assert "Gave up after 6 attempts" in str(err)
    assert "Back soon" in err.body_excerpt
    assert proxy.count("GET", f"/jobs/{done_id}") == 1 + 6  # via_proxy.job(), then 6 attempts
    assert len(sleeps) == 5


@pytest.mark.parametrize(
    ("learnt", "fault", "succeeds", "posts"),
    [
        # The server said it honours Idempotency-Key: a lost response is resent with the
        # same key, and the server answers with the job it already created.
        pytest.param(True, Lose(502), True, 2, id="lost-response-resent-with-the-same-key"),
        pytest.param(True, Respond(503), True, 2, id="refused-before-the-server-resent"),
        # Nothing learnt yet (a server that may not honour keys): not resent, no second job.
        pytest.param(False, Lose(502), False, 1, id="lost-response-not-resent"),
        pytest.param(False, Respond(503), False, 1, id="refused-not-resent"),
    ],
)
def test_6_gateway_errors_on_post_jobs_never_create_two_jobs(
    learnt: bool,
    fault: Any,
    succeeds: bool,
    posts: int,
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
    sleeps: list[float],
) -> None:
    service = connect(proxy.url)
    if learnt:
        service.backends()  # any answer of our server says it honours Idempotency-Key
    proxy.add("POST", "/jobs", fault, times=1)
    tag = f"t6-{uuid.uuid4().hex[:12]}"
    created = 1 if isinstance(fault, Lose) or succeeds else 0
    if succeeds:
        job = service.run("echo", inputs={"x": 1}, options={"job_tags": [tag]})
        assert job.result(timeout=30) == {"x": 1}
        listed = direct.jobs_get(job_tags=[tag])["jobs"]
        assert [entry["id"] for entry in listed] == [job.job_id()]
    else:
        with pytest.raises(IBMRuntimeError, match=r"50[23]"):
            service.run("echo", inputs={"x": 1}, options={"job_tags": [tag]})
    assert jobs_tagged(direct, tag) == created
    assert proxy.count("POST", "/jobs") == posts
    keys = {r.headers.get("idempotency-key") for r in proxy.seen() if r.path == "/jobs"}
    assert len(keys) == 1 and None not in keys  # one key, the same on every resend


# -- 7. 429 ----------------------------------------------------------------------------------


def too_many(retry_after: str | None) -> Respond:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = '{"errors": [{"code": "RATE_LIMITED", "message": "Slow down"}]}'
    return Respond(429, body, headers)


def test_7_retry_after_is_honoured(
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    proxy.add("GET", f"/jobs/{done_id}", too_many("0.3"), times=2)
    assert via_proxy.job(done_id).done()
    assert sleeps == [0.3, 0.3]


def test_7_without_retry_after_backs_off(
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    proxy.add("GET", f"/jobs/{done_id}", too_many(None), times=3)
    assert via_proxy.job(done_id).done()
    assert len(sleeps) == 3
    for wait, nominal in zip(sleeps, [0.5, 1.0, 2.0], strict=True):
        assert 0.75 * nominal <= wait <= nominal  # exponential, with at most 25 % jitter


@pytest.mark.parametrize("retry_after", ["0.05", None])
def test_7_rate_limit_that_never_lifts_ends_in_a_typed_error(
    retry_after: str | None,
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    job = via_proxy.job(done_id)
    proxy.add("GET", f"/jobs/{done_id}/results", too_many(retry_after))
    with pytest.raises(RequestsApiError) as caught:
        job.result()
    assert caught.value.status_code == 429
    assert "Gave up after 6 attempts" in str(caught.value)
    assert "Slow down" in str(caught.value)
    assert proxy.count("GET", f"/jobs/{done_id}/results") == 6
    assert len(sleeps) == 5
    assert sum(sleeps) <= 30


def test_7_retry_after_beyond_the_cap_fails_at_once(
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    job = via_proxy.job(done_id)
    proxy.add("GET", f"/jobs/{done_id}/results", too_many("3600"))
    started = time.monotonic()
    with pytest.raises(RequestsApiError) as caught:
        job.result()
    assert time.monotonic() - started < 2
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 3600
    assert sleeps == []
    assert proxy.count("GET", f"/jobs/{done_id}/results") == 1


def test_7_rate_limited_submission_is_retried_once_created(
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
    sleeps: list[float],
) -> None:
    service = connect(proxy.url)
    proxy.add("POST", "/jobs", too_many("0.1"), times=2)
    tag = f"t7-{uuid.uuid4().hex[:12]}"
    job = service.run("echo", inputs={"y": 2}, options={"job_tags": [tag]})
    assert job.result(timeout=30) == {"y": 2}
    assert sleeps == [0.1, 0.1]
    assert jobs_tagged(direct, tag) == 1
    keys = {r.headers.get("idempotency-key") for r in proxy.seen() if r.path == "/jobs"}
    assert len(keys) == 1 and None not in keys


# -- 8. stalled server -----------------------------------------------------------------------


@pytest.fixture
def forward_proxy(loop_thread: LoopThread) -> Iterator[FaultProxy]:
    """A plain forward (absolute-form) and CONNECT proxy, without faults."""
    fp = FaultProxy(loop_thread, None).start()
    yield fp
    fp.stop()


def proxies_for(mode: str, forward_proxy: FaultProxy) -> dict[str, Any]:
    if mode == "direct":
        return {}
    return {"proxies": {"urls": {"http": forward_proxy.url}}}


@pytest.mark.parametrize("mode", ["direct", "via-proxy"])
def test_8_every_request_to_a_stalled_server_times_out(
    mode: str,
    proxy: FaultProxy,
    forward_proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
    sleeps: list[float],
) -> None:
    job_id = finished_job(direct)
    service = connect(proxy.url, read_timeout=0.3, **proxies_for(mode, forward_proxy))
    proxy.add("*", ".*", Stall())
    calls: list[Callable[[], Any]] = [
        lambda: service.job(job_id),
        lambda: service.jobs(limit=5),
        lambda: service.run("echo", inputs={}),
        lambda: service.backends(),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(IBMError) as caught:
            call()
        elapsed = time.monotonic() - started
        assert "read timeout" in str(caught.value)
        # At most three reads of 0.3 s (GETs are retried twice; POST /jobs is not resent).
        assert elapsed < 3 * 0.3 + 1.0
    if mode == "via-proxy":
        assert forward_proxy.count() >= len(calls)
        assert all(r.headers.get("x-access-token") for r in forward_proxy.seen())


def _in_thread(fn: Callable[[], Any], limit: float) -> tuple[float, Any]:
    """Run ``fn`` in a daemon thread; (elapsed, outcome) once it ends or ``limit`` passes."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as err:
            outcome.append(err)

    started = time.monotonic()
    thread = threading.Thread(target=run, name="test-waiter", daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - started
    return elapsed, (outcome[0] if outcome else "still waiting")


@pytest.mark.parametrize("read_timeout", [60.0, 0.4], ids=["default-read-timeout", "short"])
@pytest.mark.parametrize("mode", ["direct", "via-proxy"])
def test_8_result_timeout_bounds_the_wait_on_a_stalled_server(
    mode: str,
    read_timeout: float,
    proxy: FaultProxy,
    forward_proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
    sleeps: list[float],
) -> None:
    job_id = str(direct.program_run("sleep", None, {"seconds": 5}, None, None, None, None)["id"])
    try:
        service = connect(proxy.url, read_timeout=read_timeout, **proxies_for(mode, forward_proxy))
        job = service.job(job_id)
        proxy.add("*", ".*", Stall())  # from now on the server never answers
        timeout = 1.0
        elapsed, outcome = _in_thread(lambda: job.result(timeout=timeout), timeout + 3.0)
        assert isinstance(outcome, RuntimeJobTimeoutError), outcome
        assert elapsed < timeout + 1.0
    finally:
        direct.job_cancel(job_id)


# -- 9. timeouts shorter than a poll, and during a download -----------------------------------


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "polling"])
def test_9_timeout_shorter_than_one_poll_interval(
    streaming: bool,
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
) -> None:
    job_id = str(direct.program_run("sleep", None, {"seconds": 5}, None, None, None, None)["id"])
    try:
        if not streaming:
            proxy.add("GET", "/stream/jobs/.*", Respond(404, "{}"))
        service = connect(proxy.url)
        job = service.job(job_id)
        job.poll_policy = PollPolicy(initial=5.0, factor=1.0, max_interval=5.0)
        for timeout in (0.3, 0.05):
            started = time.monotonic()
            with pytest.raises(RuntimeJobTimeoutError):
                job.result(timeout=timeout)
            assert time.monotonic() - started < timeout + 1.0
    finally:
        direct.job_cancel(job_id)


def test_9_timeout_during_a_large_download(
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
) -> None:
    job_id = finished_job(direct, "big-text", mib=4)
    service = connect(proxy.url)
    job = service.job(job_id)
    # The result comes at 1.25 MiB/s: a 4 MiB download takes more than 3 s.
    proxy.add("GET", f"/jobs/{job_id}/results", Throttle(chunk=128 * 1024, interval=0.1))
    timeout = 0.8
    elapsed, outcome = _in_thread(lambda: job.result(timeout=timeout), timeout + 5.0)
    assert isinstance(outcome, RuntimeJobTimeoutError), type(outcome)
    assert elapsed < timeout + 1.0
    # The job is still usable: without a deadline the download completes.
    proxy.clear()
    assert job.result() == "x" * (4 * 1024 * 1024)


# -- 11. malformed bodies ----------------------------------------------------------------------


def _assert_typed(err: BaseException, status: int | None, excerpt: str) -> None:
    assert isinstance(err, IBMError), type(err)
    assert not isinstance(err, json.JSONDecodeError)
    # Ours, chained from the parser's error (never a suppressed context).
    assert isinstance(err.__cause__, json.JSONDecodeError | None)
    if status is not None:
        assert getattr(err, "status_code", None) == status
    assert excerpt in str(err)
    if hasattr(err, "body_excerpt") and excerpt != "an empty body":
        assert excerpt in err.body_excerpt


BODIES = {
    "html-200": Respond(200, HTML, content_type="text/html"),
    "plain-text-200": Respond(200, "Service temporarily unavailable", content_type="text/plain"),
    "truncated-json": Truncate(keep=37),
    "empty-200": Respond(200, ""),
}
EXCERPTS = {
    "html-200": "Back soon",
    "plain-text-200": "temporarily unavailable",
    "truncated-json": '{"id":',
    "empty-200": "an empty body",
}


@pytest.mark.parametrize("kind", list(BODIES))
def test_11_malformed_job_body_is_a_typed_error(
    kind: str,
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
) -> None:
    proxy.add("GET", f"/jobs/{done_id}", BODIES[kind])
    with pytest.raises(ApiIBMProtocolError) as caught:
        via_proxy.job(done_id)
    _assert_typed(caught.value, 200, EXCERPTS[kind])
    assert caught.value.url is not None and done_id in caught.value.url


@pytest.mark.parametrize("kind", list(BODIES))
def test_11_malformed_listing_and_submission_are_typed_errors(
    kind: str,
    proxy: FaultProxy,
    connect: Callable[..., RuntimeService],
) -> None:
    service = connect(proxy.url)
    proxy.add("GET", "/jobs", BODIES[kind])
    proxy.add("POST", "/jobs", BODIES[kind])
    with pytest.raises(ApiIBMProtocolError) as caught:
        service.jobs(limit=3)
    _assert_typed(caught.value, 200, EXCERPTS[kind])
    with pytest.raises(ApiIBMProtocolError) as caught:
        service.run("echo", inputs={})
    _assert_typed(caught.value, 200, EXCERPTS[kind] if kind != "truncated-json" else '{"id"')


def test_11_body_cut_short_of_its_content_length_is_a_typed_error(
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    proxy.add("GET", f"/jobs/{done_id}", Truncate(keep=20, cut=True))
    with pytest.raises(IBMRuntimeError) as caught:
        via_proxy.job(done_id)
    assert "Gave up after 3 attempts" in str(caught.value)  # a GET is read twice more
    assert proxy.count("GET", f"/jobs/{done_id}") == 3
    assert isinstance(caught.value.__cause__, ApiConnectionError)  # raised from it
    # The transport's error under it: the typed no-response leaf, chained from the
    # ``requests`` failure it stands for.
    client = RuntimeClient(ClientParameters(channel="local", token=ALICE, url=proxy.url))
    try:
        with pytest.raises(ApiConnectionError) as raw:
            client.job_get(done_id)
    finally:
        client.close()
    err = raw.value
    assert err.status_code == -1
    assert err.retryable
    assert isinstance(err.__cause__, requests.exceptions.ChunkedEncodingError)
    assert "Gave up after 3 attempts" in str(err)


@pytest.mark.parametrize("keep", [15, 40])  # in the status line's headers, before the length
def test_11_response_cut_inside_its_head_is_retried_like_a_dropped_one(
    keep: int,
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    proxy.add("GET", f"/jobs/{done_id}", CutHead(keep=keep), times=1)
    assert via_proxy.job(done_id).job_id() == done_id  # the second read got the whole response
    assert proxy.count("GET", f"/jobs/{done_id}") == 2
    proxy.add("GET", f"/jobs/{done_id}", CutHead(keep=keep))
    with pytest.raises(IBMRuntimeError) as caught:
        via_proxy.job(done_id)
    assert not isinstance(caught.value, ApiIBMProtocolError)
    assert "Gave up after 3 attempts" in str(caught.value)
    assert proxy.count("GET", f"/jobs/{done_id}") == 5


@pytest.mark.parametrize("kind", ["html-200", "plain-text-200", "truncated-json"])
def test_11_malformed_result_body_is_a_decoding_error_with_an_excerpt(
    kind: str,
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
) -> None:
    job_id = finished_job(direct, "echo", payload="a" * 100)
    service = connect(proxy.url)
    job = service.job(job_id)
    proxy.add("GET", f"/jobs/{job_id}/results", BODIES[kind])
    with pytest.raises(ResultDecodingError) as caught:
        job.result()
    err = caught.value
    assert err.job_id == job_id
    assert (EXCERPTS[kind] if kind != "truncated-json" else '{"payload": "aaa') in err.excerpt
    assert not isinstance(err, json.JSONDecodeError)
    proxy.clear()
    assert job.result() == {"payload": "a" * 100}  # nothing bad was cached


@pytest.mark.parametrize("where", ["nowhere", "404", "html"])
def test_11_external_result_url_that_leads_nowhere_is_a_typed_error(
    where: str,
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    job = via_proxy.job(done_id)
    if where == "nowhere":
        import socket

        with socket.socket() as probe:  # a port that nothing listens on
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        url = f"http://127.0.0.1:{dead}/results/{done_id}"
    else:
        url = f"{proxy.url}/external/{done_id}"
        answer = (
            Respond(404, "No such object", content_type="text/plain")
            if where == "404"
            else Respond(200, HTML, content_type="text/html")
        )
        proxy.add("GET", f"/external/{done_id}", answer)
    proxy.add("GET", f"/jobs/{done_id}/results", Respond(200, json.dumps({"url": url})))
    with pytest.raises(IBMError) as caught:
        job.result()
    err = caught.value
    if where == "nowhere":
        assert isinstance(err, RequestsApiError) and err.status_code == -1
        assert f"127.0.0.1:{dead}" in str(err)
    elif where == "404":
        assert isinstance(err, RequestsApiError)
        _assert_typed(err, 404, "No such object")
    else:
        assert isinstance(err, ResultDecodingError)
        assert "Back soon" in err.excerpt


def test_11_error_status_with_an_html_body_keeps_status_and_excerpt(
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
    sleeps: list[float],
) -> None:
    job = via_proxy.job(done_id)
    proxy.add("GET", f"/jobs/{done_id}/results", Respond(404, HTML, content_type="text/html"))
    with pytest.raises(RequestsApiError) as caught:
        job.result()
    _assert_typed(caught.value, 404, "Back soon")
    proxy.add("GET", f"/jobs/{done_id}/metrics", Respond(200, HTML, content_type="text/html"))
    with pytest.raises(IBMRuntimeError, match="malformed JSON"):
        job.metrics()


def test_11_rewritten_bodies_keep_the_status_in_the_error(
    proxy: FaultProxy,
    done_id: str,
    via_proxy: RuntimeService,
) -> None:
    proxy.add("GET", f"/jobs/{done_id}", Rewrite(lambda status, body: (203, body[:-1])))
    with pytest.raises(ApiIBMProtocolError) as caught:
        via_proxy.job(done_id)
    assert caught.value.status_code == 203
    assert re.search(done_id, caught.value.body_excerpt)


def test_11_dropped_connections_on_submission_are_typed_errors(
    proxy: FaultProxy,
    direct: RuntimeClient,
    connect: Callable[..., RuntimeService],
    sleeps: list[float],
) -> None:
    service = connect(proxy.url)
    proxy.add("POST", "/jobs", Drop())
    tag = f"t11-{uuid.uuid4().hex[:12]}"
    with pytest.raises(IBMRuntimeError, match="Failed to run program"):
        service.run("echo", inputs={}, options={"job_tags": [tag]})
    assert jobs_tagged(direct, tag) == 0


# -- issue 18 item 14: a token with a line break --------------------------------------------


def test_14_a_token_read_from_a_file_with_its_newline_runs_jobs(
    direct: RuntimeClient, connect: Callable[..., RuntimeService]
) -> None:
    service = connect(direct._params.url or "", token=f"{ALICE}\n")
    job = service.run("echo", inputs={"x": 1})
    assert job.result(timeout=30) == {"x": 1}


def test_14_a_token_that_cannot_be_sent_is_refused_at_configuration(
    direct: RuntimeClient, connect: Callable[..., RuntimeService]
) -> None:
    bad = f"{ALICE[:6]}\r\n{ALICE[6:]}"
    with pytest.raises(IBMInputValueError) as caught:
        connect(direct._params.url or "", token=bad).run("echo", inputs={})
    shown = "".join(traceback.format_exception(caught.value))
    assert ALICE[6:] not in shown
