"""Connection settings: :class:`ClientParameters` and :class:`ProxyConfiguration`.

One ``ClientParameters`` describes how to reach one runtime service: the channel, its URL,
the credentials, and the TLS, proxy and timeout settings that apply to every connection the
library opens for it (REST calls, websockets and external result downloads alike).

Example::

    params = ClientParameters(channel="local", token="secret", url="http://127.0.0.1:8000")
    params.auth_headers()  # {"X-Access-Token": "secret"}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from ..exceptions import IBMInputValueError
from ..timing import Deadline

Channel = Literal["ibm_quantum", "ibm_cloud", "ibm_quantum_platform", "local"]
CHANNELS: tuple[str, ...] = ("ibm_quantum", "ibm_cloud", "ibm_quantum_platform", "local")

DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to establish a TCP (and TLS) connection."""
DEFAULT_READ_TIMEOUT = 60.0
"""Seconds to wait for the next bytes of a response (not the whole response)."""

_PLATFORM_AUTH = (
    "The ibm_quantum_platform channel authenticates with IAM bearer tokens: use "
    "RuntimeService(channel='ibm_quantum_platform', ...) or "
    "runtime_job.api.platform_client.PlatformClient. The API key is sent only to IAM."
)

_CRN_RE = re.compile(r"(.*?):(.*?):(.*?):(.*?):(.*?):(.*?):.*")


@dataclass
class ProxyConfiguration:
    """Proxy settings, in the reference's shape.

    Attributes:
        urls: Maps a scheme, ``scheme://host`` or ``all`` to a proxy URL, as ``requests`` does.
        username_ntlm: NTLM user name (NTLM proxies are not supported).
        password_ntlm: NTLM password (NTLM proxies are not supported).
    """

    urls: dict[str, str] | None = None
    username_ntlm: str | None = None
    password_ntlm: str | None = None

    def __post_init__(self) -> None:
        if self.username_ntlm or self.password_ntlm:
            raise IBMInputValueError(
                "NTLM proxy authentication is not supported by runtime-job; "
                "use a proxy URL with basic credentials instead."
            )

    @classmethod
    def from_value(cls, value: ProxyConfiguration | Mapping[str, Any] | None) -> ProxyConfiguration:
        """Build a configuration from ``None``, a configuration, or the reference's dict."""
        if value is None:
            return cls()
        if isinstance(value, ProxyConfiguration):
            return value
        known = {"urls", "username_ntlm", "password_ntlm"}
        unknown = set(value) - known
        if unknown:
            raise IBMInputValueError(f"Unknown proxy settings: {sorted(unknown)}")
        return cls(**dict(value))

    def to_request_params(self) -> dict[str, str]:
        """The ``proxies`` mapping for ``requests``."""
        return dict(self.urls or {})

    def for_url(self, url: str) -> str | None:
        """The proxy URL to use for ``url``, or ``None``.

        A websocket URL (``ws`` or ``wss``) looks up the keys the reference's
        ``to_ws_params`` does, in its order: the URL itself, ``wss``, ``https://host``,
        ``https``, ``all://host``, ``all`` (so a plain ``ws://`` URL uses the ``https``
        proxy, as there). Another URL looks up itself, ``scheme://host``, ``scheme``,
        ``all://host``, ``all``, as ``requests`` does.
        """
        if not self.urls:
            return None
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme in ("ws", "wss"):
            scheme = "https"
            keys: tuple[str, ...] = (url, "wss")
        else:
            keys = (url,)
        host = parsed.hostname or ""
        for key in (*keys, f"{scheme}://{host}", scheme, f"all://{host}", "all"):
            if key in self.urls:
                return self.urls[key]
        return None


class _HeaderAuth:
    """Sets headers on a ``requests`` call (what ``requests.auth.AuthBase`` subclasses do).

    ``requests`` calls any callable given as ``auth`` with the prepared request; this module
    does not import ``requests`` (the local server imports it).
    """

    def get_headers(self) -> dict[str, str]:
        """The headers to set."""
        raise NotImplementedError

    def __call__(self, request: Any) -> Any:
        request.headers.update(self.get_headers())
        return request


