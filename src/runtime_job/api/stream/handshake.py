"""Opening one websocket for a stream: URLs, proxies, TLS, the blocking handshake, its errors.

A handshake (TCP connect, proxy tunnel, TLS, HTTP upgrade) runs on a connect thread of the
hub with websocket-client's blocking ``WebSocket.connect``, bounded by the connect timeout;
the connected socket then goes to the reactor. This module is the one place where
websocket-client and socket exceptions of a handshake become
:class:`~runtime_job.exceptions.WebsocketError` and its subclasses, and the one place that
decides the URL, proxy and TLS settings of a connection.

Example::

    target = ...  # a HandshakeTarget: the stream's URL, params, options, TLS options
    result = handshake(target, after=0, sequenced=True)
    if isinstance(result, HandshakeFailure): ...
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import websocket

from ...exceptions import (
    WebsocketAuthenticationError,
    WebsocketError,
    WebsocketRetryableError,
    WebsocketTimeoutError,
)
from ..params import ClientParameters
from .frames import CLOSE_NORMAL, encode_close

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PROXY_SCHEMES = ("http", "socks4", "socks4a", "socks5", "socks5h")


class HandshakeTarget(Protocol):
    """What a handshake needs to know about its stream."""

    job_id: str
    url: str
    safe_url: str
    params: ClientParameters
    options: dict[str, Any]
    sslopt: dict[str, Any]


@dataclass(frozen=True)
class HandshakeFailure:
    """A handshake that failed: our error, whether a retry may help, the server's wait."""

    error: WebsocketError
    retryable: bool
    retry_after: float


def handshake(
    target: HandshakeTarget, after: int, *, sequenced: bool
) -> socket.socket | HandshakeFailure:
    """Open one connection for ``target`` (blocking; a connect thread).

    Args:
        target: The stream.
        after: The resume point sent with the sequenced protocol.
        sequenced: Ask for our sequenced protocol (``?seq=1&after=N``); without it the
            URL is sent exactly as given (the reference's protocol).

    Returns:
        The connected socket (blocking, TLS done, upgrade accepted), or the failure.
    """
    url = with_resume_query(target.url, after) if sequenced else target.url
    ws = websocket.WebSocket(
        sslopt=target.sslopt, enable_multithread=False, skip_utf8_validation=True
    )
    ws.settimeout(target.params.connect_timeout)
    try:
        ws.connect(url, **target.options)  # type: ignore[no-untyped-call]
    except Exception as err:
        error, retryable, wait = translate_error(err, ws, target)
        return HandshakeFailure(error, retryable, wait)
    sock = ws.sock
    assert sock is not None  # connect() succeeded
    ws.sock = None  # the caller owns the socket now
    return sock


