"""Session helpers that need no server: durations and the status strings of platform.md 5.8."""

from __future__ import annotations

from typing import Any

import pytest

from runtime_job.exceptions import IBMInputValueError, IBMRuntimeError
from runtime_job.sessions import Batch, Session, duration_seconds


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, None), (90, 90), ("2h 30m", 9000), ("90s", 90), ("1H5M", 3900)]
)
def test_durations(value: Any, seconds: int | None) -> None:
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize("value", [0, -1, True, "", "2 hours", "5m x", 1.5])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(IBMInputValueError):
        duration_seconds(value)


class FakeClient:
    def __init__(self, details: dict[str, Any]) -> None:
        self.details = details
        self.calls: list[tuple[Any, ...]] = []

    def create_session(self, backend: str, max_time: int | None, mode: str) -> dict[str, Any]:
        self.calls.append(("create", backend, max_time, mode))
        return {"id": "s1"}

    def session_details(self, session_id: str) -> dict[str, Any]:
        return self.details

    def close_session(self, session_id: str) -> None:
        self.calls.append(("close", session_id))


class FakeService:
    channel = "ibm_quantum_platform"

    def __init__(self, client: Any) -> None:
        self._api_client = client


@pytest.mark.parametrize(
    ("state", "accepting", "text"),
    [
        ("open", True, "Pending"),
        ("inactive", True, "Pending"),
        ("active", True, "In progress, accepting new jobs"),
        ("pending_inactive", False, "In progress, accepting new jobs"),
        ("active", False, "In progress, not accepting new jobs"),
        ("pending_closed", True, "In progress, not accepting new jobs"),
        ("closed", False, "Closed"),
    ],
)
def test_status_strings(state: str, accepting: bool, text: str) -> None:
    client = FakeClient({"state": state, "accepting_jobs": accepting})
    session = Batch(FakeService(client), backend="b", max_time="1m")  # type: ignore[arg-type]
    assert client.calls == [("create", "b", 60, "batch")]
    assert session.status() == text


def test_close_once_and_refuse_runs() -> None:
    client = FakeClient({})
    with Session(FakeService(client), backend="b") as session:  # type: ignore[arg-type]
        pass
    session.close()
    assert client.calls == [("create", "b", None, "dedicated"), ("close", "s1")]
    with pytest.raises(IBMRuntimeError, match="The session is closed"):
        session.run("x", {})


def test_needs_the_platform() -> None:
    service = FakeService(object())
    service.channel = "local"
    with pytest.raises(IBMRuntimeError, match="ibm_quantum_platform"):
        Session(service, backend="b")  # type: ignore[arg-type]


def test_from_id_checks_the_mode() -> None:
    client = FakeClient({"mode": "dedicated", "backend_name": "b", "state": "active"})
    with pytest.raises(IBMInputValueError, match="dedicated"):
        Batch.from_id("s1", FakeService(client))  # type: ignore[arg-type]
    assert Session.from_id("s1", FakeService(client)).backend == "b"  # type: ignore[arg-type]