class QuantumAuth(_HeaderAuth):
    """The ibm_quantum (and local) auth handler: ``X-Access-Token``.

    Args:
        access_token: The access token (or, on ``local``, the API token).
    """

    def __init__(self, access_token: str) -> None:
        self.access_token = access_token

    def get_headers(self) -> dict[str, str]:
        """``{"X-Access-Token": access_token}``."""
        return {"X-Access-Token": self.access_token}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QuantumAuth):
            return self.access_token == other.access_token
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(access_token=<redacted>)"


class CloudAuth(_HeaderAuth):
    """The ibm_cloud auth handler: ``Service-CRN`` and ``Authorization: apikey ...``.

    Args:
        api_key: The IBM Cloud API key.
        crn: The service instance's CRN.
    """

    def __init__(self, api_key: str, crn: str | None) -> None:
        self.api_key = api_key
        self.crn = crn

    def get_headers(self) -> dict[str, str]:
        """``{"Service-CRN": crn, "Authorization": "apikey <api_key>"}``."""
        return {"Service-CRN": self.crn or "", "Authorization": f"apikey {self.api_key}"}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CloudAuth):
            return (self.api_key, self.crn) == (other.api_key, other.crn)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_key=<redacted>, crn={self.crn!r})"


def checked_token(token: Any) -> Any:
    """``token`` without surrounding whitespace, refused if it cannot go in an HTTP header.

    A token read from a file usually ends with a newline (the local server's token file
    does); that is dropped. A control character or line break inside, or a character
    outside Latin-1, cannot be sent in a header: the token is refused with an error that
    says where the bad character is, never what the token is.

    Args:
        token: The token (anything that is not a string is returned as is).

    Returns:
        The stripped token.

    Raises:
        IBMInputValueError: The token holds a character that cannot be sent.
    """
    if not isinstance(token, str):
        return token
    token = token.strip()
    for position, char in enumerate(token, start=1):
        code = ord(char)
        if char in "\r\n":
            what = "a line break"
        elif code < 0x20 or code == 0x7F:
            what = f"a control character (U+{code:04X})"
        elif code > 0xFF:
            what = "a character outside Latin-1"
        else:
            continue
        raise IBMInputValueError(
            f"The token cannot be sent in an HTTP header: it contains {what} at position "
            f"{position} of {len(token)}. Check where the token comes from (a file, an "
            "environment variable, a copy and paste) for a stray character."
        )
    return token


