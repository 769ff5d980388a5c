"""RuntimeJob state logic against a scripted fake client (no network)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from runtime_job import codec
from runtime_job._job_stream import core_of
from runtime_job.api.protocol import StreamEnd
from runtime_job.backend import Backend, IBMRetiredBackend
from runtime_job.decoders import LenientResultDecoder, ResultDecoder
from runtime_job.exceptions import (
    ApiIBMProtocolError,
    IBMError,
    IBMInputValueError,
    IBMRuntimeError,
    QiskitBackendNotFoundError,
    RequestsApiError,
    ResultDecodingError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobTimeoutError,
)
from runtime_job.job import RuntimeJob
from runtime_job.status import JobStatus
from runtime_job.timing import PollPolicy
from tests.support.clock import FakeClock
from tests.support.waiting import wait_until

from .fakes import FakeRuntimeClient, StreamingFakeClient, delivered, http_error, params


class FakeService:
    def __init__(self, known: tuple[str, ...] = ("fake_backend",)) -> None:
        self.known = known

    def backend(self, name: str) -> Backend:
        if name not in self.known:
            raise QiskitBackendNotFoundError("No backend matches the criteria.")
        return Backend(name)


def make_job(client: FakeRuntimeClient, job_id: str = "job-1", **kwargs: Any) -> RuntimeJob:
    if job_id not in client.jobs:
        client.add_job(job_id)
    return RuntimeJob(
        backend=kwargs.pop("backend", None),
        api_client=client,
        client_params=params(),
        job_id=job_id,
        program_id=kwargs.pop("program_id", "my-program"),
        service=kwargs.pop("service", FakeService()),
        **kwargs,
    )


class DoubleDecoder(ResultDecoder):
    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        return ("double", super().decode(raw))


class UpperDecoder(ResultDecoder):
    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        return ("upper", super().decode(raw))


def drive(fake_clock: FakeClock, done: Callable[[], bool]) -> None:
    """Move the (manual) fake clock to the end of each timed wait until ``done()``."""
    while not done():
        wait_until(lambda: done() or any(t > fake_clock.now for t in fake_clock.pending))
        later = [t for t in fake_clock.pending if t > fake_clock.now]
        if later and not done():
            fake_clock.advance_to(min(later))


# ---------------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ("QUEUED", JobStatus.QUEUED),
        ("Running", JobStatus.RUNNING),
        ("COMPLETED", JobStatus.DONE),
        ("cancelled", JobStatus.CANCELLED),
    ],
)
def test_status_maps_api_statuses(api: str, expected: JobStatus) -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=[api])
    assert make_job(client, "j").status() is expected


def test_status_is_refetched_until_final_then_frozen() -> None:
    client = FakeRuntimeClient()
    job = make_job(client)
    assert [job.status() for _ in range(5)] == [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.DONE,
        JobStatus.DONE,
        JobStatus.DONE,
    ]
    assert client.count("job_get") == 3
    assert job.done() and not job.running() and not job.cancelled() and job.in_final_state()
    assert client.count("job_get") == 3


def test_failed_job_has_error_message_from_last_traceback() -> None:
    client = FakeRuntimeClient()
    raw = "noise\nTraceback (first)\nmore\nTraceback (most recent call last):\nRuntimeError: x"
    client.add_job("j", statuses=["FAILED"], result=raw)
    job = make_job(client, "j")
    assert job.status() is JobStatus.ERROR
    assert job.error_message() == (
        "Job j has failed:\nTraceback (most recent call last):\nRuntimeError: x"
    )
    assert client.count("job_results") == 1
    with pytest.raises(RuntimeJobFailureError, match="Unable to retrieve job result. Job j has"):
        job.result()


def test_ran_too_long_is_an_error_with_its_own_message() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["CANCELLED"], reason="Ran too long", result="Kaboom!")
    job = make_job(client, "j")
    assert job.status() is JobStatus.ERROR
    assert job.error_message() == (
        "Job j ran longer than maximum execution time. Job was cancelled:\nKaboom!"
    )
    with pytest.raises(RuntimeJobMaxTimeoutError) as info:
        job.result()
    assert str(info.value) == "RAN TOO LONG" and info.value.message == "RAN TOO LONG"


def test_failed_job_with_reason_reports_the_reason() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["FAILED"], reason="out of memory", result="tb")
    with pytest.raises(RuntimeJobFailureError) as info:
        make_job(client, "j").result()
    assert str(info.value) == "Unable to retrieve job result. OUT OF MEMORY"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "j", "state": {"status": "WEIRD"}}, "Unknown status: WEIRD"),
        ({"id": "j", "state": {}}, "Unknown status: None"),
        ({"id": "j"}, "Unknown status: None"),
    ],
)
def test_unknown_or_missing_status_is_a_clear_error(body: dict[str, Any], message: str) -> None:
    client = FakeRuntimeClient()
    client.add_job("j")
    client.raw_job_override = body
    with pytest.raises(IBMError) as info:
        make_job(client, "j").status()
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("body", "field"),
    [({"state": {"status": "QUEUED"}}, "'id'"), ({"id": "j", "state": [1]}, "'state'")],
)
def test_malformed_job_names_job_and_field(body: dict[str, Any], field: str) -> None:
    client = FakeRuntimeClient()
    client.add_job("j")
    client.raw_job_override = body
    with pytest.raises(ApiIBMProtocolError) as info:
        make_job(client, "j").status()
    assert "job j" in str(info.value) and field in str(info.value)


# ---------------------------------------------------------------------------------- result


def test_result_is_decoded_and_cached() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result=codec.dumps({"a": 1 + 2j}))
    job = make_job(client, "j")
    assert job.result() == {"a": 1 + 2j}
    calls = len(client.calls)
    assert job.result() == {"a": 1 + 2j}
    assert len(client.calls) == calls


def test_result_with_other_decoder_does_not_overwrite_cache() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result='"foo"')
    job = make_job(client, "j")
    assert job.result(decoder=DoubleDecoder) == ("double", "foo")
    assert job.result() == "foo"
    assert job.result(decoder=DoubleDecoder) == ("double", "foo")
    assert job.result() == "foo"


def test_result_of_cancelled_job_raises() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["CANCELLED"])
    with pytest.raises(RuntimeInvalidStateError) as info:
        make_job(client, "j").result()
    assert str(info.value) == "Unable to retrieve result for job j. Job was cancelled."
    assert client.count("job_results") == 0


def test_non_json_result_raises_decoding_error_with_job_id() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result="<html>oops</html>")
    with pytest.raises(ResultDecodingError) as info:
        make_job(client, "j").result()
    assert info.value.job_id == "j"
    assert "j" in str(info.value) and "<html>" in info.value.excerpt


def test_lenient_decoder_returns_plain_text() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result="plain words")
    assert make_job(client, "j", result_decoder=LenientResultDecoder).result() == "plain words"


def test_empty_result_is_none_and_not_cached() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result="")
    job = make_job(client, "j")
    assert job.result() is None
    assert job.result() is None
    assert client.count("job_results") == 2


def test_external_result_is_downloaded() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result='{"url": "https://store/x"}')
    client.external["https://store/x"] = b'{"big": [1, 2]}'
    assert make_job(client, "j").result() == {"big": [1, 2]}
    assert ("external_result", "https://store/x") in client.calls


@pytest.mark.parametrize("raw", ['"a url here"', '["url"]', "3", "null", '{"no": "url key"}'])
def test_only_objects_with_url_key_are_external(raw: str) -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result=raw)
    make_job(client, "j").result()
    assert client.count("external_result") == 0


def test_an_escaped_url_key_is_still_an_external_reference() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result='{"\\u0075rl": "https://store/x"}')
    client.external["https://store/x"] = b'"downloaded"'
    assert make_job(client, "j").result() == "downloaded"


@pytest.mark.parametrize("timeout", [0, -1, "5", True])
def test_bad_timeouts_are_refused(timeout: Any) -> None:
    job = make_job(FakeRuntimeClient())
    with pytest.raises(IBMInputValueError, match="timeout must be a positive number"):
        job.result(timeout=timeout)
    with pytest.raises(IBMInputValueError):
        job.wait_for_final_state(timeout=timeout)


def test_result_times_out_with_builtin_timeout_error(fake_clock: FakeClock) -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["RUNNING"])
    job = make_job(client, "j")
    start = fake_clock.now
    with pytest.raises(TimeoutError) as info:
        job.result(timeout=0.2)
    elapsed = fake_clock.now - start
    assert isinstance(info.value, RuntimeJobTimeoutError)
    assert str(info.value) == "Timed out waiting for job to complete after 0.2 secs."
    assert elapsed == pytest.approx(0.2)
    # The default schedule asks every 10 ms for the first 0.25 s (at most 21 times in
    # 0.2 s, plus the first status): far more often than a fixed 0.1 s loop (3 times).
    assert 8 <= client.count("job_get") <= 23


def test_wait_for_final_state_polls_until_final(fake_clock: FakeClock) -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["QUEUED", "RUNNING", "RUNNING", "COMPLETED"])
    job = make_job(client, "j")
    job.wait_for_final_state(timeout=5)
    assert job.status() is JobStatus.DONE
    assert client.count("job_get") == 4


# ------------------------------------------------------------------------- interim results


def test_interim_results_checks_status_first_and_caches_once_final() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["RUNNING", "COMPLETED"], interim='["a"]')
    job = make_job(client, "j")
    assert job.interim_results() == ["a"]
    assert client.calls[:2] == [("job_get", "j"), ("job_interim_results", "j")]
    client.jobs["j"].interim = '["a", "b"]'
    assert job.interim_results() == ["a", "b"]
    client.jobs["j"].interim = '["changed"]'
    assert job.interim_results(decoder=DoubleDecoder) == ["a", "b"]
    assert client.count("job_interim_results") == 2


# ------------------------------------------------------------------------------ cancelling


def test_cancel_records_server_status() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["RUNNING"])
    job = make_job(client, "j")
    assert job.status() is JobStatus.RUNNING
    job.cancel()
    assert job.cancelled()
    assert client.calls[-2:] == [("job_cancel", "j"), ("job_get", "j")]


def test_cancel_conflict_refreshes_and_raises() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], cancel_error=409)
    job = make_job(client, "j")
    with pytest.raises(RuntimeInvalidStateError, match="^Job cannot be cancelled: 409"):
        job.cancel()
    assert job.status() is JobStatus.DONE


def test_cancel_failure_is_runtime_error() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", cancel_error=500)
    with pytest.raises(IBMRuntimeError, match="^Failed to cancel job: 500"):
        make_job(client, "j").cancel()


# ------------------------------------------------------------------------ logs and metrics


def test_logs_warn_before_final(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["RUNNING"])
    with caplog.at_level(logging.WARNING, logger="runtime_job.job"):
        assert make_job(client, "j").logs() == "log line\n"
    assert "Job logs are only available after the job finishes." in caplog.messages


def test_logs_404_is_empty_and_other_errors_wrap() -> None:
    class Failing(FakeRuntimeClient):
        status = 404

        def job_logs(self, job_id: str, **kwargs: Any) -> str:
            raise http_error(self.status, "boom")

    client = Failing()
    client.add_job("j", statuses=["COMPLETED"])
    job = make_job(client, "j")
    assert job.logs() == ""
    client.status = 500
    with pytest.raises(IBMRuntimeError, match="^Failed to get job logs: 500 boom") as info:
        job.logs()
    assert isinstance(info.value.__cause__, RequestsApiError)


def test_metrics_parse_and_errors() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", metrics='{"usage": {"seconds": 1}}')
    job = make_job(client, "j")
    assert job.metrics() == {"usage": {"seconds": 1}}
    client.jobs["j"].metrics = "<html>"
    with pytest.raises(IBMRuntimeError, match="malformed JSON"):
        job.metrics()
    client.jobs["j"].metrics = "[1]"
    with pytest.raises(IBMRuntimeError, match="expected a JSON object"):
        job.metrics()


# ---------------------------------------------------------------------------- properties


def test_lazy_properties_fetch_once() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", params={"x": {"__type__": "complex", "__value__": [1, 2]}}, session_id="s")
    job = make_job(client, "j")
    assert job.inputs == {"x": 1 + 2j}
    assert job.session_id == "s"
    created = job.creation_date
    assert isinstance(created, datetime) and created.tzinfo is not None
    assert created.utcoffset() is not None
    assert created.astimezone().isoformat() == created.isoformat()
    assert created.timestamp() == datetime.fromisoformat("2023-06-20T12:00:25+00:00").timestamp()
    fetched = client.count("job_get")
    assert job.inputs == {"x": 1 + 2j}
    assert job.session_id == "s"
    assert client.count("job_get") == fetched


def test_known_inputs_need_no_request() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, params={"a": 1}, image="img:1", tags=["t"])
    assert job.inputs == {"a": 1} and job.image == "img:1" and job.tags == ["t"]
    assert job.program_id == "my-program" and job.job_id() == "job-1"
    assert client.calls == []


def test_listed_params_are_decoded_on_first_use_only() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, listed_params='{"a": {"__type__": "complex", "__value__": [1, 2]}}')
    assert job.inputs == {"a": complex(1, 2)}
    assert client.calls == []


def test_the_constructor_streams_with_the_given_callback_policy() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["COMPLETED"])

    def callback(job_id: str, result: Any) -> None:
        raise ValueError("bad callback")

    job = make_job(client, "j", user_callback=callback, callback_errors="raise")
    assert client.count("job_get") == 0  # streams at once, without asking the status
    client.subscriptions[0].push("1")
    delivered(job)
    with pytest.raises(IBMRuntimeError, match="bad callback"):
        job.result(timeout=5)
    with pytest.raises(IBMInputValueError, match="callback_errors"):
        make_job(client, "j", callback_errors="ignore")


def test_result_passes_its_deadline_to_every_request(fake_clock: FakeClock) -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["RUNNING", "COMPLETED"])
    make_job(client, "j").result(timeout=30)
    assert client.deadlines and all(d is not None for _, d in client.deadlines)
    assert {call for call, _ in client.deadlines} == {"fetch_job", "job_results"}
    client.deadlines.clear()
    client.add_job("k", statuses=["COMPLETED"])
    make_job(client, "k").result()  # no timeout: nothing to bound
    assert client.deadlines and all(d is None for _, d in client.deadlines)


def test_backend_lookup_and_placeholder() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", backend="fake_backend")
    client.add_job("k", backend="gone")
    assert make_job(client, "j").backend() == Backend("fake_backend")
    retired = make_job(client, "k").backend()
    assert isinstance(retired, IBMRetiredBackend) and retired.name == "gone"
    client.add_job("n", backend=None)
    assert make_job(client, "n").backend() is None


def test_backend_failure_wraps() -> None:
    client = FakeRuntimeClient()
    job = make_job(client, "missing-job")
    del client.jobs["missing-job"]
    with pytest.raises(IBMRuntimeError, match="^Failed to get job backend"):
        job.backend()


def test_submit_and_repr() -> None:
    job = make_job(FakeRuntimeClient())
    with pytest.raises(NotImplementedError, match=r"Please use QiskitRuntimeService.run\(\)"):
        job.submit()
    assert repr(job) == "<RuntimeJob('job-1', 'my-program')>"


def test_decoder_pair_is_split_into_interim_and_final() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["COMPLETED"], result='"r"', interim='["i"]')
    job = make_job(client, "j", result_decoder=(DoubleDecoder, UpperDecoder))
    assert job.result() == ("upper", "r")
    assert job.interim_results() == ("double", ["i"])
    with pytest.raises(ValueError):
        make_job(client, "j", result_decoder=(DoubleDecoder,))


# ------------------------------------------------------------------------------ streaming


def collect() -> tuple[list[tuple[str, Any]], Any]:
    seen: list[tuple[str, Any]] = []

    def callback(job_id: str, result: Any) -> None:
        seen.append((job_id, result))

    return seen, callback


def test_stream_results_decodes_interim_and_final_with_their_decoders() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"])
    job = make_job(client, "j", result_decoder=(DoubleDecoder, UpperDecoder))
    seen, callback = collect()
    job.stream_results(callback)
    sub = client.subscriptions[0]
    sub.push('{"i": 1}', seq=1)
    sub.push('{"i": 2}', seq=2)
    sub.push('"done"', seq=3, final=True, status="COMPLETED")
    sub.end()
    delivered(job)
    assert seen == [
        ("j", ("double", {"i": 1})),
        ("j", ("double", {"i": 2})),
        ("j", ("upper", "done")),
    ]
    assert job.status() is JobStatus.DONE
    assert job.result() == ("upper", "done")
    assert client.count("job_results") == 0


def test_stream_results_refreshes_status_first() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["COMPLETED"])
    job = make_job(client, "j")
    with pytest.raises(RuntimeInvalidStateError, match=r"^Job already finished\.$"):
        job.stream_results(print)
    assert client.count("open_stream") == 0


def test_second_stream_is_refused_until_the_first_ends() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"])
    job = make_job(client, "j")
    job.stream_results(print)
    with pytest.raises(RuntimeInvalidStateError, match="already streaming results"):
        job.stream_results(print)
    job.cancel_result_streaming()
    assert client.subscriptions[0].cancelled
    job.stream_results(print)
    assert client.count("open_stream") == 2


def test_constructor_callback_starts_streaming() -> None:
    client = StreamingFakeClient()
    seen, callback = collect()
    job = make_job(client, user_callback=callback)
    client.subscriptions[0].push('"hi"')
    delivered(job)
    assert seen == [("job-1", "hi")]


def test_raising_callback_is_logged_and_streaming_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"])
    seen: list[Any] = []

    def callback(job_id: str, result: Any) -> None:
        seen.append(result)
        if result == 1:
            raise ValueError("bad callback")

    job = make_job(client, "j")
    job.stream_results(callback)
    with caplog.at_level(logging.WARNING, logger="runtime_job.job"):
        for i in (1, 2):
            client.subscriptions[0].push(str(i))
        client.subscriptions[0].push("not json")
        delivered(job)
    assert seen == [1, 2]
    assert len(caplog.records) == 2
    assert all("job j" in r.getMessage() for r in caplog.records)


def test_callback_errors_can_surface_from_result() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING", "COMPLETED"])

    def callback(job_id: str, result: Any) -> None:
        raise ValueError("bad callback")

    job = make_job(client, "j")
    job.stream_results(callback, callback_errors="raise")
    client.subscriptions[0].push("1")
    delivered(job)
    assert client.subscriptions[0].cancelled
    with pytest.raises(IBMRuntimeError, match="bad callback") as info:
        job.result(timeout=5)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("with_callback", [False, True])
def test_a_streamed_external_final_result_is_downloaded(with_callback: bool) -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"], result='"from rest"')
    client.external["https://store/x"] = b'{"big": [1, 2]}'
    seen, callback = collect()
    job = make_job(client, "j", user_callback=callback if with_callback else None)
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(job.result(timeout=5)))
    waiter.start()
    sub = wait_until(lambda: client.subscriptions and client.subscriptions[0])
    sub.wait_for_waiter()
    sub.push('{"url": "https://store/x"}', seq=1, final=True, status="COMPLETED")
    sub.end()
    waiter.join(5)
    assert results == [{"big": [1, 2]}]
    assert seen == ([("j", {"big": [1, 2]})] if with_callback else [])
    assert client.count("job_results") == 0


def test_wait_learns_completion_from_the_stream(fake_clock: FakeClock) -> None:
    fake_clock.autoadvance = False  # only the stream can end the wait
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"], result='"from rest"')
    job = make_job(client, "j")

    def finish() -> None:
        sub = wait_until(lambda: client.subscriptions and client.subscriptions[0])
        sub.wait_for_waiter()
        sub.push('"from stream"', seq=1, final=True, status="COMPLETED")
        sub.end()

    thread = threading.Thread(target=finish)
    thread.start()
    start = fake_clock.now
    assert job.result(timeout=5) == "from stream"
    assert fake_clock.now == start  # no time passed: the frame woke the waiter
    thread.join()
    assert client.count("job_results") == 0
    assert client.count("job_get") == 1


def test_wait_uses_the_open_callback_stream_and_no_second_socket() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"], result='"r"')
    job = make_job(client, "j")
    job.stream_results(print)

    def finish() -> None:
        client.subscriptions[0].wait_for_waiter()
        client.jobs["j"].statuses = ["FAILED"]
        client.subscriptions[0].push("", seq=1, final=True, status="FAILED")
        client.subscriptions[0].end()

    thread = threading.Thread(target=finish)
    thread.start()
    with pytest.raises(RuntimeJobFailureError):
        job.result(timeout=5)
    thread.join()
    assert client.count("open_stream") == 1


def test_failed_stream_falls_back_to_polling(fake_clock: FakeClock) -> None:
    fake_clock.autoadvance = False
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING", "RUNNING", "RUNNING", "COMPLETED"])
    job = make_job(client, "j")
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(job.result(timeout=5)))
    waiter.start()
    sub = wait_until(lambda: client.subscriptions and client.subscriptions[0])
    sub.wait_for_waiter()
    sub.end(StreamEnd.FAILED, RuntimeError("gone"))
    wait_until(lambda: not sub.waiting)  # the waiter saw the stream fail
    drive(fake_clock, lambda: bool(results))  # the polls' pauses
    waiter.join(5)
    assert results == ["foo"]
    assert client.count("job_get") == 4
    assert fake_clock.now - 1000.0 < 0.1  # polled at the adaptive pace, not the safety one


def test_a_working_stream_is_trusted_and_a_reconnecting_one_is_polled_around(
    fake_clock: FakeClock,
) -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"] * 3 + ["COMPLETED"])
    job = make_job(client, "j")
    # A working stream: no status request beyond the first while waiting.
    with pytest.raises(RuntimeJobTimeoutError):
        job.wait_for_final_state(timeout=0.3)
    assert client.count("job_get") == 1
    # Its stream reconnects: the job polls at the adaptive pace and sees the job end.
    client.reconnecting_streams = True
    job.wait_for_final_state(timeout=5)
    assert job.status() is JobStatus.DONE
    assert client.count("job_get") == 4


def test_wait_cancels_the_stream_it_opened_on_timeout(fake_clock: FakeClock) -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"])
    job = make_job(client, "j")
    with pytest.raises(RuntimeJobTimeoutError):
        job.wait_for_final_state(timeout=0.05)
    assert client.subscriptions[0].cancelled


def test_client_without_streaming_gives_clear_error() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["RUNNING"])
    with pytest.raises(IBMRuntimeError, match="does not support streaming"):
        make_job(client, "j").stream_results(print)


def test_result_lets_the_callback_stream_deliver_its_last_messages() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["COMPLETED"])
    seen, callback = collect()
    job = make_job(client, "j", user_callback=callback)

    def deliver_late() -> None:
        wait_until(lambda: client.count("job_get"))  # result() saw the job final by a poll
        client.subscriptions[0].push('"interim"', seq=1)
        client.subscriptions[0].push('"final"', seq=2, final=True, status="COMPLETED")
        client.subscriptions[0].end()

    thread = threading.Thread(target=deliver_late)
    thread.start()
    assert job.result(timeout=5) == "final"
    thread.join()
    assert seen == [("j", "interim"), ("j", "final")]


def test_result_returns_once_the_final_callback_ran_not_waiting_for_the_stream_end() -> None:
    """The end of a callback stream follows its final frame (the hub records it after the
    waiting thread left): ``result()`` waits for the last callback, not for the end."""
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"])
    seen, callback = collect()
    job = make_job(client, "j", user_callback=callback)
    returned = threading.Event()
    ended_first: list[bool] = []

    def deliver() -> None:
        wait_until(lambda: client.count("job_get"))  # result() has started (past its cache)
        client.subscriptions[0].push('"final"', seq=1, final=True, status="COMPLETED")
        # The end only once result() has returned (or after 5 s, to release a waiting one).
        ended_first.append(not returned.wait(5))
        client.subscriptions[0].end()

    thread = threading.Thread(target=deliver)
    thread.start()
    try:
        assert job.result(timeout=30) == "final"
    finally:
        returned.set()
        thread.join(10)
    assert ended_first == [False]
    assert seen == [("j", "final")]


def test_a_late_consumer_shares_the_subscription_and_gets_the_earlier_messages() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"])
    first, first_cb = collect()
    job = make_job(client, "j", user_callback=first_cb)
    sub = client.subscriptions[0]
    sub.push("1", seq=1)
    sub.push("2", seq=2)
    delivered(job)
    future = job.to_future()  # the watcher joins the same subscription
    wait_until(lambda: len(core_of(job).stream.consumers(object)) == 2)
    job.cancel_result_streaming()
    assert not sub.cancelled  # the future still uses it
    second, second_cb = collect()
    job.stream_results(second_cb)  # replays what the subscription had
    sub.push("3", seq=3)
    sub.push('"r"', seq=4, final=True, status="COMPLETED")
    sub.end()
    assert future.result(timeout=10) == "r"
    delivered(job)
    assert client.count("open_stream") == 1
    assert [v for _, v in first] == [1, 2]
    assert [v for _, v in second] == [1, 2, 3, "r"]


def test_result_inside_a_callback_does_not_wait_for_that_callback() -> None:
    client = StreamingFakeClient()
    client.add_job("j", statuses=["RUNNING"], result='"from rest"')
    inner: list[Any] = []
    job_box: list[RuntimeJob] = []

    def callback(job_id: str, value: Any) -> None:
        inner.append(job_box[0].result(timeout=10))

    job = make_job(client, "j", user_callback=callback)
    job_box.append(job)
    sub = client.subscriptions[0]
    sub.push("1", seq=1)  # its callback waits in result() for the job's end
    wait_until(lambda: sub.waiting)
    sub.push('"r"', seq=2, final=True, status="COMPLETED")
    sub.end()
    assert job.result(timeout=10) == "r"
    assert inner == ["r", "r"]  # from the interim callback, then from the final one
    assert client.count("job_results") == 0


def test_a_client_that_says_how_to_poll_sets_the_pace_unless_the_job_does(
    fake_clock: FakeClock,
) -> None:
    class PacedClient(FakeRuntimeClient):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[str | None] = []
            self.times: list[float] = []

        def poll_policy_for(self, session_id: str | None) -> PollPolicy:
            self.asked.append(session_id)
            return PollPolicy(initial=0.5, factor=1.0, ratio=0.0, max_interval=0.5)

        def job_get(self, job_id: str, exclude_params: bool | None = None) -> dict[str, Any]:
            self.times.append(fake_clock.now)
            return super().job_get(job_id, exclude_params)

    client = PacedClient()
    client.add_job("j", statuses=["RUNNING"] * 4 + ["COMPLETED"], session_id="s")
    job = make_job(client, "j", session_id="s")
    job.wait_for_final_state(timeout=60)
    gaps = [b - a for a, b in zip(client.times, client.times[1:], strict=False)]
    assert client.asked == ["s"] and gaps == [pytest.approx(0.5)] * 4
    client.add_job("k", statuses=["RUNNING"] * 4 + ["COMPLETED"])
    own = make_job(client, "k")
    own.poll_policy = PollPolicy(initial=2.0, factor=1.0, ratio=0.0, max_interval=2.0)
    client.times.clear()
    own.wait_for_final_state(timeout=60)
    gaps = [b - a for a, b in zip(client.times, client.times[1:], strict=False)]
    assert client.asked == ["s"] and gaps == [pytest.approx(2.0)] * 4


def test_inputs_are_fetched_with_params_and_statuses_as_the_client_chooses() -> None:
    client = FakeRuntimeClient()
    client.add_job("j", statuses=["RUNNING"], params={"x": 1})
    seen: list[bool | None] = []
    original = client.fetch_job

    def fetch_job(job_id: str, **kwargs: Any) -> Any:
        seen.append(kwargs.get("exclude_params"))
        return original(job_id, **kwargs)

    client.fetch_job = fetch_job  # type: ignore[method-assign]
    job = make_job(client, "j")
    job.status()
    assert job.inputs == {"x": 1}
    assert seen == [None, False]
