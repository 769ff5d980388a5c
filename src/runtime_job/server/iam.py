"""A local IAM: API keys (the local users' API tokens) exchanged for signed JWT access tokens.

Today's IBM Quantum Platform authenticates every request with an IAM access token, a JWT the
client gets by posting its API key to ``POST /identity/token`` (the apikey grant) and renews
before it expires (``shared/spec/platform.md`` section 2). This module plays that IAM for the
local server: the API key is one of the server's API tokens, and the token is a JWT
(``header.payload.signature``, base64url) signed with HMAC-SHA256 under a key the store keeps,
so tokens outlive a restart. The claims hold the user id (a digest), never the API key.

The wall clock is the :class:`~runtime_job.server.auth.Authenticator`'s ``now`` seam, so tests
move both kinds of token through time together.

Example::

    issuer = TokenIssuer(key, now=time.time)
    token, claims = issuer.issue("user-abc")
    issuer.verify(token)                 # -> "user-abc" until claims["exp"]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from .auth import Authenticator

TOKEN_TTL = 3600
"""Seconds an access token is valid (IBM's IAM also grants one hour). Read when a server
starts: a test may lower it (``monkeypatch.setattr(iam, "TOKEN_TTL", 15)``) to see a client
renew its token."""
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
"""The only grant type served."""
ISSUER = "runtime-job-local-iam"
"""The ``iss`` claim of the tokens."""
_MAX_FORM = 16 * 1024
_HEADER = {"alg": "HS256", "typ": "JWT", "kid": "runtime-job-1"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token has the three dot-separated parts of a JWT."""
    return token.count(".") == 2


class TokenIssuer:
    """Issues and checks the local IAM's access tokens.

    Args:
        key: The HMAC-SHA256 signing key.
        now: The wall clock, epoch seconds (a seam for tests).
        ttl: Seconds a token is valid (default :data:`TOKEN_TTL` as it is now).
    """

    def __init__(
        self, key: bytes, *, now: Callable[[], float] = time.time, ttl: int | None = None
    ) -> None:
        self._key = key
        self.now = now
        self.ttl = TOKEN_TTL if ttl is None else ttl
        self._header = _b64url(json.dumps(_HEADER, separators=(",", ":")).encode())

    def _sign(self, signing_input: str) -> str:
        return _b64url(hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest())

    def issue(self, user_id: str) -> tuple[str, dict[str, Any]]:
        """A new access token for ``user_id`` and its claims (``iat``, ``exp`` and the ids)."""
        iat = int(self.now())
        claims: dict[str, Any] = {
            "iam_id": f"iam-{user_id}",
            "id": f"iam-{user_id}",
            "sub": user_id,
            "sub_type": "ServiceId",
            "account": {"bss": account_id(user_id), "valid": True},
            "grant_type": APIKEY_GRANT,
            "scope": "ibm openid",
            "client_id": "default",
            "iss": ISSUER,
            "iat": iat,
            "exp": iat + self.ttl,
        }
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header}.{payload}"
        return f"{signing_input}.{self._sign(signing_input)}", claims

    def verify(self, token: str) -> str | None:
        """The user a token was issued to, or ``None`` (bad signature, malformed, expired)."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 4096:
            return None
        header, payload, signature = parts
        expected = self._sign(f"{header}.{payload}")
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            claims = json.loads(_unb64url(payload))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            return None
        exp, sub = claims.get("exp"), claims.get("sub")
        if not isinstance(exp, int) or not isinstance(sub, str) or self.now() >= exp:
            return None
        return sub


def user_for_headers(
    headers: Mapping[str, str], auth: Authenticator, issuer: TokenIssuer
) -> str | None:
    """The user a platform request authenticates, or ``None``.

    ``Authorization: Bearer <JWT>`` is checked against the issuer (a JWT that fails is never
    tried as anything else); any other credential goes to the server's
    :class:`~runtime_job.server.auth.Authenticator`, as on the 2023 routes.
    """
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and looks_like_jwt(value):
            return issuer.verify(value)
    return auth.user_for_headers(headers)


def account_id(user_id: str) -> str:
    """The IBM Cloud account id of a local user (32 hex digits derived from the user id)."""
    return hashlib.sha256(b"runtime-job-account\0" + user_id.encode()).hexdigest()[:32]


def _iam_error(status: int, code: str, message: str) -> Response:
    body = {
        "errorCode": code,
        "errorMessage": message,
        "context": {"requestId": hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:16]},
    }
    return Response(json.dumps(body), status, media_type="application/json")


def iam_router(auth: Authenticator, issuer: TokenIssuer) -> APIRouter:
    """The IAM route: ``POST /identity/token`` (form: ``grant_type``, ``apikey``).

    Errors have IAM's own shape, ``{"errorCode", "errorMessage", "context"}``: 400
    ``BXNIM0415E`` for a key that is no local user's API token.
    """
    router = APIRouter()

    @router.post("/identity/token")
    async def token(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM:
                return _iam_error(413, "BXNIM0413E", "The request body is too large.")
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=16)
        except (UnicodeDecodeError, ValueError):
            return _iam_error(400, "BXNIM0109E", "The request body is not a valid form.")
        grant = form.get("grant_type", [""])[0]
        if grant != APIKEY_GRANT:
            return _iam_error(
                400, "BXNIM0109E", f"Unsupported grant_type: only {APIKEY_GRANT} is served here."
            )
        apikey = form.get("apikey", [""])[0]
        # Only API tokens are API keys here (not login access tokens, not JWTs).
        user = auth.user_for_api_token(apikey) if apikey else None
        if user is None:
            return _iam_error(400, "BXNIM0415E", "Provided API key could not be found.")
        access, claims = issuer.issue(user)
        data = {
            "access_token": access,
            "refresh_token": "not_supported",
            "token_type": "Bearer",
            "expires_in": issuer.ttl,
            "expiration": claims["exp"],
            "scope": claims["scope"],
        }
        return Response(json.dumps(data), 200, media_type="application/json")

    return router


__all__ = [
    "APIKEY_GRANT",
    "ISSUER",
    "TOKEN_TTL",
    "TokenIssuer",
    "account_id",
    "iam_router",
    "looks_like_jwt",
    "user_for_headers",
]
