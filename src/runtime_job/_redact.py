"""Redaction: the one place that knows what a secret looks like.

:func:`scrub_url` removes credentials from URLs, :func:`redact` from free text (known tokens
and anything that looks like an ``X-Access-Token``, ``Authorization``, ``apikey`` or
``token=`` value), and :class:`RedactingFilter` applies :func:`redact` to log records. The
client's transport, its logging handler and the local server all use these, so this module
sits at the package root and imports nothing of the package.

Example::

    redact("X-Access-Token: abc123")  # 'X-Access-Token: <redacted>'
    scrub_url("https://h/jobs?access_token=abc")  # 'https://h/jobs'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED: Final = "<redacted>"
"""What a secret is replaced with."""

_SECRET_QUERY_KEYS: Final = frozenset({"access_token", "token", "apitoken", "apikey", "api_key"})
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
        secrets: Known secret strings (tokens) to remove wherever they appear: as given,
            without surrounding whitespace, and escaped as a ``repr`` shows them.

    Returns:
        The text with every known secret and every value of ``X-Access-Token``,
        ``Authorization``, ``apikey ...``, ``access_token=``, ``token=`` and ``apiToken``
        replaced.
    """
    for secret in secrets:
        for form in _forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda match: (
                match.group("key")
                + (REDACTED if match.group("value") != REDACTED else match.group("value"))
            ),
            text,
        )
    return text


def _forms(secret: str) -> list[str]:
    """The ways ``secret`` may appear in text: as is, stripped, and escaped as in a repr.

    Longest first, so that a stripped form never leaves its escaped line break behind.
    """
    if not isinstance(secret, str):
        return []
    forms = set()
    for variant in (secret, secret.strip()):
        forms.add(variant)
        forms.add(variant.encode("unicode_escape").decode("ascii"))
    return sorted(
        (form for form in forms if len(form) >= _MIN_SECRET_LENGTH), key=len, reverse=True
    )


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


__all__ = ["REDACTED", "RedactingFilter", "redact", "scrub_url"]
