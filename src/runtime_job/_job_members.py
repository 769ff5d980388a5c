"""The job members later client versions added, on both dialects (issue 20 item 5).

:class:`LaterJobMembers` is a base of :class:`~runtime_job.job.RuntimeJob`: ``usage()``,
``usage_estimation``, ``update_tags()``, ``queue_position()``, ``queue_info()``,
``errored()``, ``properties()``, ``instance`` and ``private``, with the latest client's names
and shapes (``platform.md`` 5.6). They use only the job's client and its public members, so
they work the same on the 2023 routes (``local``, ``ibm_quantum``) and on the platform:

- usage comes from ``GET /jobs/{id}/metrics`` (``usage.qpu_charge_time_seconds`` and
  ``usage.status`` on the platform; ``usage.quantum_seconds`` or ``usage.seconds`` on the
  2023 routes);
- tags are replaced with ``PUT /jobs/{id}/tags`` (the client's ``update_tags``), then re-read;
- the queue position comes from the status (cached) or from the metrics
  (``position_in_queue``, ``estimated_start_time``, ``estimated_completion_time``);
- the estimate and ``private`` come from ``GET /jobs/{id}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .backend import BackendConfiguration
from .exceptions import IBMInputValueError, IBMRuntimeError, RequestsApiError
from .status import JOB_FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from ._job_state import JobState
    from .api.models import JobResponse
    from .api.protocol import JobApi


@dataclass(frozen=True)
class QueueInfo:
    """Where a queued job stands, as the server estimates it.

    Attributes:
        job_id: The job.
        position: Its place in the queue (``None`` when the server does not say).
        status: Its status when asked.
        estimated_start_time: When the server expects it to start (as sent).
        estimated_completion_time: When the server expects it to end (as sent).
    """

    job_id: str
    position: int | None
    status: JobStatus | None = None
    estimated_start_time: Any = None
    estimated_completion_time: Any = None

    def format(self) -> str:
        """A one-paragraph description for people."""
        parts = [f"Job {self.job_id}"]
        parts.append(f"queue position {self.position}" if self.position is not None else "")
        if self.estimated_start_time:
            parts.append(f"estimated start {self.estimated_start_time}")
        if self.estimated_completion_time:
            parts.append(f"estimated completion {self.estimated_completion_time}")
        return ", ".join(part for part in parts if part)

    def __str__(self) -> str:
        return self.format()


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class LaterJobMembers:
    """Mixed into :class:`~runtime_job.job.RuntimeJob` (see the module docstring).

    Relies on the job's ``_api_client``, ``_job_id``, ``_tags``, ``_state``, ``status()``,
    ``metrics()`` and ``backend()``.
    """

    _api_client: JobApi
    _job_id: str
    _tags: list[str] | None
    _state: JobState

    if TYPE_CHECKING:  # provided by the job

        def status(self) -> JobStatus: ...

        def metrics(self) -> dict[str, Any]: ...

        def backend(self) -> Any: ...

    def _later_cache(self) -> dict[str, Any]:
        cache: dict[str, Any] | None = self.__dict__.get("_later")
        if cache is None:
            cache = self.__dict__.setdefault("_later", {})
        return cache

    def _job_body(self) -> JobResponse:
        """``GET /jobs/{id}`` (without the inputs)."""
        model = self._api_client.fetch_job(self._job_id, exclude_params=True)
        extra = model.model_extra or {}
        cache = self._later_cache()
        if isinstance(extra.get("private"), bool):
            cache["private"] = extra["private"]
        estimate = extra.get("estimated_running_time_seconds")
        if isinstance(estimate, int | float) and not isinstance(estimate, bool):
            cache["usage_estimation"] = {"quantum_seconds": estimate}
        return model

    # -------------------------------------------------------------------------- usage

    def usage(self, partial: bool = False) -> float:
        """Quantum time the job was charged, in seconds.

        Args:
            partial: Also report the time of a job whose usage is not final yet (else 0).

        Returns:
            The platform's ``usage.qpu_charge_time_seconds`` (0 while ``usage.status`` is
            ``pending``, unless ``partial``); on the 2023 routes ``usage.quantum_seconds`` or,
            when that is 0, ``usage.seconds`` (0 until the job is final, unless ``partial``).

        Raises:
            IBMRuntimeError: The metrics could not be fetched.
        """
        usage = self.metrics().get("usage")
        if not isinstance(usage, dict):
            return 0
        if "qpu_charge_time_seconds" in usage:
            value = usage.get("qpu_charge_time_seconds") or 0
            pending = usage.get("status", "pending") == "pending"
        else:
            value = usage.get("quantum_seconds") or usage.get("seconds") or 0
            pending = not partial and self.status() not in JOB_FINAL_STATES
        if pending and not partial:
            return 0
        return float(value) if isinstance(value, float) else value

    @property
    def usage_estimation(self) -> dict[str, Any]:
        """The server's estimate of the job's quantum time: ``{"quantum_seconds": s}``.

        Read from ``GET /jobs/{id}`` (``estimated_running_time_seconds``) until the server
        gives one, then cached; ``{}`` while it gives none (always, on the 2023 routes).
        """
        cache = self._later_cache()
        if "usage_estimation" not in cache:
            self._job_body()
        estimate: dict[str, Any] = cache.get("usage_estimation", {})
        return dict(estimate)

    # --------------------------------------------------------------------------- tags

    def update_tags(self, new_tags: Sequence[str]) -> list[str]:
        """Replace the job's tags (``PUT /jobs/{id}/tags``) and return them as stored.

        Tags are a set on the server: duplicates are dropped.

        Args:
            new_tags: The new tags (an empty list removes them all).

        Returns:
            The job's tags, read back from the server.

        Raises:
            IBMInputValueError: ``new_tags`` is not a list of strings.
            IBMRuntimeError: The client cannot update tags.
            RequestsApiError: The request failed.
        """
        if isinstance(new_tags, str) or not all(isinstance(tag, str) for tag in new_tags):
            raise IBMInputValueError(f"new_tags must be a list of strings, not {new_tags!r}")
        updater = getattr(self._api_client, "update_tags", None)
        if updater is None:
            raise IBMRuntimeError(
                f"{type(self._api_client).__name__} cannot update the tags of job {self._job_id}."
            )
        updater(self._job_id, list(new_tags))
        self._tags = list(self._job_body().tags or [])
        return list(self._tags)

    # -------------------------------------------------------------------------- queue

    def queue_position(self, refresh: bool = False) -> int | None:
        """The job's place in the queue, while it is queued.

        Args:
            refresh: Ask the server (``GET /jobs/{id}/metrics``) instead of using the last
                position the status told.

        Returns:
            The position, or ``None`` when the job is not queued or the server does not say.
        """
        if refresh:
            info = self._refresh_queue_info()
            return info.position
        cached: QueueInfo | None = self._later_cache().get("queue_info")
        if cached is not None and cached.position is not None:
            return cached.position
        return self._state.queue_position

    def queue_info(self) -> QueueInfo | None:
        """The job's queue position and the server's time estimates (asked now).

        Returns:
            The information, or ``None`` when the server gives no position.
        """
        info = self._refresh_queue_info()
        return info if info.position is not None else None

    def _refresh_queue_info(self) -> QueueInfo:
        metrics = self.metrics()
        status = self.status()
        info = QueueInfo(
            job_id=self._job_id,
            position=_as_int(metrics.get("position_in_queue"))
            if status is JobStatus.QUEUED
            else None,
            status=status,
            estimated_start_time=metrics.get("estimated_start_time"),
            estimated_completion_time=metrics.get("estimated_completion_time"),
        )
        self._later_cache()["queue_info"] = info
        return info

    # ------------------------------------------------------------------------ the rest

    def errored(self) -> bool:
        """Whether the job ended in ``ERROR`` (asks for the status while it is not final)."""
        return self.status() is JobStatus.ERROR

    def properties(self, refresh: bool = False) -> BackendConfiguration | None:
        """The backend's properties when the job ran (item and attribute access).

        On the platform they are asked as they were when the job started running
        (``updated_before`` its ``timestamps.running``); the 2023 routes give the current
        ones. Cached unless ``refresh``.

        Returns:
            The properties, or ``None`` when the job has no backend or the backend none.

        Raises:
            IBMRuntimeError: They could not be fetched.
        """
        cache = self._later_cache()
        if "properties" in cache and not refresh:
            cached: BackendConfiguration | None = cache["properties"]
            return cached
        backend = self.backend()
        if backend is None:
            return None
        running = None
        timestamps = self.metrics().get("timestamps")
        if isinstance(timestamps, dict) and isinstance(timestamps.get("running"), str):
            text = timestamps["running"].replace("Z", "+00:00")
            try:
                running = datetime.fromisoformat(text)
            except ValueError:
                running = None
        client: Any = self._api_client
        try:
            try:
                raw = client.backend_properties(backend.name, datetime=running)
            except NotImplementedError:  # the 2023 routes take no date
                raw = client.backend_properties(backend.name)
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to get backend properties: {err}") from err
        value = BackendConfiguration(raw) if raw else None
        cache["properties"] = value
        return value

    @property
    def instance(self) -> str | None:
        """The instance the job belongs to: its CRN on the platform, its hub/group/project
        on ``ibm_quantum`` (when known), ``None`` on a local server."""
        finder = getattr(self._api_client, "instance_of_job", None)
        if finder is not None:
            crn: str = finder(self._job_id)
            return crn
        core = getattr(self, "_core", None)
        known = core.known.get("backend") if core is not None else None
        hgp = getattr(known, "_instance", None)
        return hgp if isinstance(hgp, str) else None

    @property
    def private(self) -> bool:
        """Whether the job is private (its inputs and results are not kept after it ends);
        read from ``GET /jobs/{id}`` once, ``False`` when the server does not say."""
        cache = self._later_cache()
        if "private" not in cache:
            self._job_body()
            cache.setdefault("private", False)
        return bool(cache["private"])


__all__ = ["LaterJobMembers", "QueueInfo"]
