"""Error mapping: every transport failure becomes one of our exceptions, here and only here.

A failure without a response (refused, timed out, reset, TLS, invalid URL) becomes
:class:`~runtime_job.exceptions.ApiConnectionError`; an HTTP error status becomes
:class:`~runtime_job.exceptions.NotFoundError` (404),
:class:`~runtime_job.exceptions.ConflictError` (409),
:class:`~runtime_job.exceptions.RateLimitError` (429),
:class:`~runtime_job.exceptions.ServerError` (5xx),
:class:`~runtime_job.exceptions.IBMNotAuthorizedError` (401 after login) or
:class:`~runtime_job.exceptions.RequestsApiError` (any other status); a caller's deadline
running out becomes :class:`~runtime_job.exceptions.UserTimeoutExceededError`. Each is
raised ``from`` the original error, and every message, excerpt and chained error is
redacted of the session's secrets. :func:`failure_kind` says which failures a retry may fix;
:func:`~runtime_job.api.retry.retryable_status` which statuses.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from .._redact import redact
from ..exceptions import (
    ApiConnectionError,
    ApiError,
    AuthenticationLicenseError,
    ConflictError,
    IBMNotAuthorizedError,
    NotFoundError,
    RateLimitError,
    RequestsApiError,
    ServerError,
    UserTimeoutExceededError,
)
from .retry import TOO_MANY_REQUESTS, parse_retry_after, retryable_status

LOGIN_PATH: Final = "/users/loginWithToken"
"""The ibm_quantum login endpoint, where a 401 means "bad API token", not "session expired"."""
LICENSE_REQUIRED: Final = "ACCEPT_LICENSE_REQUIRED"
"""``error.name`` of a login 401 whose account must first accept a license."""
BODY_EXCERPT_CHARS: Final = 500
"""Characters of a response body kept in error messages and exceptions."""
REQUEST_ID_HEADERS: Final = ("X-Request-Id", "X-Correlation-Id", "X-Global-Transaction-Id")
"""Response headers that may carry the server's request id, in order of preference."""


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


def response_text(response: requests.Response) -> str:
    """The body of ``response`` as text, undecodable bytes replaced."""
    try:
        return response.text
    except Exception:  # undecodable bytes: show what we can
        return response.content.decode("utf-8", errors="replace")


def excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """``text`` stripped and cut to ``limit`` characters (``...`` marks a cut)."""
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
        return excerpt(text), trace
    return excerpt(text), None


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


# --------------------------------------------------------------------- failures, no response


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


def failure_kind(err: requests.RequestException) -> str | None:
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


def describe(err: requests.RequestException) -> str:
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


def incomplete_read(err: BaseException) -> int | None:
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


def as_requests_error(err: Exception) -> requests.RequestException | None:
    """The ``requests`` exception a urllib3 error met while reading a body stands for.

    Args:
        err: An error raised by urllib3 under ``response.raw``.

    Returns:
        A ``ChunkedEncodingError`` (a body cut short or broken), a ``ConnectionError`` (a
        read timeout), an ``SSLError``, or ``None`` for anything else.
    """
    if isinstance(err, ProtocolError):
        return requests.exceptions.ChunkedEncodingError(err)
    if isinstance(err, Urllib3ReadTimeoutError):
        return requests.exceptions.ConnectionError(err)
    if isinstance(err, Urllib3SSLError):
        return requests.exceptions.SSLError(err)
    return None


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def redact_chain(err: BaseException, secrets: Iterable[str]) -> BaseException:
    """Redact, in place, the text arguments of ``err`` and of every error it came from.

    A transport error is raised ``from`` the library error it stands for, and tracebacks
    print the whole chain: this keeps a token that reached, say, ``http.client``'s
    "invalid header value" message out of them.

    Args:
        err: The error about to be chained.
        secrets: The secrets known to the session.

    Returns:
        ``err``.
    """
    known = list(secrets)
    for current in _chain(err):
        args = current.args
        cleaned = tuple(redact(arg, known) if isinstance(arg, str) else arg for arg in args)
        if cleaned != args:
            current.args = cleaned
        elif args and not all(isinstance(arg, str) for arg in args):
            text = str(current)
            if redact(text, known) != text:
                current.args = (redact(text, known),)
    return err


# ------------------------------------------------------------------------------- the mapping


