"""Where the service's settings come from: :func:`resolve_config`.

``RuntimeService()`` takes each setting (channel, token, URL, instance, proxies, TLS
verification) from the first of these sources that gives it:

1. the arguments;
2. the environment: ``QISKIT_IBM_CHANNEL``, ``QISKIT_IBM_TOKEN``, ``QISKIT_IBM_URL``,
   ``QISKIT_IBM_INSTANCE`` (skipped when an account ``name`` is given: naming an account is
   an explicit choice);
3. a saved account of the reference's account file, ``~/.qiskit/qiskit-ibm.json``, which is
   only ever read: the account called ``name``, or else the default account, but only when
   no token is configured yet (a token already names an account) and the channel is not
   ``local``;
4. otherwise the local runtime server (the ``local`` channel), which is logged at INFO.

A channel left open after all that is ``ibm_quantum`` when there is a token, ``local``
otherwise.

The account file is a JSON object of named accounts, each like the reference saves them::

    {
      "default-ibm-quantum": {"channel": "ibm_quantum", "token": "...",
                              "url": "https://auth.quantum-computing.ibm.com/api",
                              "instance": "hub/group/project",
                              "proxies": null, "verify": true},
      "lab": {"channel": "local", "url": "http://127.0.0.1:8000", "token": "..."}
    }

The default account is, for the configured channel when one is configured: the one marked
``"is_default_account": true``, else the one called ``default``, else ``default-ibm-cloud``
or ``default-ibm-quantum`` (both tried, in that order, when no channel is configured, as the
reference does). Unknown keys in an account are ignored, so newer files still load.

Tokens never appear in reprs, logs or error messages.

Example::

    config = resolve_config(name="lab")
    config.channel, config.url   # ("local", "http://127.0.0.1:8000")
    config.sources["token"]      # "account 'lab' in /home/me/.qiskit/qiskit-ibm.json"
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from ._logging import configure_from_environment
from .api.params import CHANNELS, ProxyConfiguration
from .exceptions import IBMAccountError, IBMInputValueError

logger = logging.getLogger(__name__)

DEFAULT_ACCOUNT_FILE: Final = Path("~", ".qiskit", "qiskit-ibm.json")
"""The reference's account file (``~`` is expanded when it is read)."""
CHANNEL_ENV: Final = "QISKIT_IBM_CHANNEL"
"""Environment variable: the channel."""
TOKEN_ENV: Final = "QISKIT_IBM_TOKEN"
"""Environment variable: the API token."""
URL_ENV: Final = "QISKIT_IBM_URL"
"""Environment variable: the URL."""
INSTANCE_ENV: Final = "QISKIT_IBM_INSTANCE"
"""Environment variable: the instance (``hub/group/project`` or a CRN)."""
ENV_VARS: Final = MappingProxyType(
    {"channel": CHANNEL_ENV, "token": TOKEN_ENV, "url": URL_ENV, "instance": INSTANCE_ENV}
)
"""Which environment variable holds which setting."""
DEFAULT_ACCOUNT_NAME: Final = "default"
"""An account with this name is the default one (after a flagged one)."""
CHANNEL_DEFAULT_NAMES: Final = MappingProxyType(
    {
        "ibm_cloud": "default-ibm-cloud",
        "ibm_quantum": "default-ibm-quantum",
        "ibm_quantum_platform": "default-ibm-quantum-platform",
    }
)
"""The reference's default account names, per channel, in the order they are tried."""
DEFAULT_FLAG: Final = "is_default_account"
"""Account key marking the default account."""
LOCAL: Final = "local"
"""The channel of a runtime-job server (started locally or reached by URL)."""

_SETTINGS: Final = ("channel", "token", "url", "instance", "proxies", "verify")
_STRING_KEYS: Final = ("token", "url", "instance")


def _source_of_account(name: str, path: Path) -> str:
    return f"account {name!r} in {path}"


