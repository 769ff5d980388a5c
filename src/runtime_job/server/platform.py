"""Today's IBM Quantum Platform dialect (``shared/spec/platform.md``) on the local server.

One core, two dialects: these routes translate at the edge (headers, status names, reason
codes, body shapes) and call the same store, runner and authenticator as the 2023 routes of
:mod:`runtime_job.server.app`. A job submitted here is an ordinary row of the job table, run
by the same worker pool, cancelled by the same runner, and visible (to its owner) on the 2023
routes too.

Routes, all on the server's port beside the 2023 ones (on by default):

- IAM ``POST /identity/token`` (:mod:`.iam`), Global Search ``POST /v3/resources/search`` and
  Global Catalog ``GET /catalog/{plan id}`` (:mod:`.discovery`);
- under ``/api/v1``, with ``Authorization: Bearer <IAM token>`` and ``Service-CRN: <CRN>`` on
  every request (``IBM-API-Version: YYYY-MM-DD`` accepted): ``backends`` (+ ``configuration``,
  ``properties``, ``status``), ``instances/usage``, ``jobs`` (submit, list, get, delete,
  cancel, ``results``, ``logs``, ``metrics``, ``tags``) and ``sessions`` (create, get, close
  with ``PATCH``, cancel with ``DELETE .../close``).

Jobs are scoped to instances: a job of instance A is a 404 under instance B. Jobs submitted
on the 2023 routes belong to the user's default instance. Errors have the IBM Cloud shape
``{"errors": [{"code", "message", "more_info"}], "trace", "status_code"}``.

Example::

    app.include_router(platform_router(ctx))   # in create_app
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response, StreamingResponse

from . import config
from .app import (
    ApiProblem,
    AppContext,
    _new_job_from_body,
    read_json_body,
    result_response,
    tags_from_body,
)
from .discovery import Instance, cloud_error, discovery_router, instance_of
from .iam import TokenIssuer, iam_router, user_for_headers
from .programs import BACKEND_NAME
from .store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    REASON_RAN_TOO_LONG,
    RUNNING,
    JobFilter,
    JobRecord,
    PlatformSession,
    StorageUnavailable,
    close_platform_session,
    create_platform_session,
    get_platform_session,
    instance_usage_seconds,
    iso_utc,
    job_platform_fields,
    platform_job_page,
    platform_signing_key,
    session_activity,
    set_job_tags,
)

PREFIX = "/api/v1"
"""Base path of the quantum API (the value a ``url_resolver`` returns ends with it)."""
DEVICE_NAME = "local_device"
"""A backend that presents the local statevector simulator as a device (``simulator:
false``): the official primitives then check ISA circuits and open real sessions and batches,
as on hardware."""
BACKENDS: dict[str, bool] = {BACKEND_NAME: True, DEVICE_NAME: False}
"""Backends of the platform dialect: name -> whether it calls itself a simulator."""
REASON_CODE_RAN_TOO_LONG = 1305
"""Reason code of a job cancelled for running past its ``cost`` (maximum execution time)."""
DEFAULT_LIST_LIMIT = 10
"""Page size of ``GET /api/v1/jobs`` without ``limit`` (the client's default)."""
MAX_SESSION_TTL = 8 * 3600
"""Longest ``max_ttl`` of a session (IBM's limit, 8 h); also its default."""
INTERACTIVE_TTL = 60
"""Seconds a dedicated session waits between jobs (reported, not enforced)."""

_API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TITLE = {
    QUEUED: "Queued",
    RUNNING: "Running",
    COMPLETED: "Completed",
    FAILED: "Failed",
    CANCELLED: "Cancelled",
}
_REASONS: dict[str, tuple[str, int | None]] = {REASON_RAN_TOO_LONG: ("Ran too long", 1305)}
"""Reasons of the core (``store.REASON_*``) that read differently here, with their code."""
_JSON = "application/json"


class _PlatformRoute(APIRoute):
    """A route whose errors are answered in the IBM Cloud shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiProblem as problem:
                return cloud_error(problem.status, problem.code, problem.message)
            except StorageUnavailable as err:
                code = "STORAGE_FULL" if err.full else "STORAGE_UNAVAILABLE"
                return cloud_error(503, code, str(err))
            except RequestValidationError:
                return cloud_error(422, "INVALID_REQUEST", "Invalid request.")

        return guarded


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type=_JSON)


def wire_state(job: JobRecord) -> dict[str, Any]:
    """The ``state`` of a job in this dialect: ``status`` title-cased, ``reason`` and code."""
    reason, code = job.reason, None
    if reason in _REASONS:
        reason, code = _REASONS[reason]
    state: dict[str, Any] = {"status": _TITLE.get(job.status, job.status), "reason": reason}
    if code is not None:
        state["reason_code"] = code
        state["reasonCode"] = code
    return state


def wire_job(
    job: JobRecord,
    estimate: float | None,
    params: str | None = None,
) -> str:
    """A job as the JSON text of ``GET /api/v1/jobs/{id}`` (with ``params`` when given)."""
    state = wire_state(job)
    status = state["status"]
    if state.get("reason"):
        status = f"{status} - {state['reason']}"
    body: dict[str, Any] = {
        "id": job.id,
        "backend": job.backend,
        "state": state,
        "status": status,
        "program": {"id": job.program_id},
        "created": job.created,
        "runtime": job.runtime or "",
        "session_id": job.session_id,
        "tags": job.tags,
        "private": False,
        "cost": job.cost,
        "log_level": job.log_level,
        "estimated_running_time_seconds": estimate,
        "usage": {"seconds": round(job.usage or 0.0, 6), "quantum_seconds": 0},
    }
    if job.running_ts is not None:
        body["running"] = iso_utc(job.running_ts)
    if job.finished_ts is not None:
        body["ended"] = iso_utc(job.finished_ts)
    text = json.dumps(body, separators=(",", ":"))
    if params is None:
        return text
    return text[:-1] + ',"params":' + params + "}"


def estimate_seconds(params: Any) -> float:
    """A rough ``estimated_running_time_seconds`` from a job's params, read without decoding.

    One second, plus a millisecond per pub and two microseconds per shot (V2 sampler pubs
    carry their shots; other pubs count 4096). It is an estimate of a simulation, not a
    promise.
    """
    pubs = params.get("pubs") if isinstance(params, dict) else None
    if not isinstance(pubs, list):
        return 1.0
    shots = 0
    for pub in pubs:
        count = pub[2] if isinstance(pub, list) and len(pub) == 3 else None
        shots += count if isinstance(count, int) and count > 0 else 4096
    return round(1.0 + 0.001 * len(pubs) + 2e-6 * shots, 3)


def job_metrics(job: JobRecord) -> dict[str, Any]:
    """``GET /api/v1/jobs/{id}/metrics``: the core's metrics with the platform's ``usage``."""
    metrics = job.metrics()
    seconds = float(metrics["usage"]["seconds"])
    metrics["usage"] = {
        **metrics["usage"],
        "quantum_seconds": seconds,
        "qpu_charge_time_seconds": round(seconds, 3),
        "status": "final" if job.final else "pending",
    }
    metrics["status"] = _TITLE.get(job.status, job.status)
    return metrics


def backend_configuration(name: str) -> dict[str, Any]:
    """The configuration of a platform backend (the local simulator's, renamed)."""
    configuration = config.backend_configuration()
    configuration["backend_name"] = name
    configuration["simulator"] = BACKENDS[name]
    if not BACKENDS[name]:
        configuration["description"] = (
            "Statevector simulator of a runtime-job local server, presented as a device"
        )
    configuration["processor_type"] = {"family": "Local", "revision": 1}
    return configuration


def _backend_entry(name: str, queue_length: int) -> dict[str, Any]:
    return {
        "name": name,
        "status": {"name": "online", "reason": "available"},
        "qubits": config.N_QUBITS,
        "physical_qubits": config.N_QUBITS,
        "queue_length": queue_length,
        "class": "simulator" if BACKENDS[name] else "device",
        "processor_type": {"family": "Local", "revision": 1},
        "performance": {},
    }


def _session_state(session: PlatformSession, activity: dict[str, Any], now: float) -> str:
    expired = session.max_ttl is not None and now >= session.created + session.max_ttl
    accepting = session.accepting and session.closed is None
    if session.cancelled is not None or expired:
        return "closed"
    if activity["active"]:
        return "active"
    if not accepting:
        return "closed"
    return "open" if activity["jobs"] == 0 else "inactive"


def _ts(value: float | None) -> str | None:
    return None if value is None else iso_utc(value)


def session_details(
    session: PlatformSession, activity: dict[str, Any], now: float
) -> dict[str, Any]:
    """``GET /api/v1/sessions/{id}``."""
    state = _session_state(session, activity, now)
    accepting = state in ("open", "active", "inactive") and session.accepting
    accepting = accepting and session.closed is None
    started = activity["first_running"]
    end = session.closed if state == "closed" and session.closed is not None else now
    elapsed = max(0.0, end - started) if started is not None else 0.0
    timestamps = [{"status": "open", "timestamp": iso_utc(session.created)}]
    if started is not None:
        timestamps.append({"status": "active", "timestamp": iso_utc(started)})
    if session.closed is not None:
        timestamps.append({"status": "closed", "timestamp": iso_utc(session.closed)})
    return {
        "id": session.id,
        "backend_name": session.backend,
        "mode": session.mode,
        "instance": session.instance,
        "state": state,
        "accepting_jobs": accepting,
        "max_ttl": session.max_ttl,
        "interactive_ttl": INTERACTIVE_TTL if session.mode == "dedicated" else None,
        "active_ttl": session.max_ttl,
        "created_at": iso_utc(session.created),
        "started_at": _ts(started),
        "activated_at": _ts(started),
        "last_job_started": _ts(activity["last_running"]),
        "last_job_completed": _ts(activity["last_finished"]),
        "closed_at": _ts(session.closed),
        "elapsed_time": round(elapsed, 3),
        "timestamps": timestamps,
    }


def platform_router(ctx: AppContext) -> APIRouter:
    """Every route of the platform dialect, on the server's components ``ctx``."""
    store, auth, runner, hub = ctx.store, ctx.auth, ctx.runner, ctx.hub
    issuer = TokenIssuer(platform_signing_key(store), now=lambda: auth.now())

    def user_for(headers: Mapping[str, str]) -> str | None:
        return user_for_headers(headers, auth, issuer)

    router = APIRouter()
    router.include_router(iam_router(auth, issuer))
    router.include_router(discovery_router(user_for))
    api = APIRouter(prefix=PREFIX, route_class=_PlatformRoute)

    def caller(request: Request) -> tuple[str, Instance]:
        """The user and instance of a request (401, 400, 403 otherwise)."""
        user = user_for(request.headers)
        if user is None:
            raise ApiProblem(401, "UNAUTHORIZED", "Missing or invalid IAM access token.")
        version = request.headers.get("ibm-api-version")
        if version is not None and not _API_VERSION_RE.match(version.strip()):
            raise ApiProblem(
                400, "INVALID_API_VERSION", "IBM-API-Version must be a date, YYYY-MM-DD."
            )
        crn = request.headers.get("service-crn", "").strip()
        if not crn:
            raise ApiProblem(400, "MISSING_SERVICE_CRN", "The Service-CRN header is required.")
        instance = instance_of(user, crn)
        if instance is None:
            raise ApiProblem(
                403, "INSTANCE_NOT_ALLOWED", "This API key has no access to that instance."
            )
        return user, instance

    def scoped_job(job_id: str, user: str, instance: Instance) -> tuple[JobRecord, float | None]:
        if not config.ID_RE.match(job_id):
            raise ApiProblem(
                422, "INVALID_ID", "Invalid job id: expected 1-64 characters from [A-Za-z0-9_-]."
            )
        job = store.get_job(job_id, user)
        if job is not None:
            crn, estimate = job_platform_fields(store, job_id)
            if crn == instance.crn or (crn is None and instance.default):
                return job, estimate
        raise ApiProblem(404, "JOB_NOT_FOUND", f"Job not found: {job_id}")

    def check_backend(name: str) -> None:
        if name not in BACKENDS:
            raise ApiProblem(404, "BACKEND_NOT_FOUND", f"Backend not found: {name[:64]}")

    # -- backends and usage ------------------------------------------------------------------

    @api.get("/backends")
    async def backends(request: Request) -> Response:
        caller(request)
        queue = store.queue_length()
        return _json({"devices": [_backend_entry(name, queue) for name in BACKENDS]})

    @api.get("/backends/{name}/configuration")
    async def configuration(name: str, request: Request) -> Response:
        caller(request)
        check_backend(name)
        return _json(backend_configuration(name))

    @api.get("/backends/{name}/properties")
    async def properties(name: str, request: Request) -> Response:
        caller(request)
        check_backend(name)
        return _json({})

    @api.get("/backends/{name}/status")
    async def status(name: str, request: Request) -> Response:
        caller(request)
        check_backend(name)
        body = config.backend_status(store.queue_length())
        body["backend_name"] = name
        return _json(body)

    @api.get("/instances/usage")
    async def usage(request: Request) -> Response:
        user, instance = caller(request)
        consumed = instance_usage_seconds(store, user, instance.crn, instance.default)
        return _json(
            {
                "instance_id": instance.crn,
                "plan_id": instance.plan.id,
                "usage_consumed_seconds": round(consumed, 3),
                "usage_limit_seconds": None,
                "usage_limit_reached": False,
            }
        )

    # -- jobs ------------------------------------------------------------------------------

    @api.post("/jobs")
    async def run_job(request: Request) -> Response:
        user, instance = caller(request)
        data = await read_json_body(request, ctx.max_body)
        if not isinstance(data, dict):
            raise ApiProblem(400, "INVALID_BODY", "The request body must be a JSON object.")
        backend = data.get("backend")
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ApiProblem(
                400,
                "BACKEND_NOT_FOUND",
                f"Unknown backend: {str(backend)[:64]} (use one of {', '.join(BACKENDS)}).",
            )
        session_id = data.get("session_id")
        if session_id is not None:
            if not isinstance(session_id, str) or not config.ID_RE.match(session_id):
                raise ApiProblem(400, "INVALID_FIELD", "'session_id' must be a session id.")
            session = get_platform_session(store, session_id, user)
            if session is None or session.instance != instance.crn:
                raise ApiProblem(400, "SESSION_NOT_FOUND", f"Session not found: {session_id}")
            if session.backend != backend:
                raise ApiProblem(
                    400,
                    "INVALID_FIELD",
                    f"Session {session_id} runs on {session.backend}, not on {backend[:64]}.",
                )
            details = session_details(
                session, session_activity(store, session_id, user), auth.now()
            )
            if not details["accepting_jobs"]:
                raise ApiProblem(
                    409, "SESSION_CLOSED", f"Session {session_id} does not accept jobs."
                )
        # The 2023 validation (program, params, tags, cost, ids) on a copy naming the one
        # backend it knows; the job then gets its platform backend, instance and estimate.
        core = {k: v for k, v in data.items() if k not in ("hub", "group", "project")}
        core["backend"] = BACKEND_NAME
        job = _new_job_from_body(core, user, ctx.programs)
        job = dataclasses.replace(
            job,
            backend=backend,
            hub=None,
            group=None,
            project=None,
            instance=instance.crn,
            estimated_seconds=estimate_seconds(data.get("params")),
        )
        store.create_job(job, time.time(), None)
        runner.submit(job.id)
        return _json(
            {"id": job.id, "backend": job.backend, "session_id": job.session_id, "private": False}
        )

    @api.get("/jobs")
    async def list_jobs(request: Request) -> Response:
        user, instance = caller(request)
        query = request.query_params
        flt = JobFilter()
        limit, offset = DEFAULT_LIST_LIMIT, 0

        def integer(name: str, value: str) -> int:
            if not value.strip().isdigit() or len(value) > 18:
                raise ApiProblem(400, "INVALID_QUERY", f"'{name}' must be a whole number.")
            return int(value)

        def boolean(name: str, value: str) -> bool:
            lowered = value.strip().lower()
            if lowered not in ("true", "false"):
                raise ApiProblem(400, "INVALID_QUERY", f"'{name}' must be true or false.")
            return lowered == "true"

        if (value := query.get("limit")) is not None:
            limit = min(integer("limit", value), config.MAX_LIST_LIMIT)
        if (value := query.get("offset")) is not None:
            offset = integer("offset", value)
        if value := query.get("backend"):
            flt.backend = value
        if (value := query.get("pending")) is not None:
            flt.pending = boolean("pending", value)
        if value := query.get("program"):
            flt.program = value
        flt.tags = [tag for tag in query.getlist("tags") if tag]
        if value := query.get("session_id"):
            flt.session_id = value
        for name in ("created_after", "created_before"):
            if value := query.get(name):
                setattr(flt, name, _utc_text(value, name))
        if (value := query.get("sort")) is not None:
            if value.upper() not in ("ASC", "DESC"):
                raise ApiProblem(400, "INVALID_QUERY", "'sort' must be ASC or DESC.")
            flt.ascending = value.upper() == "ASC"
        exclude = query.get("exclude_params")
        with_params = exclude is None or not boolean("exclude_params", exclude)
        # With params, a page holds at most LIST_PARAMS_BUDGET characters of them (as on the
        # 2023 routes); ``count`` lets the client page on with ``offset``.
        budget = config.LIST_PARAMS_BUDGET if with_params else None
        page, count = platform_job_page(
            store, user, instance.crn, instance.default, flt, limit, offset, budget
        )
        tail = f'],"count":{count},"limit":{limit},"offset":{offset}}}'
        if not with_params:
            items = ",".join(wire_job(job, estimate) for job, estimate in page)
            return Response('{"jobs":[' + items + tail, 200, media_type=_JSON)
        return StreamingResponse(_listing(page, tail), 200, media_type=_JSON)

    def _listing(page: list[tuple[JobRecord, float | None]], tail: str) -> Iterator[bytes]:
        """A listing with params, read and sent a job at a time (in a worker thread)."""
        yield b'{"jobs":['
        for index, (job, estimate) in enumerate(page):
            text = wire_job(job, estimate, store.get_params(job.id) or "{}")
            yield (text if index == 0 else "," + text).encode("utf-8")
        yield tail.encode("utf-8")

    @api.get("/jobs/{job_id}")
    async def get_job(job_id: str, request: Request) -> Response:
        user, instance = caller(request)
        job, estimate = scoped_job(job_id, user, instance)
        exclude = request.query_params.get("exclude_params", "").strip().lower() == "true"
        params = None if exclude else (store.get_params(job.id) or "{}")
        return Response(wire_job(job, estimate, params), 200, media_type=_JSON)

    @api.delete("/jobs/{job_id}")
    async def delete_job(job_id: str, request: Request) -> Response:
        user, instance = caller(request)
        job, _ = scoped_job(job_id, user, instance)
        if not job.final and store.cancel(job.id, user, time.time()) is not None:
            runner.cancel(job.id)
        store.delete_job(job.id, user)
        hub.wake(job.id)
        return Response(status_code=204)

    @api.post("/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str, request: Request) -> Response:
        user, instance = caller(request)
        job, _ = scoped_job(job_id, user, instance)
        if store.cancel(job.id, user, time.time()) is None:
            raise ApiProblem(
                409, "JOB_NOT_CANCELLABLE", f"Job {job.id} is already in a final state."
            )
        runner.cancel(job.id)
        hub.wake(job.id)
        return Response(status_code=204)

    @api.get("/jobs/{job_id}/results")
    async def job_results(job_id: str, request: Request) -> Response:
        user, instance = caller(request)
        job, _ = scoped_job(job_id, user, instance)
        if not job.final:
            raise ApiProblem(
                409,
                "JOB_NOT_FINAL",
                f"Job {job.id} is {_TITLE.get(job.status, job.status)}: its result is "
                "available once it is final.",
            )
        media_type = _JSON if job.status == COMPLETED else "text/plain; charset=utf-8"
        return result_response(store, job.id, media_type)

    @api.get("/jobs/{job_id}/logs")
    async def job_logs(job_id: str, request: Request) -> Response:
        user, instance = caller(request)
        job, _ = scoped_job(job_id, user, instance)
        return Response(store.logs(job.id), 200, media_type="text/plain; charset=utf-8")

    @api.get("/jobs/{job_id}/metrics")
    async def job_metrics_route(job_id: str, request: Request) -> Response:
        user, instance = caller(request)
        job, _ = scoped_job(job_id, user, instance)
        return _json(job_metrics(job))

    @api.put("/jobs/{job_id}/tags")
    async def job_tags(job_id: str, request: Request) -> Response:
        user, instance = caller(request)
        job, _ = scoped_job(job_id, user, instance)
        tags = tags_from_body(await read_json_body(request, 64 * 1024))
        set_job_tags(store, job.id, user, tags)
        return Response(status_code=204)

    # -- sessions --------------------------------------------------------------------------

    def own_session(session_id: str, user: str, instance: Instance) -> PlatformSession:
        if not config.ID_RE.match(session_id):
            raise ApiProblem(422, "INVALID_ID", "Invalid session id.")
        session = get_platform_session(store, session_id, user)
        if session is None or (session.instance or "") != instance.crn:
            raise ApiProblem(404, "SESSION_NOT_FOUND", f"Session not found: {session_id}")
        return session

    @api.post("/sessions")
    async def create_session(request: Request) -> Response:
        user, instance = caller(request)
        data = await read_json_body(request, 64 * 1024)
        if not isinstance(data, dict):
            raise ApiProblem(400, "INVALID_BODY", "The request body must be a JSON object.")
        mode = data.get("mode", "dedicated")
        if mode not in ("dedicated", "batch"):
            raise ApiProblem(400, "INVALID_FIELD", "'mode' must be 'dedicated' or 'batch'.")
        backend = data.get("backend")
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ApiProblem(400, "BACKEND_NOT_FOUND", f"Unknown backend: {str(backend)[:64]}")
        named = data.get("instance")
        if named is not None and named != instance.crn:
            raise ApiProblem(
                400, "INVALID_FIELD", "'instance' must be the Service-CRN of the request."
            )
        max_ttl = data.get("max_ttl")
        if max_ttl is None:
            max_ttl = MAX_SESSION_TTL
        if not isinstance(max_ttl, int) or isinstance(max_ttl, bool) or max_ttl <= 0:
            raise ApiProblem(400, "INVALID_FIELD", "'max_ttl' must be a positive whole number.")
        session = PlatformSession(
            id=secrets.token_hex(10),
            user_id=user,
            instance=instance.crn,
            mode=mode,
            backend=backend,
            max_ttl=min(max_ttl, MAX_SESSION_TTL),
            created=auth.now(),
            closed=None,
            accepting=True,
            cancelled=None,
        )
        create_platform_session(store, session)
        activity = session_activity(store, session.id, user)
        return _json(session_details(session, activity, auth.now()))

    @api.get("/sessions/{session_id}")
    async def get_session(session_id: str, request: Request) -> Response:
        user, instance = caller(request)
        session = own_session(session_id, user, instance)
        activity = session_activity(store, session.id, user)
        return _json(session_details(session, activity, auth.now()))

    @api.patch("/sessions/{session_id}")
    async def update_session(session_id: str, request: Request) -> Response:
        user, instance = caller(request)
        session = own_session(session_id, user, instance)
        data = await read_json_body(request, 64 * 1024)
        accepting = data.get("accepting_jobs") if isinstance(data, dict) else None
        if not isinstance(accepting, bool):
            raise ApiProblem(400, "INVALID_FIELD", "'accepting_jobs' must be true or false.")
        if accepting:
            if not session.accepting or session.closed is not None:
                raise ApiProblem(409, "SESSION_CLOSED", "A closed session cannot be reopened.")
        else:
            close_platform_session(store, session.id, user, auth.now(), cancel=False)
        return Response(status_code=204)

    @api.delete("/sessions/{session_id}/close")
    async def cancel_session(session_id: str, request: Request) -> Response:
        user, instance = caller(request)
        session = own_session(session_id, user, instance)
        close_platform_session(store, session.id, user, auth.now(), cancel=True)
        for job_id in session_activity(store, session.id, user)["active"]:
            if store.cancel(job_id, user, time.time()) is not None:
                runner.cancel(job_id)
                hub.wake(job_id)
        return Response(status_code=204)

    router.include_router(api)
    return router


def _utc_text(value: str, name: str) -> str:
    """An ISO 8601 query time as the store's UTC text (400 when it is not one)."""
    from datetime import UTC, datetime

    text = value.strip().replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiProblem(400, "INVALID_QUERY", f"'{name}' must be an ISO 8601 time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = [
    "BACKENDS",
    "DEVICE_NAME",
    "PREFIX",
    "REASON_CODE_RAN_TOO_LONG",
    "backend_configuration",
    "estimate_seconds",
    "job_metrics",
    "platform_router",
    "session_details",
    "wire_job",
    "wire_state",
]
