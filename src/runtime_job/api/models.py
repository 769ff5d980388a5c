"""Wire models: the JSON bodies of the runtime API, shared by the client and the local server.

Models accept unknown fields (servers add fields over time) and make optional what a
server may omit. :func:`parse` is the one place where a server response is validated: a
malformed body becomes an :class:`~runtime_job.exceptions.ApiIBMProtocolError` that names
the job and the field, never a bare ``KeyError`` or ``ValidationError``.
"""

from __future__ import annotations

from typing import Any, Required, TypeVar

from pydantic import BaseModel, ConfigDict, Field, InstanceOf, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it, not typing's, before 3.12

from ..exceptions import ApiIBMProtocolError


class WireModel(BaseModel):
    """Base of every wire model: unknown fields are kept, names are the wire's."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class JobState(WireModel):
    """``state`` of a job."""

    status: str | None = None
    """``QUEUED``, ``RUNNING``, ``COMPLETED``, ``FAILED`` or ``CANCELLED`` (any case)."""
    reason: str | None = None
    """Why the job is in this state, e.g. ``RAN TOO LONG``."""


class JobProgram(WireModel):
    """``program`` of a job."""

    id: str = ""
    """The program id."""


class JobResponse(WireModel):
    """A job, as returned by ``GET /jobs/{id}`` and in job listings."""

    id: str
    """The job id."""
    state: JobState | None = None
    """The job's state (absent from some listings)."""
    backend: str | None = None
    """Name of the backend the job runs on."""
    params: Any = None
    """The inputs: a dict, a JSON string, or a list whose first item is the inputs."""
    program: JobProgram | None = None
    """The program the job runs."""
    created: str | None = None
    """Creation time, ISO 8601 in UTC."""
    session_id: str | None = None
    """The session the job belongs to."""
    tags: list[str] | None = None
    """Tags given at submission."""
    hub: str | None = None
    """ibm_quantum hub."""
    group: str | None = None
    """ibm_quantum group."""
    project: str | None = None
    """ibm_quantum project."""
    runtime: str | None = None
    """The image the job runs in."""
    cost: int | None = None
    """Maximum execution time in seconds."""


class JobListResponse(WireModel):
    """``GET /jobs``: one page of jobs and the total matching the filters."""

    jobs: list[InstanceOf[dict[str, Any]]]
    """The jobs of this page, as objects (checked, not copied; :class:`JobPage` checks the
    fields of each)."""
    count: int
    """Total number of jobs matching the filters, ignoring limit and offset."""


_LISTED = ConfigDict(extra="ignore")
"""Listed jobs keep only the fields the client reads."""


@with_config(_LISTED)
class JobListState(TypedDict, total=False):
    """``state`` of a listed job (the fields of :class:`JobState`)."""

    status: str | None
    reason: str | None


@with_config(_LISTED)
class JobListProgram(TypedDict, total=False):
    """``program`` of a listed job (the fields of :class:`JobProgram`)."""

    id: str


@with_config(_LISTED)
class JobListItem(TypedDict, total=False):
    """A listed job: the fields of :class:`JobResponse`, as a dict without the unknown ones.

    A listing can hold thousands of jobs: a dict per job validates about three times
    faster than three models per job.
    """

    id: Required[str]
    state: JobListState | None
    backend: str | None
    params: Any
    program: JobListProgram | None
    created: str | None
    session_id: str | None
    tags: list[str] | None
    hub: str | None
    group: str | None
    project: str | None
    runtime: str | None
    cost: int | None


class JobPage(WireModel):
    """``GET /jobs`` with each job's fields checked (see :func:`parse_jobs`)."""

    jobs: list[JobListItem]
    """The jobs of this page."""
    count: int
    """Total number of jobs matching the filters, ignoring limit and offset."""
    next_cursor: str | None = None
    """Where the next page starts (``cursor=``), on servers with the listing extension."""


class RunJobRequest(WireModel):
    """Body of ``POST /jobs``."""

    program_id: str
    """The program to run."""
    params: Any = None
    """Inputs, encoded with the runtime codec."""
    runtime: str | None = None
    """Image, ``name:tag``."""
    log_level: str | None = None
    """Log level of the program."""
    backend: str | None = None
    """Backend name."""
    session_id: str | None = None
    """Session to run the job in."""
    tags: list[str] | None = None
    """Job tags."""
    cost: int | None = None
    """Maximum execution time in seconds."""
    start_session: bool | None = None
    """Start a session with this job."""
    session_time: int | None = None
    """Maximum session time in seconds."""
    hub: str | None = None
    """ibm_quantum hub."""
    group: str | None = None
    """ibm_quantum group."""
    project: str | None = None
    """ibm_quantum project."""


