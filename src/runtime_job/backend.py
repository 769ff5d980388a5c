"""A minimal backend: a name, an instance, and the status the server reports.

The reference returns qiskit ``IBMBackend`` objects; runtime-job keeps what a job needs (the
name, ``status()`` and the configuration as a dict) and no qiskit dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class BackendApi(Protocol):
    """The calls a backend makes (implemented by ``RuntimeClient``)."""

    def backend_status(self, backend_name: str) -> dict[str, Any]:
        """``GET /backends/{name}/status``, mapped."""
        ...

    def backend_configuration(self, backend_name: str) -> dict[str, Any]:
        """``GET /backends/{name}/configuration``."""
        ...


@dataclass(frozen=True)
class BackendStatus:
    """What ``GET /backends/{name}/status`` says.

    Attributes:
        backend_name: The backend.
        backend_version: Its version.
        operational: Whether it accepts jobs.
        pending_jobs: Jobs waiting.
        status_msg: ``active`` when all is well.
    """

    backend_name: str
    backend_version: str
    operational: bool
    pending_jobs: int
    status_msg: str


class Backend:
    """A backend of the runtime service.

    Args:
        name: The backend's name.
        api: The client used to ask about it (``None`` for a placeholder).
        instance: The ``hub/group/project`` it was found in (ibm_quantum).
    """

    def __init__(self, name: str, api: BackendApi | None = None, instance: str | None = None):
        self.name = name
        self._api = api
        self._instance = instance
        self._configuration: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}('{self.name}')>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backend):
            return NotImplemented
        return (self.name, self._instance) == (other.name, other._instance)

    def __hash__(self) -> int:
        return hash((self.name, self._instance))

    def status(self) -> BackendStatus:
        """Ask the server for the backend's status."""
        if self._api is None:
            return BackendStatus(self.name, "0.0.0", False, 0, "retired")
        raw = self._api.backend_status(self.name)
        return BackendStatus(
            backend_name=str(raw.get("backend_name", self.name)),
            backend_version=str(raw.get("backend_version", "0.0.0")),
            operational=bool(raw.get("operational", False)),
            pending_jobs=int(raw.get("pending_jobs", 0) or 0),
            status_msg=str(raw.get("status_msg", "")),
        )

    def configuration(self) -> dict[str, Any]:
        """The backend's configuration, fetched once."""
        if self._configuration is None:
            self._configuration = (
                {} if self._api is None else self._api.backend_configuration(self.name)
            )
        return self._configuration


class IBMRetiredBackend(Backend):
    """A placeholder for a backend the service no longer knows (a retired backend)."""

    @classmethod
    def from_name(cls, backend_name: str) -> IBMRetiredBackend:
        """A placeholder named ``backend_name``."""
        return cls(backend_name)


__all__ = ["Backend", "BackendApi", "BackendStatus", "IBMRetiredBackend"]
