"""IBM Cloud IAM: an API key exchanged for short-lived bearer tokens (``platform.md`` 2).

:class:`IamTokenManager` holds one API key and one access token. :meth:`~IamTokenManager.token`
returns a token that is good for the next request, fetching a new one first (a new apikey
grant, ``POST {iam}/identity/token``) when the current one is within 10 s of its ``exp`` or
80 % of its lifetime (``iat`` to ``exp``) has passed, so a long run never meets a 401 for an
expired token. A caller's deadline bounds both its wait for a grant and the grant itself
(the session passes the deadline of ``result(timeout=)`` and the like). The JWT's claims are
read without checking its signature (the token is only carried, never trusted for anything
here).

The API key is sent to IAM and nowhere else: it is in no header, log record, ``repr`` or
exception message, and the manager has no fallback to ``Authorization: apikey`` on other
hosts (the official client's leak when IAM fails): if IAM cannot be reached, the request that
needed the token fails with an error naming IAM.

Example::

    manager = IamTokenManager(api_key)                   # nothing sent yet
    headers = {"Authorization": f"Bearer {manager.token()}"}
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import requests

from .._redact import redact
from ..exceptions import (
    ApiConnectionError,
    IBMAccountError,
    RequestsApiError,
    UserTimeoutExceededError,
)
from ..timing import Deadline, clock
from .body import read_body_by
from .errors import deadline_error

logger = logging.getLogger(__name__)

DEFAULT_IAM_URL: Final = "https://iam.cloud.ibm.com"
"""IAM of IBM Cloud's public network."""
PRIVATE_IAM_URL: Final = "https://private.iam.cloud.ibm.com"
"""IAM on IBM Cloud's private network (``private_endpoint=True``)."""
STAGING_IAM_URL: Final = "https://iam.test.cloud.ibm.com"
"""IAM of IBM Cloud's staging environment (CRNs whose third field is ``staging``)."""
TOKEN_PATH: Final = "/identity/token"
APIKEY_GRANT: Final = "urn:ibm:params:oauth:grant-type:apikey"
EXPIRY_MARGIN: Final = 10.0
"""A token is treated as expired this many seconds before its ``exp``."""
REFRESH_FRACTION: Final = 0.8
"""Share of a token's lifetime after which a new one is fetched."""
RETRY_LATER: Final = 60.0
"""After a failed early refresh (the old token still good), seconds before the next try."""
IAM_TIMEOUT: Final = (5.0, 60.0)
"""``(connect, read)`` seconds for an IAM request."""
_ATTEMPTS: Final = 3
_BACKOFF: Final = (0.5, 1.0)


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without verifying its signature.

    Args:
        token: A ``header.payload.signature`` JWT.

    Returns:
        The payload object.

    Raises:
        ValueError: ``token`` is not a JWT with a JSON object payload (the message never
            contains the token).
    """
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise ValueError("the IAM access token is not a JWT (header.payload.signature)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError) as err:
        raise ValueError("the IAM access token's payload is not base64url JSON") from err
    if not isinstance(claims, dict):
        raise ValueError("the IAM access token's payload is not a JSON object")
    return claims


class _Held(NamedTuple):
    """An access token and its two moments (monotonic), replaced as one."""

    token: str
    expires_at: float
    """``EXPIRY_MARGIN`` before the token's ``exp``: from here on it is not used."""
    refresh_at: float
    """After ``REFRESH_FRACTION`` of its lifetime: from here on a new one is fetched."""


