"""Debug logging switched on from the environment.

When ``RUNTIME_JOB_LOG_LEVEL`` (or the reference's ``QISKIT_IBM_RUNTIME_LOG_LEVEL``) is set,
the ``runtime_job`` package logger gets one handler writing to standard error at that level.
The handler carries a :class:`~runtime_job._redact.RedactingFilter`, so no token reaches
the terminal. When neither variable is set, nothing is configured: the library stays quiet
and the application's own logging setup decides.

Example::

    $ RUNTIME_JOB_LOG_LEVEL=DEBUG python my_script.py
    2024-05-01 12:00:00,000 DEBUG runtime_job.api.session: GET http://... 200 (3 ms)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

from ._redact import RedactingFilter

LOG_LEVEL_ENV_VARS: Final = ("RUNTIME_JOB_LOG_LEVEL", "QISKIT_IBM_RUNTIME_LOG_LEVEL")
"""Environment variables naming the package log level; the first one set wins."""
PACKAGE_LOGGER: Final = "runtime_job"
"""The logger every module of the package logs under."""
HANDLER_NAME: Final = "runtime_job.env"
"""Name of the handler added from the environment (so it is added only once)."""
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Format of the records the handler writes."""
_TOKEN_ENV_VARS: Final = ("QISKIT_IBM_TOKEN",)


def _env_secrets() -> list[str]:
    """Tokens known from the environment, read at each record (they may change)."""
    return [value for name in _TOKEN_ENV_VARS if (value := os.environ.get(name))]


def parse_level(text: str) -> int | None:
    """A logging level from its name (any case) or number, or ``None`` if it is neither.

    Args:
        text: ``"DEBUG"``, ``"info"``, ``"10"``, ...

    Returns:
        The numeric level, or ``None`` when ``text`` names no level.
    """
    value = text.strip()
    if value.isdigit():
        return int(value)
    level = logging.getLevelNamesMapping().get(value.upper())
    return level


def configure_from_environment(environ: Mapping[str, str] | None = None) -> logging.Handler | None:
    """Give the package logger a stderr handler when a log-level variable is set.

    The first non-empty variable of :data:`LOG_LEVEL_ENV_VARS` sets the level of the
    ``runtime_job`` logger and of a new ``StreamHandler`` on standard error, which carries a
    :class:`~runtime_job._redact.RedactingFilter`. The logger stops propagating to the
    root logger, as the reference does, so records are not printed twice when the
    application has its own handlers. An unknown level name falls back to ``WARNING`` with a
    warning record. Calling it again changes nothing once the handler is there.

    Args:
        environ: The environment to read (default: :data:`os.environ`).

    Returns:
        The handler added, or ``None`` when nothing was configured.
    """
    env = os.environ if environ is None else environ
    source = next((name for name in LOG_LEVEL_ENV_VARS if env.get(name, "").strip()), None)
    if source is None:
        return None
    logger = logging.getLogger(PACKAGE_LOGGER)
    if any(handler.get_name() == HANDLER_NAME for handler in logger.handlers):
        return None
    text = env[source]
    level = parse_level(text)
    handler = logging.StreamHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactingFilter(_env_secrets))
    handler.setLevel(level if level is not None else logging.WARNING)
    logger.addHandler(handler)
    logger.setLevel(level if level is not None else logging.WARNING)
    logger.propagate = False
    if level is None:
        logger.warning("Unknown log level %r in %s; using WARNING.", text, source)
    return handler


__all__ = [
    "HANDLER_NAME",
    "LOG_FORMAT",
    "LOG_LEVEL_ENV_VARS",
    "PACKAGE_LOGGER",
    "configure_from_environment",
    "parse_level",
]
