"""REST clients: :class:`RuntimeClient` (one method per runtime endpoint) and :class:`AuthClient`.

The method names, arguments and return values are the reference's, so code (and tests)
written against qiskit-ibm-runtime's ``RuntimeClient`` keep working. Every call goes through
the client's one :class:`~runtime_job.api.session.HttpSession`, which owns timeouts,
retries and error mapping; responses are validated against the wire models of
:mod:`runtime_job.api.models` and returned as the server's own JSON (unknown fields kept).

Example::

    params = ClientParameters(channel="local", token="secret", url="http://127.0.0.1:8000")
    with RuntimeClient(params) as client:
        job = client.program_run("hello-world", "local-sim", {"iterations": 2},
                                 image=None, hgp=None, log_level=None, session_id=None)
        print(client.job_get(job["id"])["state"])
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import BaseModel

from .._redact import redact, scrub_url
from ..exceptions import (
    ApiIBMProtocolError,
    IBMInputValueError,
    IBMNotAuthorizedError,
)
from .body import decode_json
from .errors import LOGIN_PATH
from .models import (
    BackendListResponse,
    BackendStatusResponse,
    JobListResponse,
    JobPage,
    JobResponse,
    LoginResponse,
    RunJobResponse,
    UserInfoResponse,
    parse,
    parse_jobs,
)
from .params import ClientParameters
from .retry import RetryPolicy
from .session import IDEMPOTENCY_KEY_HEADER, HttpSession

if TYPE_CHECKING:
    from ..timing import Deadline
    from .protocol import StreamListener, StreamSubscription
    from .stream import StreamHub

logger = logging.getLogger(__name__)

AUTH_URL = "https://auth.quantum-computing.ibm.com/api"
"""The ibm_quantum authentication URL named in the version-check error."""
_LOG_EXCERPT_CHARS = 1000
_STREAMS_PRUNE_AT = 16
"""Streams a client tracks before it first forgets those that ended (then twice as many)."""

M = TypeVar("M", bound=BaseModel)


def _q(segment: str) -> str:
    """``segment`` quoted for use as one path segment (``/`` included)."""
    return quote(str(segment), safe="")


def split_instance(instance: str) -> tuple[str, str, str]:
    """Split ``"hub/group/project"`` into its three parts.

    Args:
        instance: The instance string.

    Returns:
        ``(hub, group, project)``.

    Raises:
        IBMInputValueError: ``instance`` does not have exactly three ``/``-separated parts.
    """
    parts = instance.split("/") if isinstance(instance, str) else []
    if len(parts) != 3:
        raise IBMInputValueError(
            f"Input instance value {instance} is not in the correct hub/group/project format."
        )
    return parts[0], parts[1], parts[2]


def to_utc_isoformat(value: datetime | str) -> str:
    """The ISO 8601 text of ``value`` in UTC, for ``created_after``/``created_before``.

    A naive datetime is taken as local time; an aware one is converted (not overwritten,
    unlike the reference). A string is parsed with :meth:`datetime.fromisoformat` first.

    Args:
        value: A datetime, or an ISO 8601 string.

    Returns:
        E.g. ``"2023-01-01T12:00:00+00:00"``.

    Raises:
        IBMInputValueError: ``value`` is a string that is not an ISO 8601 date-time.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as err:
            raise IBMInputValueError(f"Invalid date-time {value!r}: use ISO 8601.") from err
    return value.astimezone(UTC).isoformat()


def _validated(
    model: type[M],
    data: Any,
    what: str,
    response: requests.Response,
    job_id: str | None = None,
) -> M:
    """:func:`parse`, with the response's status, URL and body attached to any error."""
    try:
        return parse(model, data, what, job_id)
    except ApiIBMProtocolError as err:
        raise _with_response(err, response) from err


