"""Where ``runtime-job jobs`` finds its settings: options, environment, account file."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import MAIN, Cli


def ids(stdout: str) -> set[str]:
    return {row["id"] for row in json.loads(stdout)}


def test_options_before_or_after_the_subcommand(cli: Cli, done_job: str) -> None:
    connection = ["--channel", "local", "--url", cli.url, "--token", MAIN]
    before, after, mixed = cli.many(
        [
            [*connection, "jobs", "show", done_job, "--json"],
            ["jobs", "show", done_job, "--json", *connection],
            ["--channel", "local", "--url", cli.url, "jobs", "--token", MAIN, "show", done_job],
        ],
        token=None,
    )
    for result in (before, after, mixed):
        assert result.returncode == 0, result.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)


def test_settings_from_the_environment(cli: Cli, done_job: str) -> None:
    env = cli.env(QISKIT_IBM_CHANNEL="local", QISKIT_IBM_URL=cli.url, QISKIT_IBM_TOKEN=MAIN)
    result = cli("jobs", "list", "--json", "--limit", "0", token=None, env=env)
    assert result.returncode == 0, result.stderr
    assert done_job in ids(result.stdout)
    # An option beats the environment.
    wrong = cli("--token", "wrong-token-0123", "jobs", "list", token=None, env=env)
    assert wrong.returncode == 4


def test_settings_from_the_account_file(cli: Cli, done_job: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".qiskit").mkdir(parents=True)
    accounts = {
        "default": {"channel": "local", "url": cli.url, "token": MAIN},
        "elsewhere": {"channel": "local", "url": cli.url, "token": "wrong-token-0123"},
    }
    (home / ".qiskit" / "qiskit-ibm.json").write_text(json.dumps(accounts))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"lab": accounts["default"]}))
    env = {**cli.env(), "HOME": str(home)}
    default = cli("jobs", "list", "--json", "--limit", "0", token=None, env=env)
    assert default.returncode == 0, default.stderr
    assert done_job in ids(default.stdout)
    named = cli("--account", "elsewhere", "jobs", "list", token=None, env=env)
    assert named.returncode == 4
    in_file = cli(
        "jobs", "list", "--account", "lab", "--account-file", str(other), token=None, env=env
    )
    assert in_file.returncode == 0, in_file.stderr


def test_debug_logging_never_shows_the_token(cli: Cli, done_job: str) -> None:
    for variable in ("RUNTIME_JOB_LOG_LEVEL", "QISKIT_IBM_RUNTIME_LOG_LEVEL"):
        result = cli("jobs", "show", done_job, env=cli.env(**{variable: "DEBUG"}))
        assert result.returncode == 0, result.stderr
        assert "DEBUG runtime_job.api.session: Request GET" in result.stderr
        assert "token (argument)" in result.stderr
        assert MAIN not in result.stderr and MAIN not in result.stdout
    quiet = cli("jobs", "show", done_job)
    assert quiet.returncode == 0 and quiet.stderr == ""
