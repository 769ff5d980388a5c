"""Where the service's settings come from: arguments > environment > account file > local.

Every test runs with ``HOME`` in a temporary directory and no ``QISKIT_IBM_*`` variable, so
the developer's own account file and environment never leak in.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime_job import RuntimeService
from runtime_job import _logging as rj_logging
from runtime_job._redact import RedactingFilter
from runtime_job.config import (
    ENV_VARS,
    AccountFile,
    describe_sources,
    resolve_config,
)
from runtime_job.exceptions import IBMAccountError, IBMInputValueError

ARG_TOKEN = "arg-token-0123456789"
ENV_TOKEN = "env-token-0123456789"
FILE_TOKEN = "file-token-0123456789"
QUANTUM_TOKEN = "quantum-token-0123456789"
CLOUD_TOKEN = "cloud-token-0123456789"
ALL_TOKENS = (ARG_TOKEN, ENV_TOKEN, FILE_TOKEN, QUANTUM_TOKEN, CLOUD_TOKEN)
LOG_ENV_VARS = rj_logging.LOG_LEVEL_ENV_VARS


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh home directory and no configuration variable."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in (*ENV_VARS.values(), *LOG_ENV_VARS):
        monkeypatch.delenv(variable, raising=False)
    return home


def account_file(home: Path, accounts: Any) -> Path:
    """Write ``accounts`` as ``~/.qiskit/qiskit-ibm.json``."""
    path = home / ".qiskit" / "qiskit-ibm.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(accounts if isinstance(accounts, str) else json.dumps(accounts))
    return path


LAB = {"channel": "local", "url": "http://127.0.0.1:9001", "token": FILE_TOKEN}
QUANTUM = {
    "channel": "ibm_quantum",
    "token": QUANTUM_TOKEN,
    "url": "https://auth.example/api",
    "instance": "h/g/p",
    "proxies": {"urls": {"https": "http://proxy.example:3128"}},
    "verify": False,
}
CLOUD = {"channel": "ibm_cloud", "token": CLOUD_TOKEN, "instance": "crn:v1:x", "verify": True}


# ------------------------------------------------------------------------------ precedence


def test_nothing_configured_means_the_local_server(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="runtime_job.config"):
        config = resolve_config()
    assert config.channel == "local" and config.uses_local_server
    assert config.token is None and config.account is None
    assert config.sources == {"channel": "default"}
    assert "No account configured: using the local runtime server." in caplog.messages


def test_arguments_beat_environment_beat_file(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = account_file(clean_environment, {"default": LAB})
    monkeypatch.setenv("QISKIT_IBM_URL", "http://127.0.0.1:9002")

    from_file = resolve_config()
    assert (from_file.channel, from_file.token) == ("local", FILE_TOKEN)
    assert from_file.url == "http://127.0.0.1:9002"  # the environment beats the file
    assert from_file.sources["url"] == "environment variable QISKIT_IBM_URL"
    assert from_file.sources["token"] == f"account 'default' in {path}"

    monkeypatch.setenv("QISKIT_IBM_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("QISKIT_IBM_CHANNEL", "local")
    from_env = resolve_config()
    assert (from_env.token, from_env.url) == (ENV_TOKEN, "http://127.0.0.1:9002")
    assert from_env.account is None  # a token already names an account: the file is not read

    from_args = resolve_config(token=ARG_TOKEN, url="http://127.0.0.1:9003")
    assert (from_args.channel, from_args.token, from_args.url) == (
        "local",
        ARG_TOKEN,
        "http://127.0.0.1:9003",
    )
    assert from_args.sources == {
        "channel": "environment variable QISKIT_IBM_CHANNEL",
        "token": "argument",
        "url": "argument",
    }


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"arg", "env", "file"}, ARG_TOKEN),
        ({"env", "file"}, ENV_TOKEN),
        ({"arg", "file"}, ARG_TOKEN),
        ({"file"}, FILE_TOKEN),
        (set(), None),
    ],
)
def test_token_precedence(
    layers: set[str], expected: str | None, clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "file" in layers:
        account_file(clean_environment, {"default-ibm-quantum": {**QUANTUM, "token": FILE_TOKEN}})
    if "env" in layers:
        monkeypatch.setenv("QISKIT_IBM_TOKEN", ENV_TOKEN)
    config = resolve_config(token=ARG_TOKEN if "arg" in layers else None)
    assert config.token == expected
    assert config.channel == ("ibm_quantum" if expected else "local")


def test_instance_and_settings_layer_over_the_saved_account(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_file(clean_environment, {"default-ibm-quantum": QUANTUM})
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", "env/g/p")
    config = resolve_config(verify=True)
    assert config.token == QUANTUM_TOKEN and config.url == "https://auth.example/api"
    assert config.instance == "env/g/p"
    assert config.verify is True  # the argument beats the file's false
    assert config.proxies == {"urls": {"https": "http://proxy.example:3128"}}
    assert config.sources["verify"] == "argument"


def test_empty_strings_count_as_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "")
    monkeypatch.setenv("QISKIT_IBM_CHANNEL", "")
    config = resolve_config(token="", url="")
    assert config.channel == "local" and config.token is None and config.url is None


def test_a_token_without_channel_means_ibm_quantum() -> None:
    config = resolve_config(token=ARG_TOKEN)
    assert config.channel == "ibm_quantum"
    assert config.sources["channel"] == "default"


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_invalid_channel_names_its_source(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if source == "environment":
        monkeypatch.setenv("QISKIT_IBM_CHANNEL", "ibm_qauntum")
        expected = "environment variable QISKIT_IBM_CHANNEL"
    else:
        expected = "argument"
    with pytest.raises(IBMInputValueError, match=f"'ibm_qauntum' \\(from {expected}\\)"):
        resolve_config(channel="ibm_qauntum" if source == "argument" else None)


def test_explicit_local_channel_never_reads_the_default_account(clean_environment: Path) -> None:
    account_file(clean_environment, {"default": LAB})
    config = resolve_config(channel="local")
    assert config.uses_local_server and config.account is None


# ------------------------------------------------------------------------ named accounts


def test_named_account(clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = account_file(clean_environment, {"lab": LAB, "default-ibm-quantum": QUANTUM})
    monkeypatch.setenv("QISKIT_IBM_TOKEN", ENV_TOKEN)  # not read: a name is an explicit choice
    monkeypatch.setenv("QISKIT_IBM_URL", "http://elsewhere")
    config = resolve_config(name="lab")
    assert (config.channel, config.url, config.token) == ("local", LAB["url"], FILE_TOKEN)
    assert config.account is not None and config.account.name == "lab"
    assert config.account.path == path
    # Arguments still win over the named account.
    assert resolve_config(name="lab", url="http://127.0.0.1:1").url == "http://127.0.0.1:1"


def test_named_account_in_another_file(tmp_path: Path) -> None:
    other = tmp_path / "accounts.json"
    other.write_text(json.dumps({"mine": CLOUD}))
    config = resolve_config(name="mine", filename=str(other))
    assert (config.channel, config.instance, config.token) == ("ibm_cloud", "crn:v1:x", CLOUD_TOKEN)


def test_missing_named_account_lists_the_names(clean_environment: Path) -> None:
    path = account_file(clean_environment, {"lab": LAB, "work": QUANTUM})
    with pytest.raises(IBMAccountError) as info:
        resolve_config(name="nope")
    message = str(info.value)
    assert "'nope'" in message and str(path) in message and "'lab', 'work'" in message


def test_named_account_without_a_file(clean_environment: Path) -> None:
    with pytest.raises(IBMAccountError, match="qiskit-ibm.json does not exist"):
        resolve_config(name="lab")


def test_given_account_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(IBMAccountError, match="nowhere.json does not exist"):
        resolve_config(filename=str(tmp_path / "nowhere.json"))


def test_named_account_channel_conflict(clean_environment: Path) -> None:
    account_file(clean_environment, {"lab": LAB})
    with pytest.raises(IBMInputValueError, match="has channel 'local', but channel 'ibm_cloud'"):
        resolve_config(name="lab", channel="ibm_cloud")


# ------------------------------------------------------------------------ default account


@pytest.mark.parametrize(
    ("accounts", "channel", "expected"),
    [
        ({"a": QUANTUM, "b": {**LAB, "is_default_account": True}}, None, "b"),
        ({"default": LAB, "default-ibm-quantum": QUANTUM}, None, "default"),
        ({"default-ibm-quantum": QUANTUM, "default-ibm-cloud": CLOUD}, None, "default-ibm-cloud"),
        ({"default-ibm-quantum": QUANTUM, "default-ibm-cloud": CLOUD}, "ibm_quantum", None),
        ({"default": QUANTUM, "default-ibm-cloud": CLOUD}, "ibm_cloud", "default-ibm-cloud"),
        ({"x": {**QUANTUM, "is_default_account": True}, "default": CLOUD}, "ibm_cloud", "default"),
        ({"lab": LAB, "work": QUANTUM}, None, "none"),
    ],
)
def test_default_account_choice(
    accounts: dict[str, Any], channel: str | None, expected: str | None, clean_environment: Path
) -> None:
    account_file(clean_environment, accounts)
    config = resolve_config(channel=channel)
    name = config.account.name if config.account else "none"
    if expected is None:  # the channel's reference name
        expected = "default-ibm-quantum"
    assert name == expected


def test_several_flagged_defaults_are_an_error(clean_environment: Path) -> None:
    account_file(
        clean_environment,
        {"a": {**LAB, "is_default_account": True}, "b": {**CLOUD, "is_default_account": True}},
    )
    with pytest.raises(IBMAccountError, match="Several accounts .* 'a', 'b'"):
        resolve_config()


def test_unknown_keys_are_ignored(clean_environment: Path) -> None:
    account_file(
        clean_environment,
        {"default-ibm-cloud": {**CLOUD, "private_endpoint": False, "channel_strategy": None}},
    )
    assert resolve_config().token == CLOUD_TOKEN


def test_a_broken_unused_account_does_not_matter(clean_environment: Path) -> None:
    account_file(clean_environment, {"broken": [1, 2], "lab": LAB})
    assert resolve_config(name="lab").token == FILE_TOKEN


# ------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON: Expecting property name"),
        ("[]", "must hold a JSON object of named accounts, not an array"),
        ('{"default": 3}', "Invalid account 'default' .*: expected a JSON object, got a number"),
        ('{"default": {"channel": "cloud"}}', "'channel' is 'cloud'; expected one of"),
        ('{"default": {"token": "x"}}', "'channel' is null; expected one of"),
        ('{"default": {"channel": "local", "url": 5}}', "'url' must be a string, not a number"),
        ('{"default": {"channel": "local", "verify": "yes", "proxies": []}}', "'proxies' must be"),
        ('{"default": {"channel": "local", "verify": 1}}', "'verify' must be true, false or"),
        (
            '{"default": {"channel": "local", "proxies": {"username_ntlm": "u"}}}',
            "'proxies': NTLM proxy authentication is not supported",
        ),
    ],
)
def test_malformed_file_is_a_clear_error_naming_the_file(
    content: str, message: str, clean_environment: Path
) -> None:
    path = account_file(clean_environment, content)
    with pytest.raises(IBMAccountError, match=message) as info:
        resolve_config()
    assert str(path) in str(info.value)


def test_unreadable_file(clean_environment: Path) -> None:
    path = clean_environment / ".qiskit" / "qiskit-ibm.json"
    path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(IBMAccountError, match=f"Cannot read the account file {path}"):
        resolve_config()


def test_the_file_is_only_read(clean_environment: Path) -> None:
    path = account_file(clean_environment, {"default": LAB})
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    resolve_config()
    resolve_config(name="default")
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert AccountFile.read(clean_environment / "missing.json") is None


# --------------------------------------------------------------------------------- secrets


def test_token_never_in_reprs_logs_or_errors(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    account_file(
        clean_environment,
        {
            "default-ibm-quantum": QUANTUM,
            "lab": LAB,
            "bad": {"channel": "nope", "token": CLOUD_TOKEN},
        },
    )
    monkeypatch.setenv("QISKIT_IBM_TOKEN", ENV_TOKEN)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="runtime_job"):
        for config in (
            resolve_config(),
            resolve_config(name="lab"),
            resolve_config(channel="ibm_quantum", token=ARG_TOKEN),
        ):
            texts += [repr(config), str(config), describe_sources(config), repr(config.account)]
        accounts = AccountFile.read()
        assert accounts is not None
        texts += [repr(accounts), repr(accounts.account("lab"))]
        with pytest.raises(IBMAccountError) as info:
            resolve_config(name="bad")
        texts.append(str(info.value))
    texts += [record.getMessage() for record in caplog.records]
    assert any("token (" in text for text in texts)  # the sources are described...
    for text in texts:
        for token in ALL_TOKENS:
            assert token not in text  # ...never the token itself
    assert "<redacted>" in repr(resolve_config(name="lab"))


def test_service_repr_has_no_token(clean_environment: Path) -> None:
    account_file(clean_environment, {"lab": LAB})
    with RuntimeService(name="lab") as service:
        assert FILE_TOKEN not in repr(service)
        assert repr(service) == "<RuntimeService(channel='local', url='http://127.0.0.1:9001')>"


# -------------------------------------------------------------------------- the service


def test_service_uses_the_saved_account(clean_environment: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({"lab": {**LAB, "url": "http://127.0.0.1:9009"}}))
    with RuntimeService(name="lab", filename=str(other)) as service:
        assert service.channel == "local"
        assert "127.0.0.1:9009" in repr(service)


def test_service_without_configuration_starts_the_local_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Any] = []

    def fake_ensure(data_dir: str | None = None) -> tuple[str, str]:
        calls.append(data_dir)
        return "http://127.0.0.1:9010", "server-token-0123456789"

    monkeypatch.setattr("runtime_job.server.ensure_local_server", fake_ensure)
    with caplog.at_level(logging.INFO, logger="runtime_job"), RuntimeService() as service:
        assert service.channel == "local" and "127.0.0.1:9010" in repr(service)
    assert calls == [None]
    assert "No account configured: using the local runtime server." in caplog.messages


def test_service_signature_follows_the_reference() -> None:
    import inspect

    names = list(inspect.signature(RuntimeService.__init__).parameters)[1:9]
    assert names == [
        "channel",
        "token",
        "url",
        "filename",
        "name",
        "instance",
        "proxies",
        "verify",
    ]


# --------------------------------------------------------------------------------- logging


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The ``runtime_job`` logger, restored (handlers, level, propagation) afterwards."""
    logger = logging.getLogger("runtime_job")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    for handler in logger.handlers:
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_no_log_variable_configures_nothing(package_logger: logging.Logger) -> None:
    before = (list(package_logger.handlers), package_logger.level, package_logger.propagate)
    assert rj_logging.configure_from_environment({}) is None
    assert rj_logging.configure_from_environment({"RUNTIME_JOB_LOG_LEVEL": " "}) is None
    assert (list(package_logger.handlers), package_logger.level, package_logger.propagate) == (
        before
    )


