"""The HTTP session: one pooled connection per client, with timeouts, retries and auth.

:class:`HttpSession` sends every request with a finite ``(connect, read)`` timeout (shortened
to a caller's deadline), the channel's authentication headers and the client-application
header, and retries what is safe to retry under a :class:`~runtime_job.api.retry.RetryPolicy`.
It is the only user of ``requests`` for REST calls; what it raises comes from
:mod:`runtime_job.api.errors` (the one mapping of failures to our exceptions), and bodies
are read by :mod:`runtime_job.api.body`. Tokens never reach logs, reprs or exception
messages (:mod:`runtime_job._redact`).

Example::

    params = ClientParameters(channel="local", token="secret", url="http://127.0.0.1:8000")
    with HttpSession(params) as session:
        response = session.request("GET", "/jobs", params={"limit": "5"})
        page = decode_json(response, "job list")

See ``docs/timeouts-and-retries.md`` for the policy and its defaults.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .._redact import RedactingFilter, redact, scrub_url
from .._version import __version__
from ..timing import Deadline, clock
from .body import check_head_complete, decode_json, read_body_by, read_large_body
from .errors import (
    closed_error,
    deadline_error,
    describe,
    failure_kind,
    http_error,
    network_error,
)
from .params import ClientParameters
from .retry import DEFAULT_RETRY_POLICY, Attempts, RetryPolicy, parse_retry_after

logger = logging.getLogger(__name__)

CLIENT_APPLICATION: Final = f"runtime-job/{__version__}"
"""Value of ``X-Qx-Client-Application`` (before any custom suffix) and of ``User-Agent``."""
CLIENT_APP_HEADER: Final = "X-Qx-Client-Application"
"""Header naming the client application, as the reference sends it."""
CUSTOM_HEADER_ENV_VARS: Final = (
    "QISKIT_IBM_RUNTIME_CUSTOM_CLIENT_APP_HEADER",
    "QE_CUSTOM_CLIENT_APP_HEADER",
)
"""Environment variables (first set wins) whose value is appended to the client-app header."""
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
"""Request header: the same key on a resent request lets the server return the first result."""
IDEMPOTENCY_SUPPORTED_HEADER: Final = "X-Idempotency-Supported"
"""Response header (``true``) by which a server says it honours ``Idempotency-Key``."""


def _logger_names() -> tuple[str, ...]:
    return (__name__, __name__.rpartition(".")[0] + ".client")


def _weak_secrets(method: weakref.WeakMethod[Callable[[], list[str]]]) -> Callable[[], list[str]]:
    def secrets() -> list[str]:
        bound = method()
        return bound() if bound is not None else []

    return secrets


def _detach_filter(log_filter: logging.Filter) -> None:
    for name in _logger_names():
        logging.getLogger(name).removeFilter(log_filter)


# ------------------------------------------------------------------------------- transport


class _HeaderAuth(requests.auth.AuthBase):
    """Sets headers at prepare time (and keeps ``requests`` from consulting ``~/.netrc``)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers)
        return request

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {sorted(self._headers)}>"


class _PooledSession(requests.Session):
    """A ``requests.Session`` that drops every credential header on a cross-origin redirect.

    ``requests`` only drops ``Authorization``; our ``X-Access-Token`` would follow a redirect
    to another host. ``~/.netrc`` credentials are never added.
    """

    _CREDENTIAL_HEADERS = ("X-Access-Token", "Service-CRN", "Authorization")

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        """Drop credentials when a redirect leaves the original scheme, host or port.

        Args:
            prepared_request: The redirected request.
            response: The redirect response.
        """
        original = response.request
        before = _origin(original.url or "") if original is not None else None
        if before is None or before != _origin(prepared_request.url or ""):
            for name in self._CREDENTIAL_HEADERS:
                prepared_request.headers.pop(name, None)


def _origin(url: str) -> tuple[str, str | None, int | None] | None:
    """``(scheme, host, port)`` of ``url``, or ``None`` when it cannot be parsed."""
    try:
        parts = urlsplit(url)
        return (parts.scheme.lower(), parts.hostname, parts.port)
    except ValueError:
        return None


