"""The service: :class:`RuntimeService` (also exported as ``QiskitRuntimeService``).

It submits jobs (``run``), finds them (``job``, ``jobs``), deletes them (``delete_job``) and
knows the backends. With no account configured it uses the local runtime server.

Example::

    service = RuntimeService(channel="local")
    job = service.run("hello-world", inputs={"iterations": 3})
    print(job.result())
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from .api.client import AuthClient, RuntimeClient
from .api.models import JobListItem, JobResponse, parse_jobs
from .api.params import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    ClientParameters,
    ProxyConfiguration,
)
from .api.platform_client import PLATFORM_CHANNELS, PlatformClient
from .api.protocol import StreamingApi
from .backend import Backend, BackendStatus, IBMRetiredBackend
from .config import resolve_config
from .exceptions import (
    IBMError,
    IBMInputValueError,
    IBMRuntimeError,
    NotFoundError,
    QiskitBackendNotFoundError,
    RequestsApiError,
    RuntimeJobNotFound,
    RuntimeProgramNotFound,
)
from .job import CallbackErrors, DecoderChoice, ResultCallback, RuntimeJob, _decode_params
from .options import RuntimeOptions
from .timing import clock

logger = logging.getLogger(__name__)

QISKIT_IBM_RUNTIME_API_URL = "https://auth.quantum-computing.ibm.com/api"
"""Default authentication URL of the ``ibm_quantum`` channel."""
IBM_CLOUD_URL = "https://cloud.ibm.com"
"""Default URL of the ``ibm_cloud`` channel."""

_RETIRED_PROGRAMS = ("vqe", "qaoa")
_PAGE_SIZE = 1000
"""Jobs asked per page when listing without a limit: our server's cap (a server may send fewer)."""
_ACTIVE_STATUS_SECONDS = 30.0
"""Seconds ``run()`` reuses a backend's ``active`` status before asking for it again."""


def _split_instance(instance: str) -> tuple[str, str, str]:
    parts = instance.split("/")
    if len(parts) != 3 or not all(parts):
        raise IBMInputValueError(
            f"Input instance value {instance} is not in the correct hub/group/project format."
        )
    return parts[0], parts[1], parts[2]


_RELOGIN_REUSE_SECONDS = 5.0
"""A login this recent is reused by other requests refused meanwhile (no login storm)."""


def _login_again(
    params: ClientParameters, api_token: str, auth_url: str, common: dict[str, Any]
) -> Callable[[], bool]:
    """What the runtime session calls on a 401 (ibm_quantum): an expired access token.

    Logs in again with the API token, as creating a new service would, and puts the new
    access token in ``params`` (the session reads it at each request). Threads refused at
    the same time share one login. Returns false, so the 401 is raised, when the login
    itself fails.
    """
    lock = threading.Lock()
    last: list[float] = []

    def relogin() -> bool:
        with lock:
            if last and clock.monotonic() - last[0] < _RELOGIN_REUSE_SECONDS:
                return True
            auth_params = ClientParameters(
                channel="ibm_quantum", token=api_token, url=auth_url, **common
            )
            try:
                with AuthClient(auth_params) as auth:
                    params.token = auth.login(api_token)
            except IBMError as err:
                logger.warning("Logging in again after a 401 failed: %s", err)
                return False
            logger.info("The access token was refused (expired?): logged in again.")
            last[:] = [clock.monotonic()]
            return True

    return relogin


