"""Tokens never appear in logs, reprs or exception messages."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import pytest
import requests
import responses

from runtime_job._redact import RedactingFilter, redact, scrub_url
from runtime_job.api.client import AuthClient, RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.session import HttpSession
from runtime_job.exceptions import ApiConnectionError, IBMInputValueError, RuntimeJobLibraryError

from .conftest import (
    ACCESS_TOKEN,
    API_TOKEN,
    AUTH_URL,
    CLOUD_BASE,
    CLOUD_URL,
    CRN,
    LOCAL_URL,
    TOKEN,
)

SECRETS = (TOKEN, API_TOKEN, ACCESS_TOKEN)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a token leaked into: {text!r}"


def exercise_runtime(client: RuntimeClient, base: str, mock: responses.RequestsMock) -> list[str]:
    """Run successes, retries and failures; return every exception's str and repr."""
    echo = {"errors": [{"code": 1, "message": f"bad token {TOKEN} (apikey {TOKEN})"}]}
    mock.get(f"{base}/jobs/ok", json={"id": "ok", "state": {"status": "QUEUED"}})
    mock.get(f"{base}/jobs/echo", status=400, json=echo)
    mock.get(f"{base}/jobs/unauth", status=401, json=echo)
    mock.get(f"{base}/jobs/flaky", status=503)
    mock.get(f"{base}/jobs/html", body=f"<html>X-Access-Token: {TOKEN}</html>")
    mock.get(f"{base}/jobs/down", body=requests.exceptions.ConnectionError(f"down {TOKEN}"))
    mock.get(f"https://blob.test/r?access_token={TOKEN}&x=1", status=500)
    errors: list[str] = []
    client.job_get("ok")
    for job_id in ("echo", "unauth", "flaky", "html", "down"):
        try:
            client.job_get(job_id)
        except RuntimeJobLibraryError as err:
            errors += [str(err), repr(err), err.message, str(vars(err))]
    try:
        client.external_result(f"https://blob.test/r?access_token={TOKEN}&x=1")
    except RuntimeJobLibraryError as err:
        errors += [str(err), repr(err), str(vars(err))]
    return errors


@pytest.mark.parametrize(
    ("params", "base"),
    [
        (ClientParameters(channel="local", token=TOKEN, url=LOCAL_URL), LOCAL_URL),
        (
            ClientParameters(channel="ibm_cloud", token=TOKEN, url=CLOUD_URL, instance=CRN),
            CLOUD_BASE,
        ),
        (ClientParameters(channel="ibm_quantum", token=TOKEN, url=LOCAL_URL), LOCAL_URL),
    ],
    ids=["local", "ibm_cloud", "ibm_quantum"],
)
def test_tokens_absent_from_logs_errors_and_reprs(
    caplog: pytest.LogCaptureFixture,
    rsps: responses.RequestsMock,
    make_client: Callable[..., RuntimeClient],
    params: ClientParameters,
    base: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(params)
    errors = exercise_runtime(client, base, rsps)
    assert len(errors) >= 20
    for text in errors:
        assert_clean(text)
    assert "<redacted>" in " ".join(errors)
    assert caplog.records, "expected debug and retry logs"
    for record in caplog.records:
        assert_clean(record.getMessage())
    assert any("Retrying" in record.getMessage() for record in caplog.records)
    for text in (repr(client), repr(client._session), repr(params), str(params)):
        assert_clean(text)


def test_login_tokens_absent(
    caplog: pytest.LogCaptureFixture, rsps: responses.RequestsMock, auth_client: AuthClient
) -> None:
    caplog.set_level(logging.DEBUG)
    rsps.post(f"{AUTH_URL}/users/loginWithToken", json={"id": ACCESS_TOKEN})
    rsps.get(
        f"{AUTH_URL}/users/me",
        status=403,
        json={"error": {"message": f"token {ACCESS_TOKEN} / {API_TOKEN} refused", "code": 3}},
    )
    auth_client.login(API_TOKEN)
    with pytest.raises(RuntimeJobLibraryError) as info:
        auth_client.user_info()
    assert_clean(str(info.value))
    assert_clean(repr(info.value))
    assert_clean(str(vars(info.value)))
    assert_clean(repr(auth_client))
    for record in caplog.records:
        assert_clean(record.getMessage())


def test_filter_redacts_records_of_our_loggers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with HttpSession(ClientParameters(channel="local", token=TOKEN, url=LOCAL_URL)):
        logging.getLogger("runtime_job.api.session").debug("header %s", {"X-Access-Token": TOKEN})
        logging.getLogger("runtime_job.api.client").info("the token is %s", TOKEN)
    for record in caplog.records:
        assert_clean(record.getMessage())
    assert len(caplog.records) == 2


def test_closed_session_detaches_its_filter() -> None:
    logger = logging.getLogger("runtime_job.api.session")
    before = list(logger.filters)
    session = HttpSession(ClientParameters(channel="local", token=TOKEN, url=LOCAL_URL))
    assert len(logger.filters) == len(before) + 1
    session.close()
    assert logger.filters == before


def test_unclosed_session_detaches_when_collected() -> None:
    import gc

    logger = logging.getLogger("runtime_job.api.session")
    before = list(logger.filters)
    session = HttpSession(ClientParameters(channel="local", token=TOKEN, url=LOCAL_URL))
    session._session.close()  # release sockets; only the filter is left to clean up
    del session
    gc.collect()
    assert logger.filters == before


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("X-Access-Token: abcdef123", "abcdef123"),
        ("{'X-Access-Token': 'abcdef123'}", "abcdef123"),
        ('{"Authorization": "apikey abcdef123"}', "abcdef123"),
        ("Authorization: Bearer abcdef123", "abcdef123"),
        ("apikey abcdef123", "abcdef123"),
        ("GET /x?access_token=abcdef123&y=1", "abcdef123"),
        ('{"apiToken": "abcdef123"}', "abcdef123"),
        ("token=abcdef123", "abcdef123"),
    ],
)
def test_redact_patterns(text: str, leaked: str) -> None:
    cleaned = redact(text)
    assert leaked not in cleaned
    assert "<redacted>" in cleaned


