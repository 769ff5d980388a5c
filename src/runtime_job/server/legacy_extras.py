"""The later job calls on the 2023 routes: ``PUT /jobs/{id}/tags`` and ``GET /instances/usage``.

Later clients added ``job.update_tags()`` and ``service.usage()`` (issue 20). The platform
dialect serves them under ``/api/v1`` (:mod:`.platform`); these are the same two calls on the
2023 routes (``X-Access-Token``), so a client on the ``local`` or ``ibm_quantum`` channel has
them too. They use the same store functions as the platform routes: a job's tags are a set
(duplicates dropped, order kept), and the usage is that of the user's default instance, the
one the 2023 routes' jobs belong to.

Example::

    create_app(ctx, routers=[platform_router(ctx), legacy_extras_router(ctx)])
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from . import config
from .app import ApiProblem, AppContext, _check_id
from .discovery import instances_for
from .store import instance_usage_seconds, set_job_tags

_MAX_TAGS_BODY = 64 * 1024


def legacy_extras_router(ctx: AppContext) -> APIRouter:
    """The routes of the module docstring, on ``ctx``'s store and authenticator."""
    router = APIRouter()
    store, auth = ctx.store, ctx.auth

    def require_user(request: Request) -> str:
        user = auth.user_for_headers(request.headers)
        if user is None:
            raise ApiProblem(401, "UNAUTHORIZED", "Missing or invalid authentication token.")
        return user

    async def read_tags(request: Request) -> list[str]:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_TAGS_BODY:
                raise ApiProblem(
                    413, "PAYLOAD_TOO_LARGE", f"Request body larger than {_MAX_TAGS_BODY} bytes."
                )
        try:
            data: Any = json.loads(body)
        except (ValueError, RecursionError):
            raise ApiProblem(400, "INVALID_JSON", "The request body is not valid JSON.") from None
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

    @router.put("/jobs/{job_id}/tags")
    async def job_tags(job_id: str, request: Request) -> Response:
        user = require_user(request)
        _check_id(job_id, "job id")
        tags = await read_tags(request)
        if not set_job_tags(store, job_id, user, tags):
            raise ApiProblem(404, "JOB_NOT_FOUND", f"Job not found: {job_id}")
        return Response(status_code=204)

    @router.get("/instances/usage")
    async def usage(request: Request) -> Response:
        user = require_user(request)
        instance = instances_for(user)[0]
        consumed = instance_usage_seconds(store, user, instance.crn, True)
        body = {
            "instance_id": instance.crn,
            "usage_consumed_seconds": round(consumed, 3),
            "usage_limit_seconds": None,
            "usage_limit_reached": False,
        }
        return Response(json.dumps(body), 200, media_type="application/json")

    return router


__all__ = ["legacy_extras_router"]
