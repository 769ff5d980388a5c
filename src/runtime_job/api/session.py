"""The HTTP transport: one pooled connection per client, timeouts, retries, error mapping.

Everything that touches ``requests`` lives here, and this is the one place where its
exceptions become ours. :class:`HttpSession` sends every request with a finite
``(connect, read)`` timeout, the channel's authentication headers and the client-application
header, retries what is safe to retry under a :class:`RetryPolicy`, and turns failures into
:class:`~runtime_job.exceptions.RequestsApiError` (or
:class:`~runtime_job.exceptions.IBMNotAuthorizedError` for a 401), chained ``from`` the
original error. Tokens never reach logs, reprs or exception messages.

Example::

    params = ClientParameters(channel="local", token="secret", url="http://127.0.0.1:8000")
    with HttpSession(params) as session:
        response = session.request("GET", "/jobs", params={"limit": "5"})
        page = decode_json(response, "job list")

See ``docs/timeouts-and-retries.md`` for the policy and its defaults.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import os
import random
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from .._version import __version__
from ..exceptions import (
    ApiConnectionError,
    ApiError,
    ApiIBMProtocolError,
    AuthenticationLicenseError,
    ConflictError,
    IBMNotAuthorizedError,
    NotFoundError,
    RateLimitError,
    RequestsApiError,
    ServerError,
    UserTimeoutExceededError,
)
from ..timing import Deadline, clock
from .params import ClientParameters
from .protocol import current_call_deadline

logger = logging.getLogger(__name__)


GATEWAY_STATUSES: Final = frozenset({500, 502, 503, 504, 520, 521, 522, 524})
"""Server and gateway statuses after which a request that is safe to resend is retried."""
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods whose repetition has the same effect as one call (RFC 9110, section 9.2.2)."""
TOO_MANY_REQUESTS: Final = 429
"""Rate limited: the server refused the request without acting on it."""

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
LOGIN_PATH: Final = "/users/loginWithToken"
"""The ibm_quantum login endpoint, where a 401 means "bad API token", not "session expired"."""
LICENSE_REQUIRED: Final = "ACCEPT_LICENSE_REQUIRED"
"""``error.name`` of a login 401 whose account must first accept a license."""
BODY_EXCERPT_CHARS: Final = 500
"""Characters of a response body kept in error messages and exceptions."""
REQUEST_ID_HEADERS: Final = ("X-Request-Id", "X-Correlation-Id", "X-Global-Transaction-Id")
"""Response headers that may carry the server's request id, in order of preference."""
DEADLINE_CHUNK_BYTES: Final = 64 * 1024
"""Under a caller's deadline, a response body is read this much at a time, checking the time."""
LARGE_CHUNK_BYTES: Final = 1 << 20
"""A large body (``large_body=True``) is read this much at a time when it cannot be read whole."""

_SECRET_QUERY_KEYS: Final = frozenset({"access_token", "token", "apitoken", "apikey", "api_key"})
_REDACTED: Final = "<redacted>"
_MIN_SECRET_LENGTH: Final = 4
_SECRET_PATTERNS: Final = (
    # Header-like "Name: value" / "Name=value" / "'Name': 'value'" / '"Name": "value"'.
    re.compile(
        r"""(?P<key>(?:X-Access-Token|Authorization)['"]?\s*[:=]\s*['"]?)"""
        r"""(?:(?:apikey|bearer|basic)\s+)?(?P<value>[^'",\s}&]+)""",
        re.IGNORECASE,
    ),
    re.compile(r"(?P<key>\bapikey\s+)(?P<value>[^'\",\s}&]+)", re.IGNORECASE),
    re.compile(
        r"""(?P<key>\b(?:access_token|apiToken|api_key|token)['"]?\s*[:=]\s*['"]?)"""
        r"""(?P<value>[^'",\s}&]+)""",
        re.IGNORECASE,
    ),
)