class IamTokenManager:
    """Bearer tokens for one IBM Cloud API key, fetched on demand and refreshed early.

    Thread-safe: concurrent callers share one token, and at most one grant is in flight.
    While one caller refreshes a token that is still good, the others go on using it; only
    callers without a usable token wait for the grant, each no longer than its deadline.

    Args:
        api_key: The IBM Cloud API key (stripped; never logged or shown).
        iam_url: Base URL of IAM (``IAM_URL`` in the environment is *not* read here; the
            caller resolves it).
        verify: TLS verification for IAM (``True``, ``False`` or a CA bundle path).
        proxies: ``requests`` proxies for IAM.
        timeout: ``(connect, read)`` seconds per IAM request.
        session: The ``requests`` session to use (default: one of its own, closed by
            :meth:`close`).
        on_token: Called with each new access token (so a transport can redact it).
    """

    def __init__(
        self,
        api_key: str,
        *,
        iam_url: str = DEFAULT_IAM_URL,
        verify: bool | str = True,
        proxies: dict[str, str] | None = None,
        timeout: tuple[float, float] = IAM_TIMEOUT,
        session: requests.Session | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise IBMAccountError("An IBM Cloud API key is needed (token=...).")
        self._api_key = api_key.strip()
        self.iam_url = iam_url.rstrip("/")
        self._verify = verify
        self._proxies = dict(proxies or {})
        self._timeout = timeout
        self._own_session = session is None
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self.on_token = on_token
        self._held: _Held | None = None
        self.grants = 0
        """How many tokens were fetched (for tests and diagnostics)."""

    def secrets(self) -> list[str]:
        """The strings a log filter must remove: the API key and the current token."""
        held = self._held
        return [self._api_key] if held is None else [self._api_key, held.token]

    def token(self, deadline: Deadline | None = None) -> str:
        """A bearer token good for the next request.

        Args:
            deadline: Bounds the wait for a grant another thread has in flight, and a grant
                made now.

        Returns:
            The access token.

        Raises:
            IBMAccountError: IAM refused the API key (4xx).
            RequestsApiError: IAM could not be reached or failed (5xx, network), after a
                few tries.
            UserTimeoutExceededError: ``deadline`` passed before a token was had.
        """
        held = self._held
        if held is not None and clock.monotonic() < held.expires_at:
            if clock.monotonic() < held.refresh_at or not self._lock.acquire(blocking=False):
                return held.token  # fresh, or another caller is refreshing it
            try:
                return self._refresh_early(held, deadline)
            finally:
                self._lock.release()
        left = None if deadline is None else deadline.remaining()
        if not self._lock.acquire(timeout=-1 if left is None else left):
            raise deadline_error(
                "POST", self.iam_url + TOKEN_PATH, " (waiting for the IAM grant in flight)"
            )
        try:
            held = self._held
            if held is None or clock.monotonic() >= held.expires_at:
                held = self._grant(deadline)
            return held.token
        finally:
            self._lock.release()

    def _refresh_early(self, held: _Held, deadline: Deadline | None) -> str:
        """A new token in place of ``held``, still good; on failure ``held`` is kept."""
        current = self._held
        if current is None:  # invalidated meanwhile: the old token is not to be used
            return self._grant(deadline).token
        if current is not held:  # another caller refreshed it meanwhile
            return current.token
        try:
            return self._grant(deadline).token
        except UserTimeoutExceededError:
            return held.token  # the caller's bound, not IAM's fault: the next call tries again
        except (IBMAccountError, RequestsApiError) as err:
            logger.warning("Refreshing the IAM token failed, keeping the current one: %s", err)
            retry_at = min(clock.monotonic() + RETRY_LATER, held.expires_at)
            self._held = held._replace(refresh_at=retry_at)
            return held.token

    def invalidate(self) -> None:
        """Forget the current token: the next :meth:`token` fetches a new one."""
        self._held = None

    def _grant(self, deadline: Deadline | None) -> _Held:
        """Fetch a new token and hold it (the caller holds the lock)."""
        started = clock.monotonic()
        wall = time.time()
        body = self._post(deadline)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise IBMAccountError("IAM answered without an access_token.")
        try:
            claims = jwt_claims(token)
            exp = float(claims["exp"])
            iat = float(claims.get("iat", wall))
        except (ValueError, KeyError, TypeError) as err:
            raise IBMAccountError(f"IAM answered with an unusable token: {err}.") from None
        lifetime = max(0.0, exp - iat)
        # Trust the token's own lifetime, but never past exp by our wall clock.
        remaining = max(0.0, min(lifetime, exp - wall))
        expires_at = started + remaining - EXPIRY_MARGIN
        refresh_at = min(expires_at, started + REFRESH_FRACTION * remaining)
        if self.on_token is not None:
            self.on_token(token)  # before any caller can send it: redaction knows it first
        self._held = held = _Held(token, expires_at, refresh_at)
        self.grants += 1
        logger.debug("IAM token obtained, valid for %.0f s", remaining)
        return held

    def _post(self, deadline: Deadline | None) -> Any:
        url = self.iam_url + TOKEN_PATH
        data = {
            "grant_type": APIKEY_GRANT,
            "apikey": self._api_key,
            "response_type": "cloud_iam",
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if deadline is not None and deadline.remaining() is None:
            deadline = None
        error: RequestsApiError | None = None
        for attempt in range(_ATTEMPTS):
            if attempt:
                pause = _BACKOFF[min(attempt - 1, len(_BACKOFF) - 1)]
                if error is not None and error.retry_after is not None:
                    pause = max(pause, error.retry_after)
                if deadline is not None and deadline.cap(pause) < pause:
                    raise deadline_error(
                        "POST", url, f" (after {error}, a retry would wait longer)"
                    ) from error
                clock.sleep(pause)
            connect, read = self._timeout
            if deadline is not None:
                connect, read = deadline.cap(connect), deadline.cap(read)
                if min(connect, read) <= 0:
                    raise deadline_error("POST", url) from error
            try:
                response = self._session.post(
                    url,
                    data=data,
                    headers=headers,
                    timeout=(connect, read),
                    verify=self._verify,
                    proxies=self._proxies or None,
                    allow_redirects=False,
                    stream=deadline is not None,
                )
                if deadline is not None:
                    read_body_by(response, deadline, "POST", url)
            except requests.RequestException as err:
                error = ApiConnectionError(
                    f"Could not reach IAM at {self.iam_url}: {type(err).__name__}",
                    method="POST",
                    url=url,
                )
                continue
            if response.ok:
                try:
                    return response.json()
                except ValueError:
                    raise IBMAccountError("IAM answered with a body that is not JSON.") from None
            detail = self._detail(response)
            if 400 <= response.status_code < 500 and response.status_code != 429:
                raise IBMAccountError(
                    f"IAM refused the API key ({response.status_code}{detail}). Check the "
                    "token given to the service: it must be an IBM Cloud API key."
                )
            error = RequestsApiError(
                f"IAM failed: {response.status_code}{detail}",
                response.status_code,
                method="POST",
                url=url,
                retry_after=_retry_after(response),
                retryable=True,
            )
        assert error is not None
        raise error

    def _detail(self, response: requests.Response) -> str:
        """IAM's error code and message, if it sent them (secrets removed)."""
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        parts = [str(body[key]) for key in ("errorCode", "errorMessage") if body.get(key)]
        return redact(": " + " ".join(parts), self.secrets()) if parts else ""

    def close(self) -> None:
        """Close the session if this manager made it."""
        if self._own_session:
            self._session.close()

    def __repr__(self) -> str:
        state = "no token" if self._held is None else "token held"
        return f"<IamTokenManager {self.iam_url} api_key=<redacted> ({state})>"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


__all__ = [
    "DEFAULT_IAM_URL",
    "PRIVATE_IAM_URL",
    "STAGING_IAM_URL",
    "IamTokenManager",
    "jwt_claims",
]