@dataclass(frozen=True, repr=False)
class SavedAccount:
    """One account of the account file, checked.

    Attributes:
        name: The account's name in the file.
        path: The file it was read from.
        channel: ``ibm_quantum``, ``ibm_cloud`` or ``local``.
        token: The API token, if saved.
        url: The URL, if saved.
        instance: The instance, if saved.
        proxies: The proxy settings (the reference's dict), if saved.
        verify: TLS verification (``True``, ``False`` or a CA bundle path), if saved.
    """

    name: str
    path: Path
    channel: str
    token: str | None = None
    url: str | None = None
    instance: str | None = None
    proxies: Mapping[str, Any] | None = None
    verify: bool | str | None = None

    def __repr__(self) -> str:
        token = "<redacted>" if self.token else None
        return (
            f"SavedAccount(name={self.name!r}, path={str(self.path)!r}, "
            f"channel={self.channel!r}, url={self.url!r}, instance={self.instance!r}, "
            f"token={token}, verify={self.verify!r})"
        )

    @classmethod
    def from_entry(cls, name: str, entry: Any, path: Path) -> SavedAccount:
        """Check one entry of the account file and build the account.

        Args:
            name: The entry's name.
            entry: The entry's JSON value.
            path: The file, for error messages.

        Returns:
            The account.

        Raises:
            IBMAccountError: The entry is not an object, or a setting has the wrong type.
        """
        where = f"Invalid account {name!r} in {path}"
        if not isinstance(entry, dict):
            raise IBMAccountError(f"{where}: expected a JSON object, got {_json_type(entry)}.")
        channel = entry.get("channel")
        if channel not in CHANNELS:
            shown = repr(channel) if isinstance(channel, str) else _json_type(channel)
            raise IBMAccountError(
                f"{where}: 'channel' is {shown}; expected one of {', '.join(CHANNELS)}."
            )
        values: dict[str, Any] = {}
        for key in _STRING_KEYS:
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise IBMAccountError(
                    f"{where}: '{key}' must be a string, not {_json_type(value)}."
                )
            values[key] = value or None
        proxies = entry.get("proxies")
        if proxies is not None and not isinstance(proxies, dict):
            raise IBMAccountError(
                f"{where}: 'proxies' must be an object, not {_json_type(proxies)}."
            )
        verify = entry.get("verify")
        if verify is not None and not isinstance(verify, bool | str):
            raise IBMAccountError(
                f"{where}: 'verify' must be true, false or a CA bundle path, "
                f"not {_json_type(verify)}."
            )
        if proxies:
            try:
                ProxyConfiguration.from_value(proxies)
            except IBMInputValueError as err:
                raise IBMAccountError(f"{where}: 'proxies': {err.message}") from err
        return cls(
            name=name,
            path=path,
            channel=channel,
            proxies=proxies or None,
            verify=verify,
            **values,
        )

    def get(self, setting: str) -> Any:
        """The value of ``setting`` (one of channel, token, url, instance, proxies, verify)."""
        return getattr(self, setting)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class AccountFile:
    """The account file, read once: a JSON object of named accounts.

    Entries are checked when they are used, so one broken account does not stop the others
    from loading (the reference behaves the same).

    Args:
        path: The file.
        entries: Its accounts, unchecked.
    """

    def __init__(self, path: Path, entries: Mapping[str, Any]) -> None:
        self.path = path
        self.entries = dict(entries)

    def __repr__(self) -> str:
        return f"AccountFile({str(self.path)!r}, names={sorted(self.entries)!r})"

    @classmethod
    def read(cls, filename: str | os.PathLike[str] | None = None) -> AccountFile | None:
        """Read the account file.

        Args:
            filename: The file (default: :data:`DEFAULT_ACCOUNT_FILE`).

        Returns:
            The file's accounts, or ``None`` when the file does not exist.

        Raises:
            IBMAccountError: The file cannot be read, is not JSON, or is not a JSON object.
        """
        path = Path(filename if filename is not None else DEFAULT_ACCOUNT_FILE).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise IBMAccountError(f"Cannot read the account file {path}: {reason}.") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise IBMAccountError(
                f"The account file {path} is not valid JSON: {err.msg} at line {err.lineno} "
                f"column {err.colno}."
            ) from err
        if not isinstance(data, dict):
            raise IBMAccountError(
                f"The account file {path} must hold a JSON object of named accounts, "
                f"not {_json_type(data)}."
            )
        return cls(path, data)

    def account(self, name: str) -> SavedAccount:
        """The account called ``name``.

        Raises:
            IBMAccountError: No such account, or it is malformed.
        """
        if name not in self.entries:
            known = ", ".join(repr(n) for n in sorted(self.entries)) or "none"
            raise IBMAccountError(f"No account named {name!r} in {self.path} (accounts: {known}).")
        return SavedAccount.from_entry(name, self.entries[name], self.path)

    def default_account(self, channel: str | None = None) -> SavedAccount | None:
        """The default account, for ``channel`` when one is given.

        Tried in order: the account marked ``"is_default_account": true``, the account
        called ``default``, then ``default-ibm-cloud`` and ``default-ibm-quantum`` (only the
        one of ``channel`` when it is given). With a channel, an account of another channel
        is passed over.

        Args:
            channel: The configured channel, or ``None``.

        Returns:
            The default account, or ``None`` if there is none.

        Raises:
            IBMAccountError: Several accounts are marked as default, or the default account
                is malformed.
        """
        flagged = [
            name
            for name, entry in self.entries.items()
            if isinstance(entry, dict) and entry.get(DEFAULT_FLAG) is True
        ]
        if len(flagged) > 1:
            listed = ", ".join(repr(n) for n in flagged)
            raise IBMAccountError(
                f"Several accounts of {self.path} are marked {DEFAULT_FLAG!r}: {listed}."
            )
        names = [*flagged, DEFAULT_ACCOUNT_NAME]
        names += [
            default
            for account_channel, default in CHANNEL_DEFAULT_NAMES.items()
            if channel is None or account_channel == channel
        ]
        for name in names:
            entry = self.entries.get(name)
            if entry is None:
                continue
            if channel is not None and isinstance(entry, dict) and entry.get("channel") != channel:
                continue
            return SavedAccount.from_entry(name, entry, self.path)
        return None