@pytest.mark.parametrize(
    ("environ", "level"),
    [
        ({"RUNTIME_JOB_LOG_LEVEL": "DEBUG"}, logging.DEBUG),
        ({"QISKIT_IBM_RUNTIME_LOG_LEVEL": "info"}, logging.INFO),
        ({"RUNTIME_JOB_LOG_LEVEL": "error", "QISKIT_IBM_RUNTIME_LOG_LEVEL": "debug"}, 40),
        ({"RUNTIME_JOB_LOG_LEVEL": "15"}, 15),
    ],
)
def test_log_variable_adds_one_redacting_stderr_handler(
    environ: dict[str, str], level: int, package_logger: logging.Logger
) -> None:
    handler = rj_logging.configure_from_environment(environ)
    assert isinstance(handler, logging.StreamHandler)
    assert handler in package_logger.handlers and handler.stream is sys.stderr
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    assert package_logger.level == level and handler.level == level
    assert package_logger.propagate is False
    assert rj_logging.configure_from_environment(environ) is None  # only once
    assert sum(h is handler for h in package_logger.handlers) == 1


def test_unknown_log_level_falls_back_to_warning(
    package_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = rj_logging.configure_from_environment({"RUNTIME_JOB_LOG_LEVEL": "chatty"})
    assert handler is not None and package_logger.level == logging.WARNING


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def _child_env(home: Path, **extra: str) -> dict[str, str]:
    import os

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ENV_VARS.values() and key not in LOG_ENV_VARS
    }
    env["HOME"] = str(home)
    env.update(extra)
    return env


LOG_PROBE = """
import logging
import runtime_job
logger = logging.getLogger("runtime_job")
print(len(logger.handlers), logger.level, logger.propagate)
logging.getLogger("runtime_job.api.session").debug(
    "headers {'X-Access-Token': 'secret-token-abcdef'} token=%s", "secret-token-abcdef")
logging.getLogger("runtime_job.probe").debug("env token %s", "{env_token}")
"""


def test_import_configures_logging_only_when_asked(clean_environment: Path) -> None:
    quiet = _run_python(LOG_PROBE.replace("{env_token}", "x"), _child_env(clean_environment))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.split() == ["0", "0", "True"] and quiet.stderr == ""

    loud = _run_python(
        LOG_PROBE.replace("{env_token}", ENV_TOKEN),
        _child_env(clean_environment, RUNTIME_JOB_LOG_LEVEL="DEBUG", QISKIT_IBM_TOKEN=ENV_TOKEN),
    )
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout.split() == ["1", "10", "False"]
    assert "DEBUG runtime_job.api.session: headers" in loud.stderr
    assert "runtime_job.probe: env token <redacted>" in loud.stderr
    assert "secret-token-abcdef" not in loud.stderr and ENV_TOKEN not in loud.stderr
