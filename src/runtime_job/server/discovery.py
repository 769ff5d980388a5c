"""Instance discovery of the platform dialect: the local instances, Global Search, Global Catalog.

The latest official client finds the instances of an API key through IBM Cloud's Global
Search (``POST /v3/resources/search``) and each instance's plan through the Global Catalog
(``GET /{plan id}``), even when it is given an instance CRN (``shared/spec/platform.md``
section 3). The local server answers both for its own instances:

- every local user has two instances, ``local-open`` (plan ``open``, pricing ``free``) and
  ``local-premium`` (plan ``premium``, pricing ``paid``), each with a CRN derived from the user
  id (region ``us-east``), so a user's jobs can be scoped to one instance or the other;
- the first, ``local-open``, is the user's default instance: jobs submitted on the 2023 routes
  (which have no instance) belong to it.

Routes (on the server's own port; point ``GLOBAL_SEARCH_URL`` at the server's URL and
``GLOBAL_CATALOG_URL`` at ``<url>/catalog``):

- ``POST /v3/resources/search[?limit=N]``: body ``{"query", "fields", "search_cursor"}``;
  answers ``{"items": [...], "limit"}`` plus ``search_cursor`` while more items follow;
- ``GET /catalog/{plan id}``: the plan's catalog entry (``overview_ui.en.display_name``,
  ``metadata.pricing.type``).

Errors have the IBM Cloud shape ``{"errors": [{"code", "message", "more_info"}], "trace",
"status_code"}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.responses import Response

from .iam import account_id

REGION = "us-east"
"""The region of every local instance (the client's default resolver maps it to no prefix)."""
SERVICE_NAME = "quantum-computing"
_MAX_SEARCH_BODY = 64 * 1024
_MAX_SEARCH_LIMIT = 100


@dataclass(frozen=True)
class Plan:
    """A service plan of the local instances.

    Attributes:
        id: The plan's unique id (its Global Catalog id).
        name: Its display name.
        pricing: Its pricing type (``free``, ``paid``, ...).
    """

    id: str
    name: str
    pricing: str


OPEN_PLAN = Plan("runtime-job-local-open-plan", "Open", "free")
PREMIUM_PLAN = Plan("runtime-job-local-premium-plan", "Premium", "paid")
PLANS: dict[str, Plan] = {plan.id: plan for plan in (OPEN_PLAN, PREMIUM_PLAN)}


@dataclass(frozen=True)
class Instance:
    """A local instance of a user.

    Attributes:
        crn: Its Cloud Resource Name, ``crn:v1:bluemix:public:quantum-computing:us-east:a/
            <account>:<guid>::``.
        name: Its name (``local-open``, ``local-premium``).
        plan: Its plan.
        default: Whether it is the user's default instance (2023-route jobs belong to it).
    """

    crn: str
    name: str
    plan: Plan
    default: bool


def _guid(user_id: str, plan: Plan) -> str:
    digest = hashlib.sha256(f"runtime-job-instance\0{user_id}\0{plan.id}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def instances_for(user_id: str) -> tuple[Instance, ...]:
    """The instances of a local user, default first (derived from the user id: stable)."""
    account = account_id(user_id)
    return tuple(
        Instance(
            crn=f"crn:v1:bluemix:public:{SERVICE_NAME}:{REGION}:a/{account}:"
            f"{_guid(user_id, plan)}::",
            name=f"local-{plan.name.lower()}",
            plan=plan,
            default=index == 0,
        )
        for index, plan in enumerate((OPEN_PLAN, PREMIUM_PLAN))
    )


def instance_of(user_id: str, crn: str) -> Instance | None:
    """The user's instance with this CRN, or ``None``."""
    for instance in instances_for(user_id):
        if instance.crn == crn:
            return instance
    return None


def cloud_error(status: int, code: str, message: str) -> Response:
    """An error response in the IBM Cloud shape (``errors``, ``trace``, ``status_code``)."""
    body = {
        "errors": [{"code": code, "message": message, "more_info": ""}],
        "trace": secrets.token_hex(8),
        "status_code": status,
    }
    return Response(json.dumps(body), status, media_type="application/json")


def _search_item(instance: Instance) -> dict[str, object]:
    return {
        "crn": instance.crn,
        "name": instance.name,
        "service_plan_unique_id": instance.plan.id,
        "family": "resource_controller",
        "type": "resource-instance",
        "region": REGION,
        "tags": [],
        # An allocation: the client skips instances without one.
        "doc": {"extensions": {"allocations": [{"backends": "local", "plan": instance.plan.id}]}},
    }


def catalog_entry(plan: Plan) -> dict[str, object]:
    """The Global Catalog entry of a plan."""
    return {
        "id": plan.id,
        "name": plan.name.lower(),
        "kind": "plan",
        "active": True,
        "overview_ui": {
            "en": {
                "display_name": plan.name,
                "description": f"{plan.name} plan of a runtime-job local server",
            }
        },
        "metadata": {"pricing": {"type": plan.pricing, "origin": "local"}},
    }


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: object) -> int | None:
    if not isinstance(cursor, str) or len(cursor) > 256:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error):
        return None
    offset = value.get("offset") if isinstance(value, dict) else None
    return offset if isinstance(offset, int) and offset >= 0 else None


