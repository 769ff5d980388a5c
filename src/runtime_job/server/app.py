"""The HTTP and websocket routes of the local runtime server (a FastAPI application).

Two APIs share one port:

- the ``ibm_quantum`` login API under ``/api`` (``version``, ``users/loginWithToken``,
  ``users/me``, ``Network``), with the legacy error shape ``{"error": {...}}``;
- the runtime API at the root (``/backends``, ``/jobs``, ``/sessions``, and the websocket
  ``/stream/jobs/{id}``), with the runtime error shape
  ``{"errors": [{"code", "message", "more_info"}], "trace"}``.

Handlers are ``async`` and call the store directly: SQLite answers in microseconds, and
skipping a thread hop keeps latency low. Every response carries
``X-Idempotency-Supported: true``. Bad input never causes a 5xx: bodies are capped
(413), ids and query values are validated (422), and nothing from a request is ever used
to build a filesystem path.

Example::

    app = create_app(context)   # see server.LocalRuntimeServer for the wiring
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect

from .._version import __version__
from ..api.models import RunJobRequest
from . import config
from .auth import Authenticator
from .programs import BACKEND_NAME, PROGRAM_ID_RE, ProgramRegistry
from .runner import Runner
from .store import (
    COMPLETED,
    QUEUED,
    IdempotencyConflict,
    JobFilter,
    JobRecord,
    NewJob,
    ResultReader,
    StorageUnavailable,
    Store,
    iso_utc,
)

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JOB_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_RESULT_CHUNK = 1 << 20
"""A result body longer than this is sent in pieces of this size."""
_SPACE_OFFSET_RE = re.compile(r" (\d\d:?\d\d)$")


class ApiProblem(Exception):
    """An error answered with a runtime-style (or, under ``/api``, legacy) error body.

    Args:
        status: HTTP status.
        code: Machine-readable code.
        message: Human-readable message.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class StreamHub:
    """Wakes the websocket handlers of a job when its stored state changes.

    Lives in the server's event loop; other threads call :meth:`wake` through
    :class:`Notifier`.
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self.closing = False

    def subscribe(self, job_id: str) -> asyncio.Event:
        """A new event set whenever ``job_id`` changes."""
        event = asyncio.Event()
        self._subscribers.setdefault(job_id, set()).add(event)
        return event

    def unsubscribe(self, job_id: str, event: asyncio.Event) -> None:
        """Forget an event returned by :meth:`subscribe`."""
        events = self._subscribers.get(job_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._subscribers[job_id]

    def wake(self, job_id: str) -> None:
        """Wake every subscriber of ``job_id``."""
        for event in self._subscribers.get(job_id, ()):
            event.set()

    def close_all(self) -> None:
        """Wake every subscriber and tell them the server is going away."""
        self.closing = True
        for events in self._subscribers.values():
            for event in events:
                event.set()

    def subscriber_count(self) -> int:
        """Number of open subscriptions (websocket connections)."""
        return sum(len(events) for events in self._subscribers.values())


class Notifier:
    """Thread-safe bridge from the runner thread to the :class:`StreamHub`."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, job_id: str) -> None:
        """Wake the subscribers of ``job_id`` (from any thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.hub.wake, job_id)


@dataclass
class AppContext:
    """What the routes need.

    Attributes:
        store: The database.
        auth: Credentials to users.
        programs: The programs.
        runner: The worker pool.
        hub: Websocket wake-ups.
        max_body: Largest accepted request body in bytes.
        stream_replay: A stream starts with what was published before it connected (the
            default). ``False`` plays the hosted service: a stream gets only the interim
            results published after its handshake, then the job's end.
    """

    store: Store
    auth: Authenticator
    programs: ProgramRegistry
    runner: Runner
    hub: StreamHub
    max_body: int = config.MAX_BODY_BYTES
    stream_replay: bool = True


def _request_id() -> str:
    return secrets.token_hex(8)


def _error_body(status: int, code: str, message: str, legacy: bool) -> str:
    if legacy:
        return json.dumps(
            {"error": {"message": message, "code": code, "name": code, "status": status}}
        )
    return json.dumps(
        {
            "errors": [{"code": code, "message": message, "more_info": ""}],
            "trace": _request_id(),
        }
    )


def error_response(status: int, code: str, message: str, legacy: bool = False) -> Response:
    """A JSON error response in the runtime (or legacy ``/api``) shape."""
    return Response(_error_body(status, code, message, legacy), status, media_type=_JSON)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type=_JSON)


def _is_legacy(path: str) -> bool:
    # /api/v1 is the platform dialect's quantum API (server/platform.py), not the login API.
    return path == "/api" or (path.startswith("/api/") and not path.startswith("/api/v1/"))


class _Guard:
    """ASGI middleware: the ``X-Idempotency-Supported`` header and the body size cap."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                headers = list(message.get("headers", []))
                headers.append((b"x-idempotency-supported", b"true"))
                message = {**message, "headers": headers}
            await send(message)

        if scope["type"] == "http":
            for name, value in scope.get("headers", []):
                if name == b"content-length":
                    try:
                        too_big = int(value) > self.max_body
                    except ValueError:
                        too_big = False
                    if too_big:
                        response = error_response(
                            413,
                            "PAYLOAD_TOO_LARGE",
                            f"Request body larger than {self.max_body} bytes.",
                            _is_legacy(scope.get("path", "")),
                        )
                        await response(scope, receive, send_with_header)
                        return
        await self.app(scope, receive, send_with_header)


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, "PAYLOAD_TOO_LARGE", f"Request body larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes | str, status: int = 422) -> Any:
    """``raw`` as JSON; otherwise ``status`` (the 2023 routes answer 422, the later ones 400)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiProblem(status, "INVALID_JSON", "The request body is not valid JSON.") from None


async def read_json_body(request: Request, limit: int) -> Any:
    """The request's JSON body, at most ``limit`` bytes (413 beyond, 400 if not JSON)."""
    return _parse_json(await _read_body(request, limit), 400)


