"""Who is calling: API tokens, access tokens and the user they stand for.

Each configured API token is one user. A user proves who they are with:

- ``X-Access-Token: <access token>`` from ``POST /api/users/loginWithToken`` (channel
  ``ibm_quantum``), or the API token itself (channel ``local``);
- ``Authorization: apikey <API token>`` with any ``Service-CRN`` (channel ``ibm_cloud``), or
  ``Authorization: Bearer <API token or access token>``.

Nothing is kept in clear: API tokens live only in memory as SHA-256 digests, access tokens
are stored as SHA-256 digests, and a user id is a digest of the user's API token.

Access tokens expire :data:`ACCESS_TOKEN_TTL` seconds after login (the ``ttl`` the login
answers); an expired one authenticates nobody (401), so the client logs in again. API
tokens do not expire. :attr:`Authenticator.now` is the wall-clock seam tests replace.

Example::

    auth = Authenticator(["secret"], store)
    access = auth.login("secret")
    auth.user_for_headers({"x-access-token": access})  # -> the user id
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping, Sequence

from .store import Store

ACCESS_TOKEN_TTL = 1209600.0
"""Seconds an access token from ``POST /api/users/loginWithToken`` is valid (14 days)."""


def token_digest(token: str) -> str:
    """The SHA-256 hex digest of a token (what is stored instead of the token)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def user_id_for(token: str) -> str:
    """The stable user id of an API token (a digest, so it reveals nothing)."""
    return (
        "user-"
        + hashlib.sha256(
            b"runtime-job-user\0" + token.encode("utf-8", "surrogatepass")
        ).hexdigest()[:20]
    )


class Authenticator:
    """Maps credentials to user ids.

    Args:
        tokens: The API tokens, one per user (at least one).
        store: Where access tokens are kept (hashed).
        ttl: Seconds an access token is valid after its login.
        now: The wall clock (epoch seconds); a seam for tests.

    Attributes:
        ttl: Seconds an access token is valid after its login.
        now: The wall clock the expiry is measured on (replace it in tests).

    Raises:
        ValueError: No token, or an empty one.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        store: Store,
        *,
        ttl: float = ACCESS_TOKEN_TTL,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not tokens or any(not t or not t.strip() for t in tokens):
            raise ValueError("At least one non-empty API token is required.")
        self._store = store
        self._api: dict[str, str] = {token_digest(t): user_id_for(t) for t in tokens}
        self._users = frozenset(self._api.values())
        self._access: dict[str, tuple[str, float]] = {}
        """Access token digest -> (user, expiry time), a cache of the store."""
        self.ttl = ttl
        self.now = now

    @property
    def users(self) -> frozenset[str]:
        """The user ids of the configured tokens."""
        return self._users

    def login(self, api_token: str) -> str | None:
        """Exchange an API token for a new access token (``None`` if the token is wrong)."""
        user = self._api.get(token_digest(api_token))
        if user is None:
            return None
        access = secrets.token_urlsafe(32)
        digest = token_digest(access)
        created = self.now()
        self._store.add_access_token(digest, user, created)
        self._access[digest] = (user, created + self.ttl)
        return access

    def user_for_api_token(self, token: str) -> str | None:
        """The user of an API token (not an access token), or ``None``: the IAM's API keys."""
        return self._api.get(token_digest(token)) if token else None

    def user_for_token(self, token: str) -> str | None:
        """The user an API token or unexpired access token belongs to, or ``None``."""
        if not token:
            return None
        digest = token_digest(token)
        user = self._api.get(digest)
        if user is not None:
            return user
        cached = self._access.get(digest)
        if cached is None:
            record = self._store.access_token_record(digest)
            if record is None or record[0] not in self._users:
                return None
            cached = self._access[digest] = (record[0], record[1] + self.ttl)
        user, expires = cached
        if self.now() >= expires:
            # Expired: forget it for good, so the cache does not grow with dead tokens.
            del self._access[digest]
            self._store.delete_access_token(digest)
            return None
        return user

    def user_for_headers(self, headers: Mapping[str, str]) -> str | None:
        """The user a request's headers authenticate, or ``None``.

        Args:
            headers: Request headers (case-insensitive mapping, or lower-case keys).
        """
        token = headers.get("x-access-token")
        if token:
            return self.user_for_token(token.strip())
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() in ("apikey", "bearer"):
                return self.user_for_token(value.strip())
        return None


__all__ = ["Authenticator", "token_digest", "user_id_for"]