# --------------------------------------------------------------------------------- secrets


def scrub_url(url: str) -> str:
    """Return ``url`` without secrets: no password, no token query parameters.

    Args:
        url: Any URL.

    Returns:
        The URL with ``access_token``, ``token``, ``apiToken`` and ``apikey`` query
        parameters removed and any ``user:password@`` reduced to ``user@``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hostport}"
    query = parts.query
    if query:
        kept = [
            (key, value)
            for key, value in parse_qsl(query, keep_blank_values=True)
            if key.lower() not in _SECRET_QUERY_KEYS
        ]
        query = urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace credentials in ``text`` with ``<redacted>``.

    Args:
        text: Free text: a log message, an error body, a header dump.
        secrets: Known secret strings (tokens) to remove wherever they appear.

    Returns:
        The text with every known secret and every value of ``X-Access-Token``,
        ``Authorization``, ``apikey ...``, ``access_token=``, ``token=`` and ``apiToken``
        replaced.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, _REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda match: (
                match.group("key")
                + (_REDACTED if match.group("value") != _REDACTED else match.group("value"))
            ),
            text,
        )
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that removes tokens from every record it sees.

    Attach it to a logger or a handler. It formats the record's message, redacts it with
    :func:`redact` and the known secrets, and stores the result back, so handlers never see
    a token. It never drops a record.

    Args:
        secrets: Called for each record; returns the secret strings known right now (a
            client's token can change after login, so this is a callable, not a list).
    """

    def __init__(self, secrets: Callable[[], Iterable[str]] | None = None) -> None:
        super().__init__()
        self._secrets = secrets or (lambda: ())

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keep it.

        Args:
            record: The record being logged.

        Returns:
            ``True``.
        """
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        cleaned = redact(message, self._secrets())
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


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


# ----------------------------------------------------------------------------- retry policy


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed request is retried. One policy per session; immutable.

    A request is *safe to resend* when its method is idempotent (``GET``, ``HEAD``,
    ``OPTIONS``, ``PUT``, ``DELETE``), when it is a ``POST`` to a ``.../cancel`` path
    (cancelling twice is cancelling once), or when it carries an ``Idempotency-Key`` and the
    server said it honours such keys (see :data:`IDEMPOTENCY_SUPPORTED_HEADER`).

    What is retried, within ``max_attempts`` in all:

    - a connection that could not be established (the request was provably not sent):
      every method, up to ``connect_retries`` times;
    - a read timeout or a connection dropped mid-response: only requests safe to resend,
      up to ``read_retries`` times;
    - a status in ``retry_statuses``: only requests safe to resend, up to ``status_retries``
      times (with the statuses below);
    - 429: every method (the server did not act on it); a ``Retry-After`` is honoured;
    - 503 with ``Retry-After``: as any 503, waiting what the server asked.

    A ``Retry-After`` longer than ``retry_after_max`` is not slept through: the request
    fails at once with the status and the requested delay (``RequestsApiError.retry_after``).
    Other waits follow exponential backoff: ``backoff_initial`` doubled per retry
    (0.5, 1, 2, 4, 8 s with the defaults), capped at ``backoff_max``, each shortened by a
    random fraction of at most ``jitter`` so that many clients do not retry in step.

    Attributes:
        max_attempts: Requests sent at most, the first included.
        connect_retries: Retries after failing to connect.
        read_retries: Retries after a read timeout or a dropped response.
        status_retries: Retries after a retryable HTTP status (5xx gateways, 429).
        backoff_initial: Wait before the first retry, in seconds.
        backoff_factor: Growth of the wait per retry.
        backoff_max: Longest backoff wait, in seconds.
        jitter: Fraction (0 to 1) by which a backoff wait may be randomly shortened.
        retry_after_max: Longest ``Retry-After`` honoured, in seconds.
        retry_statuses: Statuses retried on requests safe to resend.
        idempotent_methods: Methods safe to resend.
    """

    max_attempts: int = 6
    connect_retries: int = 3
    read_retries: int = 2
    status_retries: int = 5
    backoff_initial: float = 0.5
    backoff_factor: float = 2.0
    backoff_max: float = 8.0
    jitter: float = 0.25
    retry_after_max: float = 30.0
    retry_statuses: frozenset[int] = field(default=GATEWAY_STATUSES)
    idempotent_methods: frozenset[str] = field(default=IDEMPOTENT_METHODS)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("connect_retries", "read_retries", "status_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("backoff_initial", "backoff_max", "retry_after_max"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite, non-negative number of seconds")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that sends every request once and never retries.

        Returns:
            The policy.
        """
        return cls(max_attempts=1, connect_retries=0, read_retries=0, status_retries=0)

    def backoff(self, retry: int, fraction: float = 0.0) -> float:
        """The wait before retry number ``retry``.

        Args:
            retry: 1 for the first retry, 2 for the second, ...
            fraction: A number in ``[0, 1)``; the wait is shortened by ``fraction * jitter``
                of itself. ``0`` gives the nominal wait.

        Returns:
            Seconds to wait.
        """
        nominal = min(
            self.backoff_max, self.backoff_initial * self.backoff_factor ** max(0, retry - 1)
        )
        return nominal * (1.0 - self.jitter * fraction)


DEFAULT_RETRY_POLICY: Final = RetryPolicy()
"""The policy a session uses when none is given."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header.

    Args:
        value: The header: seconds (``"2"``, ``"1.5"``) or an HTTP date.
        now: The current time, for HTTP dates (default: now, UTC).

    Returns:
        Seconds to wait (never negative), or ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _Attempts:
    """Counts the attempts and retries of one request against a policy."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.sent = 0
        self.retries = 0
        self.note: str | None = None
        self._used = {"connect": 0, "read": 0, "status": 0}
        self._limits = {
            "connect": policy.connect_retries,
            "read": policy.read_retries,
            "status": policy.status_retries,
        }

    def allows(self, kind: str) -> bool:
        return self.sent < self.policy.max_attempts and self._used[kind] < self._limits[kind]

    def take(self, kind: str) -> int:
        self._used[kind] += 1
        self.retries += 1
        return self.retries


# ------------------------------------------------------------------------------ error text


def _reason(response: requests.Response) -> str:
    reason: Any = response.reason
    if isinstance(reason, bytes):
        try:
            reason = reason.decode("utf-8")
        except UnicodeDecodeError:
            reason = reason.decode("iso-8859-1")
    if not reason:
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = ""
    return str(reason)


def _response_text(response: requests.Response) -> str:
    try:
        return response.text
    except Exception:  # undecodable bytes: show what we can
        return response.content.decode("utf-8", errors="replace")


def _excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def server_error_detail(text: str) -> tuple[str, str | None]:
    """Extract the server's message from an error body.

    Args:
        text: The response body.

    Returns:
        ``(detail, trace)``: the text to append to the HTTP status line (``"message, Error
        code: code."`` for the legacy ``{"error": {...}}`` and runtime ``{"errors": [...]}``
        shapes, otherwise a raw excerpt of the body; empty for an empty body), and the
        body's ``trace`` (request id) when it has one.
    """
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        trace = body.get("trace")
        trace = str(trace) if isinstance(trace, str | int) else None
        entry: Any = body.get("error")
        if not isinstance(entry, dict):
            errors = body.get("errors")
            entry = errors[0] if isinstance(errors, list) and errors else None
        if isinstance(entry, dict) and isinstance(entry.get("message"), str):
            message = entry["message"]
            code = entry.get("code")
            if code is None or code == "":
                return f"{message}.", trace
            return f"{message}, Error code: {code}.", trace
        return _excerpt(text), trace
    return _excerpt(text), None


# --------------------------------------------------------------------------------- the body


def decode_json(response: requests.Response, what: str = "response") -> Any:
    """The JSON body of ``response``, or a clear protocol error.

    Args:
        response: A successful response whose body should be JSON.
        what: What the body is, for the error message (e.g. ``"job"``).

    Returns:
        The decoded JSON value.

    Raises:
        ApiIBMProtocolError: The body is not valid JSON (an HTML page, a truncated
            document, nothing at all); it carries the HTTP status, the URL without
            secrets and an excerpt of the body.
    """
    text = _response_text(response)
    try:
        return json.loads(text)
    except ValueError as err:
        url = scrub_url(response.url or "")
        excerpt = redact(_excerpt(text))
        method = response.request.method if response.request is not None else None
        shown = excerpt if excerpt else "an empty body"
        raise ApiIBMProtocolError(
            f"Expected a JSON {what} from {method or 'the server'} {url} "
            f"(HTTP {response.status_code}), got: {shown}",
            status_code=response.status_code,
            url=url,
            body_excerpt=excerpt,
        ) from err


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


def _find_cause(err: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Whether ``err`` wraps (through args, ``reason`` or causes) an instance of ``types``."""
    seen: set[int] = set()
    stack: list[Any] = [err]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, types):
            return True
        stack.extend(current.args)
        stack.extend((getattr(current, "reason", None), current.__cause__, current.__context__))
    return False