@dataclass(frozen=True, repr=False)
class ServiceConfig:
    """The settings a service uses, each with where it came from.

    Attributes:
        channel: ``ibm_quantum``, ``ibm_cloud`` or ``local``.
        token: The API token, if any (for ``local`` without a URL, the server provides it).
        url: The URL, if any.
        instance: The instance, if any.
        proxies: The proxy settings, if any.
        verify: TLS verification, or ``None`` for the default (verify).
        account: The saved account used, if one was.
        sources: For each setting found, where it came from (``"argument"``,
            ``"environment variable QISKIT_IBM_TOKEN"``, ``"account 'x' in FILE"``, or
            ``"default"`` for a channel chosen by the rules above).
    """

    channel: str
    token: str | None = None
    url: str | None = None
    instance: str | None = None
    proxies: ProxyConfiguration | Mapping[str, Any] | None = None
    verify: bool | str | None = None
    account: SavedAccount | None = None
    sources: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        token = "<redacted>" if self.token else None
        account = self.account.name if self.account else None
        return (
            f"ServiceConfig(channel={self.channel!r}, url={self.url!r}, "
            f"instance={self.instance!r}, token={token}, verify={self.verify!r}, "
            f"account={account!r})"
        )

    @property
    def uses_local_server(self) -> bool:
        """Whether the local server is joined or started (``local`` channel, no URL)."""
        return self.channel == LOCAL and self.url is None