class TlsContexts:
    """One TLS context per ``verify`` setting (and CA bundle variable), shared by connections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[bool | str, str], ssl.SSLContext] = {}

    def sslopt(self, url: str, params: ClientParameters) -> dict[str, Any]:
        """websocket-client's ``sslopt`` for ``url`` (empty for ``ws://``).

        Raises:
            WebsocketError: The CA bundle cannot be used.
        """
        if not url.lower().startswith("wss:"):
            return {}
        verify = params.verify
        bundle = ""
        if verify is True:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or ""
        key = (verify, bundle)
        with self._lock:
            context = self._contexts.get(key)
        if context is None:
            context = make_ssl_context(verify, bundle)
            with self._lock:
                context = self._contexts.setdefault(key, context)
        return {"context": context}


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        raise WebsocketError(f"Not a websocket URL: {safe_url(url)!r} (use ws:// or wss://).")


def safe_url(url: str) -> str:
    """``url`` without credentials or query: safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def with_resume_query(url: str, after: int) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k not in ("seq", "after")]
    query += [("seq", "1"), ("after", str(after))]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def connect_options(url: str, params: ClientParameters) -> dict[str, Any]:
    options: dict[str, Any] = {
        "header": [f"{name}: {value}" for name, value in params.auth_headers().items()],
        # Never follow redirects: the auth headers would go to wherever they point.
        "redirect_limit": 0,
    }
    proxy = params.proxy_config.for_url(url)
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        scheme = parts.scheme.lower()
        if scheme not in _PROXY_SCHEMES or not parts.hostname:
            raise WebsocketError(
                f"Proxy {safe_url(proxy)!r} cannot carry websockets: use an http:// "
                "(HTTP CONNECT) or socks5:// proxy URL."
            )
        options["http_proxy_host"] = parts.hostname
        options["http_proxy_port"] = parts.port or (80 if scheme == "http" else 1080)
        options["proxy_type"] = scheme
        options["http_proxy_timeout"] = params.connect_timeout
        if parts.username:
            options["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
    return options


def make_ssl_context(verify: bool | str, bundle: str) -> ssl.SSLContext:
    """The TLS context for ``verify``: the same trust as the REST session (requests)."""
    try:
        if verify is False:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        path = verify if isinstance(verify, str) else bundle
        if not path:
            try:
                import certifi  # requests' default trust store

                path = certifi.where()
            except ImportError:  # pragma: no cover - requests depends on certifi
                return ssl.create_default_context()
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as err:
        raise WebsocketError(f"Cannot use the CA bundle {verify!r}: {err}") from err


def translate_error(
    err: Exception, ws: websocket.WebSocket, target: HandshakeTarget
) -> tuple[WebsocketError, bool, float]:
    """Our error for a failed handshake, whether a retry may help, and the server's wait."""
    where = f"for job {target.job_id} at {target.safe_url}"
    error: WebsocketError
    retryable = True
    retry_after = 0.0
    if isinstance(err, websocket.WebSocketBadStatusException):
        retry_after = _retry_after(err.resp_headers)
        status = err.status_code
        text = f"HTTP {status}" + (f" {err.status_message}" if err.status_message else "")
        if status in (401, 403):
            error = WebsocketAuthenticationError(
                f"The server refused the websocket handshake {where}: {text}."
            )
            retryable = False
        elif status == 404:
            error = WebsocketError(
                f"The server refused the websocket handshake {where}: {text} "
                "(no such job, or not yours)."
            )
            retryable = False
        else:
            error = WebsocketRetryableError(f"The websocket handshake {where} got {text}.")
    elif (
        isinstance(err, websocket.WebSocketException)
        and ws.handshake_response is not None
        and ws.handshake_response.status in _REDIRECT_STATUSES
    ):
        error = WebsocketError(
            f"The websocket handshake {where} was redirected "
            f"(HTTP {ws.handshake_response.status}); redirects are not followed."
        )
        retryable = False
    elif isinstance(err, TimeoutError | websocket.WebSocketTimeoutException):
        error = WebsocketTimeoutError(
            f"The websocket handshake {where} timed out ({target.params.connect_timeout:g} s)."
        )
    elif isinstance(err, ssl.SSLError):
        error = WebsocketRetryableError(f"The TLS handshake {where} failed: {err}")
    elif isinstance(err, websocket.WebSocketProxyException):
        error = WebsocketRetryableError(f"The proxy refused the websocket {where}: {err}")
    elif isinstance(err, OSError | websocket.WebSocketException):
        error = WebsocketRetryableError(
            f"Could not open the websocket {where}: {type(err).__name__}: {err}"
        )
    else:
        error = WebsocketError(
            f"Unexpected error opening the websocket {where}: {type(err).__name__}: {err}"
        )
        retryable = False
    error.__cause__ = err
    return error, retryable, retry_after


def _retry_after(headers: dict[str, str] | None) -> float:
    """Seconds asked by a ``Retry-After`` header (numeric form only), else 0."""
    value = (headers or {}).get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return 0.0
    return seconds if 0 < seconds < float("inf") else 0.0


def close_quietly(sock: socket.socket) -> None:
    """Best-effort close 1000 on a socket nobody wants any more, then close it."""
    try:
        sock.setblocking(False)
        sock.send(encode_close(CLOSE_NORMAL))
    except OSError:
        pass
    finally:
        sock.close()


# -- the process-wide hub -------------------------------------------------------------------


__all__ = [
    "HandshakeFailure",
    "HandshakeTarget",
    "TlsContexts",
    "check_url",
    "close_quietly",
    "connect_options",
    "handshake",
    "make_ssl_context",
    "safe_url",
    "translate_error",
    "with_resume_query",
]