def tags_from_body(data: Any) -> list[str]:
    """The ``tags`` of a ``PUT .../tags`` body, checked against the server's limits (400)."""
    tags = data.get("tags") if isinstance(data, dict) else None
    if (
        not isinstance(tags, list)
        or len(tags) > config.MAX_TAGS
        or not all(isinstance(t, str) and 0 < len(t) <= config.MAX_TAG_LENGTH for t in tags)
    ):
        raise ApiProblem(
            400,
            "INVALID_FIELD",
            f"'tags' must be a list of at most {config.MAX_TAGS} non-empty strings of at "
            f"most {config.MAX_TAG_LENGTH} characters.",
        )
    return tags


def _new_job_id() -> str:
    return "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(20))


def _check_id(value: str, what: str) -> str:
    if not config.ID_RE.match(value):
        raise ApiProblem(
            422, "INVALID_ID", f"Invalid {what}: expected 1-64 characters from [A-Za-z0-9_-]."
        )
    return value


def _parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ApiProblem(422, "INVALID_QUERY", f"'{name}' must be true or false.")


_MAX_INT = 2**62


def _parse_int(value: str, name: str, minimum: int = 0) -> int:
    text = value.strip()
    if len(text) > 100:
        raise ApiProblem(422, "INVALID_QUERY", f"'{name}' is too large.")
    try:
        number = int(text)
    except ValueError:
        raise ApiProblem(422, "INVALID_QUERY", f"'{name}' must be an integer.") from None
    if number < minimum:
        raise ApiProblem(422, "INVALID_QUERY", f"'{name}' must be at least {minimum}.")
    return min(number, _MAX_INT)


def _parse_time(value: str, name: str) -> str:
    text = _SPACE_OFFSET_RE.sub(r"+\1", value.strip())
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, OverflowError):
        raise ApiProblem(
            422, "INVALID_QUERY", f"'{name}' must be an ISO 8601 date and time."
        ) from None