class HttpSession:
    """One pooled HTTP connection to a service, with timeouts, retries and error mapping.

    A client owns exactly one session. Every request gets the ``(connect, read)`` timeout,
    TLS verification and proxies of the :class:`ClientParameters`, the channel's
    authentication headers (read from the parameters at send time, so a token replaced
    after login is used at once), ``User-Agent`` and ``X-Qx-Client-Application``.

    Args:
        params: Connection settings and credentials.
        base_url: Base URL that relative paths are appended to. Default: the runtime API
            base of ``params``, read at each request.
        retry_policy: How failed requests are retried. Default: :data:`DEFAULT_RETRY_POLICY`.
        pool_maxsize: Connections kept open per host (for concurrent use by many threads).

    Attributes:
        custom_header: The custom client-application suffix read from the environment at
            construction (``None`` when unset).
        headers: Headers sent with every request (never credentials).
        reauthenticate: Called once when an authenticated request gets 401 (an access
            token that expired): it logs in again and updates the parameters' token, and
            returns whether the request should be sent again. ``None``: a 401 is raised.
    """

    reauthenticate: Callable[[], bool] | None = None

    def __init__(
        self,
        params: ClientParameters,
        base_url: str | None = None,
        retry_policy: RetryPolicy | None = None,
        pool_maxsize: int = 32,
    ) -> None:
        self._params = params
        self._base_url = base_url.rstrip("/") if base_url is not None else None
        self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY
        self._random = random.Random()
        self._lock = threading.Lock()
        self._idempotent_bases: set[str] = set()
        self._extra_secrets: set[str] = set()
        self._closed = False
        self.custom_header: str | None = next(
            (os.environ[name] for name in CUSTOM_HEADER_ENV_VARS if os.environ.get(name)), None
        )
        self.headers: dict[str, str] = {"User-Agent": CLIENT_APPLICATION}
        self._set_custom_header()

        self._session = _PooledSession()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

        # The filter lives on module loggers, so it must not keep this session alive.
        self._log_filter = RedactingFilter(_weak_secrets(weakref.WeakMethod(self.secrets)))
        for name in _logger_names():
            logging.getLogger(name).addFilter(self._log_filter)
        self._finalizer = weakref.finalize(self, _detach_filter, self._log_filter)

    # ------------------------------------------------------------------ configuration

    @property
    def base_url(self) -> str:
        """The base URL relative paths are appended to (no trailing slash)."""
        if self._base_url is not None:
            return self._base_url
        return self._params.get_runtime_api_base_url()

    def _set_custom_header(self) -> None:
        """Recompute ``X-Qx-Client-Application`` from :attr:`custom_header`."""
        value = CLIENT_APPLICATION
        if self.custom_header:
            value = f"{value}/{self.custom_header}"
        self.headers[CLIENT_APP_HEADER] = value

    def secrets(self) -> list[str]:
        """The secret strings this session knows: the token and any registered one.

        Returns:
            The secrets, for redaction.
        """
        with self._lock:
            extra = list(self._extra_secrets)
        return [self._params.token, *extra]

    def add_secret(self, secret: str) -> None:
        """Register another secret (e.g. an access token obtained at login) to redact.

        Args:
            secret: The secret string.
        """
        if secret:
            with self._lock:
                self._extra_secrets.add(secret)

    def idempotency_supported(self, url: str) -> bool:
        """Whether the server behind ``url`` said it honours ``Idempotency-Key``.

        Args:
            url: A full request URL.

        Returns:
            ``True`` once a response from that base URL carried
            ``X-Idempotency-Supported: true``.
        """
        with self._lock:
            return self._base_key(url) in self._idempotent_bases

    def _base_key(self, url: str) -> str:
        base = self._base_url if self._base_url is not None else self.base_url
        if base and (url == base or url.startswith(base + "/") or url.startswith(base + "?")):
            return base.lower()
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def _learn(self, url: str, response: requests.Response) -> None:
        if response.headers.get(IDEMPOTENCY_SUPPORTED_HEADER, "").strip().lower() == "true":
            key = self._base_key(url)
            with self._lock:
                self._idempotent_bases.add(key)

    # ----------------------------------------------------------------------- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        data: str | bytes | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
        timeout: tuple[float, float] | None = None,
        large_body: bool = False,
        deadline: Deadline | None = None,
    ) -> requests.Response:
        """Send a request, retrying under the policy; return a successful response.

        Args:
            method: HTTP method.
            path: A path appended to :attr:`base_url`, or a full ``http(s)://`` URL.
            params: Query parameters (a list value repeats the key).
            data: Request body, sent as is.
            json_body: A value to send as JSON (sets ``Content-Type: application/json``).
            headers: Extra headers for this request.
            auth: Send the channel's authentication headers (``False`` for the login
                bootstrap and external downloads).
            idempotent: Override whether the request is safe to resend (default: decided
                from the method, the path and ``Idempotency-Key``; see :class:`RetryPolicy`).
            timeout: ``(connect, read)`` seconds for this request (default: the parameters').
            large_body: The body may be large (a job result): read it into one buffer sized
                by ``Content-Length``, without intermediate copies (``body.read_large_body``).
            deadline: The caller's deadline: connect and read timeouts are shortened to the
                time left, no retry sleeps past it, and the body stops being read once it
                passes (then :class:`UserTimeoutExceededError`). ``None``, or a deadline
                without a limit: none.

        Returns:
            The response, with a status below 400 and its body read.

        Raises:
            IBMNotAuthorizedError: HTTP 401 (except on the login endpoint); never retried.
            AuthenticationLicenseError: HTTP 401 on login because a license must be accepted.
            RequestsApiError: Any other HTTP error (:class:`NotFoundError` for 404,
                :class:`ConflictError` for 409, :class:`RateLimitError` for 429,
                :class:`ServerError` for 5xx), a network failure (:class:`ApiConnectionError`,
                ``status_code`` -1), or retries exhausted (the last status, or -1 without a
                response).
            UserTimeoutExceededError: ``deadline`` passed.
        """
        method = method.upper()
        if self._closed:
            raise closed_error(method)
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        safe_url = scrub_url(url)
        all_headers = dict(self.headers)
        if headers:
            all_headers.update(headers)
        if json_body is not None:
            data = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        send_timeout = self._timeout(timeout)
        attempts = Attempts(self.retry_policy)
        if deadline is not None and deadline.remaining() is None:
            deadline = None
        reauthenticated = False

        while True:
            attempts.sent += 1
            if deadline is not None:
                send_timeout = self._within(deadline, self._timeout(timeout), method, safe_url)
            logger.debug(
                "Request %s %s (attempt %d, timeout %s)",
                method,
                safe_url,
                attempts.sent,
                send_timeout,
            )
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=all_headers,
                    auth=_HeaderAuth(self._params.auth_headers(deadline) if auth else {}),
                    timeout=send_timeout,
                    verify=self._params.verify,
                    proxies=self._params.connection_parameters().get("proxies") or {},
                    allow_redirects=True,
                    stream=large_body or deadline is not None,
                )
                if large_body:
                    read_large_body(response, deadline, method, safe_url)
                elif deadline is not None:
                    read_body_by(response, deadline, method, safe_url)
                check_head_complete(response, method)
            except requests.RequestException as err:
                if deadline is not None and deadline.expired():
                    raise deadline_error(method, safe_url) from err
                kind = failure_kind(err)
                may_retry = kind == "connect" or (
                    kind == "read" and self._may_resend(method, url, all_headers, idempotent)
                )
                if kind is not None and may_retry and attempts.allows(kind):
                    retry = attempts.take(kind)
                    self._sleep(
                        self.retry_policy.backoff(retry, self._random.random()),
                        method,
                        safe_url,
                        attempts,
                        describe(err),
                        deadline,
                    )
                    continue
                sent_url = err.request.url if err.request is not None else None
                raise network_error(
                    err, method, scrub_url(sent_url or url), attempts.sent, self.secrets()
                ) from err
            except (ValueError, OSError) as err:
                # The HTTP stack refused to send it (e.g. a header value with a line break):
                # ours, redacted, not retried.
                raise network_error(err, method, safe_url, attempts.sent, self.secrets()) from err

            self._learn(url, response)
            logger.debug("Response %s %s: %d", method, safe_url, response.status_code)
            if response.status_code < 400:
                return response

            if (
                response.status_code == 401
                and auth
                and not reauthenticated
                and self.reauthenticate is not None
                and self.reauthenticate()
            ):
                reauthenticated = True  # once: a fresh token refused again is a real 401
                continue
            wait = self._status_wait(response, method, url, all_headers, idempotent, attempts)
            if wait is None:
                raise http_error(
                    response,
                    method,
                    scrub_url(response.url or url),
                    sent=attempts.sent,
                    note=attempts.note,
                    secrets=self.secrets(),
                )
            attempts.take("status")
            self._sleep(wait, method, safe_url, attempts, f"HTTP {response.status_code}", deadline)

    def request_json(self, method: str, path: str, *, what: str = "response", **kwargs: Any) -> Any:
        """:meth:`request`, then :func:`decode_json` on the response.

        Args:
            method: HTTP method.
            path: Path or full URL.
            what: What the body is, for error messages.
            **kwargs: Passed to :meth:`request`.

        Returns:
            The decoded JSON body.

        Raises:
            ApiIBMProtocolError: The body is not JSON.
            RequestsApiError: As :meth:`request`.
        """
        return decode_json(self.request(method, path, **kwargs), what)

    def _timeout(self, timeout: tuple[float, float] | None) -> tuple[float, float]:
        connect, read = timeout if timeout is not None else self._params.timeout
        for value in (connect, read):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"timeouts must be finite positive seconds, not {timeout!r}")
        return (float(connect), float(read))

    def _may_resend(
        self, method: str, url: str, headers: Mapping[str, str], idempotent: bool | None
    ) -> bool:
        if idempotent is not None:
            return idempotent
        if method in self.retry_policy.idempotent_methods:
            return True
        if method == "POST" and urlsplit(url).path.rstrip("/").endswith("/cancel"):
            return True
        has_key = any(name.lower() == IDEMPOTENCY_KEY_HEADER.lower() for name in headers)
        return has_key and self.idempotency_supported(url)

    def _status_wait(
        self,
        response: requests.Response,
        method: str,
        url: str,
        headers: Mapping[str, str],
        idempotent: bool | None,
        attempts: Attempts,
    ) -> float | None:
        """Seconds to wait before retrying after this error status, or ``None`` to give up."""
        status = response.status_code
        policy = self.retry_policy
        safe = status in policy.retry_statuses and self._may_resend(
            method, url, headers, idempotent
        )
        if not policy.retries_status(status, safe) or not attempts.allows("status"):
            return None
        retry_after = None
        if policy.honours_retry_after(status):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            if retry_after > policy.retry_after_max:
                attempts.note = (
                    f"The server asked to retry after {retry_after:g} s, longer than the "
                    f"{policy.retry_after_max:g} s this client waits."
                )
                return None
            return retry_after
        return policy.backoff(attempts.retries + 1, self._random.random())

    def _within(
        self, deadline: Deadline, timeout: tuple[float, float], method: str, safe_url: str
    ) -> tuple[float, float]:
        """``timeout`` shortened to the time left before ``deadline`` (none left: an error)."""
        left = deadline.remaining()
        if left is None:
            return timeout
        if left <= 0:
            raise deadline_error(method, safe_url)
        return (min(timeout[0], left), min(timeout[1], left))

    def _sleep(
        self,
        seconds: float,
        method: str,
        safe_url: str,
        attempts: Attempts,
        why: str,
        deadline: Deadline | None = None,
    ) -> None:
        if deadline is not None:
            left = deadline.remaining()
            if left is not None and seconds >= left:
                raise deadline_error(method, safe_url, f" (a retry after {why} would wait longer)")
        logger.info(
            "Retrying %s %s in %.2f s after %s (attempt %d of at most %d)",
            method,
            safe_url,
            seconds,
            redact(why, self.secrets()),
            attempts.sent + 1,
            self.retry_policy.max_attempts,
        )
        clock.sleep(seconds)

    # ---------------------------------------------------------------------- lifecycle

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the pooled connections. Later requests raise ``RequestsApiError``."""
        self._closed = True
        self._session.close()
        self._finalizer()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} base_url={scrub_url(self.base_url)!r} "
            f"channel={self._params.channel!r} closed={self._closed}>"
        )


__all__ = [
    "CLIENT_APPLICATION",
    "CLIENT_APP_HEADER",
    "CUSTOM_HEADER_ENV_VARS",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENCY_SUPPORTED_HEADER",
    "HttpSession",
]
