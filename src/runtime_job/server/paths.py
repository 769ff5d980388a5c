"""Where a local server keeps its files: the data directory and what lives in it.

Layout of a data directory (created ``0700``)::

    runtime.sqlite3      jobs, interim results, logs, tokens (SQLite, WAL mode)
    token                the primary API token (``0600``)
    server.json          url and pid of the server now serving this directory (``0600``)
    server.lock          held (``flock``) by the server serving this directory
    server.log           stderr of a server started in the background

Example::

    data = DataDir.resolve(None)  # $XDG_DATA_HOME/runtime-job or ~/.local/share/runtime-job
    data.create()
    token = data.read_or_create_token()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

APP_DIR_NAME = "runtime-job"
"""Name of the per-user data directory."""


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/runtime-job`` or ``~/.local/share/...``."""
    base = os.environ.get("XDG_DATA_HOME")
    root = Path(base) if base else Path.home() / ".local" / "share"
    return root / APP_DIR_NAME


def new_token() -> str:
    """A fresh random API token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class DataDir:
    """A server's data directory.

    Attributes:
        root: The directory.
    """

    root: Path

    @classmethod
    def resolve(cls, data_dir: str | os.PathLike[str] | None) -> DataDir:
        """The given directory (``~`` expanded, made absolute) or the per-user default."""
        path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        return cls(path.absolute())

    @property
    def db_path(self) -> Path:
        """The SQLite database."""
        return self.root / "runtime.sqlite3"

    @property
    def token_path(self) -> Path:
        """The file holding the primary API token."""
        return self.root / "token"

    @property
    def server_json(self) -> Path:
        """The file naming the server that serves this directory."""
        return self.root / "server.json"

    @property
    def lock_path(self) -> Path:
        """The lock file held by the serving server."""
        return self.root / "server.lock"

    @property
    def log_path(self) -> Path:
        """Where a background server writes its stderr."""
        return self.root / "server.log"

    def create(self) -> None:
        """Create the directory, mode ``0700`` whatever the umask.

        An existing directory that others may read, write or enter (an older server, or one
        created by hand with ``0755``) is fixed to ``0700``, with a warning: it holds the
        database and the token.
        """
        try:
            self.root.mkdir(mode=0o700, parents=True)
            created = True
        except FileExistsError:
            if not self.root.is_dir():
                raise
            created = False
        mode = stat.S_IMODE(self.root.stat().st_mode)
        if mode == 0o700 or (not created and not mode & 0o077):
            return
        try:
            self.root.chmod(0o700)
        except OSError as err:
            logger.warning(
                "The data directory %s has mode %04o and cannot be made private (0700): %s",
                self.root,
                mode,
                err,
            )
            return
        if not created:
            logger.warning(
                "The data directory %s had mode %04o (readable by others); changed to 0700.",
                self.root,
                mode,
            )

    def read_token(self) -> str | None:
        """The primary token, or ``None`` when there is no usable token file."""
        try:
            text = self.token_path.read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return text or None

    def write_token(self, token: str) -> None:
        """Store ``token`` as the primary token (file mode ``0600``)."""
        self.create()
        _write_private(self.token_path, token + "\n")

    def read_or_create_token(self) -> str:
        """The primary token, created (random, ``0600``) when there is none."""
        token = self.read_token()
        if token is None:
            token = new_token()
            self.write_token(token)
        return token

    def read_server_info(self) -> dict[str, Any] | None:
        """The content of ``server.json``, or ``None`` when absent or unreadable."""
        try:
            data = json.loads(self.server_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_server_info(self, info: dict[str, Any]) -> None:
        """Write ``server.json`` atomically (mode ``0600``)."""
        _write_private(self.server_json, json.dumps(info, indent=2) + "\n")

    def remove_server_info(self, pid: int) -> None:
        """Remove ``server.json`` if it still names process ``pid``."""
        info = self.read_server_info()
        if info is not None and info.get("pid") == pid:
            with contextlib.suppress(OSError):
                self.server_json.unlink()


__all__ = ["APP_DIR_NAME", "DataDir", "default_data_dir", "new_token"]