def create_app(
    ctx: AppContext, *, streams: bool = True, routers: Sequence[APIRouter] = ()
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Build the ASGI application serving ``ctx``.

    Args:
        ctx: The server's components.
        streams: Serve ``/stream/jobs/{id}``. When false, each stream is accepted and at
            once closed normally, with nothing sent (see :data:`STREAMS_OFF_REASON`).
        routers: More routes on the same components (the platform dialect's, built by
            ``server.platform.platform_router``), served beside these.

    Returns:
        The ASGI application (FastAPI wrapped in the size/header guard).
    """
    app = FastAPI(
        title="runtime-job local server",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    store, auth, hub = ctx.store, ctx.auth, ctx.hub

    def require_user(request: Request) -> str:
        user = auth.user_for_headers(request.headers)
        if user is None:
            raise ApiProblem(401, "UNAUTHORIZED", "Missing or invalid authentication token.")
        return user

    def own_job(job_id: str, user: str) -> JobRecord:
        _check_id(job_id, "job id")
        job = store.get_job(job_id, user)
        if job is None:
            raise ApiProblem(404, "JOB_NOT_FOUND", f"Job not found: {job_id}")
        return job

    # -- error handling ----------------------------------------------------------------------

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> Response:
        legacy = _is_legacy(request.url.path)
        if exc.status == 401 and legacy:
            return error_response(401, "AUTHORIZATION_REQUIRED", exc.message, True)
        return error_response(exc.status, exc.code, exc.message, legacy)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return error_response(exc.status_code, code, str(exc.detail), _is_legacy(request.url.path))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(
            422, "INVALID_REQUEST", "Invalid request.", _is_legacy(request.url.path)
        )

    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, exc: StorageUnavailable) -> Response:
        # Disk full or failing: the store rolled back, so the request can simply be sent
        # again once there is room (issue 18 item 2). Not a 500: nothing is broken here.
        code = "STORAGE_FULL" if exc.full else "STORAGE_UNAVAILABLE"
        return error_response(503, code, str(exc), _is_legacy(request.url.path))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("Unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500, "INTERNAL_ERROR", "Internal server error.", _is_legacy(request.url.path)
        )

    # -- ibm_quantum login API ---------------------------------------------------------------

    @app.get("/api/version")
    async def api_version() -> Response:
        return _json(
            {"new_api": True, "api-auth": "0.1", "version": __version__, "server": "runtime-job"}
        )

    @app.post("/api/users/loginWithToken")
    async def login(request: Request) -> Response:
        data = _parse_json(await _read_body(request, 64 * 1024))
        token = data.get("apiToken") if isinstance(data, dict) else None
        created = auth.now()
        access = auth.login(token) if isinstance(token, str) else None
        if access is None:
            return error_response(401, "LOGIN_FAILED", "Login failed.", legacy=True)
        return _json({"id": access, "ttl": int(auth.ttl), "created": iso_utc(created)})

    @app.get("/api/users/me")
    async def users_me(request: Request) -> Response:
        user = require_user(request)
        base = str(request.base_url).rstrip("/")
        ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
        return _json(
            {
                "id": user,
                "urls": {
                    "http": base + "/api",
                    "ws": ws_base + "/stream",
                    "services": {"runtime": base},
                },
            }
        )

    @app.get("/api/Network")
    async def api_network(request: Request) -> Response:
        require_user(request)
        return _json(config.network())

    # -- backends ------------------------------------------------------------------------------

    def check_backend(name: str) -> None:
        if name != BACKEND_NAME:
            raise ApiProblem(404, "BACKEND_NOT_FOUND", f"Backend not found: {name[:64]}")

    @app.get("/backends")
    async def backends(request: Request) -> Response:
        require_user(request)
        provider = request.query_params.get("provider")
        devices = [BACKEND_NAME] if provider in (None, "", config.INSTANCE) else []
        return _json({"devices": devices})

    @app.get("/backends/{name}/status")
    async def backend_status(name: str, request: Request) -> Response:
        require_user(request)
        check_backend(name)
        return _json(config.backend_status(store.queue_length()))

    @app.get("/backends/{name}/configuration")
    async def backend_configuration(name: str, request: Request) -> Response:
        require_user(request)
        check_backend(name)
        return _json(config.backend_configuration())

    @app.get("/backends/{name}/properties")
    async def backend_properties(name: str, request: Request) -> Response:
        require_user(request)
        check_backend(name)
        return _json({})

    @app.get("/backends/{name}/defaults")
    async def backend_defaults(name: str, request: Request) -> Response:
        require_user(request)
        check_backend(name)
        raise ApiProblem(404, "NOT_FOUND", f"Backend {name} has no pulse defaults.")

    # -- jobs ----------------------------------------------------------------------------------

    @app.post("/jobs")
    async def run_job(request: Request) -> Response:
        user = require_user(request)
        key = request.headers.get("idempotency-key")
        if key is not None and not config.IDEMPOTENCY_KEY_RE.match(key):
            raise ApiProblem(
                422, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-255 visible ASCII."
            )
        raw = await _read_body(request, ctx.max_body)
        job = _new_job_from_body(_parse_json(raw), user, ctx.programs)
        idempotency = (key, hashlib.sha256(raw).hexdigest()) if key is not None else None
        try:
            response, created = store.create_job(job, time.time(), idempotency)
        except IdempotencyConflict:
            raise ApiProblem(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was already used with a different request body.",
            ) from None
        if created:
            ctx.runner.submit(job.id)
        return Response(response, 200, media_type=_JSON)

    @app.get("/jobs")
    async def list_jobs(request: Request) -> Response:
        user = require_user(request)
        query = request.query_params
        flt = JobFilter()
        limit, offset = config.DEFAULT_LIST_LIMIT, 0
        if (value := query.get("limit")) is not None:
            limit = min(_parse_int(value, "limit"), config.MAX_LIST_LIMIT)
        if (value := query.get("offset")) is not None:
            offset = _parse_int(value, "offset")
        if value := query.get("backend"):
            flt.backend = value
        if (value := query.get("pending")) is not None:
            flt.pending = _parse_bool(value, "pending")
        if value := query.get("program"):
            flt.program = value
        flt.tags = [tag for tag in query.getlist("tags") if tag]
        if value := query.get("session_id"):
            flt.session_id = value
        if value := query.get("created_after"):
            flt.created_after = _parse_time(value, "created_after")
        if value := query.get("created_before"):
            flt.created_before = _parse_time(value, "created_before")
        if (value := query.get("sort")) is not None:
            if value.upper() not in ("ASC", "DESC"):
                raise ApiProblem(422, "INVALID_QUERY", "'sort' must be ASC or DESC.")
            flt.ascending = value.upper() == "ASC"
        if value := query.get("provider"):
            parts = value.split("/")
            if len(parts) != 3 or not all(parts):
                raise ApiProblem(422, "INVALID_QUERY", "'provider' must be hub/group/project.")
            flt.hgp = (parts[0], parts[1], parts[2])
        exclude = query.get("exclude_params")
        with_params = not (exclude is not None and _parse_bool(exclude, "exclude_params"))
        cursor = None
        if (value := query.get("cursor")) is not None:
            cursor = _parse_int(value, "cursor")
        budget = config.LIST_PARAMS_BUDGET if with_params else None
        page, count, more = store.job_page(user, flt, limit, offset, cursor, budget)
        tail = f'],"count":{count}'
        if more and page:
            tail += f',"{LIST_CURSOR_FIELD}":"{page[-1].num}"'
        tail += "}"
        if not with_params:
            items = ",".join(job.to_wire(None) for job in page)
            return Response('{"jobs":[' + items + tail, 200, media_type=_JSON)
        # Params can be large: they are read one job at a time and the body is streamed,
        # built in a worker thread (a sync iterator), so the event loop serves others.
        return StreamingResponse(_listing_body(store, page, tail), 200, media_type=_JSON)

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str, request: Request) -> Response:
        user = require_user(request)
        job = own_job(job_id, user)
        exclude = request.query_params.get("exclude_params")
        params = None
        if not (exclude is not None and _parse_bool(exclude, "exclude_params")):
            params = store.get_params(job.id) or "{}"
        position = store.queue_position(job) if job.status == QUEUED else None
        return Response(job.to_wire(params, position), 200, media_type=_JSON)

    @app.delete("/jobs/{job_id}")
    async def delete_job(job_id: str, request: Request) -> Response:
        user = require_user(request)
        job = own_job(job_id, user)
        if not job.final and store.cancel(job.id, user, time.time()) is not None:
            ctx.runner.cancel(job.id)
        store.delete_job(job.id, user)
        hub.wake(job.id)
        return Response(status_code=204)

    @app.post("/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str, request: Request) -> Response:
        user = require_user(request)
        job = own_job(job_id, user)
        if store.cancel(job.id, user, time.time()) is None:
            current = store.get_job(job.id, user)
            status = current.status if current is not None else job.status
            raise ApiProblem(
                409, "JOB_NOT_CANCELLABLE", f"Job {job.id} is already in a final state: {status}."
            )
        ctx.runner.cancel(job.id)
        hub.wake(job.id)
        return Response(status_code=204)

    @app.get("/jobs/{job_id}/results")
    async def job_results(job_id: str, request: Request) -> Response:
        user = require_user(request)
        job = own_job(job_id, user)
        if not job.final:
            raise ApiProblem(
                409,
                "JOB_NOT_FINAL",
                f"Job {job.id} is {job.status}: its result is available once it is final.",
            )
        return result_response(store, job.id, _JSON if job.status == COMPLETED else _TEXT)

    @app.get("/jobs/{job_id}/interim_results")
    async def job_interim_results(job_id: str, request: Request) -> Response:
        user = require_user(request)
        job = own_job(job_id, user)
        return interim_response(store, job.id)

    @app.get("/jobs/{job_id}/logs")
    async def job_logs(job_id: str, request: Request) -> Response:
        user = require_user(request)
        job = own_job(job_id, user)
        return Response(store.logs(job.id), 200, media_type=_TEXT)

    @app.get("/jobs/{job_id}/metrics")
    async def job_metrics(job_id: str, request: Request) -> Response:
        user = require_user(request)
        job = own_job(job_id, user)
        return _json(job.metrics())

    @app.delete("/sessions/{session_id}/close")
    async def close_session(session_id: str, request: Request) -> Response:
        user = require_user(request)
        _check_id(session_id, "session id")
        if not store.close_session(session_id, user, time.time()):
            raise ApiProblem(404, "SESSION_NOT_FOUND", f"Session not found: {session_id}")
        return Response(status_code=204)

    # -- websocket -----------------------------------------------------------------------------

    @app.websocket("/stream/jobs/{job_id}")
    async def stream_job(websocket: WebSocket, job_id: str) -> None:
        if streams:
            await _stream(websocket, job_id, ctx)
        else:
            await _no_stream(websocket, ctx)

    unrouted = app.router.default

    async def no_route(scope: Scope, receive: Receive, send: Send) -> None:
        """A websocket no route matches (``/stream/jobs/..%2Fx``): 401, else the 404 body.

        Starlette would close it before the handshake, which uvicorn answers with a bare 403.
        """
        if scope["type"] != "websocket":
            await unrouted(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if auth.user_for_headers(websocket.headers) is None:
            await _deny(websocket, 401, "UNAUTHORIZED", "Missing or invalid authentication token.")
        elif scope.get("path", "").startswith("/stream/jobs/"):
            await _deny(websocket, 404, "JOB_NOT_FOUND", "Job not found: invalid job id.")
        else:
            await _deny(websocket, 404, "NOT_FOUND", "Not Found")

    for router in routers:
        app.include_router(router)
    app.router.default = no_route
    return _Guard(app, ctx.max_body)


LIST_CURSOR_FIELD = "next_cursor"
"""Field of a ``GET /jobs`` page that has more after it: the cursor to pass as ``cursor=``
for the next page (a wire extension, see wire-extensions.md)."""


def _listing_body(store: Store, page: list[JobRecord], tail: str) -> Iterator[bytes]:
    """The body of a listing page with params, a job at a time (run in a worker thread)."""
    yield b'{"jobs":['
    for index, job in enumerate(page):
        text = job.to_wire(store.get_params(job.id) or "{}")
        yield (text if index == 0 else "," + text).encode("utf-8")
        del text
    yield tail.encode("utf-8")


def result_response(store: Store, job_id: str, media_type: str) -> Response:
    """A final job's stored result: one body when small, else streamed from the database.

    One huge send is slow over TLS (asyncio copies and encrypts it whole), and reading the
    whole value first delays the first byte, so a large result goes out in pieces.
    """
    result = store.open_result(job_id)
    if result is None or len(result) <= _RESULT_CHUNK:
        body = b""
        if result is not None:
            with contextlib.closing(result):
                body = result.read()
        return Response(body, 200, media_type=media_type)
    return StreamingResponse(
        _pieces(result),
        200,
        headers={"Content-Length": str(len(result))},
        media_type=media_type,
    )


def interim_response(store: Store, job_id: str) -> Response:
    """A job's interim results as one JSON array: one body when they fit in one batch, else
    streamed a batch at a time, as a stream sends them (the server holds two batches at
    most, never the job's whole output, and the loop serves others between batches)."""
    first = _interim_batch(store, job_id, 0)
    following = _interim_batch(store, job_id, first[-1][0]) if first else []
    if not following:
        return Response("[" + ",".join(text for _, text in first) + "]", 200, media_type=_JSON)
    return StreamingResponse(
        _interim_pieces(store, job_id, first, following), 200, media_type=_JSON
    )


def _interim_batch(store: Store, job_id: str, after: int) -> list[tuple[int, str]]:
    return store.interim_batch(job_id, after, config.STREAM_BATCH_ROWS, config.STREAM_BATCH_BYTES)


async def _interim_pieces(
    store: Store, job_id: str, *batches: list[tuple[int, str]]
) -> AsyncIterator[str]:
    """``[``, the given batches and every later one, ``]``: a piece per batch."""
    opening = "["
    for batch in batches:
        yield opening + ",".join(text for _, text in batch)
        opening = ","
    after = batches[-1][-1][0]
    while batch := _interim_batch(store, job_id, after):
        await asyncio.sleep(0)  # let the loop serve others (and notice a gone client)
        yield "," + ",".join(text for _, text in batch)
        after = batch[-1][0]
    yield "]"


async def _pieces(result: ResultReader) -> AsyncIterator[bytes]:
    """A stored result in pieces of :data:`_RESULT_CHUNK` bytes; closes it at the end."""
    try:
        while piece := result.read(_RESULT_CHUNK):
            yield piece
            # Sending returns at once while the transport takes it all: let the loop run, so
            # that a client's disconnection is noticed (and the rest not sent into the void).
            await asyncio.sleep(0)
    finally:
        result.close()


_SURROGATE_ESCAPE_RE = re.compile(r"\\ud[89a-f]")
"""A ``\\uD800``-``\\uDFFF`` escape in ASCII JSON text: a surrogate, maybe a lone one."""


def _params_text(params: dict[str, Any] | list[Any]) -> str:
    """The params as compact JSON text to store, or a 400 naming what JSON cannot hold.

    NaN, Infinity and numbers beyond a double (``1e400`` parses as infinity) are not JSON:
    echoed back they would make ``GET /jobs/{id}`` invalid. Text that is not valid Unicode
    (a lone surrogate, sent as the escape ``\\ud800``) cannot be stored or printed by the
    program either.
    """
    try:
        text = json.dumps(params, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise ApiProblem(422, "INVALID_FIELD", "'params' is nested too deeply.") from None
    except ValueError:
        raise ApiProblem(
            400,
            "INVALID_PARAMS",
            "'params' holds NaN, Infinity or a number too large for a double (such as 1e400):"
            " JSON has no such values.",
        ) from None
    if _SURROGATE_ESCAPE_RE.search(text) is not None:
        # Surrogate pairs were joined by the parser: any surrogate left is a lone one.
        try:
            json.dumps(params, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ApiProblem(
                400,
                "INVALID_PARAMS",
                "'params' holds text that is not valid Unicode (a lone surrogate such as \\ud800).",
            ) from None
    return text


def _new_job_from_body(data: Any, user: str, programs: ProgramRegistry) -> NewJob:
    if not isinstance(data, dict):
        raise ApiProblem(422, "INVALID_BODY", "The request body must be a JSON object.")
    try:
        request = RunJobRequest.model_validate(data, strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiProblem(
            422, "INVALID_FIELD", f"Invalid field '{where}': {first['msg']}."
        ) from None
    program_id = request.program_id
    if not PROGRAM_ID_RE.match(program_id):
        raise ApiProblem(422, "INVALID_FIELD", "'program_id' must be a valid program id.")
    if program_id not in programs:
        raise ApiProblem(404, "PROGRAM_NOT_FOUND", f"Program not found: {program_id}")
    params = request.params
    if isinstance(params, str):
        # Parsed as text: encoding it first would fail on a lone surrogate (a 500).
        params = _parse_json(params)
    if params is None:
        params = {}
    if not isinstance(params, dict | list):
        raise ApiProblem(422, "INVALID_FIELD", "'params' must be a JSON object.")
    params_text = _params_text(params)
    backend = request.backend or BACKEND_NAME
    if backend != BACKEND_NAME:
        raise ApiProblem(422, "BACKEND_NOT_FOUND", f"Unknown backend: {backend[:64]}")
    tags = request.tags or []
    if len(tags) > config.MAX_TAGS or not all(0 < len(t) <= config.MAX_TAG_LENGTH for t in tags):
        raise ApiProblem(
            422, "INVALID_FIELD", f"'tags' must be at most {config.MAX_TAGS} non-empty strings."
        )
    if request.cost is not None and not 0 < request.cost <= config.MAX_COST:
        raise ApiProblem(
            422,
            "INVALID_FIELD",
            f"'cost' must be an integer from 1 to {config.MAX_COST} (seconds).",
        )
    hgp = (request.hub, request.group, request.project)
    if any(part is not None for part in hgp) and hgp != (config.HUB, config.GROUP, config.PROJECT):
        raise ApiProblem(403, "INSTANCE_NOT_ALLOWED", f"Unknown instance: use {config.INSTANCE}.")
    for name, value, limit in (
        ("runtime", request.runtime, 256),
        ("log_level", request.log_level, 32),
    ):
        if value is not None and len(value) > limit:
            raise ApiProblem(422, "INVALID_FIELD", f"'{name}' is longer than {limit}.")
    for value in (*tags, request.runtime or "", request.log_level or ""):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiProblem(422, "INVALID_FIELD", "Strings must be valid Unicode.") from None
    session_id = request.session_id
    if session_id is not None:
        _check_id(session_id, "session id")
    start_session = request.start_session is True
    job_id = _new_job_id()
    if start_session and session_id is None:
        session_id = job_id
    return NewJob(
        id=job_id,
        user_id=user,
        program_id=program_id,
        backend=backend,
        params=params_text,
        session_id=session_id,
        tags=list(tags),
        hub=config.HUB,
        group=config.GROUP,
        project=config.PROJECT,
        runtime=request.runtime,
        cost=request.cost,
        log_level=request.log_level,
        start_session=start_session,
    )


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    await websocket.send_denial_response(error_response(status, code, message))


def _record_cursor(store: Store, job_id: str, user: str, sent: int, recorded: int) -> int:
    """Persist a plain-stream cursor that moved (what was sent is never sent again)."""
    if sent > recorded:
        store.advance_cursor(job_id, user, sent)
    return max(sent, recorded)


STREAMS_OFF_REASON = "streaming is off on this server: poll GET /jobs/{id}"
"""Close reason of every stream of a server started without streams."""


async def _no_stream(websocket: WebSocket, ctx: AppContext) -> None:
    """A server without streams: authenticate, accept, then close normally at once.

    A normal close (1000) with nothing sent is the one ending after which both our client
    and the reference fall back to polling at once; a refused handshake (403, 404) or a
    policy close (1008) makes the reference retry for about 15 s first.
    """
    if ctx.auth.user_for_headers(websocket.headers) is None:
        await _deny(websocket, 401, "UNAUTHORIZED", "Missing or invalid authentication token.")
        return
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.accept()
        await websocket.close(1000, STREAMS_OFF_REASON)


async def _stream(websocket: WebSocket, job_id: str, ctx: AppContext) -> None:
    """Serve ``/stream/jobs/{id}``: plain (reference) or sequenced (``seq=1``) frames."""
    user = ctx.auth.user_for_headers(websocket.headers)
    if user is None:
        await _deny(websocket, 401, "UNAUTHORIZED", "Missing or invalid authentication token.")
        return
    job = ctx.store.get_job(job_id, user) if config.ID_RE.match(job_id) else None
    if job is None:
        await _deny(websocket, 404, "JOB_NOT_FOUND", f"Job not found: {job_id[:64]}")
        return
    query = websocket.query_params
    seq_value = query.get("seq")
    if seq_value not in (None, "0", "1"):
        await _deny(websocket, 422, "INVALID_QUERY", "'seq' must be 0 or 1.")
        return
    sequenced = seq_value == "1"
    after = 0
    if sequenced and (value := query.get("after")) is not None:
        try:
            after = _parse_int(value, "after")
        except ApiProblem as problem:
            await _deny(websocket, 422, problem.code, problem.message)
            return
    await websocket.accept()
    hub, store = ctx.hub, ctx.store
    recorded = after
    event = hub.subscribe(job_id)
    if not ctx.stream_replay and (now := store.get_job(job_id)) is not None:
        job = now  # live only: what was published before the handshake is skipped
        after = max(after, now.n_interim)
    receiver: asyncio.Task[Message] = asyncio.ensure_future(websocket.receive())
    try:
        if sequenced:
            last = job.n_interim + (1 if job.final else 0)
            await websocket.send_text(
                json.dumps({"ack": True, "protocol": "seq.v1", "last_seq": last})
            )
        else:
            await websocket.send_text("ACK")
            recorded = store.get_cursor(job_id, user)
            after = max(after, recorded)
        ctx.runner.stream_opened(job_id)  # a job held until its client listens may run
        while True:
            event.clear()
            current = store.get_job(job_id)
            if current is None:
                await websocket.close(1000)
                return
            # Interim results go out in bounded batches, each read only once the previous one
            # is sent (a send waits while the socket's buffer is full): a client that reads
            # nothing makes the server hold one batch, not the job's output.
            while after < current.n_interim:
                batch = store.interim_batch(
                    job_id, after, config.STREAM_BATCH_ROWS, config.STREAM_BATCH_BYTES
                )
                if not batch:
                    break
                for seq, payload in batch:
                    if sequenced:
                        await websocket.send_text(f'{{"seq":{seq},"final":false}}\n{payload}')
                    else:
                        await websocket.send_text(payload)
                    after = seq
                del batch
            if current.final:
                final_seq = current.final_seq
                if after < final_seq:
                    completed = current.status == COMPLETED
                    result = (store.get_result(job_id) or "") if completed else ""
                    if sequenced:
                        header = json.dumps(
                            {
                                "seq": final_seq,
                                "final": True,
                                "status": current.status,
                                "reason": current.reason,
                            }
                        )
                        await websocket.send_text(f"{header}\n{result}")
                    elif completed:
                        await websocket.send_text(result)
                    del result
                    after = final_seq
                if not sequenced:
                    recorded = _record_cursor(store, job_id, user, after, recorded)
                await websocket.close(1000)
                return
            if not sequenced:
                recorded = _record_cursor(store, job_id, user, after, recorded)
            if hub.closing:
                await websocket.close(1001)
                return
            # Wait for the job to change. What the client sends is read and dropped here,
            # without a look at the database (a flood of tiny frames costs no query).
            waiter = asyncio.ensure_future(event.wait())
            try:
                while not waiter.done():
                    await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                    if receiver.done():
                        message = receiver.result()
                        if message["type"] == "websocket.disconnect":
                            return
                        receiver = asyncio.ensure_future(websocket.receive())
            finally:
                waiter.cancel()
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
    finally:
        hub.unsubscribe(job_id, event)
        if not sequenced:
            with contextlib.suppress(Exception):
                _record_cursor(store, job_id, user, after, recorded)
        if not receiver.done():
            receiver.cancel()
            with contextlib.suppress(BaseException):
                await receiver


__all__ = [
    "LIST_CURSOR_FIELD",
    "STREAMS_OFF_REASON",
    "ApiProblem",
    "AppContext",
    "Notifier",
    "StreamHub",
    "create_app",
    "error_response",
]
