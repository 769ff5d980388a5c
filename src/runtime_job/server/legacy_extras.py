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

from fastapi import APIRouter, Request
from starlette.responses import Response

from .app import ApiProblem, AppContext, _check_id, read_json_body, tags_from_body
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

    @router.put("/jobs/{job_id}/tags")
    async def job_tags(job_id: str, request: Request) -> Response:
        user = require_user(request)
        _check_id(job_id, "job id")
        tags = tags_from_body(await read_json_body(request, _MAX_TAGS_BODY))
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