def _failure_kind(err: requests.RequestException) -> str | None:
    """``"connect"`` (provably not sent), ``"read"`` (maybe sent) or ``None`` (don't retry)."""
    if isinstance(err, requests.exceptions.SSLError | requests.exceptions.InvalidURL):
        return None
    if isinstance(err, requests.exceptions.ConnectTimeout) or (
        isinstance(err, requests.exceptions.ConnectionError)
        and _find_cause(err, (NewConnectionError, ConnectTimeoutError))
    ):
        return "connect"
    if isinstance(
        err,
        requests.exceptions.ReadTimeout
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ConnectionError,
    ) and not isinstance(err, requests.exceptions.ProxyError):
        return "read"
    return None


def _describe(err: requests.RequestException) -> str:
    """A short, URL-free description of a transport failure."""
    inner: Any = err.args[0] if err.args else err
    reason = getattr(inner, "reason", None)
    if isinstance(reason, BaseException):
        inner = reason
    if isinstance(err, requests.exceptions.ReadTimeout):
        return "the server did not answer within the read timeout"
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return "the connection timed out"
    if isinstance(inner, BaseException):
        text = str(inner)
        # urllib3 prefixes its pool ("HTTPConnection(host=..., port=...): ..."); keep the rest.
        text = text.split("): ", 1)[-1] if "): " in text else text
        return f"{type(inner).__name__}: {text}" if text else type(inner).__name__
    return str(inner)


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
    """

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
                by ``Content-Length``, without intermediate copies (see :func:`_read_large_body`).
            deadline: The caller's deadline: connect and read timeouts are shortened to the
                time left, no retry sleeps past it, and the body stops being read once it
                passes (then :class:`UserTimeoutExceededError`). ``None``: no deadline
                (for now, the one of an enclosing ``call_deadline`` block, if any).

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
        if self._closed:
            raise ApiConnectionError(
                "The HTTP session is closed.", method=method.upper(), retryable=False
            )
        method = method.upper()
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        safe_url = scrub_url(url)
        all_headers = dict(self.headers)
        if headers:
            all_headers.update(headers)
        if json_body is not None:
            data = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        send_timeout = self._timeout(timeout)
        attempts = _Attempts(self.retry_policy)
        if deadline is None:
            # Fallback until the job passes its deadline explicitly (issue 17, step 3).
            deadline = current_call_deadline()
        elif deadline.remaining() is None:
            deadline = None

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
                    auth=_HeaderAuth(self._params.auth_headers() if auth else {}),
                    timeout=send_timeout,
                    verify=self._params.verify,
                    proxies=self._params.connection_parameters().get("proxies") or {},
                    allow_redirects=True,
                    stream=large_body or deadline is not None,
                )
                if large_body:
                    _read_large_body(response, deadline, method, safe_url)
                elif deadline is not None:
                    _read_body_by(response, deadline, method, safe_url)
                _check_head_complete(response, method)
            except requests.RequestException as err:
                if deadline is not None and deadline.expired():
                    raise _deadline_error(method, safe_url) from err
                kind = _failure_kind(err)
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
                        _describe(err),
                        deadline,
                    )
                    continue
                sent_url = err.request.url if err.request is not None else None
                raise self._network_error(
                    err, method, scrub_url(sent_url or url), attempts
                ) from err

            self._learn(url, response)
            logger.debug("Response %s %s: %d", method, safe_url, response.status_code)
            if response.status_code < 400:
                return response

            wait = self._status_wait(response, method, url, all_headers, idempotent, attempts)
            if wait is None:
                raise self._http_error(response, method, scrub_url(response.url or url), attempts)
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
        attempts: _Attempts,
    ) -> float | None:
        """Seconds to wait before retrying after this error status, or ``None`` to give up."""
        status = response.status_code
        policy = self.retry_policy
        if status == TOO_MANY_REQUESTS:
            retryable = True
        elif status in policy.retry_statuses:
            retryable = self._may_resend(method, url, headers, idempotent)
        else:
            return None
        if not retryable or not attempts.allows("status"):
            return None
        retry_after = None
        if status in (TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
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
            raise _deadline_error(method, safe_url)
        return (min(timeout[0], left), min(timeout[1], left))

    def _sleep(
        self,
        seconds: float,
        method: str,
        safe_url: str,
        attempts: _Attempts,
        why: str,
        deadline: Deadline | None = None,
    ) -> None:
        if deadline is not None:
            left = deadline.remaining()
            if left is not None and seconds >= left:
                raise _deadline_error(method, safe_url, f" (a retry after {why} would wait longer)")
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

    # ------------------------------------------------------------------------- errors

    def _network_error(
        self, err: requests.RequestException, method: str, safe_url: str, attempts: _Attempts
    ) -> RequestsApiError:
        message = f"{method} {safe_url} failed: {_describe(err)}"
        if attempts.sent > 1:
            message += f". Gave up after {attempts.sent} attempts."
        return ApiConnectionError(
            redact(message, self.secrets()),
            -1,
            method=method,
            url=safe_url,
            retryable=_failure_kind(err) is not None,
        )

    def _http_error(
        self, response: requests.Response, method: str, safe_url: str, attempts: _Attempts
    ) -> ApiError | IBMNotAuthorizedError:
        status = response.status_code
        secrets = self.secrets()
        text = _response_text(response)
        detail, trace = server_error_detail(text)
        kind = "Client" if status < 500 else "Server"
        message = f"{status} {kind} Error: {_reason(response)} for url: {safe_url}"
        if detail:
            message += f". {detail}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if attempts.note:
            message += f" {attempts.note}"
        elif attempts.sent > 1:
            message += f" Gave up after {attempts.sent} attempts."
        message = redact(message, secrets)
        request_id = next(
            (response.headers[name] for name in REQUEST_ID_HEADERS if name in response.headers),
            trace,
        )
        if status == HTTPStatus.UNAUTHORIZED:
            if urlsplit(safe_url).path.rstrip("/").endswith(LOGIN_PATH):
                license_message = _license_message(text)
                if license_message is not None:
                    return AuthenticationLicenseError(redact(license_message, secrets))
            else:
                return IBMNotAuthorizedError(message)
        return status_error_class(status)(
            message,
            status,
            method=method,
            url=safe_url,
            body_excerpt=redact(_excerpt(text), secrets),
            request_id=request_id,
            retry_after=retry_after,
            retryable=retryable_status(status),
        )

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


RETRYABLE_CLIENT_STATUSES: Final = frozenset({408, 425, 429})
"""4xx statuses after which the same request may succeed later (timeout, too early, rate)."""
NOT_RETRYABLE_SERVER_STATUSES: Final = frozenset({501, 505})
"""5xx statuses that sending again cannot change (not implemented, version unsupported)."""


def retryable_status(status: int) -> bool:
    """Whether a request that failed with ``status`` may succeed if sent again later.

    Args:
        status: An HTTP error status.

    Returns:
        ``True`` for 408, 425, 429 and 5xx (except 501 and 505).
    """
    if status >= 500:
        return status not in NOT_RETRYABLE_SERVER_STATUSES
    return status in RETRYABLE_CLIENT_STATUSES


def status_error_class(status: int) -> type[RequestsApiError]:
    """The exception class for an HTTP error ``status`` (401 aside, mapped separately).

    Args:
        status: An HTTP error status.

    Returns:
        :class:`NotFoundError` (404), :class:`ConflictError` (409), :class:`RateLimitError`
        (429), :class:`ServerError` (5xx), else :class:`RequestsApiError`.
    """
    if status == HTTPStatus.NOT_FOUND:
        return NotFoundError
    if status == HTTPStatus.CONFLICT:
        return ConflictError
    if status == TOO_MANY_REQUESTS:
        return RateLimitError
    if status >= 500:
        return ServerError
    return RequestsApiError


def _deadline_error(method: str, safe_url: str, detail: str = "") -> UserTimeoutExceededError:
    return UserTimeoutExceededError(
        f"{method} {safe_url}: the caller's timeout ran out before the request completed{detail}."
    )


def _read_body_by(
    response: requests.Response, deadline: Deadline, method: str, safe_url: str
) -> None:
    """Read a streamed response's body, giving up once ``deadline`` passes.

    Each read waits at most the (shortened) read timeout, and the time is checked between
    chunks of :data:`DEADLINE_CHUNK_BYTES`, so the call ends within the deadline plus one
    chunk. Afterwards ``response.content`` and ``response.text`` work as usual.
    """
    body = bytearray()
    try:
        for chunk in response.iter_content(DEADLINE_CHUNK_BYTES):
            body += chunk
            if deadline.expired():
                raise _deadline_error(method, safe_url, " (while reading the response)")
    except BaseException:
        response.close()
        raise
    response._content = bytes(body)


def _check_head_complete(response: requests.Response, method: str) -> None:
    """Refuse a response whose connection closed inside its header block.

    ``http.client`` takes the headers it got before the close as the whole head, and then a
    body that runs to the close: a 200 with an empty body and neither ``Content-Length`` nor
    ``Transfer-Encoding``, which no server sends on purpose. Raised as a broken response, it
    is retried like one. Only responses read from a socket are checked (test doubles such as
    ``responses`` build theirs without framing headers).
    """
    if response.status_code != 200 or method == "HEAD" or response.content:
        return
    headers = response.headers
    if "Content-Length" in headers or "Transfer-Encoding" in headers:
        return
    if isinstance(getattr(response.raw, "_original_response", None), http.client.HTTPResponse):
        response.close()
        raise requests.exceptions.ChunkedEncodingError(
            "the connection closed inside the response's header block"
        )


def _read_large_body(
    response: requests.Response, deadline: Deadline | None, method: str, safe_url: str
) -> None:
    """Read a streamed response's body with as few copies as possible.

    With a ``Content-Length`` and no ``Content-Encoding``, the body is read in one call into
    a single ``bytes`` of that size (under a deadline: into a preallocated buffer, a chunk of
    :data:`LARGE_CHUNK_BYTES` at a time, checking the time). A body that ends early raises
    ``requests.exceptions.ChunkedEncodingError`` (retried as a dropped response). Other bodies
    are read as :func:`_read_body_by` does. The connection is closed on any failure.
    """
    length = _plain_length(response, method)
    if length is None:
        if deadline is not None:
            _read_body_by(response, deadline, method, safe_url)
            return
        try:
            body = b"".join(response.iter_content(LARGE_CHUNK_BYTES))
        except BaseException:
            response.close()
            raise
    else:
        try:
            body = _read_exactly(response, length, deadline, method, safe_url)
            if len(body) != length:
                raise requests.exceptions.ChunkedEncodingError(_short_body(len(body), length))
        except BaseException:
            response.close()
            raise
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]


def _plain_length(response: requests.Response, method: str) -> int | None:
    """The ``Content-Length`` of a body sent as is, else ``None``."""
    headers = response.headers
    value = headers.get("Content-Length", "").strip()
    no_body = method == "HEAD" or response.status_code in (204, 304)
    framed = headers.get("Content-Encoding") or headers.get("Transfer-Encoding")
    if no_body or framed or not value.isdigit():
        return None
    return int(value)


def _read_chunks_into(
    response: requests.Response, length: int, deadline: Deadline, method: str, safe_url: str
) -> bytes:
    """``length`` body bytes read into one buffer, giving up once ``deadline`` passes."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    try:
        while got < length:
            n = response.raw.readinto(view[got : got + LARGE_CHUNK_BYTES])
            if n == 0:
                raise requests.exceptions.ChunkedEncodingError(_short_body(got, length))
            got += n
            if got < length and deadline.expired():
                raise _deadline_error(method, safe_url, " (while reading the response)")
    finally:
        view.release()
    return bytes(buffer)


