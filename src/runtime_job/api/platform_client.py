"""The runtime REST API in today's IBM Quantum Platform dialect (``platform.md``).

:class:`PlatformClient` has the methods of :class:`~runtime_job.api.client.RuntimeClient`
that the service, the job and the backends call, so the same :class:`RuntimeJob` and
:class:`RuntimeService` work on it unchanged. What differs lives here and in the transport:

- authentication: an IAM bearer token (:mod:`runtime_job.api.iam`, refreshed before it
  expires), ``Service-CRN`` and ``IBM-API-Version`` on every request; the base URL computed
  from the instance CRN (:mod:`runtime_job.api.platform`); the API key goes only to IAM;
- instances: discovered through Global Search and Global Catalog when none is given; a job,
  backend or session is asked for under the instance it belongs to (a job not found under
  one instance is looked for under the others, then remembered);
- jobs: ``GET /jobs/{id}?exclude_params=true`` for the status, the reason code folded into
  the reason (``"Error code 1305; Ran too long"``, which the job maps to ERROR and
  :class:`~runtime_job.exceptions.RuntimeJobMaxTimeoutError`), results without ``url``
  indirection, no interim results, ``GET /instances/usage`` before each submission, V2 pubs
  encoded with QPY capped at 17, listings with ``exclude_params=true`` first;
- waiting: there is no stream in this dialect, so the client does not implement
  :class:`~runtime_job.api.protocol.StreamingApi` (the job then polls), and it names the
  polling cadence through :meth:`PlatformClient.poll_policy_for` (no more often than every
  0.5 s, 0.1 s in a session or batch, backing off on long jobs);
- sessions and batches: ``POST /sessions``, ``PATCH`` to close, ``DELETE .../close`` to
  cancel, ``GET`` for the details.
"""

from __future__ import annotations

import logging
import threading
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import requests

from .._redact import redact, scrub_url
from ..exceptions import (
    ApiIBMProtocolError,
    IBMAccountError,
    IBMApiError,
    IBMInputValueError,
    NotFoundError,
    RequestsApiError,
)
from ..timing import Deadline, PollPolicy
from .body import decode_json
from .iam import IamTokenManager
from .models import JobResponse, RunJobResponse, parse
from .params import ClientParameters
from .platform import (
    PlatformEndpoints,
    PlatformInstance,
    discover_instances,
    order_instances,
    platform_headers,
    resolve_endpoints,
)
from .retry import RetryPolicy
from .session import IDEMPOTENCY_KEY_HEADER, HttpSession

logger = logging.getLogger(__name__)

PLATFORM_CHANNELS: Final = ("ibm_quantum_platform", "ibm_cloud")
"""The channels that speak this dialect (``ibm_cloud`` is now the same as the platform)."""
JOB_POLL_POLICY: Final = PollPolicy(initial=0.5, factor=1.0, ratio=0.04, max_interval=5.0)
"""Polling of a job outside a session: every 0.5 s, then 4 % of the time waited, at most 5 s."""
SESSION_POLL_POLICY: Final = PollPolicy(initial=0.1, factor=1.0, ratio=0.04, max_interval=5.0)
"""Polling of a job in a session or batch: every 0.1 s, then as :data:`JOB_POLL_POLICY`."""
DEFAULT_LOG_LEVEL: Final = "WARNING"
"""``log_level`` sent when none is set (the platform's primitives always send one)."""
MAX_CODE_REASON: Final = 1305
"""The reason code of a job cancelled for running longer than its maximum execution time."""
_LIST_PAGE: Final = 20


def _q(segment: str) -> str:
    return quote(str(segment), safe="")


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    data = decode_json(response, what)
    if not isinstance(data, dict):
        raise ApiIBMProtocolError(
            f"Expected a JSON object as the {what}, got {type(data).__name__}.",
            status_code=response.status_code,
            url=scrub_url(response.url or ""),
            body_excerpt=redact(response.text[:500]),
        )
    return data