def resolve_config(
    channel: str | None = None,
    token: str | None = None,
    url: str | None = None,
    instance: str | None = None,
    proxies: ProxyConfiguration | Mapping[str, Any] | None = None,
    verify: bool | str | None = None,
    *,
    name: str | None = None,
    filename: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceConfig:
    """Resolve the service's settings: arguments, environment, account file, local server.

    Empty strings count as not given, in arguments and environment alike; a token loses
    its surrounding whitespace first (so one read from a file with its newline works).

    Args:
        channel: ``ibm_quantum``, ``ibm_cloud`` or ``local``.
        token: The API token.
        url: The URL.
        instance: The instance.
        proxies: Proxy settings.
        verify: TLS verification.
        name: Use this saved account (it must exist); the environment is then not read.
        filename: The account file (default ``~/.qiskit/qiskit-ibm.json``). A file given
            here must exist when it is needed.
        environ: The environment to read (default: :data:`os.environ`).

    Returns:
        The settings and their sources.

    Raises:
        IBMAccountError: The account file is malformed, or the named account (or a given
            account file) does not exist.
        IBMInputValueError: The channel is invalid, or contradicts the named account.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    given = {
        "channel": channel,
        "token": token,
        "url": url,
        "instance": instance,
        "proxies": proxies,
        "verify": verify,
    }
    for setting, value in given.items():
        value = _stripped_token(setting, value)
        if value is not None and value != "":
            values[setting] = value
            sources[setting] = "argument"
    if name is None:
        for setting, variable in ENV_VARS.items():
            value = _stripped_token(setting, env.get(variable))
            if setting not in values and value:
                values[setting] = value
                sources[setting] = f"environment variable {variable}"
    if "channel" in values:
        _check_channel(values["channel"], sources["channel"])

    account: SavedAccount | None = None
    if name is not None:
        account = _named_account(name, filename)
        if "channel" in values and values["channel"] != account.channel:
            raise IBMInputValueError(
                f"Account {name!r} of {account.path} has channel {account.channel!r}, but "
                f"channel {values['channel']!r} was given ({sources['channel']})."
            )
    elif "token" not in values and values.get("channel") != LOCAL:
        account = _default_account(values.get("channel"), filename)
    if account is not None:
        source = _source_of_account(account.name, account.path)
        for setting in _SETTINGS:
            value = account.get(setting)
            if setting not in values and value is not None:
                values[setting] = value
                sources[setting] = source

    if "channel" not in values:
        values["channel"] = "ibm_quantum" if values.get("token") else LOCAL
        sources["channel"] = "default"
        if values["channel"] == LOCAL and "url" not in values:
            logger.info("No account configured: using the local runtime server.")
    config = ServiceConfig(account=account, sources=MappingProxyType(sources), **values)
    logger.debug("Service settings: %s", describe_sources(config))
    return config


def _stripped_token(setting: str, value: Any) -> Any:
    """A token without surrounding whitespace (a token file's newline), so that a token of
    whitespace only counts as not given; other settings as they are."""
    if setting == "token" and isinstance(value, str):
        return value.strip()
    return value


def describe_sources(config: ServiceConfig) -> str:
    """A one-line account of where each setting came from (never the token itself).

    Args:
        config: Resolved settings.

    Returns:
        Text such as ``"channel=local (argument), token (environment variable
        QISKIT_IBM_TOKEN), url=http://... (argument)"``.
    """
    parts = []
    for setting in _SETTINGS:
        source = config.sources.get(setting)
        if source is None:
            continue
        if setting == "token":
            parts.append(f"token ({source})")
        elif setting == "proxies":
            parts.append(f"proxies ({source})")
        else:
            parts.append(f"{setting}={getattr(config, setting)!r} ({source})")
    return ", ".join(parts)


def _check_channel(channel: Any, source: str) -> None:
    if channel not in CHANNELS:
        raise IBMInputValueError(
            f"Invalid channel {channel!r} (from {source}): use one of {', '.join(CHANNELS)}."
        )


def _named_account(name: str, filename: str | os.PathLike[str] | None) -> SavedAccount:
    accounts = AccountFile.read(filename)
    if accounts is None:
        path = Path(filename if filename is not None else DEFAULT_ACCOUNT_FILE).expanduser()
        raise IBMAccountError(f"No account named {name!r}: the account file {path} does not exist.")
    return accounts.account(name)


def _default_account(
    channel: str | None, filename: str | os.PathLike[str] | None
) -> SavedAccount | None:
    accounts = AccountFile.read(filename)
    if accounts is None:
        if filename is not None:
            path = Path(filename).expanduser()
            raise IBMAccountError(f"The account file {path} does not exist.")
        return None
    return accounts.default_account(channel)


# The log level is a setting from the environment too; it is applied once, at import.
configure_from_environment()

__all__ = [
    "CHANNEL_DEFAULT_NAMES",
    "CHANNEL_ENV",
    "DEFAULT_ACCOUNT_FILE",
    "DEFAULT_ACCOUNT_NAME",
    "DEFAULT_FLAG",
    "ENV_VARS",
    "INSTANCE_ENV",
    "LOCAL",
    "TOKEN_ENV",
    "URL_ENV",
    "AccountFile",
    "SavedAccount",
    "ServiceConfig",
    "describe_sources",
    "resolve_config",
]
