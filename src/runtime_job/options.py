"""Run options: :class:`RuntimeOptions` and its validation, with the reference's messages.

Example::

    options = RuntimeOptions(backend="local_simulator", job_tags=["demo"])
    options.validate(channel="local")
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from typing import Any

from .exceptions import IBMInputValueError

_IMAGE_RE = re.compile(r"[a-zA-Z0-9]+([/.\-_][a-zA-Z0-9]+)*:[a-zA-Z0-9]+([.\-_][a-zA-Z0-9]+)*$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass
class RuntimeOptions:
    """Options for :meth:`RuntimeService.run`.

    Attributes:
        backend: Name of the backend to run on (required on the ``ibm_quantum`` channel).
        image: Runtime image, ``name:tag``.
        log_level: Log level of the program (``DEBUG`` ... ``CRITICAL``).
        instance: ``hub/group/project`` (``ibm_quantum`` only).
        job_tags: Tags to attach to the job.
        max_execution_time: Maximum execution time in seconds; the job is cancelled after.
        session_time: Maximum session time in seconds, for a job that starts a session.
    """

    backend: str | None = None
    image: str | None = None
    log_level: str | None = None
    instance: str | None = None
    job_tags: list[str] | None = None
    max_execution_time: int | None = None
    session_time: int | None = None

    @classmethod
    def from_value(cls, options: RuntimeOptions | dict[str, Any] | None) -> RuntimeOptions:
        """Build options from ``None``, a dict (unknown keys are an error) or options."""
        if options is None:
            return cls()
        if isinstance(options, RuntimeOptions):
            return options
        if isinstance(options, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise TypeError(f"RuntimeOptions got unexpected option(s): {', '.join(unknown)}")
            return cls(**options)
        raise TypeError(f"options must be a RuntimeOptions or a dict, not {type(options).__name__}")

    def validate(self, channel: str) -> None:
        """Check the options for ``channel``.

        Raises:
            IBMInputValueError: An option is invalid, with the reference's message.
        """
        if self.image and not _IMAGE_RE.match(self.image):
            raise IBMInputValueError('"image" needs to be in form of image_name:tag')
        if channel == "ibm_quantum" and not self.backend:
            raise IBMInputValueError(
                '"backend" is required field in "options" for "ibm_quantum" channel.'
            )
        if self.instance and channel != "ibm_quantum":
            raise IBMInputValueError('"instance" is only supported for "ibm_quantum" channel.')
        if self.log_level and not isinstance(
            logging.getLevelName(str(self.log_level).upper()), int
        ):
            raise IBMInputValueError(
                f"{self.log_level} is not a valid log level. The valid log levels are: "
                "`DEBUG`, `INFO`, `WARNING`, `ERROR`, and `CRITICAL`."
            )
        if self.job_tags and (
            not isinstance(self.job_tags, list)
            or not all(isinstance(tag, str) for tag in self.job_tags)
        ):
            raise IBMInputValueError("job_tags needs to be a list of strings.")
        for name in ("max_execution_time", "session_time"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise IBMInputValueError(f"{name} must be a non-negative whole number of seconds.")


__all__ = ["RuntimeOptions"]
