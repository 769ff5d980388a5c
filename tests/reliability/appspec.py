"""The local server's own route table and OpenAPI document, for the fuzz and security tests.

The application is built by the server's ``create_app`` over a throwaway store, so the routes
and the document are exactly those a running server serves (the server publishes no
``/openapi.json``; its handlers read queries and bodies themselves, so the document is
enriched here with the query parameters and bodies of ``local-server.md``).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute

from runtime_job.api.models import RunJobRequest
from runtime_job.server.app import AppContext, StreamHub, create_app
from runtime_job.server.auth import Authenticator
from runtime_job.server.programs import ProgramRegistry
from runtime_job.server.store import Store


@contextlib.contextmanager
def built_app() -> Iterator[FastAPI]:
    """The FastAPI application of a server (over a throwaway store; never served)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "runtime.sqlite3")
        try:
            ctx = AppContext(
                store=store,
                auth=Authenticator(["unused-token"], store),
                programs=ProgramRegistry(),
                runner=cast(Any, None),
                hub=StreamHub(),
            )
            guard = create_app(ctx)
            app = getattr(guard, "app", guard)
            assert isinstance(app, FastAPI)
            yield app
        finally:
            store.close()


def http_routes() -> list[tuple[str, str]]:
    """Every ``(method, path template)`` of the HTTP API."""
    with built_app() as app:
        routes = [
            (method, route.path)
            for route in app.routes
            if isinstance(route, APIRoute)
            for method in sorted(route.methods)
        ]
    return sorted(routes)


def websocket_routes() -> list[str]:
    """Every websocket path template."""
    with built_app() as app:
        return sorted(r.path for r in app.routes if isinstance(r, APIWebSocketRoute))


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def openapi_document() -> dict[str, Any]:
    """The server's OpenAPI document, enriched with what its handlers parse by hand."""
    with built_app() as app:
        document = copy.deepcopy(app.openapi())
    paths = document["paths"]
    text = {"type": "string", "maxLength": 80}
    paths["/jobs"]["get"]["parameters"] = [
        _query("limit", {"type": "integer"}),
        _query("offset", {"type": "integer"}),
        _query("backend", text),
        _query("pending", {"type": "string", "enum": ["true", "false", "maybe"]}),
        _query("program", text),
        _query("tags", {"type": "array", "items": text, "maxItems": 3}),
        _query("session_id", text),
        _query("created_after", text),
        _query("created_before", text),
        _query("sort", {"type": "string", "enum": ["ASC", "DESC", "asc", "sideways"]}),
        _query("provider", text),
        _query("exclude_params", text),
    ]
    for path in ("/jobs/{job_id}",):
        paths[path]["get"]["parameters"].append(_query("exclude_params", text))
    paths["/backends"]["get"]["parameters"] = [_query("provider", text)]
    run = RunJobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = run.pop("$defs", {})
    program = {"type": "string", "enum": ["echo", "fail", "hello-world", "nope", ""]}
    run.setdefault("properties", {})["program_id"] = {
        "anyOf": [program, {"type": "string", "maxLength": 70}]
    }
    document.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
    document["components"]["schemas"]["RunJobRequest"] = run
    paths["/jobs"]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunJobRequest"}}},
    }
    paths["/jobs"]["post"].setdefault("parameters", []).append(
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": text}
    )
    paths["/api/users/loginWithToken"]["post"]["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"apiToken": {"type": "string"}}}
            }
        },
    }
    return document