def status_error_class(status: int) -> type[RequestsApiError]:
    """The exception class for an HTTP error ``status`` (401 aside, mapped by :func:`http_error`).

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


def network_error(
    err: Exception, method: str, safe_url: str, sent: int, secrets: Iterable[str]
) -> ApiConnectionError:
    """The error for a request that got no response.

    Args:
        err: The failure (a ``requests`` exception, or a ``ValueError`` from the HTTP stack
            for a request it could not send).
        method: The HTTP method.
        safe_url: The URL, without secrets.
        sent: Attempts made.
        secrets: The session's secrets, redacted from the message and from ``err``.

    Returns:
        An :class:`ApiConnectionError` (``status_code`` -1), ``retryable`` unless the
        failure is one a retry cannot fix (TLS, an invalid URL, a request that cannot be
        sent). Raise it ``from err``.
    """
    known = list(secrets)
    if isinstance(err, requests.RequestException):
        what = describe(err)
        retryable = failure_kind(err) is not None
    else:
        what = f"the request could not be sent ({type(err).__name__}: {err})"
        retryable = False
    redact_chain(err, known)  # after reading it: redaction may flatten its arguments
    message = f"{method} {safe_url} failed: {what}"
    if sent > 1:
        message += f". Gave up after {sent} attempts."
    return ApiConnectionError(
        redact(message, known), -1, method=method, url=safe_url, retryable=retryable
    )


def http_error(
    response: requests.Response,
    method: str,
    safe_url: str,
    *,
    sent: int,
    note: str | None,
    secrets: Iterable[str],
) -> ApiError | IBMNotAuthorizedError:
    """The error for a response with an error status.

    Args:
        response: The response (status 400 or more), its body read.
        method: The HTTP method.
        safe_url: The URL, without secrets.
        sent: Attempts made.
        note: Why the status was not retried, when worth saying (appended to the message).
        secrets: The session's secrets, redacted from the message and the excerpt.

    Returns:
        The typed error (see the module), with the server's message, request id and
        ``Retry-After``.
    """
    known = list(secrets)
    status = response.status_code
    text = response_text(response)
    detail, trace = server_error_detail(text)
    kind = "Client" if status < 500 else "Server"
    message = f"{status} {kind} Error: {_reason(response)} for url: {safe_url}"
    if detail:
        message += f". {detail}"
    if note:
        message += f" {note}"
    elif sent > 1:
        message += f" Gave up after {sent} attempts."
    message = redact(message, known)
    request_id = next(
        (response.headers[name] for name in REQUEST_ID_HEADERS if name in response.headers),
        trace,
    )
    if status == HTTPStatus.UNAUTHORIZED:
        if urlsplit(safe_url).path.rstrip("/").endswith(LOGIN_PATH):
            license_message = _license_message(text)
            if license_message is not None:
                return AuthenticationLicenseError(redact(license_message, known))
        else:
            return IBMNotAuthorizedError(message)
    return status_error_class(status)(
        message,
        status,
        method=method,
        url=safe_url,
        body_excerpt=redact(excerpt(text), known),
        request_id=request_id,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        retryable=retryable_status(status),
    )


def deadline_error(method: str, safe_url: str, detail: str = "") -> UserTimeoutExceededError:
    """The error for a caller's deadline that ran out during a request.

    Args:
        method: The HTTP method.
        safe_url: The URL, without secrets.
        detail: Appended to the message (e.g. ``" (while reading the response)"``).

    Returns:
        The error.
    """
    return UserTimeoutExceededError(
        f"{method} {safe_url}: the caller's timeout ran out before the request completed{detail}."
    )


def closed_error(method: str) -> ApiConnectionError:
    """The error for a request on a closed session (not retryable).

    Args:
        method: The HTTP method.

    Returns:
        The error.
    """
    return ApiConnectionError("The HTTP session is closed.", method=method, retryable=False)


__all__ = [
    "BODY_EXCERPT_CHARS",
    "LICENSE_REQUIRED",
    "LOGIN_PATH",
    "REQUEST_ID_HEADERS",
    "as_requests_error",
    "closed_error",
    "deadline_error",
    "describe",
    "excerpt",
    "failure_kind",
    "http_error",
    "incomplete_read",
    "network_error",
    "redact_chain",
    "response_text",
    "server_error_detail",
    "status_error_class",
]