def fold_reason_code(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``state.reasonCode``/``reason_code`` folded into ``state.reason``.

    The platform's reason text becomes ``"Error code <code>; <reason>"`` (``platform.md``
    5.4); ``reasonCode`` is checked first. The code itself stays in the state.
    """
    state = body.get("state")
    if not isinstance(state, dict):
        return body
    code = state.get("reasonCode", state.get("reason_code"))
    if code is None or isinstance(code, bool):
        return body
    reason = state.get("reason")
    state = dict(state)
    state["reason"] = f"Error code {code}; {reason}" if reason else f"Error code {code}"
    return {**body, "state": state}


@dataclass(repr=False)
class PlatformParameters(ClientParameters):
    """:class:`ClientParameters` of one platform instance: bearer tokens from IAM.

    ``token`` is the API key (kept here so every redaction knows it); the headers carry only
    the IAM access token. ``instance`` is the instance CRN.

    Attributes:
        token_manager: Where access tokens come from.
        api_base: The quantum API base of the instance (``.../api/v1``).
    """

    token_manager: IamTokenManager | None = field(default=None, compare=False)
    api_base: str = ""

    def __post_init__(self) -> None:
        if self.channel not in PLATFORM_CHANNELS:
            raise IBMInputValueError(
                f"Invalid channel {self.channel!r}: use one of {', '.join(PLATFORM_CHANNELS)}."
            )
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise IBMInputValueError(f"{name} must be a positive number, not {value!r}.")

    def auth_headers(self, deadline: Deadline | None = None) -> dict[str, str]:
        """``Authorization: Bearer``, ``Service-CRN`` and ``IBM-API-Version`` (a token is
        fetched or refreshed first when needed, within ``deadline``)."""
        if self.token_manager is None:
            raise IBMInputValueError("No IAM token manager for the platform channel.")
        return platform_headers(self.token_manager.token(deadline), self.instance)

    def get_auth_handler(self) -> Any:
        """A ``requests`` auth callable setting :meth:`auth_headers` at send time."""
        return _BearerAuth(self)

    def get_runtime_api_base_url(self) -> str:
        """The instance's quantum API base."""
        return self.api_base

    def get_websocket_base_url(self) -> str:
        """There are no websockets in this dialect: ``""``."""
        return ""


class _BearerAuth:
    def __init__(self, params: PlatformParameters) -> None:
        self._params = params

    def __call__(self, request: Any) -> Any:
        request.headers.update(self._params.auth_headers())
        return request

    def __repr__(self) -> str:
        return f"<BearerAuth instance={self._params.instance!r}>"