def _short_body(got: int, length: int) -> str:
    return f"the connection closed after {got} of the {length} bytes of the response body"


def _read_exactly(
    response: requests.Response,
    length: int,
    deadline: Deadline | None,
    method: str,
    safe_url: str,
) -> bytes:
    """The body, urllib3's errors turned into the ``requests`` ones they stand for."""
    try:
        if deadline is None:
            data: bytes = response.raw.read(decode_content=False)
            return data
        return _read_chunks_into(response, length, deadline, method, safe_url)
    except ProtocolError as err:
        got = _incomplete_read(err)
        if got is None:
            raise requests.exceptions.ChunkedEncodingError(err) from err
    except Urllib3ReadTimeoutError as err:
        raise requests.exceptions.ConnectionError(err) from err
    except Urllib3SSLError as err:
        raise requests.exceptions.SSLError(err) from err
    # Raised outside the handler, so that no exception keeps the partial body alive.
    raise requests.exceptions.ChunkedEncodingError(_short_body(got, length))


def _incomplete_read(err: BaseException) -> int | None:
    """Bytes received, when ``err`` stems from a body shorter than announced."""
    seen: set[int] = set()
    stack: list[Any] = [err]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, http.client.IncompleteRead):
            partial: Any = current.partial
            return partial if isinstance(partial, int) else len(partial)
        stack.extend(current.args)
        stack.extend((current.__cause__, current.__context__))
    return None


def _license_message(text: str) -> str | None:
    """The message of a login 401 that requires accepting a license, else ``None``."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("name") == LICENSE_REQUIRED:
        return str(error.get("message") or "The account must accept a license.")
    return None


__all__ = [
    "BODY_EXCERPT_CHARS",
    "CLIENT_APPLICATION",
    "CLIENT_APP_HEADER",
    "CUSTOM_HEADER_ENV_VARS",
    "DEFAULT_RETRY_POLICY",
    "GATEWAY_STATUSES",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENCY_SUPPORTED_HEADER",
    "IDEMPOTENT_METHODS",
    "LOGIN_PATH",
    "HttpSession",
    "RedactingFilter",
    "RetryPolicy",
    "decode_json",
    "parse_retry_after",
    "redact",
    "scrub_url",
    "server_error_detail",
]
