"""``runtime-job jobs ...`` as real subprocesses against a local server: output and exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime_job import RuntimeService

from .conftest import LISTER, MAIN, STRANGER, Cli, wait_running

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_CONNECTION = 0, 1, 2, 3, 4, 5
EXIT_TIMEOUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 6, 130, 141


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document a command printed (and it succeeded)."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ help


def test_help_documents_the_exit_statuses(cli: Cli) -> None:
    for result in cli.many([["--help"], ["jobs", "--help"], ["jobs", "watch", "--help"]]):
        assert result.returncode == 0, result.stderr
        for line in (
            "1    the job failed or was cancelled",
            "3    no such job",
            "130  interrupted",
        ):
            assert line in result.stdout
        assert "QISKIT_IBM_TOKEN" in result.stdout
    serve = cli("serve", "--help", token=None)
    assert serve.returncode == 0 and "3    another server already serves" in serve.stdout


# ------------------------------------------------------------------------------------ list


def test_list_filters_and_orders(cli: Cli, lister: RuntimeService) -> None:
    first = lister.run("hello-world", inputs={"iterations": 1}, options={"job_tags": ["x", "y"]})
    second = lister.run("fail", inputs={}, options={"job_tags": ["x"]})
    third = lister.run("hello-world", inputs={"iterations": 1}, start_session=True)
    for job in (first, second, third):
        job.wait_for_final_state(timeout=30)
    ids = [third.job_id(), second.job_id(), first.job_id()]  # newest first
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = "2000-01-01T00:00:00Z"
    queries: dict[str, tuple[list[str], list[str]]] = {
        "all": ([], ids),
        "asc": (["--asc"], ids[::-1]),
        "limit": (["--limit", "2"], ids[:2]),
        "skip": (["--skip", "1", "--limit", "1"], ids[1:2]),
        "no limit": (["--limit", "0"], ids),
        "program": (["--program", "fail"], [second.job_id()]),
        "tags": (["--tag", "x", "--tag", "y"], [first.job_id()]),
        "pending": (["--pending"], []),
        "finished": (["--no-pending"], ids),
        "backend": (["--backend", "local_simulator"], ids),
        "session": (["--session", third.job_id()], [third.job_id()]),
        "after": (["--created-after", future], []),
        "before": (["--created-before", past], []),
    }
    results = cli.many(
        [["jobs", "list", "--json", *args] for args, _ in queries.values()], token=LISTER
    )
    for (name, (_, expected)), result in zip(queries.items(), results, strict=True):
        listed = as_json(result)
        assert [row["id"] for row in listed] == expected, name

    rows = {row["id"]: row for row in as_json(results[0])}
    assert rows[first.job_id()]["status"] == "DONE"
    assert rows[second.job_id()]["status"] == "ERROR"
    assert rows[first.job_id()]["program"] == "hello-world"
    assert rows[first.job_id()]["backend"] == "local_simulator"
    assert rows[first.job_id()]["tags"] == ["x", "y"]
    created = datetime.fromisoformat(rows[first.job_id()]["created"])
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)

    table, empty = cli.many([["jobs", "list"], ["jobs", "list", "--pending"]], token=LISTER)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "PROGRAM", "BACKEND", "CREATED", "TAGS"]
    assert [line.split()[0] for line in lines[1:]] == ids
    assert lines[3].split()[1:3] == ["DONE", "hello-world"] and lines[3].endswith("x,y")
    assert empty.returncode == 0 and empty.stdout == "No jobs.\n"


# ------------------------------------------------------------------ show, logs and metrics


def test_show(cli: Cli, done_job: str, failed_job: str) -> None:
    shown, failed, text = cli.many(
        [
            ["jobs", "show", done_job, "--json"],
            ["jobs", "show", failed_job, "--json"],
            ["jobs", "show", done_job],
        ]
    )
    info = as_json(shown)
    assert info["id"] == done_job and info["status"] == "DONE"
    assert info["program"] == "hello-world" and info["backend"] == "local_simulator"
    assert info["inputs"] == {"iterations": 3} and info["error"] is None
    assert info["session_id"] is None and info["tags"] == []
    error = as_json(failed)["error"]
    assert as_json(failed)["status"] == "ERROR" and "RuntimeError: boom" in error
    assert text.returncode == 0
    assert f"id:      {done_job}" in text.stdout and "status:  DONE" in text.stdout
    assert 'inputs:  {"iterations": 3}' in text.stdout


def test_logs_and_metrics(cli: Cli, done_job: str) -> None:
    logs, logs_json, metrics, metrics_json = cli.many(
        [
            ["jobs", "logs", done_job],
            ["jobs", "logs", done_job, "--json"],
            ["jobs", "metrics", done_job],
            ["jobs", "metrics", done_job, "--json"],
        ]
    )
    assert logs.returncode == 0
    assert logs.stdout.splitlines() == [f"iteration {i} on local_simulator" for i in (1, 2, 3)]
    assert as_json(logs_json) == {"id": done_job, "logs": logs.stdout}
    data = as_json(metrics_json)
    assert data["status"] == "COMPLETED" and data["executions"] == 3
    assert set(data["timestamps"]) == {"created", "running", "finished"}
    assert metrics.returncode == 0 and metrics.stdout.split()[:2] == ["METRIC", "VALUE"]
    assert "timestamps.finished" in metrics.stdout and "executions" in metrics.stdout


# ---------------------------------------------------------------------------------- result


def test_result_of_a_done_job(cli: Cli, done_job: str) -> None:
    text, document = cli.many(
        [["jobs", "result", done_job], ["jobs", "result", done_job, "--json"]]
    )
    assert text.returncode == 0 and text.stdout == "Hello, World!\n"
    assert as_json(document) == {"id": done_job, "status": "DONE", "result": "Hello, World!"}


def test_result_of_a_failed_job_exits_1(cli: Cli, failed_job: str) -> None:
    text, document = cli.many(
        [["jobs", "result", failed_job], ["jobs", "result", failed_job, "--json"]]
    )
    assert text.returncode == EXIT_FAILED and text.stdout == ""
    assert "RuntimeError: boom" in text.stderr and f"Job {failed_job} has failed" in text.stderr
    assert document.returncode == EXIT_FAILED
    body = json.loads(document.stdout)
    assert body["id"] == failed_job and body["status"] == "ERROR"
    assert "RuntimeError: boom" in body["error"]


def test_result_waits_for_the_job(cli: Cli, service: RuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 1})
    result = cli("jobs", "result", job.job_id(), "--json")
    assert as_json(result)["result"] == {"slept": 1}


# ----------------------------------------------------------------------- cancel and delete


def test_cancel_then_delete(cli: Cli, service: RuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 60})
    job_id = job.job_id()
    try:
        wait_running(service, job_id)
        cancelled = cli("jobs", "cancel", job_id, "--json")
    finally:
        if job.status().name not in ("CANCELLED", "DONE", "ERROR"):
            job.cancel()
    assert as_json(cancelled) == {"id": job_id, "status": "CANCELLED"}

    again, result, watched, text = cli.many(
        [
            ["jobs", "cancel", job_id],
            ["jobs", "result", job_id, "--json"],
            ["jobs", "watch", job_id, "--json"],
            ["jobs", "result", job_id],
        ]
    )
    assert again.returncode == EXIT_FAILED and "cannot be cancelled" in again.stderr
    assert result.returncode == EXIT_FAILED
    assert json.loads(result.stdout)["status"] == "CANCELLED"
    assert watched.returncode == EXIT_FAILED
    assert [e["event"] for e in json_lines(watched.stdout)] == ["status", "error"]
    assert text.returncode == EXIT_FAILED and "Job was cancelled." in text.stderr

    deleted = cli("jobs", "delete", job_id)
    assert deleted.returncode == 0 and deleted.stdout == f"Deleted job {job_id}.\n"
    gone = cli("jobs", "show", job_id)
    assert gone.returncode == EXIT_NOT_FOUND and f"Job {job_id} not found." in gone.stderr


# ------------------------------------------------------------------------------ not found


@pytest.mark.parametrize("job_id", ["nosuchjob0000000000", "not a valid id!"])
def test_unknown_job_id_exits_3(cli: Cli, job_id: str) -> None:
    commands = ["show", "result", "logs", "metrics", "cancel", "delete", "watch"]
    results = cli.many([["jobs", name, job_id, "--json"] for name in commands])
    for name, result in zip(commands, results, strict=True):
        assert result.returncode == EXIT_NOT_FOUND, (name, result.stderr)
        assert result.stdout == "" and f"Job {job_id} not found" in result.stderr


def test_another_users_job_is_not_found(cli: Cli, done_job: str) -> None:
    result = cli("jobs", "show", done_job, token=STRANGER)
    assert result.returncode == EXIT_NOT_FOUND


# ---------------------------------------------------------------------------------- watch


def test_watch_follows_interim_results_to_the_result(cli: Cli, service: RuntimeService) -> None:
    # Both workers sleep first, so the job is still queued when the watchers start.
    blockers = [service.run("sleep", inputs={"seconds": 3}) for _ in range(2)]
    job = service.run("stream", inputs={"count": 5, "interval": 0.2})
    document, text = cli.many(
        [["jobs", "watch", job.job_id(), "--json"], ["jobs", "watch", job.job_id()]]
    )
    assert all(blocker.status().name == "DONE" for blocker in blockers)
    assert document.returncode == 0, document.stderr
    events = json_lines(document.stdout)
    assert {event["id"] for event in events} == {job.job_id()}
    interims = [event["data"]["index"] for event in events if event["event"] == "interim"]
    assert interims == [0, 1, 2, 3, 4]
    assert events[0]["event"] == "status"
    assert events[-2] == {**events[-2], "event": "status", "status": "DONE"}
    assert events[-1] == {**events[-1], "event": "result", "data": {"count": 5}}
    statuses = [event["status"] for event in events if event["event"] == "status"]
    assert statuses in (["QUEUED", "RUNNING", "DONE"], ["RUNNING", "DONE"])  # load permitting
    running = next(i for i, e in enumerate(events) if e.get("status") == "RUNNING")
    assert running < next(i for i, e in enumerate(events) if e["event"] == "interim")

    assert text.returncode == 0, text.stderr
    lines = [line.split("  ", 1)[1] for line in text.stdout.splitlines()]
    assert [line for line in lines if line.startswith("interim: ")] == [
        f'interim: {{"index": {i}, "data": []}}' for i in range(5)
    ]
    assert lines[0] in ("QUEUED", "RUNNING") and lines[-2:] == ["DONE", 'result: {"count": 5}']


def test_watch_a_failed_job_exits_1(cli: Cli, service: RuntimeService) -> None:
    job = service.run("fail", inputs={"message": "kaboom"})
    result = cli("jobs", "watch", job.job_id(), "--json")
    assert result.returncode == EXIT_FAILED
    events = json_lines(result.stdout)
    assert events[-2]["event"] == "status" and events[-2]["status"] == "ERROR"
    assert events[-1]["event"] == "error" and "RuntimeError: kaboom" in events[-1]["message"]


def test_watch_and_result_time_out_with_6(cli: Cli, service: RuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 60})
    try:
        wait_running(service, job.job_id())
        watched, result = cli.many(
            [
                ["jobs", "watch", job.job_id(), "--timeout", "1"],
                ["jobs", "result", job.job_id(), "--timeout", "1"],
            ]
        )
    finally:
        job.cancel()
    assert watched.returncode == EXIT_TIMEOUT, watched.stderr
    assert "Timed out after 1.0 s" in watched.stderr and "still RUNNING" in watched.stderr
    assert watched.stdout.split()[1:] == ["RUNNING"]
    assert result.returncode == EXIT_TIMEOUT and "Timed out" in result.stderr


def test_watch_interrupted_exits_130(cli: Cli, service: RuntimeService) -> None:
    job = service.run("sleep", inputs={"seconds": 60})
    try:
        wait_running(service, job.job_id())
        process = cli.start("jobs", "watch", job.job_id())
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    finally:
        job.cancel()
    assert first.split()[1:] == ["RUNNING"]
    assert process.returncode == EXIT_INTERRUPTED
    assert "interrupted" in err and "Traceback" not in err


def test_watch_into_a_closed_pipe_exits_141(cli: Cli, service: RuntimeService) -> None:
    job = service.run("stream", inputs={"count": 15, "interval": 0.2})  # 3 s
    process = cli.start("jobs", "watch", job.job_id(), "--json")
    try:
        assert process.stdout is not None and process.stderr is not None
        first = json.loads(process.stdout.readline())
        process.stdout.close()  # the reader goes away, like `| head -1`
        process.wait(timeout=30)
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    assert first["event"] == "status"
    assert process.returncode == EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err


# ------------------------------------------------------------------ connection and usage


def test_wrong_token_exits_4(cli: Cli, done_job: str) -> None:
    results = cli.many([["jobs", "list"], ["jobs", "show", done_job]], token="wrong-token-0123")
    for result in results:
        assert result.returncode == EXIT_AUTH, result.stderr
        assert "401" in result.stderr and "wrong-token-0123" not in result.stderr


def test_unreachable_server_exits_5(cli: Cli) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = Cli(f"http://127.0.0.1:{port}", cli.home)("jobs", "list")
    assert result.returncode == EXIT_CONNECTION, result.stderr
    assert "Connection refused" in result.stderr and MAIN not in result.stderr


def test_usage_errors_exit_2(cli: Cli, tmp_path: Any) -> None:
    broken = tmp_path / "accounts.json"
    broken.write_text("{oops")
    commands = [
        ["jobs"],
        ["jobs", "show"],
        ["jobs", "list", "--limit", "-1"],
        ["jobs", "list", "--created-after", "yesterday"],
        ["jobs", "result", "x", "--timeout", "0"],
        ["jobs", "frobnicate"],
        ["--channel", "bogus", "jobs", "list"],
        ["--token", "x", "serve"],
        ["--account-file", str(broken), "jobs", "list"],
        ["--account", "nobody", "jobs", "list"],
        ["--channel", "ibm_cloud", "jobs", "list"],
    ]
    results = cli.many(commands, token=None)
    for args, result in zip(commands, results, strict=True):
        assert result.returncode == EXIT_USAGE, (args, result.stderr)
        assert result.stdout == "", args
    *_, bad_file, no_account, no_instance = results
    assert f"The account file {broken} is not valid JSON" in bad_file.stderr
    assert "No account named 'nobody'" in no_account.stderr
    assert "needs a token" in no_instance.stderr


def test_token_with_a_trailing_newline_works(cli: Cli) -> None:
    # The server's own token file ends with a newline; a token read from it must work.
    env = cli.env(QISKIT_IBM_CHANNEL="local", QISKIT_IBM_URL=cli.url, QISKIT_IBM_TOKEN=f"{MAIN}\n")
    results = [cli("jobs", "list", token=None, env=env), cli("jobs", "list", token=f"{MAIN}\n")]
    for result in results:
        assert result.returncode == EXIT_OK, result.stderr
        assert "Traceback" not in result.stderr


def test_a_token_beginning_with_a_dash_is_taken_as_the_token(cli: Cli) -> None:
    # secrets.token_urlsafe (the server's own tokens) begins with "-" one time in 64.
    dashed = "-" + MAIN
    result = cli("jobs", "list", token=dashed)
    assert result.returncode == EXIT_AUTH, result.stderr
    assert "401" in result.stderr and dashed not in result.stderr


def test_serve_takes_tokens_beginning_with_a_dash_but_not_an_option_for_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime_job import cli as cli_module

    seen: list[list[str]] = []
    monkeypatch.setattr(cli_module, "_serve", lambda args: seen.append(args.token) or 0)
    argv = ["serve", "--token", "-first", "--token", "--x=y", "--token", "third", "--workers", "1"]
    assert cli_module.main(argv) == EXIT_OK
    assert seen == [["-first", "--x=y", "third"]]
    with pytest.raises(SystemExit) as missing:
        cli_module.main(["serve", "--token", "--workers", "1"])
    assert missing.value.code == EXIT_USAGE
    assert "--token: expected one argument" in capsys.readouterr().err


def test_serve_builds_its_server_with_the_limits_and_a_frozen_heap(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime_job import cli as cli_module
    from runtime_job.server import config, local

    built: list[dict[str, Any]] = []

    def fake_server(**kwargs: Any) -> Any:
        built.append(kwargs)
        raise ValueError("built")  # serve stops here, with exit status 2

    monkeypatch.setattr(local, "LocalRuntimeServer", fake_server)
    assert cli_module.main(["serve", "--max-connections", "7"]) == EXIT_USAGE
    assert cli_module.main(["serve"]) == EXIT_USAGE
    assert "built" in capsys.readouterr().err
    assert [(b["max_connections"], b["request_head_timeout"], b["gc_freeze"]) for b in built] == [
        (7, config.REQUEST_HEAD_TIMEOUT, True),
        (config.MAX_CONNECTIONS, config.REQUEST_HEAD_TIMEOUT, True),
    ]


def test_token_that_cannot_be_sent_exits_2_without_showing_it(cli: Cli) -> None:
    bad = f"{MAIN[:10]}\n{MAIN[10:]}"
    env = cli.env(QISKIT_IBM_CHANNEL="local", QISKIT_IBM_URL=cli.url, QISKIT_IBM_TOKEN=bad)
    results = [cli("jobs", "list", token=None, env=env), cli("jobs", "list", token=bad)]
    for result in results:
        assert result.returncode == EXIT_USAGE, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("runtime-job: error: ")
        assert "token" in result.stderr
        assert MAIN[10:] not in result.stderr and MAIN[:10] not in result.stderr


def test_an_unforeseen_error_is_one_line_without_traceback_or_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime_job import cli as cli_module

    def broken(args: Any) -> Any:
        raise KeyError(f"X-Access-Token: {MAIN}")  # a bug quoting a credential

    monkeypatch.setattr(cli_module, "_connect", broken)
    status = cli_module.main(["--url", "http://127.0.0.1:9", "--token", MAIN, "jobs", "list"])
    err = capsys.readouterr().err
    assert status == EXIT_FAILED
    assert err.startswith("runtime-job: error: internal error: KeyError")
    assert err.count("\n") == 1 and "Traceback" not in err and MAIN not in err