class RuntimeService:
    """Entry point to a runtime service: submit, find and delete jobs.

    Settings come from, in order: the arguments, the environment (``QISKIT_IBM_TOKEN``,
    ``QISKIT_IBM_URL``, ``QISKIT_IBM_CHANNEL``, ``QISKIT_IBM_INSTANCE``), a saved account of
    ``~/.qiskit/qiskit-ibm.json`` (read only), and otherwise the local runtime server
    (started in the background or joined). See :mod:`runtime_job.config` and
    ``docs/configuration.md``.

    Args:
        channel: ``"ibm_quantum"``, ``"ibm_quantum_platform"`` (today's IBM Quantum
            Platform, ``docs/platform.md``), ``"ibm_cloud"`` (the same now) or ``"local"``.
        token: API token (for ``local``, the server's token; for the platform, an IBM Cloud
            API key, sent only to IAM).
        url: Authentication URL (ibm_quantum), cloud URL or quantum API URL (platform) or
            server URL (local).
        filename: The account file to read instead of ``~/.qiskit/qiskit-ibm.json``.
        name: Use the saved account of this name (the environment is then not read).
        instance: ``hub/group/project`` (ibm_quantum) or CRN (platform; ``None`` finds the
            key's instances and prefers a free plan). On ibm_quantum,
            ``run()`` and ``backend()`` look in it first, then in the account's other
            hub/group/projects; one the account does not have is ignored with a warning.
        proxies: Proxy settings (``{"urls": {...}}``), used for every connection.
        verify: TLS verification: ``True``, ``False`` or a CA bundle path.
        connect_timeout: Seconds to connect, for every connection.
        read_timeout: Seconds to wait for data on an open connection.
        data_dir: Data directory of the local server (``local`` channel without ``url``).
        private_endpoint: Platform: use IBM Cloud's private endpoints.
        plans_preference: Platform, without an instance: plan names to use, in order.
        tags: Platform, without an instance: only instances with all these tags.
        region: Platform, without an instance: only instances of this region.
    """

    def __init__(
        self,
        channel: str | None = None,
        token: str | None = None,
        url: str | None = None,
        filename: str | None = None,
        name: str | None = None,
        instance: str | None = None,
        proxies: ProxyConfiguration | Mapping[str, Any] | None = None,
        verify: bool | str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        data_dir: str | None = None,
        private_endpoint: bool = False,
        plans_preference: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        region: str | None = None,
    ) -> None:
        config = resolve_config(
            channel, token, url, instance, proxies, verify, name=name, filename=filename
        )
        self._account_config = config  # for active_account(): the API token and login URL
        channel, token, url, instance = config.channel, config.token, config.url, config.instance
        common: dict[str, Any] = {
            "proxies": config.proxies,
            "verify": True if config.verify is None else config.verify,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        if channel == "local":
            if url is None:
                from .server import ensure_local_server

                url, token = ensure_local_server(data_dir=data_dir)
            elif not token:
                raise IBMInputValueError("A token is required to use a local server by URL.")
            params = ClientParameters(channel="local", token=token, url=url, **common)
        elif channel in PLATFORM_CHANNELS:
            # Today's IBM Quantum Platform (docs/platform.md); ibm_cloud is the same now.
            if not token:
                raise IBMInputValueError(f"The {channel} channel needs a token (an API key).")
            platform = PlatformClient(
                token,
                instance,
                channel=channel,
                url=url,
                private_endpoint=private_endpoint,
                plans_preference=plans_preference,
                tags=tags,
                region=region,
                **common,
            )
            self._attach(channel, platform.params, platform, {}, platform.instance)
            return
        elif channel == "ibm_quantum":
            if not token:
                raise IBMInputValueError("The ibm_quantum channel needs a token.")
            if instance:
                _split_instance(instance)  # a malformed instance fails before any request
        else:
            raise IBMInputValueError(
                f"Invalid channel {channel!r}: use ibm_quantum, ibm_quantum_platform, "
                "ibm_cloud or local."
            )
        hgp_names: list[str] = []
        if channel == "ibm_quantum":
            params, hgp_names = self._login(
                token, url or QISKIT_IBM_RUNTIME_API_URL, instance, common
            )
        client = RuntimeClient(params)
        if channel == "ibm_quantum" and token:
            # An access token expires (the login's ttl): log in again, as the reference does
            # by creating a new service.
            client._session.reauthenticate = _login_again(
                params, token, url or QISKIT_IBM_RUNTIME_API_URL, common
            )
        hgps = {hgp: client.list_backends(hgp) for hgp in hgp_names}
        self._attach(channel, params, client, hgps, instance)

    def _attach(
        self,
        channel: str,
        params: ClientParameters,
        client: Any,
        hgps: dict[str, list[str]],
        instance: str | None = None,
    ) -> None:
        self._channel = channel
        self._backend_names_cache: list[str] | None = None
        self._missing_backends: set[str] = set()
        self._backend_objects: dict[tuple[str, str | None], Backend] = {}
        self._active_until: dict[tuple[str, str | None], float] = {}
        self._client_params = params
        self._api_client = client
        self._hgps = hgps
        self._default_instance = instance
        if channel == "ibm_quantum" and instance:
            _split_instance(instance)
            if instance in hgps:
                # Looked in first by run() and backend(), then every other hgp (as the reference).
                self._hgps = {instance: hgps[instance], **hgps}
            else:
                warnings.warn(
                    f"Default hub/group/project {instance} not found for the account and is "
                    "ignored.",
                    stacklevel=3,
                )

    @classmethod
    def _with_client(
        cls,
        client: Any,
        params: ClientParameters,
        channel: str = "local",
        hgps: dict[str, list[str]] | None = None,
    ) -> RuntimeService:
        """A service over an existing client (for tests and embedding)."""
        service = cls.__new__(cls)
        service._attach(channel, params, client, dict(hgps or {}))
        return service

    @staticmethod
    def _login(
        token: str, auth_url: str, instance: str | None, common: dict[str, Any]
    ) -> tuple[ClientParameters, list[str]]:
        """Log in on the ibm_quantum channel: the runtime parameters and the hgps."""
        auth_params = ClientParameters(channel="ibm_quantum", token=token, url=auth_url, **common)
        with AuthClient(auth_params) as auth:
            auth.version()
            access_token = auth.login(token)
            auth_params.token = access_token
            info = auth.user_info()
            urls = info["urls"]
            hgp_names = auth.network(urls["http"])
        runtime = ClientParameters(
            channel="ibm_quantum",
            token=access_token,
            url=urls["services"]["runtime"],
            instance=instance,
            **common,
        )
        return runtime, hgp_names

    # --------------------------------------------------------------------------- lifecycle

    @property
    def channel(self) -> str:
        """The channel this service uses."""
        return self._channel

    def close(self) -> None:
        """Close the service's connections."""
        self._api_client.close()

    def __enter__(self) -> RuntimeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}(channel={self._channel!r}, url={self._client_params.url!r})>"
        )

    # ----------------------------------------------------------------------------- backends

    def backends(self, name: str | None = None, instance: str | None = None) -> list[Backend]:
        """The backends available, optionally only ``name`` or those of ``instance``."""
        if self._channel == "ibm_quantum":
            if instance is not None:
                _split_instance(instance)
                if instance not in self._hgps:
                    raise IBMInputValueError(
                        f"Hub/group/project {instance} could not be found for this account."
                    )
                pairs: list[tuple[str | None, str]] = [(instance, n) for n in self._hgps[instance]]
            else:
                seen: set[str] = set()
                pairs = []
                for hgp, names in self._hgps.items():
                    for backend_name in names:
                        if backend_name not in seen:
                            seen.add(backend_name)
                            pairs.append((hgp, backend_name))
        else:
            pairs = [(None, n) for n in self._backend_names(name)]
        result: list[Backend] = []
        for found_hgp, found_name in pairs:
            if name is not None and found_name != name:
                continue
            result.append(Backend(found_name, self._api_client, found_hgp))
        return result

    def _backend_names(self, wanted: str | None) -> list[str]:
        """The service's backend names, asked once, and again only for a name never seen.

        A name the server did not list even then (a retired backend) is remembered, so a
        listing of many jobs on retired backends costs no request per job.
        """
        names = self._backend_names_cache
        unknown = wanted is not None and (names is None or wanted not in names)
        if names is None or (unknown and wanted not in self._missing_backends):
            names = self._backend_names_cache = list(self._api_client.list_backends())
            if wanted is not None and wanted not in names:
                self._missing_backends.add(wanted)
        return names

    def backend(self, name: str | None = None, instance: str | None = None) -> Backend:
        """The backend called ``name`` (the first one when ``name`` is ``None``).

        Raises:
            QiskitBackendNotFoundError: No backend matches.
        """
        found = self.backends(name, instance=instance)
        if not found:
            raise QiskitBackendNotFoundError("No backend matches the criteria.")
        return found[0]

    def _get_hgp(self, instance: str | None, backend_name: str | None) -> str:
        if instance:
            _split_instance(instance)
            if instance not in self._hgps:
                raise IBMInputValueError(
                    f"Hub/group/project {instance} could not be found for this account."
                )
            if backend_name and backend_name not in self._hgps[instance]:
                raise QiskitBackendNotFoundError(
                    f"Backend {backend_name} cannot be found in hub/group/project {instance}"
                )
            return instance
        if not backend_name:
            return next(iter(self._hgps))
        for hgp, names in self._hgps.items():
            if backend_name in names:
                return hgp
        raise QiskitBackendNotFoundError(
            f"Backend {backend_name} cannot be found in any hub/group/project for this account."
        )

    def _backend_or_placeholder(self, name: str, instance: str | None) -> Backend:
        """The backend ``name`` (one object per name and instance), or a retired placeholder."""
        key = (name, instance)
        backend = self._backend_objects.get(key)
        if backend is None:
            try:
                backend = self.backend(name, instance=instance)
            except (QiskitBackendNotFoundError, IBMInputValueError):
                backend = IBMRetiredBackend.from_name(name)
            self._backend_objects[key] = backend
        return backend

    # ---------------------------------------------------------------------------------- run

    def run(
        self,
        program_id: str,
        inputs: Mapping[str, Any] | None,
        options: RuntimeOptions | dict[str, Any] | None = None,
        callback: ResultCallback | None = None,
        result_decoder: DecoderChoice | None = None,
        session_id: str | None = None,
        start_session: bool | None = False,
        *,
        callback_errors: CallbackErrors = "log",
    ) -> RuntimeJob:
        """Submit a job running ``program_id`` with ``inputs``.

        Args:
            program_id: The program to run.
            inputs: The program's inputs (encoded with the runtime codec).
            options: :class:`RuntimeOptions` or a dict of them.
            callback: Stream results to ``callback(job_id, result)``.
            result_decoder: Decoder class or ``(interim, final)`` pair for the job.
            session_id: Run the job in this session.
            start_session: Start a session with this job.
            callback_errors: What a raising callback does (see ``stream_results``).

        Raises:
            IBMInputValueError: Invalid options or a retired program.
            QiskitBackendNotFoundError: The backend does not exist.
            RuntimeProgramNotFound: The program does not exist.
            IBMRuntimeError: The submission failed.
        """
        if program_id in _RETIRED_PROGRAMS:
            raise IBMInputValueError(
                "The vqe and qaoa programs have been retired in the Qiskit Runtime service. "
                "Please visit https://qiskit.org/ecosystem/ibm-runtime for an introduction on "
                "Sessions and Primitives, and to access tutorials on how to execute VQE and QAOA "
                "using Qiskit Runtime Primitives."
            )
        opts = RuntimeOptions.from_value(options)
        opts.validate(channel=self._channel)
        params = dict(inputs or {})
        hgp = None
        if self._channel == "ibm_quantum":
            hgp = self._get_hgp(opts.instance, opts.backend)
        if opts.backend:
            backend = self.backend(opts.backend, instance=hgp)
            status = self._run_status(backend, hgp)
            if status is not None and status.operational is True and status.status_msg != "active":
                warnings.warn(
                    f"The backend {backend.name} currently has a status of {status.status_msg}.",
                    stacklevel=2,
                )
        if callback is not None and isinstance(self._api_client, StreamingApi):
            self._api_client.prepare_streams()  # the job publishes as soon as it is accepted
        try:
            response = self._api_client.program_run(
                program_id=program_id,
                backend_name=opts.backend,
                params=params,
                image=opts.image,
                hgp=hgp,
                log_level=opts.log_level,
                session_id=session_id,
                job_tags=opts.job_tags,
                max_execution_time=opts.max_execution_time,
                start_session=bool(start_session),
                session_time=opts.session_time,
            )
        except NotFoundError as err:
            raise RuntimeProgramNotFound(f"Program not found: {err.message}") from err
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to run program: {err}") from err
        job_id = str(response["id"])
        backend_name = response.get("backend") or opts.backend
        job_backend = self._backend_or_placeholder(backend_name, hgp) if backend_name else None
        job = RuntimeJob(
            backend=job_backend,
            api_client=self._api_client,
            client_params=self._client_params,
            job_id=job_id,
            program_id=program_id,
            service=self,
            params=params,
            result_decoder=result_decoder,
            image=opts.image or "",
            session_id=session_id or (job_id if start_session else None),
            tags=opts.job_tags,
            user_callback=callback,
            callback_errors=callback_errors,
        )
        return job

    def _run_status(self, backend: Backend, hgp: str | None) -> BackendStatus | None:
        """The backend's status before a ``run()``; ``None`` while a recent one was active.

        Only an ``active`` status is reused, for :data:`_ACTIVE_STATUS_SECONDS` seconds: a burst
        of ``run()`` then asks once, and any other status is asked again at every ``run()``,
        so its warning stops as soon as the backend is active again.
        """
        key = (backend.name, hgp)
        now = clock.monotonic()
        if now < self._active_until.get(key, now):
            return None
        status = backend.status()
        if status.operational is True and status.status_msg == "active":
            self._active_until[key] = now + _ACTIVE_STATUS_SECONDS
        else:
            self._active_until.pop(key, None)
        return status

    # --------------------------------------------------------------------------------- jobs

    def job(self, job_id: str) -> RuntimeJob:
        """The job with id ``job_id``.

        Raises:
            RuntimeJobNotFound: No such job (for this user).
            IBMRuntimeError: The request failed.
        """
        try:
            model = self._api_client.fetch_job(job_id, exclude_params=True)
        except NotFoundError as err:
            raise RuntimeJobNotFound(f"Job not found: {err.message}") from err
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to retrieve job: {err}") from err
        return self._decode_job(model)

    def jobs(
        self,
        limit: int | None = 10,
        skip: int = 0,
        backend_name: str | None = None,
        pending: bool | None = None,
        program_id: str | None = None,
        instance: str | None = None,
        job_tags: Sequence[str] | None = None,
        session_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        descending: bool = True,
    ) -> list[RuntimeJob]:
        """Jobs matching the filters, newest first unless ``descending=False``.

        Args:
            limit: How many jobs at most (``None``: all of them).
            skip: How many matching jobs to skip first.
            backend_name: Only jobs on this backend.
            pending: Only queued/running (``True``) or final (``False``) jobs.
            program_id: Only jobs of this program.
            instance: Only jobs of this ``hub/group/project`` (ibm_quantum) or instance CRN
                (platform).
            job_tags: Only jobs carrying all these tags.
            session_id: Only jobs of this session.
            created_after: Only jobs created after this time.
            created_before: Only jobs created before this time.
            descending: Newest first (default) or oldest first.
        """
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise IBMInputValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise IBMInputValueError(f"skip must be a non-negative integer, not {skip!r}")
        hub = group = project = None
        by_instance: dict[str, Any] = {}
        if instance and self._channel in PLATFORM_CHANNELS and instance.startswith("crn:"):
            by_instance["instance"] = instance  # the CRN whose jobs to list
        elif instance:
            if self._channel != "ibm_quantum":
                raise IBMInputValueError(
                    "The 'instance' keyword is only supported for ``ibm_quantum`` runtime "
                    "(a hub/group/project) and the platform channels (an instance CRN)."
                )
            hub, group, project = _split_instance(instance)
        collected: list[JobListItem] = []
        seen: set[str] = set()
        received = 0  # listed entries, repeats included: the reference's stop condition
        expected: int | None = None  # jobs matching when the listing started
        offset = skip
        cursor: str | None = None
        page_limit = limit or _PAGE_SIZE
        while True:
            # Without params (fetched by a job's ``inputs`` when asked): a listing of jobs
            # with large inputs would otherwise carry them all.
            raw = self._api_client.jobs_get(
                limit=page_limit,
                skip=offset if cursor is None else 0,
                backend_name=backend_name,
                pending=pending,
                program_id=program_id,
                hub=hub,
                group=group,
                project=project,
                job_tags=list(job_tags) if job_tags else None,
                session_id=session_id,
                created_after=created_after,
                created_before=created_before,
                descending=descending,
                exclude_params=True,
                cursor=cursor,
                **by_instance,
            )
            response = parse_jobs(raw)
            page = response.jobs
            received += len(page)
            if expected is None:
                expected = response.count - skip
            # Offset paging shifts when jobs are submitted or deleted meanwhile: a job seen
            # on an earlier page is not listed twice.
            fresh = [item for item in page if item["id"] not in seen]
            seen.update(item["id"] for item in fresh)
            collected.extend(fresh)
            next_cursor = raw.get("next_cursor") if isinstance(raw, dict) else None
            if not page or (limit and len(collected) >= limit):
                break
            if isinstance(next_cursor, str) and next_cursor:
                # A server with the listing extension: the next page starts after the last
                # job of this one, whatever was submitted or deleted since (stable). Jobs
                # submitted after the listing started do not keep it going.
                if len(collected) >= expected:
                    break
                cursor = next_cursor
            elif cursor is not None or received >= response.count - skip:
                break
            else:
                offset += len(page)
            page_limit = limit - len(collected) if limit else _PAGE_SIZE
        if limit:
            collected = collected[:limit]
        return self._listed_jobs(collected)

    def delete_job(self, job_id: str) -> None:
        """Delete the job ``job_id``.

        Raises:
            RuntimeJobNotFound: No such job (for this user).
            IBMRuntimeError: The request failed.
        """
        try:
            self._api_client.job_delete(job_id)
        except NotFoundError as err:
            raise RuntimeJobNotFound(f"Job not found: {err.message}") from err
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to delete job: {err}") from err

    def usage(self) -> dict[str, Any]:
        """The usage of the service's instance (``GET /instances/usage``).

        Returns:
            ``usage_consumed_seconds``, ``usage_limit_seconds``, ``usage_limit_reached`` and,
            when there is a limit, ``usage_remaining_seconds``, as the server sends them.

        Raises:
            IBMRuntimeError: The request failed, or the client has no such call.
        """
        getter = getattr(self._api_client, "instance_usage", None)
        if getter is None:
            raise IBMRuntimeError(f"{type(self._api_client).__name__} cannot report usage.")
        try:
            return dict(getter())
        except RequestsApiError as err:
            raise IBMRuntimeError(f"Failed to get usage: {err}") from err

    def _decode_job(self, model: JobResponse) -> RuntimeJob:
        """A job from the validated body of ``GET /jobs/{id}``."""
        return RuntimeJob(
            self._job_backend(model.backend, model.hub, model.group, model.project),
            self._api_client,
            self._client_params,
            model.id,
            model.program.id if model.program else "",
            self,
            _decode_params(model.params),
            model.created,
            image=model.runtime or "",
            session_id=model.session_id,
            tags=model.tags,
        )

    def _listed_jobs(self, items: list[JobListItem]) -> list[RuntimeJob]:
        """Jobs from validated listing entries; each decodes its inputs on first use."""
        api_client, params, job_backend = self._api_client, self._client_params, self._job_backend
        jobs: list[RuntimeJob] = []
        for item in items:
            program = item.get("program")
            job = RuntimeJob(
                job_backend(
                    item.get("backend"), item.get("hub"), item.get("group"), item.get("project")
                ),
                api_client,
                params,
                item["id"],
                program.get("id", "") if program else "",
                self,
                None,
                item.get("created"),
                image=item.get("runtime") or "",
                session_id=item.get("session_id"),
                tags=item.get("tags"),
                listed_params=item.get("params"),
            )
            jobs.append(job)
        return jobs

    def _job_backend(
        self, name: str | None, hub: str | None, group: str | None, project: str | None
    ) -> Backend | None:
        """A job's backend (shared by the jobs on it), a retired placeholder, or ``None``."""
        if not name:
            return None
        instance = None
        if hub and group and project and self._channel == "ibm_quantum":
            instance = f"{hub}/{group}/{project}"
        return self._backend_objects.get((name, instance)) or self._backend_or_placeholder(
            name, instance
        )

    # ------------------------------------------------- the account, as SDK wrappers read it

    def active_account(self) -> dict[str, Any]:
        """The account in use, in the reference's saved format.

        ``RuntimeService(**service.active_account())`` builds a service on the same account.
        The keys are ``channel``, ``token``, ``url``, ``instance``, ``proxies`` (a dict) and
        ``verify``, each only when set, as the reference's ``Account.to_saved_format()``. On
        ``ibm_quantum`` they are the API token and the login URL (never the access token of
        this service's session); on ``local`` they name the server this service uses.

        Returns:
            A new dict (it holds the token: do not log it).
        """
        config = self.__dict__.get("_account_config")
        params = self._client_params
        token: str | None = params.token
        url: str | None = params.url
        instance: str | None = params.instance
        if self._channel == "ibm_quantum":
            instance = self._default_instance
            if config is not None:
                token, url = config.token, config.url or QISKIT_IBM_RUNTIME_API_URL
        proxy = params.proxy_config
        proxies = {
            key: value
            for key, value in (
                ("urls", proxy.urls),
                ("username_ntlm", proxy.username_ntlm),
                ("password_ntlm", proxy.password_ntlm),
            )
            if value
        }
        account: dict[str, Any] = {
            "channel": self._channel,
            "token": token,
            "url": url,
            "instance": instance,
            "proxies": dict(proxies) or None,
            "verify": params.verify,
        }
        return {key: value for key, value in account.items() if value is not None}

    class _Account:
        """What the reference's ``service._account`` offers: the account's settings.

        Attributes: ``channel``, ``token``, ``url``, ``instance``, ``proxies`` (a
        ``ProxyConfiguration`` or ``None``) and ``verify``. The repr leaves the token out.
        """

        def __init__(self, saved: dict[str, Any]) -> None:
            self.channel: str = saved["channel"]
            self.token: str | None = saved.get("token")
            self.url: str | None = saved.get("url")
            self.instance: str | None = saved.get("instance")
            proxies = saved.get("proxies")
            self.proxies = ProxyConfiguration.from_value(proxies) if proxies else None
            self.verify: bool | str = saved.get("verify", True)
            self._saved = saved

        def to_saved_format(self) -> dict[str, Any]:
            """The account as ``active_account()`` returns it."""
            return dict(self._saved)

        def __repr__(self) -> str:
            return f"<Account channel={self.channel!r} url={self.url!r} instance={self.instance!r}>"

    @property
    def _account(self) -> RuntimeService._Account:
        """The account in use, with the reference's attributes (wrappers read it)."""
        return RuntimeService._Account(self.active_account())


QiskitRuntimeService = RuntimeService
"""The reference's name for :class:`RuntimeService`."""

__all__ = ["QiskitRuntimeService", "RuntimeService"]