class RunJobResponse(WireModel):
    """Response of ``POST /jobs``."""

    id: str
    """The new job's id."""
    backend: str | None = None
    """The backend the job was placed on."""


class BackendStatusResponse(WireModel):
    """``GET /backends/{name}/status``."""

    state: bool = False
    """Whether the backend is operational."""
    status: str = ""
    """Status message, ``active`` when all is well."""
    length_queue: int = 0
    """Jobs waiting."""
    backend_version: str = "0.0.0"
    """Backend version."""


class BackendListResponse(WireModel):
    """``GET /backends``."""

    devices: list[str]
    """Backend names."""


class VersionResponse(WireModel):
    """``GET {auth}/version`` of the ibm_quantum login API."""

    new_api: bool = True
    """Always true on a usable server."""
    api_auth: str | None = Field(default=None, alias="api-auth")
    """Version of the authentication API; must be present."""


class LoginResponse(WireModel):
    """``POST {auth}/users/loginWithToken``."""

    id: str
    """The access token for every later call."""


class ServiceUrls(WireModel):
    """``urls.services`` of ``/users/me``."""

    runtime: str | None = None
    """Base URL of the runtime API."""


class UserUrls(WireModel):
    """``urls`` of ``/users/me``."""

    http: str
    """Base URL of the ``Network`` API."""
    ws: str | None = None
    """Unused websocket URL."""
    services: ServiceUrls = Field(default_factory=ServiceUrls)
    """Service base URLs."""


class UserInfoResponse(WireModel):
    """``GET {auth}/users/me``."""

    urls: UserUrls
    """Where the services are."""


class ErrorDetail(WireModel):
    """One entry of a runtime-style error body."""

    code: int | str | None = None
    """Machine-readable code."""
    message: str = ""
    """Human-readable message."""
    more_info: str | None = None
    """Link to more information."""


class ErrorResponse(WireModel):
    """A runtime-style error body: ``{"errors": [...], "trace": ...}``."""

    errors: list[ErrorDetail]
    """What went wrong."""
    trace: str | None = None
    """Request id for support."""


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, what: str, job_id: str | None = None) -> M:
    """Validate a server response, naming the job and field on failure.

    Args:
        model: The expected model.
        data: The decoded JSON body.
        what: What the body is, for the message (e.g. ``"job"``).
        job_id: The job the body is about, when there is one.

    Raises:
        ApiIBMProtocolError: The body does not have the expected shape.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise _malformed(what, job_id, first["loc"], first["msg"]) from err


def parse_jobs(data: Any) -> JobPage:
    """Validate a page of ``GET /jobs`` in one pass, each job's fields included.

    Raises:
        ApiIBMProtocolError: The page or one of its jobs is malformed. The message names
            the job by its id and the field in it, or else the field's path in the page
            (``jobs.3.id``).
    """
    try:
        return JobPage.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = first["loc"]
        jobs = data.get("jobs") if isinstance(data, dict) else None
        item = None
        if isinstance(jobs, list) and len(loc) > 1 and loc[0] == "jobs":
            index = loc[1]
            item = jobs[index] if isinstance(index, int) else None
        job_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise _malformed("job list", None, loc, first["msg"]) from err
        raise _malformed("job", job_id, loc[2:], first["msg"]) from err


def _malformed(
    what: str, job_id: str | None, loc: tuple[int | str, ...], msg: str
) -> ApiIBMProtocolError:
    field = ".".join(str(part) for part in loc) or "<body>"
    subject = f"{what} {job_id}" if job_id else what
    return ApiIBMProtocolError(
        f"Malformed {subject} response from the server: field '{field}': {msg}"
    )


__all__ = [
    "BackendListResponse",
    "BackendStatusResponse",
    "ErrorDetail",
    "ErrorResponse",
    "JobListItem",
    "JobListProgram",
    "JobListResponse",
    "JobListState",
    "JobPage",
    "JobProgram",
    "JobResponse",
    "JobState",
    "LoginResponse",
    "RunJobRequest",
    "RunJobResponse",
    "ServiceUrls",
    "UserInfoResponse",
    "UserUrls",
    "VersionResponse",
    "WireModel",
    "parse",
    "parse_jobs",
]
