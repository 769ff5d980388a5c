"""A minimal backend: a name, an instance, and the status the server reports.

The reference returns qiskit ``IBMBackend`` objects; runtime-job keeps what a job needs (the
name, ``status()`` and the configuration) and no qiskit dependency. The configuration is a
:class:`BackendConfiguration`: a dict that also allows attribute access, as the reference's
primitives read it (``backend.configuration().simulator``).
"""

from __future__ import annotations

from collections.abc import Mapping
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


class BackendConfiguration(dict[str, Any]):
    """A backend configuration: the server's JSON object, by key or by attribute.

    ``config["n_qubits"]`` and ``config.n_qubits`` are the same value; nested objects are
    configurations too. It stays a ``dict`` (equality, JSON, ``get``), and adds
    ``to_dict()`` as qiskit's ``BackendConfiguration`` has. A key that is also the name of a
    dict method (``items``, ``keys``...) is reached by item access only.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, /) -> None:
        super().__init__({key: _wrap(value) for key, value in (data or {}).items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"The backend configuration has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *(key for key in self if key.isidentifier())})

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` copy (nested configurations become dicts too)."""
        return {key: _unwrap(value) for key, value in self.items()}


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, BackendConfiguration):
        return BackendConfiguration(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, BackendConfiguration):
        return value.to_dict()
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


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
        self._configuration: BackendConfiguration | None = None

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

    def configuration(self) -> BackendConfiguration:
        """The backend's configuration, fetched once (item and attribute access)."""
        if self._configuration is None:
            self._configuration = BackendConfiguration(
                None if self._api is None else self._api.backend_configuration(self.name)
            )
        return self._configuration

    def check_faulty(self, circuit: Any) -> None:
        """Accept the circuit: runtime-job does not check it against faulty qubits.

        The reference's primitives call this when transpilation is skipped. The reference
        raises for a circuit that uses qubits or gates its backend properties mark as faulty;
        runtime-job reads no backend properties, so the server is left to refuse such a
        circuit (a local server has none). Listed in ``docs/differences.md``.
        """
        return None


class IBMRetiredBackend(Backend):
    """A placeholder for a backend the service no longer knows (a retired backend)."""

    @classmethod
    def from_name(cls, backend_name: str) -> IBMRetiredBackend:
        """A placeholder named ``backend_name``."""
        return cls(backend_name)


__all__ = ["Backend", "BackendApi", "BackendConfiguration", "BackendStatus", "IBMRetiredBackend"]