class PlatformClient:
    """The runtime API of IBM Quantum Platform for one API key (module docstring).

    Implements :class:`~runtime_job.api.protocol.JobApi` (not ``StreamingApi``).

    Args:
        api_key: The IBM Cloud API key (sent only to IAM).
        instance: The instance CRN; ``None`` (or ``"auto"``) discovers the account's
            instances through Global Search and Global Catalog.
        channel: ``"ibm_quantum_platform"`` or ``"ibm_cloud"`` (the same).
        url: The cloud URL (default ``https://cloud.ibm.com``) or a direct URL of a quantum
            API (see :mod:`runtime_job.api.platform`).
        private_endpoint: Use IBM Cloud's private network.
        verify: TLS verification (``True``, ``False`` or a CA bundle path).
        proxies: Proxy settings, as for :class:`ClientParameters`.
        connect_timeout: Seconds to connect.
        read_timeout: Seconds to wait for data.
        retry_policy: How failed requests are retried.
        validate_instance: With an explicit CRN, still run discovery and refuse a CRN the
            key cannot use (the official client always does; off by default: it costs
            Global Search and Catalog requests and needs no more than the CRN).
        plans_preference: Plan names to use, in order, when discovering.
        tags: Only instances with all these tags, when discovering.
        region: Only instances of this region, when discovering.
        environ: Where ``IAM_URL``, ``GLOBAL_SEARCH_URL``, ``GLOBAL_CATALOG_URL`` are read.

    Raises:
        IBMAccountError: IAM refused the key, or no instance could be used.
        IBMInputValueError: ``instance`` is not one of the key's instances (with
            ``validate_instance``), or a setting is invalid.
    """

    def __init__(
        self,
        api_key: str,
        instance: str | None = None,
        *,
        channel: str = "ibm_quantum_platform",
        url: str | None = None,
        private_endpoint: bool = False,
        verify: bool | str = True,
        proxies: Any = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        validate_instance: bool = False,
        plans_preference: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        region: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if channel not in PLATFORM_CHANNELS:
            raise IBMInputValueError(f"PlatformClient speaks {PLATFORM_CHANNELS}, not {channel!r}")
        if instance == "auto":
            instance = None
        self.channel = channel
        self._lock = threading.Lock()
        self._retry_policy = retry_policy
        from .params import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT

        # The account's parameters (what the service shows as its account).
        self.params = PlatformParameters(
            channel=channel,
            token=api_key,
            url=url,
            instance=instance,
            proxies=proxies,
            verify=verify,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
            read_timeout=DEFAULT_READ_TIMEOUT if read_timeout is None else read_timeout,
        )
        self.endpoints: PlatformEndpoints = resolve_endpoints(
            url, instance, private_endpoint=private_endpoint, environ=environ
        )
        self._iam = IamTokenManager(
            self.params.token,
            iam_url=self.endpoints.iam,
            verify=verify,
            proxies=self.params.proxy_config.to_request_params() or None,
        )
        self.params.token_manager = self._iam
        self._iam.on_token = self._redact_token
        self._sessions: dict[str, HttpSession] = {}
        self._job_instances: dict[str, str] = {}
        self._backend_instances: dict[str, str] = {}
        self._chosen_backend: str | None = None
        self.instances: list[PlatformInstance] = []
        if instance is None or validate_instance:
            try:
                self._discover(instance, plans_preference, tags, region)
            except BaseException:
                self._iam.close()  # nothing of this client outlives a failed construction
                raise
        else:
            self.instances = [PlatformInstance(crn=instance)]

    def _discover(
        self,
        instance: str | None,
        plans_preference: Sequence[str] | None,
        tags: Sequence[str] | None,
        region: str | None,
    ) -> None:
        """Find the key's instances (Global Search + Catalog) and choose the active one."""
        found = discover_instances(
            self.endpoints,
            self._iam.token,
            verify=self.params.verify,
            proxies=self.params.proxy_config.to_request_params() or None,
        )
        if instance is not None:
            if instance not in {item.crn for item in found}:
                raise IBMInputValueError(
                    "The given API key is associated with an account that does not have "
                    f"access to the instance {instance}."
                )
            self.instances = [item for item in found if item.crn == instance]
            return
        self.instances = order_instances(
            found, plans_preference=plans_preference, tags=tags, region=region
        )
        if not self.instances:
            filtered = " with the given filters" if (plans_preference or tags or region) else ""
            raise IBMAccountError(
                f"No IBM Quantum Platform instance is available to this API key{filtered}."
            )
        self.params.instance = self.instances[0].crn

    # ------------------------------------------------------------------ instances

    @property
    def instance(self) -> str:
        """The active instance's CRN (the preferred one after discovery)."""
        return str(self.params.instance)

    @property
    def _session(self) -> HttpSession:
        """The active instance's HTTP session (the name tests reach on RuntimeClient)."""
        return self._session_for(self.instance)

    def _session_for(self, crn: str) -> HttpSession:
        with self._lock:
            session = self._sessions.get(crn)
            if session is None:
                params = PlatformParameters(
                    channel=self.channel,
                    token=self.params.token,
                    url=self.params.url,
                    instance=crn,
                    proxies=self.params.proxies,
                    verify=self.params.verify,
                    connect_timeout=self.params.connect_timeout,
                    read_timeout=self.params.read_timeout,
                    token_manager=self._iam,
                    api_base=self.endpoints.api_for(crn),
                )
                session = HttpSession(
                    params, base_url=params.api_base, retry_policy=self._retry_policy
                )
                for secret in self._iam.secrets():
                    session.add_secret(secret)
                self._sessions[crn] = session
            return session

    def _redact_token(self, token: str) -> None:
        """Make every session's redaction know a new access token."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.add_secret(token)

    def _crns(self) -> list[str]:
        return [item.crn for item in self.instances] or [self.instance]

    def _job_session(self, job_id: str) -> HttpSession:
        return self._session_for(self._job_instances.get(job_id, self.instance))

    def _backend_session(self, backend_name: str | None) -> HttpSession:
        crn = self._backend_instances.get(backend_name or "", self.instance)
        return self._session_for(crn)

    def instance_of_job(self, job_id: str) -> str:
        """The CRN of the instance a job was found under (or the active one)."""
        return self._job_instances.get(job_id, self.instance)

    has_interim_results = False
    """This dialect has no interim results: a job's result callback gets the final result
    once, at the end (``RuntimeJob`` reads this)."""

    def poll_policy_for(self, session_id: str | None) -> PollPolicy:
        """How often to ask for a job's status: 0.5 s at first, 0.1 s in a session or batch."""
        return SESSION_POLL_POLICY if session_id else JOB_POLL_POLICY

    def secrets(self) -> list[str]:
        """What logs and errors must never show: the API key and the current token."""
        return self._iam.secrets()

    # ------------------------------------------------------------------------ jobs

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
        private: bool | None = None,
        calibration_id: str | None = None,
    ) -> dict[str, Any]:
        """``GET /instances/usage``, then ``POST /jobs`` (platform.md 5.2, 5.3).

        The body keys, in order, each only when set: ``program_id``, ``params`` (V2 pubs in
        wire form, QPY at most version 17), ``runtime``, ``log_level`` (always; default
        ``WARNING``), ``backend`` (always: without one, the first backend listed),
        ``session_id``, ``tags``, ``cost``, ``start_session`` with ``session_time``,
        ``private``, ``calibration_id``. ``hgp`` is ignored (the instance is the
        ``Service-CRN``).

        Returns:
            The server's response (``id``, ``backend``, ...).

        Raises:
            RequestsApiError: The request failed (404: no such program).
        """
        from .. import codec
        from ..pubs import prepare_inputs

        if not backend_name:
            backend_name = self._default_backend()
        crn = self._backend_instances.get(backend_name or "", self.instance)
        session = self._session_for(crn)
        self._check_usage(session)
        payload: dict[str, Any] = {
            "program_id": program_id,
            "params": prepare_inputs(program_id, params),
        }
        if image:
            payload["runtime"] = image
        payload["log_level"] = log_level or DEFAULT_LOG_LEVEL
        if backend_name:
            payload["backend"] = backend_name
        if session_id:
            payload["session_id"] = session_id
        if job_tags:
            payload["tags"] = list(job_tags)
        if max_execution_time:
            payload["cost"] = max_execution_time
        if start_session:
            payload["start_session"] = True
            payload["session_time"] = session_time
        if private:
            payload["private"] = True
        if calibration_id:
            payload["calibration_id"] = calibration_id
        body = codec.dumps(payload, qpy_version=codec.PLATFORM_QPY_VERSION).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            IDEMPOTENCY_KEY_HEADER: idempotency_key or str(uuid.uuid4()),
        }
        response = session.request(
            "POST", "/jobs", data=body, headers=headers, timeout=(self.params.timeout[0], 900.0)
        )
        data = _json_object(response, "job submission response")
        parse(RunJobResponse, data, "job submission")
        if crn != self.instance:
            self._job_instances[str(data["id"])] = crn
        return data

    def _default_backend(self) -> str | None:
        """The backend of a job submitted without one: the first the instances list.

        Every job of this dialect names its backend (the platform refuses one that does
        not); 0.11 scripts that leave it to the server get the preferred instance's first
        backend, asked once per client.
        """
        with self._lock:
            chosen = self._chosen_backend
        if chosen is None:
            names = self.list_backends()
            chosen = names[0] if names else None
            with self._lock:
                self._chosen_backend = chosen
        return chosen

    def _check_usage(self, session: HttpSession) -> None:
        """``GET /instances/usage`` before a submission: warn when the limit is reached."""
        try:
            usage = self._usage(session)
        except RequestsApiError as err:
            logger.debug("Could not read the instance usage before a submission: %s", err)
            return
        if usage.get("usage_limit_reached"):
            warnings.warn(
                "The usage limit of this instance has been reached; the job may not run. "
                f"Usage: {usage}",
                UserWarning,
                stacklevel=4,
            )

    def _usage(self, session: HttpSession) -> dict[str, Any]:
        response = session.request(
            "GET", "/instances/usage", headers={"Accept": "application/json"}
        )
        usage = _json_object(response, "instance usage")
        limit = usage.get("usage_limit_seconds", usage.get("usage_allocation_seconds"))
        consumed = usage.get("usage_consumed_seconds")
        if isinstance(limit, int | float) and isinstance(consumed, int | float):
            usage["usage_remaining_seconds"] = max(limit - consumed, 0)
        return usage

    def instance_usage(self, instance: str | None = None) -> dict[str, Any]:
        """``GET /instances/usage``: the instance's usage, with ``usage_remaining_seconds``.

        Raises:
            RequestsApiError: The request failed.
        """
        return self._usage(self._session_for(instance or self.instance))

    def fetch_job(
        self,
        job_id: str,
        *,
        exclude_params: bool | None = None,
        deadline: Deadline | None = None,
    ) -> JobResponse:
        """``GET /jobs/{id}?exclude_params=true`` (without the query when
        ``exclude_params`` is ``False``: the inputs are wanted).

        A 404 under the job's known instance is retried under each other instance; where
        the job is found is remembered for its later calls.

        Raises:
            NotFoundError: The job is under none of the instances.
            RequestsApiError: The request failed otherwise.
        """
        return parse(
            JobResponse, self.job_get(job_id, exclude_params, deadline=deadline), "job", job_id
        )

    def job_get(
        self,
        job_id: str,
        exclude_params: bool | None = None,
        *,
        deadline: Deadline | None = None,
    ) -> dict[str, Any]:
        """:meth:`fetch_job`, as the server's JSON object (reason code folded)."""
        query = None if exclude_params is False else {"exclude_params": "true"}
        response = self._find_job(
            job_id,
            "GET",
            f"/jobs/{_q(job_id)}",
            params=query,
            headers={"Accept": "application/json"},
            deadline=deadline,
        )
        return fold_reason_code(_json_object(response, "job"))

    def _find_job(self, job_id: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a job request under the job's instance; on 404, under each other one.

        The instance that answers is remembered for the job's later calls.
        """
        first = self._job_instances.get(job_id, self.instance)
        try:
            return self._session_for(first).request(method, path, **kwargs)
        except NotFoundError as missing:
            for crn in self._crns():
                if crn == first:
                    continue
                try:
                    response = self._session_for(crn).request(method, path, **kwargs)
                except NotFoundError:
                    continue
                self._job_instances[job_id] = crn
                return response
            raise missing

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
        instance: str | None = None,
    ) -> dict[str, Any]:
        """``GET /jobs``: one page (platform.md 5.7).

        Query, in order, each only when set: ``exclude_params=true`` (always first),
        ``limit``, ``offset``, ``backend``, ``pending``, ``program``, ``tags`` (repeated),
        ``session_id``, ``created_after``, ``created_before`` (UTC ISO 8601), ``sort=ASC``
        (only when not descending), then ``cursor`` when given (our server's listing
        extension). ``hub``/``group``/``project`` are not part of this dialect and are
        ignored; ``instance`` picks the instance (default: the active one). Each job's
        reason code is folded into its reason.
        """
        from .client import to_utc_isoformat

        query: list[tuple[str, str]] = [("exclude_params", "true")]
        if limit:
            query.append(("limit", str(limit)))
        if skip:
            query.append(("offset", str(skip)))
        if backend_name:
            query.append(("backend", backend_name))
        if pending is not None:
            query.append(("pending", "true" if pending else "false"))
        if program_id:
            query.append(("program", program_id))
        for tag in job_tags or ():
            query.append(("tags", tag))
        if session_id:
            query.append(("session_id", session_id))
        if created_after:
            query.append(("created_after", to_utc_isoformat(created_after)))
        if created_before:
            query.append(("created_before", to_utc_isoformat(created_before)))
        if not descending:
            query.append(("sort", "ASC"))
        if cursor is not None:
            query.append(("cursor", cursor))  # our server's extension, only when asked
        session = self._session_for(instance or self.instance)
        response = session.request(
            "GET", "/jobs", params=query, headers={"Accept": "application/json"}
        )
        data = _json_object(response, "job list")
        jobs = data.get("jobs")
        if not isinstance(jobs, list) or not isinstance(data.get("count"), int):
            raise ApiIBMProtocolError(
                "Expected a job list with 'jobs' and 'count'.",
                status_code=response.status_code,
                url=scrub_url(response.url or ""),
            )
        data["jobs"] = [fold_reason_code(job) if isinstance(job, dict) else job for job in jobs]
        if instance and instance != self.instance:  # later calls on these jobs go there
            for job in data["jobs"]:
                if isinstance(job, dict) and isinstance(job.get("id"), str):
                    self._job_instances[job["id"]] = instance
        return data

    def job_results(self, job_id: str, *, deadline: Deadline | None = None) -> bytes:
        """``GET /jobs/{id}/results``: the body as it is (no ``url`` indirection)."""
        return (
            self._job_session(job_id)
            .request("GET", f"/jobs/{_q(job_id)}/results", large_body=True, deadline=deadline)
            .content
        )

    def job_interim_results(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """There are no interim results in this dialect: ``"null"`` (nothing is sent)."""
        return "null"

    def job_cancel(self, job_id: str, *, deadline: Deadline | None = None) -> None:
        """``POST /jobs/{id}/cancel`` (409: the job cannot be cancelled)."""
        self._job_session(job_id).request("POST", f"/jobs/{_q(job_id)}/cancel", deadline=deadline)

    def job_delete(self, job_id: str) -> None:
        """``DELETE /jobs/{id}`` (404 under every instance: no such job)."""
        self._find_job(job_id, "DELETE", f"/jobs/{_q(job_id)}")

    def job_logs(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/logs`` (404 while there are none)."""
        return (
            self._job_session(job_id)
            .request("GET", f"/jobs/{_q(job_id)}/logs", deadline=deadline)
            .text
        )

    def job_metadata(self, job_id: str, *, deadline: Deadline | None = None) -> str:
        """``GET /jobs/{id}/metrics``: the metrics JSON text."""
        return (
            self._job_session(job_id)
            .request(
                "GET",
                f"/jobs/{_q(job_id)}/metrics",
                headers={"Accept": "application/json"},
                deadline=deadline,
            )
            .text
        )

    def update_tags(self, job_id: str, tags: Sequence[str]) -> None:
        """``PUT /jobs/{id}/tags`` with ``{"tags": [...]}``; the platform answers 204.

        Raises:
            IBMApiError: Another 2xx status came back.
            RequestsApiError: The request failed.
        """
        response = self._job_session(job_id).request(
            "PUT", f"/jobs/{_q(job_id)}/tags", json_body={"tags": list(tags)}
        )
        if response.status_code != 204:
            raise IBMApiError(
                f"Updating the tags of job {job_id} answered {response.status_code}, not 204."
            )

    # -------------------------------------------------------------------- sessions

    def create_session(
        self,
        backend: str | None = None,
        instance: str | None = None,
        max_time: int | None = None,
        channel: str | None = None,
        mode: str = "dedicated",
    ) -> dict[str, Any]:
        """``POST /sessions`` with ``{"mode", "backend", "instance", "max_ttl"}``.

        Args:
            backend: The backend.
            instance: The CRN (default: the backend's instance).
            max_time: ``max_ttl`` in seconds (left out when ``None``).
            channel: Ignored (the reference's signature).
            mode: ``"dedicated"`` (a session) or ``"batch"``.

        Returns:
            The server's answer (``id``, ...).
        """
        if mode not in ("dedicated", "batch"):
            raise IBMInputValueError(f"mode must be 'dedicated' or 'batch', not {mode!r}")
        crn = instance or self._backend_instances.get(backend or "", self.instance)
        body: dict[str, Any] = {"mode": mode, "backend": backend, "instance": crn}
        if max_time is not None:
            body["max_ttl"] = int(max_time)
        response = self._session_for(crn).request(
            "POST", "/sessions", json_body=body, headers={"Accept": "application/json"}
        )
        data = _json_object(response, "session")
        if not isinstance(data.get("id"), str):
            raise ApiIBMProtocolError("The session response has no 'id'.")
        return data

    def session_details(self, session_id: str) -> dict[str, Any]:
        """``GET /sessions/{id}``: the session's details."""
        response = self._session.request(
            "GET", f"/sessions/{_q(session_id)}", headers={"Accept": "application/json"}
        )
        return _json_object(response, "session details")

    def close_session(self, session_id: str) -> None:
        """Close: ``PATCH /sessions/{id}`` with ``{"accepting_jobs": false}`` (404 ignored).

        Its jobs run to the end; no new job is accepted.
        """
        try:
            self._session.request(
                "PATCH", f"/sessions/{_q(session_id)}", json_body={"accepting_jobs": False}
            )
        except NotFoundError:
            logger.debug("Session %s was not found when closing it.", session_id)

    def cancel_session(self, session_id: str) -> None:
        """Cancel: ``DELETE /sessions/{id}/close`` (its queued and running jobs end)."""
        self._session.request("DELETE", f"/sessions/{_q(session_id)}/close")

    # -------------------------------------------------------------------- backends

    def list_backends(self, hgp: str | None = None, include_mocks: bool = False) -> list[str]:
        """``GET /backends?include_mocks=True`` under each instance, in preference order.

        Returns:
            The names (mocks only with ``include_mocks``); each name is then asked for
            under the first instance that listed it.
        """
        names: list[str] = []
        for crn in self._crns():
            response = self._session_for(crn).request(
                "GET",
                "/backends",
                params={"include_mocks": "True"},
                headers={"Accept": "application/json"},
            )
            devices = _json_object(response, "backend list").get("devices")
            if not isinstance(devices, list):
                raise ApiIBMProtocolError("The backend list has no 'devices' list.")
            for device in devices:
                if isinstance(device, str):
                    name, mock = device, False
                elif isinstance(device, dict) and isinstance(device.get("name"), str):
                    name, mock = device["name"], device.get("class") == "mock"
                else:
                    continue
                if mock and not include_mocks:
                    continue
                if name not in self._backend_instances:
                    self._backend_instances[name] = crn
                if name not in names:
                    names.append(name)
        return names

    def backends_by_instance(self, hgps: Sequence[str]) -> dict[str, list[str]]:
        """Not part of this dialect (no hub/group/project): ``{}``."""
        return {}

    def backend_configuration(self, backend_name: str) -> dict[str, Any]:
        """``GET /backends/{name}/configuration``."""
        response = self._backend_session(backend_name).request(
            "GET",
            f"/backends/{_q(backend_name)}/configuration",
            headers={"Accept": "application/json"},
        )
        return _json_object(response, "backend configuration")

    def backend_status(self, backend_name: str) -> dict[str, Any]:
        """``GET /backends/{name}/status``, mapped as :meth:`RuntimeClient.backend_status`."""
        response = self._backend_session(backend_name).request(
            "GET", f"/backends/{_q(backend_name)}/status", headers={"Accept": "application/json"}
        )
        data = _json_object(response, "backend status")
        queue = data.get("length_queue", 0)
        return {
            "backend_name": backend_name,
            "backend_version": data.get("backend_version") or "0.0.0",
            "status_msg": data.get("status", ""),
            "operational": bool(data.get("state")),
            "pending_jobs": max(int(queue), 0) if isinstance(queue, int | float) else 0,
        }

    def backend_properties(self, backend_name: str, datetime: Any = None) -> dict[str, Any]:
        """``GET /backends/{name}/properties[?updated_before=ISO]`` (``{}``: none)."""
        from .client import to_utc_isoformat

        query = {"updated_before": to_utc_isoformat(datetime)} if datetime else None
        response = self._backend_session(backend_name).request(
            "GET",
            f"/backends/{_q(backend_name)}/properties",
            params=query,
            headers={"Accept": "application/json"},
        )
        if not response.content.strip():
            return {}
        data = decode_json(response, "backend properties")
        if not isinstance(data, dict) or not data:
            return {}
        data["backend_name"] = backend_name
        return data

    def backend_pulse_defaults(self, backend_name: str) -> dict[str, Any]:
        """There are no pulse defaults in this dialect (``NotImplementedError``)."""
        raise NotImplementedError(
            f"IBM Quantum Platform has no pulse defaults (backend {backend_name})."
        )

    # ------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close every instance's connections and the IAM session."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()
        self._iam.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PlatformClient {self.channel} instance={self.params.instance!r}>"


__all__ = [
    "JOB_POLL_POLICY",
    "PLATFORM_CHANNELS",
    "SESSION_POLL_POLICY",
    "PlatformClient",
    "PlatformParameters",
    "fold_reason_code",
]
