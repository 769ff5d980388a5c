"""Reading response bodies: whole, large, or under a caller's deadline.

A body is read one of three ways. By default ``requests`` reads it. A large body (a job
result) is read with as few copies as possible: one buffer sized by ``Content-Length``
(:func:`read_large_body`). Under a caller's deadline, the body is read in chunks and the time
is checked between them (:func:`read_body_by`). A body shorter than announced, or a
connection that closed inside the header block (:func:`check_head_complete`), raises the
``requests`` error the session retries as a dropped response. :func:`decode_json` turns a
body into JSON or a clear protocol error.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Final

import requests
from requests.exceptions import ChunkedEncodingError

from .._redact import redact, scrub_url
from ..exceptions import ApiIBMProtocolError
from ..timing import Deadline
from .errors import as_requests_error, deadline_error, excerpt, incomplete_read, response_text

DEADLINE_CHUNK_BYTES: Final = 64 * 1024
"""Under a caller's deadline, a response body is read this much at a time, checking the time."""
LARGE_CHUNK_BYTES: Final = 1 << 20
"""A large body (``large_body=True``) is read this much at a time when it cannot be read whole."""


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
    text = response_text(response)
    try:
        return json.loads(text)
    except ValueError as err:
        url = scrub_url(response.url or "")
        cut = redact(excerpt(text))
        method = response.request.method if response.request is not None else None
        shown = cut if cut else "an empty body"
        raise ApiIBMProtocolError(
            f"Expected a JSON {what} from {method or 'the server'} {url} "
            f"(HTTP {response.status_code}), got: {shown}",
            status_code=response.status_code,
            url=url,
            body_excerpt=cut,
        ) from err


def read_body_by(
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
                raise deadline_error(method, safe_url, " (while reading the response)")
    except BaseException:
        response.close()
        raise
    response._content = bytes(body)


def check_head_complete(response: requests.Response, method: str) -> None:
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


def read_large_body(
    response: requests.Response, deadline: Deadline | None, method: str, safe_url: str
) -> None:
    """Read a streamed response's body with as few copies as possible.

    With a ``Content-Length`` and no ``Content-Encoding``, the body is read in one call into
    a single ``bytes`` of that size (under a deadline: into a preallocated buffer, a chunk of
    :data:`LARGE_CHUNK_BYTES` at a time, checking the time). A body that ends early raises
    ``requests.exceptions.ChunkedEncodingError`` (retried as a dropped response). Other bodies
    are read as :func:`read_body_by` does. The connection is closed on any failure.
    """
    length = _plain_length(response, method)
    if length is None:
        if deadline is not None:
            read_body_by(response, deadline, method, safe_url)
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
                raise deadline_error(method, safe_url, " (while reading the response)")
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
    except Exception as err:
        translated = as_requests_error(err)
        if translated is None:
            raise
        got = incomplete_read(err) if isinstance(translated, ChunkedEncodingError) else None
        if got is None:
            raise translated from err
        del translated  # it holds the partial body
    # Raised outside the handler, so that no exception keeps the partial body alive.
    raise requests.exceptions.ChunkedEncodingError(_short_body(got, length))


__all__ = [
    "DEADLINE_CHUNK_BYTES",
    "LARGE_CHUNK_BYTES",
    "check_head_complete",
    "decode_json",
    "read_body_by",
    "read_large_body",
]