def discovery_router(user_for: Callable[[Mapping[str, str]], str | None]) -> APIRouter:
    """The Global Search and Global Catalog routes.

    Args:
        user_for: The platform's authentication (request headers to user id, or ``None``).
    """
    router = APIRouter()

    @router.post("/v3/resources/search")
    async def search(request: Request) -> Response:
        user = user_for(request.headers)
        if user is None:
            return cloud_error(401, "unauthorized", "Missing or invalid IAM access token.")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > _MAX_SEARCH_BODY:
                return cloud_error(413, "payload_too_large", "The search body is too large.")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            return cloud_error(400, "bad_request", "The search body is not valid JSON.")
        if not isinstance(body, dict):
            return cloud_error(400, "bad_request", "The search body must be a JSON object.")
        limit = _MAX_SEARCH_LIMIT
        if (text := request.query_params.get("limit")) is not None:
            if not text.isdigit() or not 1 <= int(text) <= _MAX_SEARCH_LIMIT:
                return cloud_error(
                    400, "bad_request", f"'limit' must be from 1 to {_MAX_SEARCH_LIMIT}."
                )
            limit = int(text)
        offset = 0
        if (cursor := body.get("search_cursor")) is not None:
            found = _offset(cursor)
            if found is None:
                return cloud_error(400, "bad_request", "Invalid 'search_cursor'.")
            offset = found
        query = body.get("query", "")
        everything = isinstance(query, str) and (
            query.strip() in ("", "*") or f"service_name:{SERVICE_NAME}" in query
        )
        matches = list(instances_for(user)) if everything else []
        page = matches[offset : offset + limit]
        data: dict[str, object] = {"items": [_search_item(i) for i in page], "limit": limit}
        if offset + limit < len(matches):
            data["search_cursor"] = _cursor(offset + limit)
        return Response(json.dumps(data), 200, media_type="application/json")

    @router.get("/catalog/{plan_id}")
    async def catalog(plan_id: str, request: Request) -> Response:
        if user_for(request.headers) is None:
            return cloud_error(401, "unauthorized", "Missing or invalid IAM access token.")
        plan = PLANS.get(plan_id)
        if plan is None:
            return cloud_error(404, "not_found", f"No catalog entry: {plan_id[:64]}")
        return Response(json.dumps(catalog_entry(plan)), 200, media_type="application/json")

    return router


__all__ = [
    "OPEN_PLAN",
    "PLANS",
    "PREMIUM_PLAN",
    "REGION",
    "Instance",
    "Plan",
    "catalog_entry",
    "cloud_error",
    "discovery_router",
    "instance_of",
    "instances_for",
]