@dataclass
class ClientParameters:
    """How to reach and authenticate with one runtime service.

    Args:
        channel: ``"ibm_quantum"``, ``"ibm_cloud"`` (at this level 0.11's cloud protocol;
            ``RuntimeService`` speaks the platform dialect on it), ``"ibm_quantum_platform"``
            (bearer tokens from IAM, see :mod:`runtime_job.api.platform_client`) or ``"local"``.
        token: API token (ibm_quantum before login, ibm_cloud, local) or access token.
            Surrounding whitespace is dropped, here and whenever it is replaced later;
            a token with a character that cannot be sent in a header is refused
            (:func:`checked_token`).
        url: Base URL of the service.
        instance: ``hub/group/project`` (ibm_quantum) or a CRN (ibm_cloud).
        proxies: Proxy settings, as a :class:`ProxyConfiguration` or the reference's dict.
        verify: TLS verification: ``True``, ``False``, or the path of a CA bundle.
        connect_timeout: Seconds to connect, for every connection.
        read_timeout: Seconds to wait for data on an open connection.
    """

    channel: str
    token: str
    url: str | None = None
    instance: str | None = None
    proxies: ProxyConfiguration | Mapping[str, Any] | None = None
    verify: bool | str = True
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    _proxy_config: ProxyConfiguration = field(init=False, repr=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # The token and the proxies are checked however they are set: at construction and
        # when replaced later (the token after a login; proxies by the user), and every
        # connection opened afterwards uses the new value.
        if name == "token":
            value = checked_token(value)
        elif name == "proxies":
            super().__setattr__("_proxy_config", ProxyConfiguration.from_value(value))
        super().__setattr__(name, value)

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise IBMInputValueError(
                f"Invalid channel {self.channel!r}: use one of {', '.join(CHANNELS)}."
            )
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise IBMInputValueError(f"{name} must be a positive number, not {value!r}.")

    def __repr__(self) -> str:
        return (
            f"ClientParameters(channel={self.channel!r}, url={self.url!r}, "
            f"instance={self.instance!r}, token=<redacted>, verify={self.verify!r})"
        )

    @property
    def proxy_config(self) -> ProxyConfiguration:
        """The proxy settings, normalised."""
        return self._proxy_config

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeout for ``requests``."""
        return (float(self.connect_timeout), float(self.read_timeout))

    def get_auth_handler(self) -> CloudAuth | QuantumAuth:
        """The reference's auth handler: sets this channel's headers on a ``requests`` call.

        Returns:
            :class:`CloudAuth` on ``ibm_cloud``, else :class:`QuantumAuth`, made from the
            current token (and instance); a later token needs a new handler.
        """
        if self.channel == "ibm_quantum_platform":
            raise IBMInputValueError(_PLATFORM_AUTH)
        if self.channel == "ibm_cloud":
            return CloudAuth(api_key=self.token, crn=self.instance)
        return QuantumAuth(access_token=self.token)

    def auth_headers(self, deadline: Deadline | None = None) -> dict[str, str]:
        """The authentication headers for this channel (REST and websocket alike).

        ``ibm_quantum_platform`` has none here: its bearer tokens come from IAM, through
        ``runtime_job.api.platform_client.PlatformParameters`` (the API key is never sent
        anywhere but IAM).

        Args:
            deadline: Bounds whatever getting the headers waits for (here nothing; an IAM
                grant for the platform's parameters).
        """
        if self.channel == "ibm_quantum_platform":
            raise IBMInputValueError(_PLATFORM_AUTH)
        if self.channel == "ibm_cloud":
            return {"Service-CRN": self.instance or "", "Authorization": f"apikey {self.token}"}
        return {"X-Access-Token": self.token}

    def get_runtime_api_base_url(self) -> str:
        """The base URL of the runtime API (derived from the CRN on ibm_cloud and
        ibm_quantum_platform; see ``runtime_job.api.platform``)."""
        if self.channel == "ibm_quantum_platform":
            from .platform import quantum_api_base

            return quantum_api_base(self.url, self.instance)
        url = self.url or ""
        instance = self.instance
        if isinstance(instance, str) and instance.startswith("crn:") and "experimental" not in url:
            match = _CRN_RE.match(instance)
            parsed = urlparse(url)
            if match and parsed.scheme and parsed.hostname:
                return f"{parsed.scheme}://{match.group(6)}.quantum-computing.{parsed.hostname}"
        return url.rstrip("/")

    def get_websocket_base_url(self) -> str:
        """The base URL for websockets: ``https``→``wss``, ``http``→``ws``, scheme only."""
        base = self.get_runtime_api_base_url()
        scheme, sep, rest = base.partition("://")
        if not sep:
            return base
        return {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme) + "://" + rest

    def connection_parameters(self) -> dict[str, Any]:
        """``verify`` and ``proxies`` keyword arguments for ``requests``."""
        params: dict[str, Any] = {"verify": self.verify}
        proxies = self._proxy_config.to_request_params()
        if proxies:
            params["proxies"] = proxies
        return params


__all__ = [
    "CHANNELS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "Channel",
    "ClientParameters",
    "CloudAuth",
    "ProxyConfiguration",
    "QuantumAuth",
    "checked_token",
]