def _with_response(err: ApiIBMProtocolError, response: requests.Response) -> ApiIBMProtocolError:
    """``err`` again, with the response's status, URL and body excerpt attached."""
    return ApiIBMProtocolError(
        err.message,
        status_code=response.status_code,
        url=scrub_url(response.url or ""),
        body_excerpt=redact(response.text[:500]),
    )


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    """The body of ``response`` as a JSON object, or a protocol error."""
    data = decode_json(response, what)
    if not isinstance(data, dict):
        raise ApiIBMProtocolError(
            f"Expected a JSON object as the {what}, got {type(data).__name__}.",
            status_code=response.status_code,
            url=scrub_url(response.url or ""),
            body_excerpt=redact(response.text[:500]),
        )
    return data


class RuntimeClient:
    """The runtime REST API, one method per endpoint (the reference's names and semantics).

    Implements :class:`~runtime_job.api.protocol.JobApi`,
    :class:`~runtime_job.api.protocol.ExternalResultApi` and
    :class:`~runtime_job.api.protocol.StreamingApi`.

    Args:
        params: Where the service is and how to authenticate. The runtime base URL and the
            token are read at each request, so updating them after login takes effect.
        retry_policy: How failed requests are retried (default: the session's default).
        hub: The stream hub that carries this client's job streams (default ``None``: the
            process's, :func:`runtime_job.api.stream.default_hub`). :meth:`close` cancels
            the streams this client opened, whichever hub carries them.

    Attributes:
        _session: The client's one HTTP session (the reference's name; tests reach it).
    """

    def __init__(
        self,
        params: ClientParameters,
        retry_policy: RetryPolicy | None = None,
        hub: StreamHub | None = None,
    ) -> None:
        self._params = params
        self._session = HttpSession(params, retry_policy=retry_policy)
        self._hub = hub
        self._streams_lock = threading.Lock()
        self._streams: list[StreamSubscription] = []  # opened here; ended ones pruned
        self._prune_at = _STREAMS_PRUNE_AT
        self._connect_next = threading.local()  # prepare_streams -> the next open_stream

    # ------------------------------------------------------------------------------ jobs

    def program_run(
        self,
        program_id: str,
        backend_name: str | None,
        params: Any,
        image: str | None,
        hgp: str | None,
        log_level: str | None,
        session_id: str | None,
        job_tags: Sequence[str] | None = None,
        max_execution_time: int | None = None,
        start_session: bool | None = False,
        session_time: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /jobs``: run a program.

        The body keys appear in the reference's order, each only when set: ``program_id``,
        ``params``, ``runtime``, ``log_level``, ``backend``, ``session_id``, ``tags``,
        ``cost``, ``start_session`` with ``session_time``, then ``hub``, ``group`` and
        ``project``. It is encoded with the runtime codec and sent as
        ``application/json`` with an ``Idempotency-Key``, so a retried submission never
        creates a second job on a server that honours the key.

        Args:
            program_id: The program to run.
            backend_name: The backend, or ``None`` to let the server choose.
            params: The program's inputs (encoded with ``RuntimeEncoder``).
            image: ``name:tag`` of the image to run in.
            hgp: ``hub/group/project`` (ibm_quantum).
            log_level: Log level of the program.
            session_id: Session to run the job in.
            job_tags: Tags for the job.
            max_execution_time: Maximum execution time in seconds (``cost``).
            start_session: Start a session with this job.
            session_time: Maximum session time, sent with ``start_session``.
            idempotency_key: The key to send (default: a fresh UUID for this call).

        Returns:
            The server's response (``id``, ``backend``, ...).

        Raises:
            IBMInputValueError: ``hgp`` is not ``hub/group/project``.
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a job-creation response.
        """
        from ..codec import dumps

        hub_group_project = split_instance(hgp) if hgp else None
        payload: dict[str, Any] = {"program_id": program_id, "params": params}
        if image:
            payload["runtime"] = image
        if log_level:
            payload["log_level"] = log_level
        if backend_name:
            payload["backend"] = backend_name
        if session_id:
            payload["session_id"] = session_id
        if job_tags:
            payload["tags"] = list(job_tags)
        if max_execution_time:
            payload["cost"] = max_execution_time
        if start_session:
            payload["start_session"] = start_session
            payload["session_time"] = session_time
        if hub_group_project and all(hub_group_project):
            payload["hub"], payload["group"], payload["project"] = hub_group_project
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_KEY_HEADER: idempotency_key or str(uuid.uuid4()),
        }
        response = self._session.request(
            "POST", "/jobs", data=dumps(payload).encode("utf-8"), headers=headers
        )
        data = _json_object(response, "job submission response")
        _validated(RunJobResponse, data, "job submission", response)
        return data

    def fetch_job(
        self,
        job_id: str,
        *,
        exclude_params: bool | None = None,
        deadline: Deadline | None = None,
    ) -> JobResponse:
        """``GET /jobs/{id}``: a job, validated once into its wire model.

        Args:
            job_id: The job.
            exclude_params: Ask the server to leave out the job's inputs.
            deadline: The caller's deadline (see :meth:`HttpSession.request`).

        Returns:
            The job (unknown fields kept as extras).

        Raises:
            NotFoundError: No such job (404).
            RequestsApiError: The request failed otherwise.
            ApiIBMProtocolError: The response is not a job.
            UserTimeoutExceededError: ``deadline`` passed.
        """
        return self._job(job_id, exclude_params, deadline)[1]

    def job_get(
        self,
        job_id: str,
        exclude_params: bool | None = None,
        *,
        deadline: Deadline | None = None,
    ) -> dict[str, Any]:
        """``GET /jobs/{id}``: a job, as the server's JSON object (the reference's shape).

        The same request and validation as :meth:`fetch_job`.

        Args:
            job_id: The job.
            exclude_params: Ask the server to leave out the job's inputs.
            deadline: The caller's deadline (see :meth:`HttpSession.request`).

        Returns:
            The job as the server sent it.

        Raises:
            NotFoundError: No such job (404).
            RequestsApiError: The request failed otherwise.
            ApiIBMProtocolError: The response is not a job.
        """
        return self._job(job_id, exclude_params, deadline)[0]

    def _job(
        self, job_id: str, exclude_params: bool | None, deadline: Deadline | None
    ) -> tuple[dict[str, Any], JobResponse]:
        """One ``GET /jobs/{id}``: the body as sent, and the same body validated (once)."""
        query = {"exclude_params": "true"} if exclude_params else None
        response = self._session.request(
            "GET", f"/jobs/{_q(job_id)}", params=query, deadline=deadline
        )
        data = _json_object(response, "job")
        model = _validated(JobResponse, data, "job", response, job_id)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Runtime job get response: %s", response.text[:_LOG_EXCERPT_CHARS])
        return data, model

    def jobs_get(
        self,
        limit: int | None = None,
        skip: int | None = None,
        backend_name: str | None = None,
        pending: bool | None = None,
        program_id: str | None = None,
        hub: str | None = None,
        group: str | None = None,
        project: str | None = None,
        job_tags: Sequence[str] | None = None,
        session_id: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        descending: bool = True,
        *,
        exclude_params: bool | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """``GET /jobs``: one page of jobs.

        Query parameters, in this order, each only when set (truthy): ``limit``,
        ``offset`` (from ``skip``), ``backend``, ``pending`` (whenever not ``None``),
        ``program``, ``tags`` (repeated), ``session_id``, ``created_after``,
        ``created_before`` (converted to UTC), ``sort=ASC`` (only when ``descending`` is
        false) and ``provider`` (when hub, group and project are all given); then, only
        when given, ``exclude_params=true`` (as the hosted API takes it) and ``cursor``
        (our server's extension: the ``next_cursor`` of the previous page).

        Args:
            limit: Page size.
            skip: Jobs to skip.
            backend_name: Only jobs on this backend.
            pending: ``True``: queued or running jobs; ``False``: final ones.
            program_id: Only jobs of this program.
            hub: ibm_quantum hub.
            group: ibm_quantum group.
            project: ibm_quantum project.
            job_tags: Only jobs carrying all these tags.
            session_id: Only jobs of this session.
            created_after: Only jobs created after this time (naive: local time).
            created_before: Only jobs created before this time (naive: local time).
            descending: Newest first (the server's default) when true.
            exclude_params: Ask the server to leave out each job's inputs.
            cursor: Continue after the page whose ``next_cursor`` this is (a stable
                listing on servers with the extension; see ``wire-extensions.md``).

        Returns:
            ``{"jobs": [...], "count": total}`` as the server sent it (with
            ``next_cursor`` when the server has the extension and there is more).

        Raises:
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a job list.
        """
        response = self._jobs_response(
            limit=limit,
            skip=skip,
            backend_name=backend_name,
            pending=pending,
            program_id=program_id,
            hub=hub,
            group=group,
            project=project,
            job_tags=job_tags,
            session_id=session_id,
            created_after=created_after,
            created_before=created_before,
            descending=descending,
            exclude_params=exclude_params,
            cursor=cursor,
        )
        data = _json_object(response, "job list")
        _validated(JobListResponse, data, "job list", response)
        return data

    def fetch_jobs(
        self,
        *,
        limit: int | None = None,
        skip: int | None = None,
        backend_name: str | None = None,
        pending: bool | None = None,
        program_id: str | None = None,
        hub: str | None = None,
        group: str | None = None,
        project: str | None = None,
        job_tags: Sequence[str] | None = None,
        session_id: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        descending: bool = True,
        exclude_params: bool | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """``GET /jobs``: one page of jobs, each job's fields validated once.

        Args:
            limit: As :meth:`jobs_get`; so are the other filters.
            skip: Jobs to skip.
            backend_name: Only jobs on this backend.
            pending: ``True``: queued or running jobs; ``False``: final ones.
            program_id: Only jobs of this program.
            hub: ibm_quantum hub.
            group: ibm_quantum group.
            project: ibm_quantum project.
            job_tags: Only jobs carrying all these tags.
            session_id: Only jobs of this session.
            created_after: Only jobs created after this time (naive: local time).
            created_before: Only jobs created before this time (naive: local time).
            descending: Newest first (the server's default) when true.
            exclude_params: Ask the server to leave out each job's inputs.
            cursor: The ``next_cursor`` of the previous page (our server's extension).

        Returns:
            The page (``jobs`` as plain dicts of the known fields, ``count``, and
            ``next_cursor`` on servers with the extension).

        Raises:
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a job list, or a job in it is
                malformed (the message names the job and the field).
        """
        response = self._jobs_response(
            limit=limit,
            skip=skip,
            backend_name=backend_name,
            pending=pending,
            program_id=program_id,
            hub=hub,
            group=group,
            project=project,
            job_tags=job_tags,
            session_id=session_id,
            created_after=created_after,
            created_before=created_before,
            descending=descending,
            exclude_params=exclude_params,
            cursor=cursor,
        )
        data = decode_json(response, "job list")
        try:
            return parse_jobs(data)
        except ApiIBMProtocolError as err:
            raise _with_response(err, response) from err

    def _jobs_response(
        self,
        limit: int | None = None,
        skip: int | None = None,
        backend_name: str | None = None,
        pending: bool | None = None,
        program_id: str | None = None,
        hub: str | None = None,
        group: str | None = None,
        project: str | None = None,
        job_tags: Sequence[str] | None = None,
        session_id: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        descending: bool = True,
        exclude_params: bool | None = None,
        cursor: str | None = None,
    ) -> requests.Response:
        """The ``GET /jobs`` request of :meth:`jobs_get` and :meth:`fetch_jobs`."""
        query: list[tuple[str, str | int]] = []
        if limit:
            query.append(("limit", limit))
        if skip:
            query.append(("offset", skip))
        if backend_name:
            query.append(("backend", backend_name))
        if pending is not None:
            query.append(("pending", "true" if pending else "false"))
        if program_id:
            query.append(("program", program_id))
        if job_tags:
            query.extend(("tags", tag) for tag in job_tags)
        if session_id:
            query.append(("session_id", session_id))
        if created_after:
            query.append(("created_after", to_utc_isoformat(created_after)))
        if created_before:
            query.append(("created_before", to_utc_isoformat(created_before)))
        if descending is False:
            query.append(("sort", "ASC"))
        if hub and group and project:
            query.append(("provider", f"{hub}/{group}/{project}"))
        if exclude_params:
            query.append(("exclude_params", "true"))
        if cursor is not None:
            query.append(("cursor", cursor))
        return self._session.request("GET", "/jobs", params=query)

    def job_results(self, job_id: str, *, deadline: Deadline | None = None) -> bytes:
        """``GET /jobs/{id}/results``: the result, as the body's UTF-8 bytes.

        Bytes, not text: results can be hundreds of MB, and the decoders read bytes directly,
        which spares a decoded copy. The body is read in one buffer (``large_body``).

        Args:
            job_id: The job.
            deadline: The caller's deadline (see :meth:`HttpSession.request`).

        Returns:
            The body (JSON from the program's codec, ``{"url": ...}``, or an error text).

        Raises:
            RequestsApiError: The request failed.
        """
        return self._session.request(
            "GET", f"/jobs/{_q(job_id)}/results", large_body=True, deadline=deadline
        ).content

    def job_interim_results(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/interim_results``: the interim results text.

        Args:
            job_id: The job.
            deadline: The caller's deadline (see :meth:`HttpSession.request`).

        Returns:
            The body text.

        Raises:
            RequestsApiError: The request failed.
        """
        return self._session.request(
            "GET", f"/jobs/{_q(job_id)}/interim_results", deadline=deadline
        ).text

    def job_cancel(self, job_id: str, *, deadline: Deadline | None = None) -> None:
        """``POST /jobs/{id}/cancel`` (no body; retried like an idempotent call).

        Args:
            job_id: The job.
            deadline: The caller's deadline (see :meth:`HttpSession.request`).

        Raises:
            ConflictError: The job cannot be cancelled (409).
            RequestsApiError: The request failed otherwise.
        """
        self._session.request("POST", f"/jobs/{_q(job_id)}/cancel", deadline=deadline)

    def job_delete(self, job_id: str) -> None:
        """``DELETE /jobs/{id}``.

        Args:
            job_id: The job.

        Raises:
            RequestsApiError: The request failed (404: no such job).
        """
        self._session.request("DELETE", f"/jobs/{_q(job_id)}")

    def job_logs(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/logs``: the job's log text.

        Args:
            job_id: The job.
            deadline: The caller's deadline (see :meth:`HttpSession.request`).

        Returns:
            The logs.

        Raises:
            NotFoundError: No logs (404).
            RequestsApiError: The request failed otherwise.
        """
        return self._session.request("GET", f"/jobs/{_q(job_id)}/logs", deadline=deadline).text

    def job_metadata(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/metrics``: the job's metrics as JSON text.

        Args:
            job_id: The job.
            deadline: The caller's deadline (see :meth:`HttpSession.request`).

        Returns:
            The body text.

        Raises:
            RequestsApiError: The request failed.
        """
        return self._session.request("GET", f"/jobs/{_q(job_id)}/metrics", deadline=deadline).text

    def update_tags(self, job_id: str, tags: Sequence[str]) -> None:
        """``PUT /jobs/{id}/tags`` with ``{"tags": [...]}`` (later clients' ``update_tags``).

        Raises:
            RequestsApiError: The request failed (404: no such job).
        """
        self._session.request("PUT", f"/jobs/{_q(job_id)}/tags", json_body={"tags": list(tags)})

    def instance_usage(self) -> dict[str, Any]:
        """``GET /instances/usage`` (later clients' ``service.usage()``), with
        ``usage_remaining_seconds`` added when the server gives a limit.

        Raises:
            RequestsApiError: The request failed.
        """
        usage = _json_object(self._session.request("GET", "/instances/usage"), "instance usage")
        limit = usage.get("usage_limit_seconds", usage.get("usage_allocation_seconds"))
        consumed = usage.get("usage_consumed_seconds")
        if isinstance(limit, int | float) and isinstance(consumed, int | float):
            usage["usage_remaining_seconds"] = max(limit - consumed, 0)
        return usage

    def close_session(self, session_id: str) -> None:
        """``DELETE /sessions/{id}/close``.

        Args:
            session_id: The session.

        Raises:
            RequestsApiError: The request failed.
        """
        self._session.request("DELETE", f"/sessions/{_q(session_id)}/close")

    def external_result(self, url: str) -> bytes:
        """Download a result stored elsewhere (``{"url": ...}``).

        Sent with the client's TLS verification, proxies and timeouts and the usual retry
        policy, but without authentication headers; the HTTP status is checked.

        Args:
            url: The ``http(s)://`` URL from the result.

        Returns:
            The downloaded bytes.

        Raises:
            ApiIBMProtocolError: ``url`` is not an ``http(s)`` URL.
            RequestsApiError: The download failed.
        """
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ApiIBMProtocolError(
                f"External result URL {redact(str(url))!r} is not an http(s) URL."
            )
        return self._session.request("GET", url, auth=False, large_body=True).content

    def open_stream(self, job_id: str, listener: StreamListener) -> StreamSubscription:
        """Start streaming ``job_id``'s results into ``listener`` (returns at once).

        Delegates to the client's stream hub (:mod:`runtime_job.api.stream`).

        Args:
            job_id: The job.
            listener: Receives the frames, then the end.

        Returns:
            A handle to cancel the stream; :meth:`close` cancels it too.
        """
        base = f"{self._session.base_url}/jobs"
        # Our sequenced protocol (?seq=1&after=N) only for a server that said it offers
        # our extensions (X-Idempotency-Supported on a REST answer); any other server gets
        # exactly the reference's URL.
        options: dict[str, Any] = {"sequenced": self._session.idempotency_supported(base)}
        if getattr(self._connect_next, "armed", False):
            self._connect_next.armed = False
            options["connect_now"] = True  # see prepare_streams
        subscription = self._stream_hub().subscribe(
            job_id=job_id,
            url=f"{self._params.get_websocket_base_url()}/stream/jobs/{_q(job_id)}",
            params=self._params,
            listener=listener,
            **options,
        )
        with self._streams_lock:
            streams = self._streams
            if len(streams) >= self._prune_at:
                streams[:] = [sub for sub in streams if sub.active]
                self._prune_at = max(_STREAMS_PRUNE_AT, 2 * len(streams))
            streams.append(subscription)
        return subscription

    def prepare_streams(self) -> None:
        """Get ready for a stream that this thread opens next (``run(..., callback=...)``).

        A job starts publishing as soon as the server accepts it. Warming the hub keeps its
        first import and thread starts out of the time the first message waits, and the
        next :meth:`open_stream` called by this thread completes its handshake before it
        returns: a server that does not replay what a stream missed (the hosted service)
        then has the subscriber before ``run()`` returns, even in a burst of jobs.
        """
        self._stream_hub().warm()
        self._connect_next.armed = True

    def _stream_hub(self) -> StreamHub:
        """The hub given to the constructor, else the process's."""
        if self._hub is not None:
            return self._hub
        from .stream import default_hub

        return default_hub()

    def _cancel_streams(self) -> None:
        """Cancel every stream this client opened that has not ended (never raises)."""
        with self._streams_lock:
            streams, self._streams = self._streams, []
        for subscription in streams:
            try:
                subscription.cancel()
            except Exception:  # a hub given by the caller: closing must still finish
                logger.debug("Cancelling a stream at close failed.", exc_info=True)

    # -------------------------------------------------------------------------- backends

    def list_backends(self, hgp: str | None = None) -> list[str]:
        """``GET /backends``: the names of the backends available.

        Args:
            hgp: ``hub/group/project`` to list for (ibm_quantum), sent as ``provider``.

        Returns:
            Backend names.

        Raises:
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response has no ``devices`` list.
        """
        query = {"provider": hgp} if hgp else None
        response = self._session.request("GET", "/backends", params=query)
        data = _json_object(response, "backend list")
        model = _validated(BackendListResponse, data, "backend list", response)
        return list(model.devices)

    def backends_by_instance(self, hgps: Sequence[str]) -> dict[str, list[str]]:
        """The backends of each ``hub/group/project``, one request each, in order.

        Args:
            hgps: The instances, in the order to query them.

        Returns:
            Instance → backend names, in the order given.

        Raises:
            RequestsApiError: A request failed.
        """
        return {hgp: self.list_backends(hgp) for hgp in hgps}

    def backend_configuration(self, backend_name: str) -> dict[str, Any]:
        """``GET /backends/{name}/configuration``.

        Args:
            backend_name: The backend.

        Returns:
            The configuration as the server sent it.

        Raises:
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a JSON object.
        """
        response = self._session.request("GET", f"/backends/{_q(backend_name)}/configuration")
        return _json_object(response, "backend configuration")

    def backend_status(self, backend_name: str) -> dict[str, Any]:
        """``GET /backends/{name}/status``, mapped as the reference maps it.

        Args:
            backend_name: The backend.

        Returns:
            ``backend_name``, ``backend_version`` (default ``"0.0.0"``), ``status_msg``
            (the server's ``status``), ``operational`` (its ``state``) and ``pending_jobs``
            (its ``length_queue``, never negative).

        Raises:
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a backend status.
        """
        response = self._session.request("GET", f"/backends/{_q(backend_name)}/status")
        data = _json_object(response, "backend status")
        model = _validated(BackendStatusResponse, data, "backend status", response)
        return {
            "backend_name": backend_name,
            "backend_version": model.backend_version,
            "status_msg": model.status,
            "operational": bool(model.state),
            "pending_jobs": max(model.length_queue, 0),
        }

    def backend_properties(self, backend_name: str, datetime: Any = None) -> dict[str, Any]:
        """``GET /backends/{name}/properties``.

        Args:
            backend_name: The backend.
            datetime: Not supported (as in the reference).

        Returns:
            The properties with ``backend_name`` set, or ``{}`` when the backend has none.

        Raises:
            NotImplementedError: ``datetime`` was given.
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a JSON object.
        """
        if datetime:
            raise NotImplementedError("'datetime' is not supported with cloud runtime.")
        response = self._session.request("GET", f"/backends/{_q(backend_name)}/properties")
        data = _json_object(response, "backend properties")
        if data:
            data["backend_name"] = backend_name
        return data

    def backend_pulse_defaults(self, backend_name: str) -> dict[str, Any]:
        """``GET /backends/{name}/defaults``: the pulse defaults.

        Args:
            backend_name: The backend.

        Returns:
            The defaults as the server sent them.

        Raises:
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a JSON object.
        """
        response = self._session.request("GET", f"/backends/{_q(backend_name)}/defaults")
        return _json_object(response, "backend pulse defaults")

    # ------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the client's connections and cancel the job streams it opened."""
        self._cancel_streams()
        self._session.close()

    def __enter__(self) -> RuntimeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._session!r}>"


class AuthClient:
    """The ibm_quantum login bootstrap (``/version``, login, ``/users/me``, ``/Network``).

    The API token is sent once, in the login body; every later call carries the access
    token that login returns, as ``X-Access-Token``.

    Args:
        params: ``url`` is the authentication URL (fixed at construction); ``token`` is the
            API token, or an access token when :meth:`login` is skipped. TLS, proxies and
            timeouts apply as for the runtime.
        retry_policy: How failed requests are retried.
    """

    def __init__(self, params: ClientParameters, retry_policy: RetryPolicy | None = None) -> None:
        self._params = params
        self._auth_url = (params.url or AUTH_URL).rstrip("/")
        self._session = HttpSession(params, base_url=self._auth_url, retry_policy=retry_policy)
        self._access_token: str | None = None

    def _token_headers(self) -> dict[str, str]:
        return {"X-Access-Token": self._access_token or self._params.token}

    def version(self) -> dict[str, Any]:
        """``GET /version``, checking that the URL is an authentication API.

        Returns:
            The version information, with ``new_api`` true.

        Raises:
            IBMInputValueError: The answer is not JSON, or lacks ``api-auth``.
            RequestsApiError: The request failed.
        """
        response = self._session.request("GET", "/version", auth=False)
        try:
            body = decode_json(response, "version")
        except ApiIBMProtocolError:
            body = None
        # As the reference: any JSON object is a "new API"; anything else is not.
        info: dict[str, Any] = {**body, "new_api": True} if isinstance(body, dict) else {}
        if not info.get("new_api") or "api-auth" not in info:
            raise IBMInputValueError(
                f"The URL specified ({self._auth_url}) is not an IBM Quantum authentication "
                f"URL. Valid authentication URL: {AUTH_URL}."
            )
        return info

    def login(self, api_token: str) -> str:
        """``POST /users/loginWithToken``: trade the API token for an access token.

        Args:
            api_token: The user's API token.

        Returns:
            The access token.

        Raises:
            RequestsApiError: Login failed (status 401 for a bad token).
            AuthenticationLicenseError: The account must accept a license first.
            ApiIBMProtocolError: The response has no ``id``.
        """
        self._session.add_secret(api_token)
        response = self._session.request(
            "POST",
            LOGIN_PATH,
            json_body={"apiToken": api_token},
            auth=False,
            idempotent=True,  # minting a second access token is harmless
        )
        data = _json_object(response, "login response")
        token = _validated(LoginResponse, data, "login", response).id
        self._session.add_secret(token)
        self._access_token = token
        return token

    def user_info(self) -> dict[str, Any]:
        """``GET /users/me``: the account's service URLs.

        Returns:
            The user information as the server sent it (``urls.http``,
            ``urls.services.runtime``, ...).

        Raises:
            IBMNotAuthorizedError: The account has no runtime service URL.
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response has no ``urls.http``.
        """
        response = self._session.request(
            "GET", "/users/me", headers=self._token_headers(), auth=False
        )
        data = _json_object(response, "user information")
        model = _validated(UserInfoResponse, data, "user information", response)
        if not model.urls.services.runtime:
            raise IBMNotAuthorizedError(
                "This account is not authorized to use ``ibm_quantum`` runtime service."
            )
        return data

    def network(self, http_url: str) -> list[str]:
        """``GET {http_url}/Network``: the account's ``hub/group/project`` instances.

        Ordered as the reference orders them: a project marked ``isDefault`` first, then,
        when there is more than one, the first entry moved to the end.

        Args:
            http_url: ``urls.http`` from :meth:`user_info`.

        Returns:
            The instances, ``"hub/group/project"``.

        Raises:
            RequestsApiError: The request failed.
            ApiIBMProtocolError: The response is not a list of hubs.
        """
        response = self._session.request(
            "GET", f"{http_url.rstrip('/')}/Network", headers=self._token_headers(), auth=False
        )
        hubs = decode_json(response, "network")
        entries: list[str] = []
        try:
            for hub in hubs:
                for group_name, group in hub["groups"].items():
                    for project_name, project in group["projects"].items():
                        entry = f"{hub['name']}/{group_name}/{project_name}"
                        if project.get("isDefault"):
                            entries.insert(0, entry)
                        else:
                            entries.append(entry)
        except (TypeError, KeyError, AttributeError) as err:
            raise ApiIBMProtocolError(
                f"Malformed network response from the server: {type(err).__name__}: {err}",
                status_code=response.status_code,
                url=scrub_url(response.url or ""),
                body_excerpt=redact(response.text[:500]),
            ) from err
        unique = list(dict.fromkeys(entries))
        if len(unique) > 1:
            unique.append(unique.pop(0))
        return unique

    def close(self) -> None:
        """Close the client's connections."""
        self._session.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._session!r}>"


__all__ = ["AUTH_URL", "AuthClient", "RuntimeClient", "split_instance", "to_utc_isoformat"]