def test_redact_known_secrets_and_keeps_the_rest() -> None:
    assert (
        redact("job j1 failed: zzz-secret-zzz", ["zzz-secret-zzz"]) == "job j1 failed: <redacted>"
    )
    assert redact("job j1 is fine") == "job j1 is fine"
    assert redact("abc", ["", "a"]) == "abc"  # empty and tiny secrets are ignored
    assert redact(redact("X-Access-Token: abc123")) == "X-Access-Token: <redacted>"


def test_scrub_url() -> None:
    assert scrub_url("https://h.test/p?access_token=s&token=t&apiToken=u&x=1") == (
        "https://h.test/p?x=1"
    )
    assert scrub_url("https://user:pw@h.test:8443/p") == "https://user@h.test:8443/p"
    assert scrub_url("http://h.test/jobs/j1") == "http://h.test/jobs/j1"


def test_redacting_filter_never_drops_records() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("a", TOKEN), None)
    assert RedactingFilter(lambda: [TOKEN]).filter(record) is True
    assert record.getMessage() == "a <redacted>"
    broken = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("nan",), None)
    assert RedactingFilter().filter(broken) is True


# -- issue 18 item 14: a token with a line break -----------------------------------------------


def _everything_shown(err: BaseException) -> str:
    """What a traceback of ``err`` prints (its chain included), plus its attributes."""
    return "".join(traceback.format_exception(err)) + repr(vars(err))


@pytest.mark.parametrize("padded", [f"{TOKEN}\n", f"{TOKEN}\r\n", f"  {TOKEN}\t"])
def test_token_is_stripped_when_the_client_is_configured(
    padded: str, rsps: responses.RequestsMock
) -> None:
    params = ClientParameters(channel="local", token=padded, url=LOCAL_URL)
    assert params.token == TOKEN
    assert params.auth_headers() == {"X-Access-Token": TOKEN}
    params.token = f"{API_TOKEN}\n"  # replaced after construction (as after a login)
    assert params.token == API_TOKEN
    rsps.get(f"{LOCAL_URL}/jobs/j1", json={"id": "j1"})
    with RuntimeClient(params) as client:
        client.job_get("j1")
    assert rsps.calls[0].request.headers["X-Access-Token"] == API_TOKEN


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(f"{TOKEN[:8]}\n{TOKEN[8:]}", id="line-break-inside"),
        pytest.param(f"{TOKEN[:8]}\x00{TOKEN[8:]}", id="nul"),
        pytest.param(f"{TOKEN[:8]}\u20ac{TOKEN[8:]}", id="not-latin-1"),
    ],
)
def test_token_that_cannot_be_sent_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(IBMInputValueError) as caught:
        ClientParameters(channel="local", token=bad, url=LOCAL_URL)
    assert "token" in str(caught.value)
    shown = _everything_shown(caught.value)
    for part in (bad, bad.strip(), TOKEN[:8] + "\\", TOKEN[8:]):
        assert part not in shown
    params = ClientParameters(channel="local", token=TOKEN, url=LOCAL_URL)
    with pytest.raises(IBMInputValueError) as caught:
        params.token = bad
    assert TOKEN[8:] not in _everything_shown(caught.value)
    assert params.token == TOKEN  # unchanged


@pytest.mark.parametrize("route", ["request-header", "auth-header"])
def test_a_header_the_http_stack_refuses_is_our_error_and_redacted(route: str) -> None:
    # A credential that bypassed validation reaches requests (which refuses a header given
    # per request) or http.client (which refuses an auth header with a ValueError), both
    # quoting the value.
    secret = f"{ACCESS_TOKEN}\n"
    params = ClientParameters(channel="local", token=TOKEN, url=LOCAL_URL)
    headers = None
    if route == "auth-header":
        object.__setattr__(params, "token", secret)  # around the check, as a bug would
    else:
        headers = {"X-Access-Token": secret}
    session = HttpSession(params)
    session.add_secret(secret)
    try:
        with pytest.raises(ApiConnectionError) as caught:
            session.request("GET", "/jobs", headers=headers, auth=route == "auth-header")
    finally:
        session.close()
    err = caught.value
    assert not err.retryable
    assert isinstance(err.__cause__, ValueError)
    assert ACCESS_TOKEN not in _everything_shown(err)


def test_redact_knows_a_secret_stripped_and_escaped() -> None:
    secret = f"{TOKEN}\n"
    text = f"Invalid header value {secret.encode()!r}; again: {TOKEN} and {secret}"
    assert TOKEN not in redact(text, [secret])
