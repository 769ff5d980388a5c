"""Sessions and batches of IBM Quantum Platform (``platform.md`` 5.8).

A :class:`Session` (mode ``dedicated``) runs its jobs back to back on one backend; a
:class:`Batch` (mode ``batch``) lets the service schedule them together. Both are explicit on
the platform: ``POST /sessions`` creates one, jobs carry its ``session_id``, ``PATCH`` with
``{"accepting_jobs": false}`` closes it (its jobs finish; no new ones), ``DELETE
/sessions/{id}/close`` cancels it (its queued and running jobs end), and ``GET`` gives its
details. Jobs in a session are polled every 0.1 s at first (``docs/platform.md``).

Example::

    with Session(service, backend="ibm_torino", max_time="1h") as session:
        job = session.run("sampler", inputs={"pubs": [...], "version": 2})
        print(job.result())
    # leaving the block closes the session
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from .exceptions import IBMInputValueError, IBMRuntimeError, RequestsApiError

if TYPE_CHECKING:
    from .job import RuntimeJob
    from .service import RuntimeService

_DURATION = re.compile(r"\s*(\d+)\s*([hms])\s*", re.IGNORECASE)
_SECONDS = {"h": 3600, "m": 60, "s": 1}


def duration_seconds(value: int | str | None) -> int | None:
    """Seconds in ``value``: an int, or text such as ``"2h 30m"`` or ``"90s"``.

    Raises:
        IBMInputValueError: ``value`` is neither.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        text, total, position = value.strip(), 0, 0
        for match in _DURATION.finditer(text):
            if match.start() != position:
                break
            total += int(match.group(1)) * _SECONDS[match.group(2).lower()]
            position = match.end()
        if text and position == len(text) and total > 0:
            return total
    raise IBMInputValueError(
        f"max_time must be a positive number of seconds or like '2h 30m', not {value!r}"
    )


class Session:
    """A session of the platform: its jobs run back to back on one backend.

    Args:
        service: A service on the ``ibm_quantum_platform`` (or ``ibm_cloud``) channel.
        backend: The backend (a name or a backend object).
        max_time: The most the session may last (seconds, or ``"2h 30m"``); the server's
            default when ``None``.

    Raises:
        IBMRuntimeError: The service's client has no sessions (not the platform), or the
            server refused to create one.
    """

    mode: ClassVar[str] = "dedicated"
    """``dedicated`` (a session) or ``batch``."""

    def __init__(
        self, service: RuntimeService, backend: Any, max_time: int | str | None = None
    ) -> None:
        self._service = service
        self._client = service._api_client
        if not hasattr(self._client, "create_session"):
            raise IBMRuntimeError(
                f"{type(self).__name__} needs the ibm_quantum_platform channel "
                f"(this service uses {service.channel})."
            )
        self.backend: str = getattr(backend, "name", backend)
        self.max_time = duration_seconds(max_time)
        self._closed = False
        self.session_id: str = ""
        self._create()

    def _create(self) -> None:
        try:
            answer = self._client.create_session(
                self.backend, max_time=self.max_time, mode=self.mode
            )
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to create a {self.mode} session: {err}") from err
        self.session_id = str(answer["id"])

    @classmethod
    def from_id(cls, session_id: str, service: RuntimeService) -> Session:
        """The session ``session_id`` (``GET /sessions/{id}``), to run more jobs in it.

        Raises:
            IBMInputValueError: It is a session of the other mode.
        """
        details = service._api_client.session_details(session_id)
        mode = details.get("mode")
        if mode is not None and mode != cls.mode:
            raise IBMInputValueError(f"Session {session_id} is a {mode} session, not {cls.mode}.")
        session = cls.__new__(cls)
        session._service = service
        session._client = service._api_client
        session.backend = str(details.get("backend_name") or "")
        session.max_time = details.get("max_ttl")
        session.session_id = session_id
        session._closed = details.get("state") == "closed"
        return session

    def run(
        self,
        program_id: str,
        inputs: Any,
        options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> RuntimeJob:
        """``service.run(...)`` in this session, on its backend.

        Raises:
            IBMRuntimeError: The session is closed.
        """
        if self._closed:
            raise IBMRuntimeError("The session is closed.")
        opts = dict(options or {})
        opts.setdefault("backend", self.backend)
        return self._service.run(program_id, inputs, opts, session_id=self.session_id, **kwargs)

    def details(self) -> dict[str, Any]:
        """The server's details of the session (``GET /sessions/{id}``)."""
        details: dict[str, Any] = self._client.session_details(self.session_id)
        return details

    def status(self) -> str:
        """``Pending``, ``In progress, accepting new jobs``, ``In progress, not accepting new
        jobs``, or the server's state capitalised (``Closed``)."""
        details = self.details()
        state = str(details.get("state") or "")
        accepting = details.get("accepting_jobs", True)
        if state in ("open", "inactive"):
            return "Pending"
        if (state == "active" and accepting) or state == "pending_inactive":
            return "In progress, accepting new jobs"
        if (state == "active" and not accepting) or state == "pending_closed":
            return "In progress, not accepting new jobs"
        return state.capitalize()

    def close(self) -> None:
        """Accept no more jobs; those submitted finish (``PATCH``, a 404 ignored)."""
        if not self._closed:
            try:
                self._client.close_session(self.session_id)
            except RequestsApiError as err:
                raise IBMRuntimeError(f"Error closing session: {err}") from err
            self._closed = True

    def cancel(self) -> None:
        """End the session and its queued and running jobs (``DELETE .../close``)."""
        self._client.cancel_session(self.session_id)
        self._closed = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.session_id} backend={self.backend!r}>"


class Batch(Session):
    """A batch of the platform: jobs the service may schedule together (``mode="batch"``)."""

    mode: ClassVar[str] = "batch"


__all__ = ["Batch", "Session", "duration_seconds"]
